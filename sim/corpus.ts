/**
 * The fixed seed corpus: every seed that ever found a bug, plus a spread of
 * ordinary ones. `deno task sim` runs all of them before any fresh seeds.
 *
 * Pure: data only.
 *
 * @module
 */

import type { ClusterOptions } from "./cluster.ts";

/** Seeds that found bugs, each with what it found and the options it ran with. Keep them after the fix. */
export const BUG_SEEDS: readonly { seed: number; found: string; options?: ClusterOptions }[] = [
  {
    seed: 34,
    found: "Liveness: a snapshot transfer restarted at offset 0 on every leader compaction, " +
      "so a lagging follower never caught up (fixed: pin the snapshot being sent, ADR 0033)",
  },
  {
    seed: 19,
    found:
      "Harness: a ReadIndex call reached a node still booting (raft null); inputs now wait for boot",
  },
  { seed: 46, found: "Harness: as seed 19" },
  { seed: 120, found: "Harness: as seed 19" },
  { seed: 138, found: "Harness: as seed 19" },
  {
    seed: 291,
    options: { faultMs: 12000, membership: true },
    found: "Durability: a torn WAL write kept the truncating entry of a ready but not its hard " +
      "state, losing an acknowledged entry in the same term (fixed: one record per ready, ADR 0032)",
  },
  {
    seed: 151,
    options: { faultMs: 12000, membership: true },
    found: "Durability: as seed 291, new-term entries recovered with the old term",
  },
  {
    seed: 200,
    options: { faultMs: 12000, membership: true },
    found: "Durability: as seed 151",
  },
  {
    seed: 74,
    options: { faultMs: 12000, membership: true },
    found: "Replay: a shuffle by sort(() => random) depended on earlier runs in the process " +
      "(fixed: SimRng.shuffle)",
  },
];

/** The corpus: bug seeds first, then 1..200. */
export const CORPUS: readonly number[] = [
  ...BUG_SEEDS.map((b) => b.seed),
  ...Array.from({ length: 200 }, (_, i) => i + 1),
];
