/**
 * The cluster benchmark (issue 10): a three-node loopback cluster started as
 * real processes the way the README "Cluster" section does (`cluster init`,
 * `cluster run`, `cluster token`), and a `serve` in the same run, measuring:
 *
 * 1. 4 KiB PUTs/s at 16 concurrent clients spread round-robin over the three
 *    S3 ports, and the same workload against `serve` (ratio);
 * 2. metadata commits/s: 0-byte PUTs (no object bytes, one Raft entry each)
 *    at 64 concurrent clients spread over the nodes;
 * 3. GET 4 KiB latency p50/p99, sequential, on a follower and on the leader
 *    (each reads the object the other node received);
 * 4. failover: kill -9 of the leader, seconds to the first successful PUT on a
 *    surviving node; the killed node is restarted and rejoins between rounds.
 *
 * Usage: deno run -A --unstable-kv bench/cluster_load.ts [--failovers 3]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { CREDS, freePort, pattern, pool, put, sign } from "./_s3.ts";
import type { Target } from "./_s3.ts";

const args = parseArgs({ args: Deno.args, options: { failovers: { type: "string" } } });
const FAILOVERS = Number(args.values.failovers ?? 3);
const ROOT = new URL("..", import.meta.url).pathname;
const ENV = {
  HAMSTER_ACCESS_KEY_ID: CREDS.accessKeyId,
  HAMSTER_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
};
const PUT_OPS = 2000;
const META_OPS = 3000;
const GET_OPS = 500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hamsterArgv = (a: string[]) => ["run", "-A", "--unstable-kv", `${ROOT}main.ts`, ...a];

/** A running `hamster cluster run` or `serve`. */
class Proc {
  output = "";
  readonly child: Deno.ChildProcess;
  constructor(readonly argv: string[], readonly s3Port: number) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: hamsterArgv(argv),
      env: ENV,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    for (const s of [this.child.stdout, this.child.stderr]) {
      (async () => {
        for await (const t of s.pipeThrough(new TextDecoderStream())) this.output += t;
      })();
    }
  }
  get target(): Target {
    return {
      name: String(this.s3Port),
      base: `http://127.0.0.1:${this.s3Port}`,
      pid: this.child.pid,
      signed: true,
    };
  }
  async listening(): Promise<void> {
    const end = Date.now() + 60_000;
    while (!this.output.includes(`127.0.0.1:${this.s3Port}`)) {
      if (Date.now() > end) throw new Error(`not listening:\n${this.output}`);
      await sleep(50);
    }
  }
  async kill(sig: Deno.Signal): Promise<void> {
    try {
      this.child.kill(sig);
    } catch {
      // gone
    }
    await this.child.status;
  }
}

async function hamster(a: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), { args: hamsterArgv(a), env: ENV }).output();
  const dec = new TextDecoder();
  if (!out.success) throw new Error(`hamster ${a.join(" ")}: ${dec.decode(out.stderr)}`);
  return dec.decode(out.stdout).trim();
}

interface Status {
  leader: string | null;
  members: { id: string; role: string; reachable: boolean }[];
}

/** Polls `cluster status -json` on `dataDir` until three reachable voters and a leader. */
async function threeVoters(dataDir: string): Promise<Status> {
  const end = Date.now() + 90_000;
  while (Date.now() < end) {
    try {
      const s: Status = JSON.parse(
        await hamster(["cluster", "status", "-data-dir", dataDir, "-json"]),
      );
      const voters = s.members.filter((m) => m.role === "voter" && m.reachable);
      if (voters.length === 3 && s.leader !== null) return s;
    } catch {
      // not yet
    }
    await sleep(200);
  }
  throw new Error("no three voters within 90 s");
}

async function createBucket(t: Target): Promise<void> {
  const url = new URL(`${t.base}/bench`);
  const r = await fetch(url, { method: "PUT", headers: sign("PUT", url) });
  await r.body?.cancel();
  if (r.status !== 200) throw new Error(`CreateBucket: ${r.status}`);
}

/** Milliseconds of each of `n` sequential signed GETs of `key` on `t`. */
async function getLatencies(t: Target, key: string, n: number, sizeBytes: number) {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const url = new URL(`${t.base}/bench/${key}`);
    const t0 = performance.now();
    const res = await fetch(url, { headers: sign("GET", url) });
    const body = new Uint8Array(await res.arrayBuffer());
    ms.push(performance.now() - t0);
    if (res.status !== 200 || body.length !== sizeBytes) {
      throw new Error(`GET ${key}: ${res.status}, ${body.length} bytes`);
    }
  }
  ms.sort((a, b) => a - b);
  const q = (p: number) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))];
  return { p50: q(0.5), p99: q(0.99) };
}

async function main() {
  const dir = await Deno.makeTempDir({ prefix: "hamster-cluster-bench-" });
  const listen = [freePort(), freePort(), freePort()];
  const s3 = [freePort(), freePort(), freePort()];
  const nodes: Proc[] = [];
  let serve: Proc | null = null;
  try {
    // As the README's cluster quick start.
    await hamster([
      "cluster",
      "init",
      "-data-dir",
      `${dir}/n1`,
      "-node",
      "n1",
      "-listen",
      `127.0.0.1:${listen[0]}`,
    ]);
    nodes.push(
      new Proc(["cluster", "run", "-data-dir", `${dir}/n1`, "-s3", `127.0.0.1:${s3[0]}`], s3[0]),
    );
    await nodes[0].listening();
    for (const k of [1, 2]) {
      const token = await hamster(["cluster", "token", "-data-dir", `${dir}/n1`]);
      const p = new Proc([
        "cluster",
        "run",
        "-data-dir",
        `${dir}/n${k + 1}`,
        "-node",
        `n${k + 1}`,
        "-listen",
        `127.0.0.1:${listen[k]}`,
        "-token",
        token,
        "-s3",
        `127.0.0.1:${s3[k]}`,
      ], s3[k]);
      nodes.push(p);
      await p.listening();
    }
    let st = await threeVoters(`${dir}/n1`);
    const sPort = freePort();
    await Deno.mkdir(`${dir}/serve`);
    serve = new Proc(["serve", "-data-dir", `${dir}/serve`, "-s3", `127.0.0.1:${sPort}`], sPort);
    await serve.listening();

    const targets = () => nodes.map((n) => n.target);
    await createBucket(targets()[0]);
    await createBucket(serve.target);
    const body = pattern(4096, 1);
    // Unmeasured warm-up of every process.
    await pool(1000, 16, (i) => put(targets()[i % 3], `warm-${i}`, body as BodyInit, 4096));
    await pool(1000, 16, (i) => put(serve!.target, `warm-${i}`, body as BodyInit, 4096));

    // (1) 4 KiB PUTs at 16 clients, round-robin over the nodes, vs serve.
    const cs = await pool(
      PUT_OPS,
      16,
      (i) => put(targets()[i % 3], `p-${i}`, body as BodyInit, 4096),
    );
    const ss = await pool(PUT_OPS, 16, (i) => put(serve!.target, `p-${i}`, body as BodyInit, 4096));
    const clusterPut = PUT_OPS / cs;
    const servePut = PUT_OPS / ss;

    // (2) Metadata commits: 0-byte PUTs at 64 clients over the nodes.
    const empty = new Uint8Array(0);
    const ms = await pool(
      META_OPS,
      64,
      (i) => put(targets()[i % 3], `m-${i}`, empty as BodyInit, 0),
    );
    const metaPerS = META_OPS / ms;

    // (3) GET latency on a follower and on the leader; each reads the object the other received.
    const id = (p: Proc) => p.argv[p.argv.indexOf("-data-dir") + 1].split("/").pop()!;
    const leader = nodes.find((n) => id(n) === st.leader)!;
    const follower = nodes.find((n) => n !== leader)!;
    await put(leader.target, "lat-from-leader", body as BodyInit, 4096);
    await put(follower.target, "lat-from-follower", body as BodyInit, 4096);
    await getLatencies(follower.target, "lat-from-leader", 50, 4096); // warm
    await getLatencies(leader.target, "lat-from-follower", 50, 4096);
    const fLat = await getLatencies(follower.target, "lat-from-leader", GET_OPS, 4096);
    const lLat = await getLatencies(leader.target, "lat-from-follower", GET_OPS, 4096);
    const fLocal = await getLatencies(follower.target, "lat-from-follower", GET_OPS, 4096);
    const lLocal = await getLatencies(leader.target, "lat-from-leader", GET_OPS, 4096);

    // (4) Failover: kill -9 the leader, first successful PUT on a survivor.
    const failovers: number[] = [];
    for (let round = 0; round < FAILOVERS; round++) {
      const victim = nodes.find((n) => id(n) === st.leader)!;
      const survivor = nodes.find((n) => n !== victim)!;
      const t0 = performance.now();
      await victim.kill("SIGKILL");
      for (let k = 0;; k++) {
        try {
          await put(survivor.target, `fo-${round}-${k}`, body as BodyInit, 4096);
          break;
        } catch {
          await sleep(10);
        }
        if (performance.now() - t0 > 60_000) throw new Error("no PUT within 60 s of failover");
      }
      failovers.push((performance.now() - t0) / 1000);
      if (round + 1 < FAILOVERS) {
        // Restart the victim from disk (same command, no token needed) and wait for 3 voters.
        const restarted = new Proc(
          victim.argv.filter((_a, i, a) => a[i] !== "-token" && a[i - 1] !== "-token"),
          victim.s3Port,
        );
        nodes[nodes.indexOf(victim)] = restarted;
        await restarted.listening();
        st = await threeVoters(`${dir}/${id(survivor)}`);
      }
    }

    const f = (x: number) => x.toFixed(2);
    console.log(`\n| measure | figure | goal |`);
    console.log(`|---|---|---|`);
    console.log(
      `| 4 KiB PUT x16, 3 nodes round-robin | ${clusterPut.toFixed(0)}/s | >= 1,000/s |`,
    );
    console.log(
      `| 4 KiB PUT x16, serve | ${servePut.toFixed(0)}/s (cluster/serve ${
        f(clusterPut / servePut)
      }) | |`,
    );
    console.log(
      `| metadata commits (0-byte PUT x64, 3 nodes) | ${metaPerS.toFixed(0)}/s | >= 2,000/s |`,
    );
    console.log(
      `| GET 4 KiB on a follower (object on the leader) p50/p99 | ${f(fLat.p50)}/${
        f(fLat.p99)
      } ms | |`,
    );
    console.log(
      `| GET 4 KiB on the leader (object on a follower) p50/p99 | ${f(lLat.p50)}/${
        f(lLat.p99)
      } ms | |`,
    );
    console.log(
      `| GET 4 KiB on a follower (object local) p50/p99 | ${f(fLocal.p50)}/${f(fLocal.p99)} ms | |`,
    );
    console.log(
      `| GET 4 KiB on the leader (object local) p50/p99 | ${f(lLocal.p50)}/${f(lLocal.p99)} ms | |`,
    );
    console.log(`| failover, kill -9 leader to first PUT | ${failovers.map(f).join(", ")} s | |`);
  } finally {
    for (const p of serve ? [...nodes, serve] : nodes) await p.kill("SIGTERM");
    await Deno.remove(dir, { recursive: true });
  }
}

await main();
