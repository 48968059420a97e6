/**
 * The load benchmark: PUT and GET throughput of Hamster against the null
 * server (Deno's HTTP ceiling) in one run, and Hamster's peak RSS during a
 * 1 GiB PUT and GET. Every GET body is verified by MD5.
 *
 * Usage: deno run -A --unstable-kv bench/load.ts [--quick] [--only "4 KiB"] [--json FILE]
 *   [--compare-raft ROUNDS]
 *
 * `--compare-raft N` also starts `serve` on the one-voter Raft path
 * (`HAMSTER_SERVE_LOG=raft`) and then runs N rounds of 2000 4 KiB PUTs at 16
 * streams against each `serve`, alternating which goes first, printing ops/s.
 *
 * Both servers run as child processes on loopback. Objects of 1 MiB and more
 * move with curl (one process per request, GET bodies piped to md5sum), since
 * Deno's fetch slows to a crawl streaming a large request body into a server
 * that applies backpressure; 4 KiB objects use fetch from this process. Every
 * request is signed with SigV4 UNSIGNED-PAYLOAD.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import { CREDS, freePort, pattern, pool, put, sign } from "./_s3.ts";
import type { Target } from "./_s3.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean" },
    json: { type: "string" },
    only: { type: "string" },
    "compare-raft": { type: "string" },
  },
});
const QUICK = args.values.quick === true;
/** Runs only the workloads whose label contains this text, e.g. "4 KiB" or "64 MiB x1"; skips the RSS run. */
const ONLY = args.values.only;
const MiB = 1 << 20;
/** 4 KiB PUTs sent to each server, unmeasured, before the workloads. */
const WARM_UP_REQUESTS = 2000;

async function start(name: string, argv: string[], env: Record<string, string>, port: number) {
  const child = new Deno.Command(Deno.execPath(), {
    args: argv,
    env,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes(String(port))) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${name} exited before listening`);
    seen += value;
  }
  (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })();
  return child;
}

async function getMd5(t: Target, key: string, sizeBytes: number): Promise<string> {
  const url = new URL(`${t.base}/bench/${key}${t.signed ? "" : `?size=${sizeBytes}`}`);
  const res = await fetch(url, { headers: t.signed ? sign("GET", url) : {} });
  if (res.status !== 200) throw new Error(`GET ${key} on ${t.name}: ${res.status}`);
  const md5 = createHash("md5");
  let n = 0;
  for await (const chunk of res.body!) {
    md5.update(chunk);
    n += chunk.length;
  }
  if (n !== sizeBytes) throw new Error(`GET ${key} on ${t.name}: ${n} bytes, want ${sizeBytes}`);
  return md5.digest("hex");
}

async function curlPut(t: Target, key: string, file: string): Promise<void> {
  const url = new URL(`${t.base}/bench/${key}`);
  const size = (await Deno.stat(file)).size;
  const h = t.signed ? sign("PUT", url, { "content-length": String(size) }) : new Headers();
  const args = ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-T", file, "-H", "Expect:"];
  for (const [k, v] of h) if (k !== "content-length") args.push("-H", `${k}: ${v}`);
  const out = await new Deno.Command("curl", { args: [...args, url.href] }).output();
  const code = new TextDecoder().decode(out.stdout);
  if (code !== "200") throw new Error(`PUT ${key} on ${t.name}: ${code}`);
}

async function curlGetMd5(t: Target, key: string, sizeBytes: number): Promise<string> {
  const url = new URL(`${t.base}/bench/${key}${t.signed ? "" : `?size=${sizeBytes}`}`);
  const h = t.signed ? sign("GET", url) : new Headers();
  const headerArgs = [...h].map(([k, v]) => `-H '${k}: ${v}'`).join(" ");
  const out = await new Deno.Command("bash", {
    args: ["-c", `set -o pipefail; curl -sf ${headerArgs} '${url.href}' | md5sum`],
  }).output();
  if (!out.success) throw new Error(`GET ${key} on ${t.name} failed`);
  return new TextDecoder().decode(out.stdout).split(" ")[0];
}

const NULL_BLOCK = new Uint8Array(MiB).map((_, i) => (i * 31) & 0xff);
function nullMd5(sizeBytes: number): string {
  const md5 = createHash("md5");
  for (let off = 0; off < sizeBytes; off += MiB) {
    md5.update(NULL_BLOCK.subarray(0, Math.min(MiB, sizeBytes - off)));
  }
  return md5.digest("hex");
}

interface Row {
  workload: string;
  target: string;
  opsPerS: number;
  mibPerS: number;
}

async function workload(
  targets: Target[],
  sizeBytes: number,
  streams: number,
  ops: number,
  rows: Row[],
  dir: string,
) {
  const label = sizeBytes >= MiB ? `${sizeBytes / MiB} MiB` : `${sizeBytes / 1024} KiB`;
  if (ONLY !== undefined && !`${label} x${streams}`.includes(ONLY)) return;
  const body = pattern(sizeBytes, sizeBytes + streams);
  const want = createHash("md5").update(body).digest("hex");
  const useCurl = sizeBytes >= MiB;
  const file = `${dir}/body-${sizeBytes}`;
  if (useCurl) await Deno.writeFile(file, body);
  for (const t of targets) {
    const putS = await pool(
      ops,
      streams,
      (i) =>
        useCurl
          ? curlPut(t, `o${sizeBytes}-${i}`, file)
          : put(t, `o${sizeBytes}-${i}`, body as BodyInit, sizeBytes),
    );
    rows.push({
      workload: `PUT ${label} x${streams}`,
      target: t.name,
      opsPerS: ops / putS,
      mibPerS: (ops * sizeBytes) / MiB / putS,
    });
    const expect = t.signed ? want : nullMd5(sizeBytes);
    const getS = await pool(ops, streams, async (i) => {
      const got = useCurl
        ? await curlGetMd5(t, `o${sizeBytes}-${i}`, sizeBytes)
        : await getMd5(t, `o${sizeBytes}-${i}`, sizeBytes);
      if (got !== expect) throw new Error(`GET body mismatch on ${t.name}`);
    });
    rows.push({
      workload: `GET ${label} x${streams}`,
      target: t.name,
      opsPerS: ops / getS,
      mibPerS: (ops * sizeBytes) / MiB / getS,
    });
  }
}

async function rssKiB(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

async function peakRssDuring(pid: number, work: Promise<void>): Promise<number> {
  let peak = 0;
  let done = false;
  work.finally(() => (done = true));
  while (!done) {
    peak = Math.max(peak, await rssKiB(pid));
    await new Promise((r) => setTimeout(r, 20));
  }
  await work;
  return peak;
}

/** Peak RSS of each target while one `GiB`-byte object streams in and out with curl. */
async function measureRss(
  targets: Target[],
  GiB: number,
  dir: string,
  rss: Record<string, { baseline: number; putPeak: number; getPeak: number }>,
): Promise<void> {
  const block = pattern(MiB, 7);
  const bigFile = `${dir}/big`;
  const f = await Deno.open(bigFile, { write: true, create: true, truncate: true });
  const want = createHash("md5");
  for (let i = 0; i < GiB / MiB; i++) {
    for (let off = 0; off < block.length;) off += await f.write(block.subarray(off));
    want.update(block);
  }
  f.close();
  const wantHex = want.digest("hex");
  for (const t of targets) {
    const baseline = await rssKiB(t.pid);
    const putPeak = await peakRssDuring(t.pid, curlPut(t, "big", bigFile));
    let got = "";
    const getPeak = await peakRssDuring(
      t.pid,
      (async () => {
        got = await curlGetMd5(t, "big", GiB);
      })(),
    );
    if (t.signed && got !== wantHex) throw new Error("1 GiB GET body mismatch");
    rss[t.name] = { baseline, putPeak, getPeak };
  }
  await Deno.remove(bigFile);
}

async function main() {
  const dir = await Deno.makeTempDir({ prefix: "hamster-bench-" });
  const hPort = freePort();
  const nPort = freePort();
  const root = new URL("..", import.meta.url).pathname;
  const hamster = await start("hamster", [
    "run",
    "-A",
    "--unstable-kv",
    `${root}main.ts`,
    "serve",
    "-data-dir",
    dir,
    "-s3",
    `127.0.0.1:${hPort}`,
  ], {
    HAMSTER_ACCESS_KEY_ID: CREDS.accessKeyId,
    HAMSTER_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
  }, hPort);
  const nul = await start(
    "null",
    ["run", "-A", `${root}bench/null_server.ts`, String(nPort)],
    {},
    nPort,
  );
  const targets: Target[] = [
    { name: "null", base: `http://127.0.0.1:${nPort}`, pid: nul.pid, signed: false },
    { name: "hamster", base: `http://127.0.0.1:${hPort}`, pid: hamster.pid, signed: true },
  ];
  const compareRounds = Number(args.values["compare-raft"] ?? 0);
  let local: Awaited<ReturnType<typeof start>> | null = null;
  let localTarget: Target | null = null;
  if (compareRounds > 0) {
    const lPort = freePort();
    await Deno.mkdir(`${dir}/local`);
    local = await start("hamster-raft", [
      "run",
      "-A",
      "--unstable-kv",
      `${root}main.ts`,
      "serve",
      "-data-dir",
      `${dir}/local`,
      "-s3",
      `127.0.0.1:${lPort}`,
    ], {
      HAMSTER_ACCESS_KEY_ID: CREDS.accessKeyId,
      HAMSTER_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
      HAMSTER_SERVE_LOG: "raft",
    }, lPort);
    localTarget = {
      name: "hamster-raft",
      base: `http://127.0.0.1:${lPort}`,
      pid: local.pid,
      signed: true,
    };
  }
  const rows: Row[] = [];
  try {
    const mk = new URL(`${targets[1].base}/bench`);
    const r = await fetch(mk, { method: "PUT", headers: sign("PUT", mk) });
    await r.body?.cancel();
    if (localTarget) {
      const mkl = new URL(`${localTarget.base}/bench`);
      const rl = await fetch(mkl, { method: "PUT", headers: sign("PUT", mkl) });
      await rl.body?.cancel();
    }
    // Unmeasured: both servers' JIT warms up on small requests first, so that a
    // workload run alone (--only) measures what it measures after the others.
    const warm = pattern(4096, 1);
    for (const t of targets) {
      await pool(WARM_UP_REQUESTS, 16, (i) => put(t, `warm-${i}`, warm as BodyInit, warm.length));
    }
    const scale = QUICK ? 0.25 : 1;
    await workload(targets, MiB, 1, Math.ceil(64 * scale), rows, dir);
    await workload(targets, MiB, 8, Math.ceil(128 * scale), rows, dir);
    await workload(targets, 64 * MiB, 1, Math.ceil(4 * scale), rows, dir);
    await workload(targets, 64 * MiB, 8, Math.ceil(16 * scale), rows, dir);
    await workload(targets, 4096, 16, Math.ceil(2000 * scale), rows, dir);

    if (localTarget) {
      const body = pattern(4096, 7);
      const old = targets[1];
      await pool(
        WARM_UP_REQUESTS,
        16,
        (i) => put(localTarget, `warm-${i}`, body as BodyInit, 4096),
      );
      console.log(`\n4 KiB PUT x16, 2000 ops a round: ops/s of serve on RaftLog vs LocalLog`);
      for (let round = 0; round < compareRounds; round++) {
        const order = round % 2 === 0 ? [localTarget, old] : [old, localTarget];
        const got: Record<string, number> = {};
        for (const t of order) {
          const s = await pool(2000, 16, (i) => put(t, `cmp${round}-${i}`, body as BodyInit, 4096));
          got[t.name] = 2000 / s;
        }
        console.log(
          `round ${round + 1}: raft ${got["hamster-raft"].toFixed(0)}/s, local ${
            got.hamster.toFixed(0)
          }/s, ratio ${(got["hamster-raft"] / got.hamster).toFixed(2)}`,
        );
      }
    }

    // Peak RSS while one 1 GiB object streams in and out.
    const GiB = QUICK ? 256 * MiB : 1024 * MiB;
    const rss: Record<string, { baseline: number; putPeak: number; getPeak: number }> = {};
    if (ONLY === undefined) await measureRss(targets, GiB, dir, rss);

    const byKey = new Map(rows.map((r) => [`${r.workload}|${r.target}`, r]));
    console.log(`\n| workload | null server MiB/s | hamster MiB/s | hamster ops/s | ratio |`);
    console.log(`|---|---|---|---|---|`);
    for (const w of [...new Set(rows.map((r) => r.workload))]) {
      const n = byKey.get(`${w}|null`)!;
      const h = byKey.get(`${w}|hamster`)!;
      console.log(
        `| ${w} | ${n.mibPerS.toFixed(1)} | ${h.mibPerS.toFixed(1)} | ${h.opsPerS.toFixed(0)} | ${
          (h.mibPerS / n.mibPerS).toFixed(2)
        }x |`,
      );
    }
    for (const [name, r] of Object.entries(rss)) {
      console.log(
        `${name} RSS: baseline ${(r.baseline / 1024).toFixed(1)} MiB, ` +
          `during a ${GiB / MiB} MiB PUT +${((r.putPeak - r.baseline) / 1024).toFixed(1)} MiB, ` +
          `during its GET +${((r.getPeak - r.baseline) / 1024).toFixed(1)} MiB`,
      );
    }
    if (args.values.json) {
      await Deno.writeTextFile(
        args.values.json,
        JSON.stringify({ rows, rss }, null, 2),
      );
    }
  } finally {
    for (const c of local ? [hamster, nul, local] : [hamster, nul]) {
      c.kill("SIGTERM");
      await c.status;
    }
    await Deno.remove(dir, { recursive: true });
  }
}

await main();
