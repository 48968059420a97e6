/**
 * Simulated commit throughput: a fault-free cluster under closed-loop
 * clients, measured in virtual time. The figure depends only on the
 * simulated latencies (network, fsync), not on the machine running it.
 *
 * Pure: everything comes from the World built from the seed.
 *
 * @module
 */
import type { Message } from "../src/raft/mod.ts";
import { RaftChecker } from "./checkers.ts";
import { SimDisk } from "./disk.ts";
import { encodeCommand } from "./kv_machine.ts";
import { SimNet } from "./net.ts";
import { describeMessage, SimRaftNode } from "./raft_node.ts";
import { World } from "./world.ts";

/** Parameters of a throughput run. */
export interface ThroughputOptions {
  readonly seed?: number;
  readonly voters: number;
  /** Closed-loop clients, each with one write outstanding. */
  readonly clients: number;
  /** Measured window, virtual milliseconds. */
  readonly durationMs?: number;
  /** One-way network latency, milliseconds. Default 0.5 (a LAN). */
  readonly latencyMs?: number;
  /** fsync latency, milliseconds. Default 1 (an NVMe flush). */
  readonly syncMs?: number;
}

/** Results of a throughput run. */
export interface ThroughputReport {
  readonly commitsPerVirtualS: number;
  readonly p50LatencyMs: number;
  readonly p99LatencyMs: number;
  readonly virtualSPerRealS: number;
}

/**
 * Runs closed-loop writers against a healthy cluster and reports commits
 * per virtual second and client latency percentiles.
 * @throws {SimFailure} if a checker fires.
 */
export async function measureThroughput(o: ThroughputOptions): Promise<ThroughputReport> {
  const started = performance.now();
  const world = new World(o.seed ?? 1);
  const rng = world.rng;
  const net = new SimNet<Message>(world, describeMessage);
  net.faults.latencyMs = o.latencyMs ?? 0.5;
  net.faults.jitterMs = (o.latencyMs ?? 0.5) / 2;
  const checker = new RaftChecker(world);
  const ids = Array.from({ length: o.voters }, (_, i) => `n${i + 1}`);
  const nodes = ids.map((id) => {
    const disk = new SimDisk({
      rng: rng.fork(),
      schedule: (ms, fn) => world.schedule(ms, fn),
      latency: { syncMs: o.syncMs ?? 1, writeMs: 0.01 },
    });
    return new SimRaftNode(id, disk, {
      world,
      net,
      checker,
      tickMs: 10,
      compactEvery: 1000,
      raftConfig: { electionTicks: 10, heartbeatTicks: 2, retainEntries: 200 },
      onFirstApply: () => {},
    });
  });
  for (const n of nodes) void n.start({ voters: ids, learners: [] });
  await world.run(1000, () => nodes.some((n) => n.raft?.role === "leader"));
  await world.run(world.nowMs + 200);
  const t0 = world.nowMs;
  const end = t0 + (o.durationMs ?? 2000);
  const latencies: number[] = [];
  let seq = 0;
  const client = () => {
    if (world.nowMs >= end) return;
    const leader = nodes.find((n) => n.raft?.role === "leader") ?? nodes[0];
    const id = `c${seq++}`;
    const startMs = world.nowMs;
    leader.propose(encodeCommand({ key: `k${seq % 16}`, value: id }), id, () => {
      latencies.push(world.nowMs - startMs);
      client();
    });
  };
  for (let i = 0; i < o.clients; i++) client();
  await world.run(end);
  latencies.sort((a, b) => a - b);
  const pct = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
  const realS = (performance.now() - started) / 1000;
  return {
    commitsPerVirtualS: latencies.length / ((end - t0) / 1000),
    p50LatencyMs: pct(0.5),
    p99LatencyMs: pct(0.99),
    virtualSPerRealS: world.nowMs / 1000 / realS,
  };
}
