/**
 * The cluster end to end: real `hamster cluster` processes on loopback
 * mutual TLS, ports chosen free at random, every wait bounded.
 *
 * - the README quick start, its commands taken from the README itself;
 * - a PUT on one follower, then at once a GET on the other;
 * - kill -9 of the leader mid-workload: a new leader, writes resume (the
 *   seconds to the first successful write are printed);
 * - a killed node restarted from disk catches up;
 * - a brand-new member catches up from a snapshot (`-snapshot-every`);
 * - refusals: token reuse, an expired token, a token for another CA, a
 *   plaintext client, a client certificate from another CA;
 * - `remove`; `recover -force` after killing two of three voters;
 * - a `serve` data directory adopted by `cluster init`.
 */
import assert from "node:assert/strict";
import { childEnv, freePort, hamsterArgs, REPO_ROOT, runHamster } from "./_server.ts";
import type { ServerProcess } from "./_server.ts";
import { signedFetch } from "./_client.ts";
import { createClusterCa, createCsr, issueNodeCertificate } from "../../src/cluster/pki.ts";
import { dialCluster } from "../../src/io/deno/tls.ts";
import { decodeJoinToken, encodeJoinToken } from "../../src/cluster/token.ts";
import { systemRng } from "../../src/io/deno/clock.ts";

const CREDS = { accessKeyId: "hamster", secretAccessKey: "keep-this-one-secret" };
const ENV = {
  HAMSTER_ACCESS_KEY_ID: CREDS.accessKeyId,
  HAMSTER_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
};
const STEP_MS = 30_000;

/** A running `hamster cluster run`. */
class NodeProcess {
  output = "";
  readonly #pumps: Promise<void>[];
  constructor(
    readonly child: Deno.ChildProcess,
    readonly dataDir: string,
    readonly s3Port: number,
    readonly args: string[],
  ) {
    this.#pumps = [child.stdout, child.stderr].map(async (s) => {
      for await (const t of s.pipeThrough(new TextDecoderStream())) this.output += t;
    });
  }
  get url() {
    return `http://127.0.0.1:${this.s3Port}`;
  }
  get host() {
    return `127.0.0.1:${this.s3Port}`;
  }
  /** What `signedFetch` needs of a server. */
  get s3(): ServerProcess {
    return { url: this.url, host: this.host, credentials: CREDS } as unknown as ServerProcess;
  }
  async waitFor(re: RegExp, ms = STEP_MS): Promise<void> {
    const end = Date.now() + ms;
    while (!re.test(this.output)) {
      if (Date.now() > end) throw new Error(`No ${re} within ${ms} ms; output:\n${this.output}`);
      await sleep(50);
    }
  }
  kill9(): Promise<Deno.CommandStatus> {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // gone
    }
    return this.reap();
  }
  async reap(): Promise<Deno.CommandStatus> {
    const st = await this.child.status;
    await Promise.all(this.#pumps);
    return st;
  }
  async stop(): Promise<void> {
    try {
      this.child.kill("SIGTERM");
    } catch {
      // gone
    }
    const t = setTimeout(() => this.kill9(), 15_000);
    await this.reap();
    clearTimeout(t);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts `hamster cluster run <args>` and waits for its S3 line. */
async function startNode(args: string[], cwd = REPO_ROOT): Promise<NodeProcess> {
  const i = args.indexOf("-s3");
  const s3Port = Number(args[i + 1].split(":").pop());
  const d = args.indexOf("-data-dir");
  const child = new Deno.Command(Deno.execPath(), {
    args: hamsterArgs(["cluster", "run", ...args]),
    cwd,
    clearEnv: true,
    env: childEnv(ENV),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const node = new NodeProcess(child, args[d + 1], s3Port, args);
  await node.waitFor(/S3 on http/);
  return node;
}

async function hamster(args: string[], cwd?: string) {
  const r = await runHamsterIn(args, cwd);
  if (r.code !== 0) throw new Error(`hamster ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout.trim();
}

async function runHamsterIn(args: string[], cwd?: string) {
  if (cwd === undefined) return await runHamster(args, { env: ENV, timeoutMs: STEP_MS });
  const out = await new Deno.Command(Deno.execPath(), {
    args: hamsterArgs(args),
    cwd,
    clearEnv: true,
    env: childEnv(ENV),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(STEP_MS),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

interface Status {
  leader: string | null;
  term: number;
  commitIndex: number;
  appliedIndex: number;
  members: { id: string; role: string; reachable: boolean; lag: number | null }[];
}

async function status(dataDir: string, cwd?: string): Promise<Status> {
  return JSON.parse(await hamster(["cluster", "status", "-data-dir", dataDir, "-json"], cwd));
}

/** Polls `fn` until it returns a value, or fails after `ms`. */
async function until<T>(what: string, fn: () => Promise<T | null>, ms = STEP_MS): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== null) return v;
    } catch (err) {
      last = err;
    }
    await sleep(100);
  }
  throw new Error(`Timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
}

async function put(node: NodeProcess, path: string, body: string): Promise<number> {
  const res = await signedFetch(node.s3, { method: "PUT", path, body });
  await res.body?.cancel();
  return res.status;
}

async function get(node: NodeProcess, path: string): Promise<{ status: number; text: string }> {
  const res = await signedFetch(node.s3, { method: "GET", path });
  return { status: res.status, text: await res.text() };
}

/** The commands of the README's cluster quick start. */
async function readmeQuickStart(): Promise<string[]> {
  const readme = await Deno.readTextFile(`${REPO_ROOT}/README.md`);
  const m = /<!-- cluster-quick-start -->\s*```sh\n([\s\S]*?)```/.exec(readme);
  assert.ok(m, "README has the cluster quick start block");
  return m[1].split("\n").map((l) => l.replace(/\s+#.*$/, "").trim()).filter((l) => l !== "");
}

/** Splits a shell line into words (double quotes, `$VAR` from `vars`). */
function words(line: string, vars: Record<string, string>): string[] {
  const out: string[] = [];
  for (const m of line.matchAll(/"([^"]*)"|(\S+)/g)) {
    out.push((m[1] ?? m[2]).replace(/\$(\w+)/g, (_s, v) => vars[v] ?? ""));
  }
  return out;
}

Deno.test({
  name:
    "cluster: README quick start, then reads, failover, restart, snapshot, refusals, remove, recover",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cwd = await Deno.makeTempDir({ prefix: "hamster-cluster-" });
    // The README's ports, moved to free ones.
    const ports = new Map<string, string>();
    for (const p of ["7946", "7956", "7966", "9000", "9001", "9002"]) {
      ports.set(p, String(freePort()));
    }
    const nodes: NodeProcess[] = [];
    try {
      const vars: Record<string, string> = {};
      for (const raw of await readmeQuickStart()) {
        const line = raw.replace(/127\.0\.0\.1:(\d+)/g, (_s, p) => `127.0.0.1:${ports.get(p)}`);
        if (line.startsWith("export ")) continue; // ENV carries the same pair
        const assign = /^(\w+)=\$\((.*)\)$/.exec(line);
        const cmd = words(assign ? assign[2] : line, vars);
        assert.equal(cmd[0], "hamster", line);
        if (cmd[1] === "cluster" && cmd[2] === "run") {
          nodes.push(await startNode(cmd.slice(3), cwd));
        } else {
          const out = await hamster(cmd.slice(1), cwd);
          if (assign) vars[assign[1]] = out;
        }
      }
      assert.equal(nodes.length, 3);
      const [n1] = nodes;
      // All three voters, caught up.
      await until("three voters", async () => {
        const s = await status("./n1", cwd);
        const voters = s.members.filter((m) => m.role === "voter" && m.reachable);
        return voters.length === 3 && s.leader !== null ? s : null;
      }, 60_000);

      // A bucket, then a PUT on one follower and an immediate GET on the other.
      assert.equal(await put(n1, "/bkt", ""), 200);
      const s0 = await status("./n1", cwd);
      const followers = nodes.filter((n) => !n.dataDir.endsWith(s0.leader!));
      assert.equal(await put(followers[0], "/bkt/k1", "hello from a follower"), 200);
      assert.deepEqual(await get(followers[1], "/bkt/k1"), {
        status: 200,
        text: "hello from a follower",
      });

      // kill -9 of the leader mid-workload.
      const leader = nodes.find((n) => n.dataDir.endsWith(s0.leader!))!;
      const others = nodes.filter((n) => n !== leader);
      let writing = true;
      let i = 0;
      const workload = (async () => {
        while (writing) await put(others[i++ % 2], `/bkt/w${i}`, `v${i}`).catch(() => 0);
      })();
      await sleep(300);
      const killedAt = Date.now();
      await leader.kill9();
      const firstWriteS = await until("a write after the leader died", async () => {
        return (await put(others[0], `/bkt/after-${Date.now()}`, "x")) === 200
          ? (Date.now() - killedAt) / 1000
          : null;
      });
      writing = false;
      await workload;
      console.log(
        `seconds to the first successful write after kill -9 of the leader: ${firstWriteS}`,
      );
      assert.ok((await status(others[0].dataDir, cwd)).leader !== s0.leader);

      // The killed node restarts from disk and catches up.
      const restarted = await startNode(leader.args, cwd);
      nodes[nodes.indexOf(leader)] = restarted;
      assert.equal(await put(others[1], "/bkt/late", "written while it was down"), 200);
      await until("the restarted node to catch up", async () => {
        const r = await get(restarted, "/bkt/late");
        return r.status === 200 && r.text === "written while it was down" ? true : null;
      });

      // Refusals on the cluster port. Token reuse:
      const founder = nodes.find((n) => n.dataDir.endsWith("n1"))!;
      const token = await hamster(["cluster", "token", "-data-dir", "./n1"], cwd);
      const n4Args = [
        "-data-dir",
        "./n4",
        "-node",
        "n4",
        "-listen",
        `127.0.0.1:${freePort()}`,
        "-token",
        token,
        "-s3",
        `127.0.0.1:${freePort()}`,
        "-snapshot-every",
        "20",
      ];
      for (let k = 0; k < 40; k++) await put(founder, `/bkt/s${k}`, `s${k}`);
      const n4 = await startNode(n4Args, cwd); // a brand-new member, from a snapshot
      nodes.push(n4);
      await until("the new member to catch up", async () => {
        const r = await get(n4, "/bkt/s39");
        return r.status === 200 && r.text === "s39" ? true : null;
      });
      const reuse = await runHamsterIn([
        "cluster",
        "run",
        ...n4Args.map((a, i) =>
          i > 0 && ["-data-dir", "-node"].includes(n4Args[i - 1]) ? a.replace("n4", "n5") : a
        ),
      ], cwd);
      assert.notEqual(reuse.code, 0);
      assert.match(reuse.stderr, /UsedToken/);
      // An expired token:
      const short = await hamster(["cluster", "token", "-data-dir", "./n1", "-ttl", "1s"], cwd);
      await sleep(1500);
      const expired = await runHamsterIn([
        "cluster",
        "run",
        "-data-dir",
        "./n6",
        "-node",
        "n6",
        "-listen",
        `127.0.0.1:${freePort()}`,
        "-token",
        short,
        "-s3",
        `127.0.0.1:${freePort()}`,
      ], cwd);
      assert.notEqual(expired.code, 0);
      assert.match(expired.stderr, /ExpiredToken.*expired at/);
      // A token for another cluster (another CA):
      const otherDir = `${cwd}/other`;
      await hamster([
        "cluster",
        "init",
        "-data-dir",
        otherDir,
        "-node",
        "x1",
        "-listen",
        `127.0.0.1:${freePort()}`,
      ]);
      const other = await startNode(["-data-dir", otherDir, "-s3", `127.0.0.1:${freePort()}`]);
      const foreignToken = await hamster(["cluster", "token", "-data-dir", otherDir]);
      await other.stop();
      const n1Listen = JSON.parse(await Deno.readTextFile(`${cwd}/n1/cluster/node.json`)).listen;
      // Its pin names the other CA; aimed at n1, the joiner must hang up before sending it.
      const forged = encodeJoinToken({ ...decodeJoinToken(foreignToken), addr: n1Listen });
      const wrongCa = await runHamsterIn([
        "cluster",
        "run",
        "-data-dir",
        "./n7",
        "-node",
        "n7",
        "-listen",
        `127.0.0.1:${freePort()}`,
        "-token",
        forged,
        "-s3",
        `127.0.0.1:${freePort()}`,
      ], cwd);
      assert.notEqual(wrongCa.code, 0);
      assert.match(wrongCa.stderr, /CaMismatch/);
      // A plaintext client gets no application byte:
      const [host, port] = n1Listen.split(":");
      const plain = await Deno.connect({ hostname: host, port: Number(port) });
      await plain.write(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"));
      const buf = new Uint8Array(4096);
      const n = await plain.read(buf).catch(() => null);
      plain.close();
      assert.ok(n === null || !new TextDecoder().decode(buf.subarray(0, n)).includes("HTTP/"));
      // A client certificate from another CA:
      const ca2 = await createClusterCa({
        clusterId: "evil",
        nowMs: Date.now(),
        serial: systemRng.fill(new Uint8Array(16)),
      });
      const csr = await createCsr("n1");
      const cert = await issueNodeCertificate(ca2, "n1", csr.csrPem, {
        nowMs: Date.now(),
        serial: systemRng.fill(new Uint8Array(16)),
      });
      const realCa = await Deno.readTextFile(`${cwd}/n1/cluster/ca.pem`);
      const refused = await (async () => {
        try {
          const conn = await dialCluster({ hostname: host, port: Number(port) }, {
            caCertPem: realCa,
            certPem: cert,
            keyPem: csr.keyPem,
          });
          const { callAdmin } = await import("../../src/cluster/admin.ts");
          await callAdmin(conn, { op: "status" });
          return false;
        } catch {
          return true;
        }
      })();
      assert.ok(refused, "a certificate from another CA gets nothing");

      // remove: n4 stops itself and is gone from the configuration.
      await hamster(["cluster", "remove", "-data-dir", "./n1", "n4"], cwd);
      const n4Exit = await Promise.race([n4.reap(), sleep(STEP_MS).then(() => null)]);
      assert.ok(n4Exit !== null, "the removed node stopped itself");
      nodes.splice(nodes.indexOf(n4), 1);
      assert.ok(!(await status("./n1", cwd)).members.some((m) => m.id === "n4"));
      const rerun = await runHamsterIn(["cluster", "run", ...n4Args], cwd);
      assert.notEqual(rerun.code, 0);

      // recover -force after killing two of three voters.
      const survivor = nodes.find((n) => n.dataDir.endsWith("n1"))!;
      for (const n of nodes.filter((n) => n !== survivor)) await n.kill9();
      const busy = await runHamsterIn(["cluster", "recover", "-data-dir", "./n1", "-force"], cwd);
      assert.notEqual(busy.code, 0, "recover refuses while the node runs");
      await survivor.stop();
      const rec = await hamster(["cluster", "recover", "-data-dir", "./n1", "-force"], cwd);
      assert.match(rec, /MAY BE LOST/);
      const alone = await startNode(survivor.args.filter((a) => a !== "-token"), cwd);
      nodes.length = 0;
      nodes.push(alone);
      assert.equal(await put(alone, "/bkt/after-recover", "ok"), 200);
      // Objects whose bytes are on this node survive; those held by the lost nodes do not.
      assert.deepEqual(await get(alone, "/bkt/s39"), { status: 200, text: "s39" });
    } finally {
      for (const n of nodes) await n.kill9().catch(() => {});
      await Deno.remove(cwd, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "cluster: cluster init adopts a serve data directory in place",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "hamster-adopt-" });
    let node: NodeProcess | null = null;
    try {
      const s3 = `127.0.0.1:${freePort()}`;
      const serve = new Deno.Command(Deno.execPath(), {
        args: hamsterArgs(["serve", "-data-dir", dir, "-s3", s3]),
        cwd: REPO_ROOT,
        clearEnv: true,
        env: childEnv(ENV),
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const served = new NodeProcess(serve, dir, Number(s3.split(":")[1]), []);
      await served.waitFor(/S3 on http/);
      assert.equal(await put(served, "/old", ""), 200);
      assert.equal(await put(served, "/old/obj", "written by serve"), 200);
      await served.stop();
      const out = await hamster([
        "cluster",
        "init",
        "-data-dir",
        dir,
        "-node",
        "n1",
        "-listen",
        `127.0.0.1:${freePort()}`,
      ]);
      assert.match(out, /Adopted/);
      node = await startNode(["-data-dir", dir, "-s3", `127.0.0.1:${freePort()}`]);
      assert.deepEqual(await get(node, "/old/obj"), { status: 200, text: "written by serve" });
      assert.equal(await put(node, "/old/new", "after adoption"), 200);
    } finally {
      await node?.kill9();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test("cluster CLI: --help on every verb, clear refusals before anything runs", async () => {
  for (const verb of ["init", "run", "token", "status", "remove", "recover"]) {
    const r = await runHamster(["cluster", verb, "--help"], { timeoutMs: STEP_MS });
    assert.equal(r.code, 0, verb);
    assert.match(r.stdout, new RegExp(`Usage: hamster cluster ${verb} -data-dir`));
  }
  const dir = await Deno.makeTempDir({ prefix: "hamster-cli-" });
  try {
    const cases: [string[], RegExp][] = [
      [
        ["cluster", "init", "-data-dir", dir, "-node", "Bad_Id", "-listen", "127.0.0.1:1"],
        /Bad -node/,
      ],
      [["cluster", "init", "-data-dir", dir, "-node", "n1"], /-listen is required/],
      [["cluster", "run", "-data-dir", dir, "-s3", "127.0.0.1:1"], /not a cluster node yet/],
      [
        ["cluster", "run", "-data-dir", dir, "-token", "x", "-s3", "127.0.0.1:1"],
        /needs -node and -listen/,
      ],
      [["cluster", "status", "-data-dir", dir], /not a cluster node/],
      [["cluster", "token", "-data-dir", dir, "-ttl", "forever"], /Bad -ttl/],
      [["cluster", "remove", "-data-dir", dir], /exactly one NODE/],
      [["cluster", "recover", "-data-dir", dir], /only with -force/],
      [["cluster", "frobnicate"], /Unknown cluster verb/],
    ];
    for (const [args, want] of cases) {
      const r = await runHamster(args, { timeoutMs: STEP_MS });
      assert.equal(r.code, 2, args.join(" "));
      assert.match(r.stderr, want, args.join(" "));
    }
    // A malformed token is refused before anything is dialled or written.
    const r = await runHamster([
      "cluster",
      "run",
      "-data-dir",
      dir,
      "-node",
      "n2",
      "-listen",
      "127.0.0.1:1",
      "-token",
      "hamster-join-v1.AAAA",
      "-s3",
      "127.0.0.1:1",
    ], { timeoutMs: STEP_MS });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /Cannot join \(MalformedToken\)/);
    assert.equal(await Deno.stat(`${dir}/cluster/node.json`).catch(() => null), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
