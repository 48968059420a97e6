/**
 * `deno run -A --unstable-kv sim/mutate.ts [name...] [--seeds=A..B] [--focus=...]`:
 * mutation runs. Each mutation is one deliberate bug in the Raft core or the
 * driver, written to a scratch copy in a temporary directory; an import map
 * points the simulator at the copy, so the tree itself is never changed.
 * For each mutation it runs the seeds (default: the CI's seeds 1..500; add
 * `--focus=default,turnover,learners,reads` for the targeted schedules) and
 * prints how many fail and the first message; with `--test=FILE` it runs
 * that test file against the mutant instead and lists the failing tests.
 *
 * Not pure: a CLI that writes temporary files and starts processes.
 *
 * @module
 */

interface Mutation {
  readonly name: string;
  readonly file: string;
  readonly what: string;
  readonly from: string;
  readonly to: string;
}

/** The bugs, each a textual replacement in one file. */
export const MUTATIONS: readonly Mutation[] = [
  {
    name: "commit-by-counting",
    file: "src/raft/raft.ts",
    what: "§5.4.2 broken: an earlier-term entry is committed by counting replicas",
    from: "if (q > this.#commit && this.termAt(q) === this.#term) {",
    to: "if (q > this.#commit) {",
  },
  {
    name: "learner-in-quorum",
    file: "src/raft/raft.ts",
    what: "a learner's match counts toward the commit quorum of the voters",
    from: "const matches = voters.map((v) =>",
    to: "const matches = [...voters, ...this.#membership.learners].map((v) =>",
  },
  {
    name: "read-without-heartbeat",
    file: "src/raft/raft.ts",
    what: "ReadIndex answered at once, without the heartbeat round (thesis §6.4)",
    from: "if (this.#membership.voters.length === 1) {\n      this.#deliverRead",
    to: "if (this.#membership.voters.length >= 1) {\n      this.#deliverRead",
  },
  {
    name: "ignore-higher-term-response",
    file: "src/raft/raft.ts",
    what: "a response carrying a higher term does not make the receiver adopt it (Figure 2)",
    from:
      '    if (m.term > this.#term) {\n      if (m.type === "PreVote" || m.type === "RequestVote") {',
    to:
      '    if (m.term > this.#term && !m.type.endsWith("Response")) {\n      if (m.type === "PreVote" || m.type === "RequestVote") {',
  },
  {
    name: "vote-twice",
    file: "src/raft/raft.ts",
    what: "a node grants a second vote in one term (§5.2)",
    from: "const canVote = this.#vote === m.from ||",
    to: "const canVote = this.#vote !== null ||",
  },
  {
    name: "send-before-fsync",
    file: "src/cluster/driver.ts",
    what: "the driver sends a ready's messages before its fsync (Figure 2)",
    from: "        await this.#storage.save(rd);\n",
    to:
      "        for (const m of rd.messages) this.#o.send(m);\n        await this.#storage.save(rd);\n",
  },
];

function arg(name: string): string | undefined {
  const a = Deno.args.find((x) => x === `--${name}` || x.startsWith(`--${name}=`));
  if (a === undefined) return undefined;
  return a.includes("=") ? a.slice(a.indexOf("=") + 1) : "true";
}

async function runMutation(mu: Mutation, seeds: string, focus: string | undefined) {
  const root = new URL("../", import.meta.url);
  const src = new URL(mu.file, root);
  const text = await Deno.readTextFile(src);
  if (!text.includes(mu.from)) throw new Error(`Mutation ${mu.name} no longer applies`);
  // Relative imports of the copy point back into the tree.
  const dirUrl = new URL(".", src).href;
  const mutated = text.replace(mu.from, mu.to).replace(
    /from "(\.\.?\/[^"]+)"/g,
    (_m, p: string) => `from "${new URL(p, dirUrl).href}"`,
  );
  const tmp = await Deno.makeTempDir({ prefix: `mutant-${mu.name}-` });
  try {
    const copy = `${tmp}/${mu.file.split("/").at(-1)}`;
    await Deno.writeTextFile(copy, mutated);
    const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", root)));
    const map = { imports: { ...config.imports, [src.href]: `file://${copy}` } };
    await Deno.writeTextFile(`${tmp}/import_map.json`, JSON.stringify(map));
    const test = arg("test");
    const args = test
      ? ["test", "-A", "--unstable-kv", `--import-map=${tmp}/import_map.json`, test]
      : [
        "run",
        "-A",
        "--unstable-kv",
        `--import-map=${tmp}/import_map.json`,
        new URL("main.ts", import.meta.url).pathname,
        `--seeds=${seeds}`,
        ...(focus ? [`--focus=${focus}`] : []),
        ...(arg("workers") ? [`--workers=${arg("workers")}`] : []),
      ];
    const out = await new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "piped" })
      .output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    if (test) {
      // deno-lint-ignore no-control-regex
      const plain = stdout.replace(/\x1b\[[0-9;]*m/g, "");
      const failed = plain.split("\n").filter((l) => /^\S.* \.\.\. FAILED/.test(l));
      console.log(`${mu.name} ${test}: ${failed.length} test(s) fail`);
      for (const l of failed) console.log(`  ${l}`);
      return;
    }
    const summary = stdout.split("\n").find((l) => l.startsWith("ok") || l.startsWith("FAILED")) ??
      stdout.trim();
    const failing = stdout.split("\n").find((l) => l.startsWith("failing seeds:")) ?? "";
    const first = stderr.split("\n").find((l) => l.startsWith("FAIL")) ?? "";
    console.log(`${mu.name} ${focus ?? "default"} ${seeds}: ${summary}`);
    if (failing) console.log(`  ${failing.slice(0, 300)}`);
    if (first) console.log(`  first: ${first.slice(0, 300)}`);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

if (import.meta.main) {
  const names = Deno.args.filter((a) => !a.startsWith("--"));
  const chosen = names.length > 0 ? MUTATIONS.filter((m) => names.includes(m.name)) : MUTATIONS;
  const seeds = arg("seeds") ?? "1..500";
  const focuses = arg("focus")
    ? arg("focus")!.split(",").map((f) => f === "default" ? undefined : f)
    : [undefined];
  for (const mu of chosen) {
    for (const focus of focuses) await runMutation(mu, seeds, focus);
  }
}
