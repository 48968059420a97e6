import assert from "node:assert/strict";
import { runCluster } from "./cluster.ts";
import { BUG_SEEDS, CORPUS } from "./corpus.ts";
import { replayCommand } from "./main.ts";
import { SimFailure } from "./world.ts";

/** Seeds per CI run: the first 500 of 1, 2, 3...; odd seeds run 3 voters, even seeds 5. */
const SEEDS = 500;

Deno.test("runCluster() keeps Raft safe, linearizable and live over 500 seeded schedules (§5.2-§5.4, thesis §4, §6.4)", async (t) => {
  const started = performance.now();
  let virtualMs = 0;
  let commits = 0;
  let joins = 0;
  let removals = 0;
  let crashes = 0;
  for (let seed = 1; seed <= SEEDS; seed++) {
    await t.step({
      name: `seed=${seed}`,
      fn: async () => {
        try {
          const r = await runCluster(seed, { voters: seed % 2 === 1 ? 3 : 5 });
          virtualMs += r.virtualMs;
          commits += r.commitIndex;
          joins += r.joins;
          removals += r.removals;
          crashes += r.crashes;
        } catch (err) {
          if (err instanceof SimFailure) {
            throw new Error(
              `${err.message}\nreplay: ${
                replayCommand(seed, false, { voters: seed % 2 === 1 ? 3 : 5 })
              }`,
            );
          }
          throw err;
        }
      },
      sanitizeOps: false,
      sanitizeResources: false,
    });
  }
  const realS = (performance.now() - started) / 1000;
  console.log(
    `${SEEDS} seeds in ${realS.toFixed(1)}s: ${(SEEDS / realS).toFixed(1)} seeds/s, ` +
      `${(virtualMs / 1000 / realS).toFixed(0)} virtual s per real s, ${commits} commits, ` +
      `${crashes} crashes, ${joins} joins, ${removals} removals`,
  );
  assert.ok(
    joins > 0 && removals > 0 && crashes > 0,
    "the schedules exercise membership and crashes",
  );
});

Deno.test("runCluster() replays a seed exactly (same trace twice)", async () => {
  const a = await runCluster(42, { trace: true });
  const b = await runCluster(42, { trace: true });
  assert.equal(a.trace!.length, b.trace!.length);
  assert.deepEqual(a.trace, b.trace);
  assert.equal(a.events, b.events);
});

Deno.test("runCluster() without faults commits every write (liveness)", async () => {
  const r = await runCluster(7, { faults: false, membership: false, voters: 5 });
  assert.equal(r.writesAcked, r.writesTotal);
  assert.ok(r.elections >= 1);
});

Deno.test("runCluster() passes every bug seed of the corpus", async (t) => {
  for (const { seed, found, options } of BUG_SEEDS) {
    await t.step({
      name: `seed=${seed}`,
      fn: async () => {
        try {
          await runCluster(seed, options);
        } catch (err) {
          throw new Error(
            `${(err as Error).message}\nonce found: ${found}\nreplay: ${
              replayCommand(seed, false, options)
            }`,
          );
        }
      },
      sanitizeOps: false,
      sanitizeResources: false,
    });
  }
  assert.deepEqual(CORPUS.slice(0, BUG_SEEDS.length), BUG_SEEDS.map((b) => b.seed));
});
