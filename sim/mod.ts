/**
 * Hamster's deterministic simulation: a seeded world (virtual time, one
 * PRNG) with simulated ports (network, disk, Deno KV), the Raft cluster
 * schedules and their checkers, and the storage engine's crash schedules
 * checked against a reference model. Everything replays from one integer seed;
 * see docs/SIMULATION.md.
 *
 * Pure: no wall clock and no real I/O below `main.ts` (the CLI); time,
 * chance, disks and networks are all simulated.
 *
 * @example
 * ```ts
 * import { SimDisk, SimKv, World } from "./sim/mod.ts";
 * const world = new World(7);
 * const disk = new SimDisk({ rng: world.rng.fork(), schedule: (ms, fn) => world.schedule(ms, fn) });
 * const kv = new SimKv({ schedule: (ms, fn) => world.schedule(ms, fn) });
 * ```
 * @module
 */
export { SIM_EPOCH_MS, SimFailure, World } from "./world.ts";
export { SimRng } from "./rng.ts";
export { type NetFaults, type NetStats, SimNet } from "./net.ts";
export {
  type CrashReport,
  type DiskLatency,
  type Scheduler,
  SimDisk,
  type SimDiskOptions,
} from "./disk.ts";
export {
  compareBytes,
  encodeKey,
  KV_MAX_CHECKS,
  KV_TOTAL_KEY_BYTES,
  SimKv,
  type SimKvOptions,
} from "./kv.ts";
export { encodeCommand, KvMachine, type PutCommand } from "./kv_machine.ts";
export { RaftChecker, sameBytes } from "./checkers.ts";
export { checkRegisters, type ReadOp, type WriteOp } from "./linearizability.ts";
export { describeMessage, type NodeEnv, SimRaftNode } from "./raft_node.ts";
export { type ClusterOptions, type ClusterReport, runCluster } from "./cluster.ts";
export { measureThroughput, type ThroughputOptions, type ThroughputReport } from "./throughput.ts";
export { type EngineOptions, type EngineReport, runEngine } from "./engine.ts";
export { BUG_SEEDS, CORPUS, ENGINE_BUG_SEEDS, ENGINE_CORPUS } from "./corpus.ts";
