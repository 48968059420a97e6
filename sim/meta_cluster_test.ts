import assert from "node:assert/strict";
import { runMetaCluster } from "./meta_cluster.ts";

/** Seeds a default run covers (about 3 s); pass more through SIM_META_SEEDS. */
const SEEDS = Number(Deno.env.get("SIM_META_SEEDS") ?? 30);

Deno.test(`sim: replicated metadata (RaftLog + apply on SimKv) under partitions and crashes: linearizable, identical KV (${SEEDS} seeds)`, async () => {
  let acknowledged = 0;
  let crashes = 0;
  for (let seed = 1; seed <= SEEDS; seed++) {
    const r = await runMetaCluster(seed);
    acknowledged += r.acknowledged;
    crashes += r.crashes;
  }
  // The workload must have done something for the checks to mean anything.
  assert.ok(acknowledged > SEEDS * 20, `only ${acknowledged} writes acknowledged`);
  assert.ok(crashes > 0, "no crash was injected");
});
