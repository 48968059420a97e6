import assert from "node:assert/strict";
import { runCluster } from "./cluster.ts";
import { BUG_SEEDS, CORPUS } from "./corpus.ts";
import { replayCommand } from "./main.ts";
import { runPool, type SeedJob, type SeedResult } from "./pool.ts";

/**
 * Seeds per CI run, on parallel workers: seeds 1..500 of the default
 * schedule (odd seeds 3 voters, even seeds 5), then seeds 1..200 of the
 * leader-turnover schedule, which makes a broken §5.4.2 commit rule about
 * seven times as likely to show (docs/SIMULATION.md, "Do the checkers bite?").
 */
const DEFAULT_SEEDS = 500;
const TURNOVER_SEEDS = 200;
const WORKERS = Math.max(2, Math.min(4, navigator.hardwareConcurrency ?? 2));

function jobs(): SeedJob[] {
  const out: SeedJob[] = [];
  for (let seed = 1; seed <= DEFAULT_SEEDS; seed++) {
    out.push({ kind: "cluster", seed, options: { voters: seed % 2 === 1 ? 3 : 5 } });
  }
  for (let seed = 1; seed <= TURNOVER_SEEDS; seed++) {
    out.push({
      kind: "cluster",
      seed,
      options: { voters: seed % 2 === 1 ? 3 : 5, focus: "turnover" },
    });
  }
  return out;
}

function sum(rs: SeedResult[], key: string): number {
  return rs.reduce((a, r) => a + (r.counts?.[key] ?? 0), 0);
}

Deno.test("runCluster() keeps Raft safe, linearizable and live over 500 default and 200 leader-turnover schedules (§5.2-§5.4, thesis §4, §6.4)", async () => {
  const started = performance.now();
  const all = jobs();
  const results = await runPool(all, WORKERS);
  const realS = (performance.now() - started) / 1000;
  const failures = results.filter((r) => r.failure !== null);
  const c = (k: string) => sum(results, k);
  console.log(
    `${all.length} seeds in ${realS.toFixed(1)}s on ${WORKERS} workers: ` +
      `${(c("virtualMs") / 1000 / realS).toFixed(0)} virtual s per real s, ` +
      `${c("commitIndex")} commits (${c("commitChecks")} checked on disk), ${
        c("crashes")
      } crashes, ` +
      `${c("turnovers")} turnovers, ${c("pauses")} pauses, ${c("diskErrors")} disk errors, ` +
      `${c("corruptionsDetected")}/${c("corruptions")} rotten logs detected, ` +
      `${c("corruptMessages")} corrupt frames rejected, ${c("joins")} joins, ${
        c("removals")
      } removals`,
  );
  assert.deepEqual(
    failures.map((f) =>
      `${f.failure}\nreplay: ${
        f.job.kind === "cluster" ? replayCommand(f.job.seed, false, f.job.options) : ""
      }`
    ),
    [],
  );
  assert.equal(results.length, all.length);
  for (
    const k of [
      "joins",
      "removals",
      "crashes",
      "turnovers",
      "pauses",
      "diskErrors",
      "corruptMessages",
    ]
  ) {
    assert.ok(c(k) > 0, `the schedules exercise ${k}`);
  }
  assert.equal(c("corruptionsDetected"), c("corruptions"), "every rotten log is detected at boot");
  assert.ok(c("corruptions") > 0, "the schedules rot logs");
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

Deno.test("runCluster() fails a message storm with its seed once the event budget is spent", async () => {
  await assert.rejects(
    runCluster(3, { maxEvents: 2000 }),
    (err: Error) =>
      err.message.startsWith("seed=3 ") && err.message.includes("Event budget of 2000"),
  );
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
