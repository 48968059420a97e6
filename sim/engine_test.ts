import assert from "node:assert/strict";
import type { Disk, KvAtomic, KvEntry, MetaKv, WriteHandle } from "../src/io/mod.ts";
import { ENGINE_BUG_SEEDS, ENGINE_CORPUS } from "./corpus.ts";
import { type EngineOptions, runEngine } from "./engine.ts";
import { engineReplayCommand } from "./main.ts";
import { SimFailure } from "./world.ts";

/** Seeds per CI run: 1..500. */
const SEEDS = 500;

async function runOrExplain(seed: number, options: EngineOptions = {}) {
  try {
    return await runEngine(seed, options);
  } catch (err) {
    if (err instanceof SimFailure) {
      throw new Error(`${err.message}\nreplay: ${engineReplayCommand(seed, false, options)}`);
    }
    throw err;
  }
}

Deno.test("runEngine() keeps every acknowledged write and never shows a torn object over 500 seeded crash schedules", async (t) => {
  const started = performance.now();
  let requests = 0;
  let crashes = 0;
  let inFlightAtCrash = 0;
  let cut = 0;
  let cutApplied = 0;
  let objects = 0;
  let swept = 0;
  let torn = 0;
  let compacted = 0;
  let relocated = 0;
  const points: Record<string, number> = {};
  for (let seed = 1; seed <= SEEDS; seed++) {
    await t.step({
      name: `seed=${seed}`,
      fn: async () => {
        // Reads racing writes on one key, and POSIX's stricter directory durability, on alternate seeds.
        const r = await runOrExplain(seed, {
          readRaces: seed % 2 === 0,
          strictDirs: seed % 3 === 0,
        });
        requests += r.requests;
        crashes += r.crashes;
        inFlightAtCrash += r.inFlightAtCrash;
        cut += r.writesCut;
        cutApplied += r.writesCutApplied;
        objects += r.objectsChecked;
        swept += r.sweptFiles;
        torn += r.tornFiles;
        compacted += r.compactedSegments;
        relocated += r.relocatedObjects;
        for (const [k, n] of Object.entries(r.crashPoints)) points[k] = (points[k] ?? 0) + n;
      },
      sanitizeOps: false,
      sanitizeResources: false,
    });
  }
  const realS = (performance.now() - started) / 1000;
  console.log(
    `${SEEDS} engine seeds in ${realS.toFixed(1)}s: ${(SEEDS / realS).toFixed(1)} seeds/s, ` +
      `${requests} requests, ${crashes} recoveries checked (${JSON.stringify(points)}), ` +
      `${inFlightAtCrash} requests cut by a crash (${cut} object writes, ${cutApplied} of them ` +
      `found applied), ${objects} object checks, ` +
      `${swept} files swept, ${torn} torn files, ${compacted} segments compacted ` +
      `(${relocated} live objects moved)`,
  );
  assert.ok(points["disk write"] > 0 && points["fsync"] > 0 && points["boot"] > 0);
  assert.ok(inFlightAtCrash > 0 && swept > 0 && torn > 0, "the crashes cut writes in flight");
  assert.ok(cutApplied > 0 && cutApplied < cut, "cut writes are sometimes applied, sometimes not");
  assert.ok(compacted > 0 && relocated > 0, "compaction ran and moved live objects");
});

Deno.test("runEngine() with commit faults keeps every acknowledged write; a 503 is never visible (ADR 0009)", async (t) => {
  const totals = { injected: 0, notApplied: 0, unknown: 0, refused: 0, requests: 0 };
  for (let seed = 1; seed <= 100; seed++) {
    await t.step({
      name: `seed=${seed}`,
      fn: async () => {
        const r = await runOrExplain(seed, { commitFaults: true });
        totals.injected += r.injectedFaults;
        totals.notApplied += r.notAppliedAnswers;
        totals.unknown += r.unknownAnswers;
        totals.refused += r.refusedOversized;
        totals.requests += r.requests;
      },
      sanitizeOps: false,
      sanitizeResources: false,
    });
  }
  console.log(`100 seeds with commit faults: ${JSON.stringify(totals)}`);
  assert.ok(totals.injected > 0 && totals.notApplied > 0 && totals.unknown > 0, "faults bit");
  assert.ok(totals.refused > 0, "oversized commands were refused");
});

Deno.test("runEngine() replays a seed exactly (same trace twice)", async () => {
  const a = await runEngine(9, { trace: true });
  const b = await runEngine(9, { trace: true });
  assert.ok(a.trace!.length > 100 && a.crashes > 1);
  assert.deepEqual(a.trace, b.trace);
  assert.equal(a.events, b.events);
});

Deno.test("runEngine() passes the engine corpus's fixed bug seeds; open ones are listed", async (t) => {
  for (const { seed, found, options, open } of ENGINE_BUG_SEEDS) {
    await t.step({
      name: `seed=${seed}${open ? " (open bug)" : ""}`,
      ignore: open === true,
      fn: async () => {
        try {
          await runEngine(seed, options);
        } catch (err) {
          throw new Error(
            `${(err as Error).message}\nonce found: ${found}\nreplay: ${
              engineReplayCommand(seed, false, options)
            }`,
          );
        }
      },
      sanitizeOps: false,
      sanitizeResources: false,
    });
  }
  const fixed = ENGINE_BUG_SEEDS.filter((b) => !b.open).map((b) => b.seed);
  assert.deepEqual(ENGINE_CORPUS.slice(0, fixed.length).map((c) => c.seed), fixed);
});

Deno.test("runEngine() open bug seeds still fail (remove `open` once fixed)", async (t) => {
  for (const { seed, options, open } of ENGINE_BUG_SEEDS) {
    if (!open) continue;
    await t.step({
      name: `seed=${seed}`,
      fn: async () => {
        await assert.rejects(() => runEngine(seed, options), SimFailure);
      },
      sanitizeOps: false,
      sanitizeResources: false,
    });
  }
});

// Do the checkers bite? Each mutant plants one bug below the engine, through the ports.

function withHandle(disk: Disk, wrap: (h: WriteHandle) => WriteHandle): Disk {
  return {
    mkdirp: (p) => disk.mkdirp(p),
    create: async (p) => wrap(await disk.create(p)),
    open: (p) => disk.open(p),
    rename: (a, b) => disk.rename(a, b),
    remove: (p) => disk.remove(p),
    syncDir: (p) => disk.syncDir(p),
    list: (p) => disk.list(p),
    stat: (p) => disk.stat(p),
  };
}

/** Mutants, each with the seeds it runs; every one must make some seed fail. */
const MUTANTS: { name: string; mutate: NonNullable<EngineOptions["mutate"]> }[] = [
  {
    name: "fsync of a file does nothing",
    mutate: {
      disk: (d) => withHandle(d, (h) => ({ ...h, sync: () => Promise.resolve() })),
    },
  },
  {
    name: "fsync of a directory does nothing",
    mutate: { disk: (d) => ({ ...withHandle(d, (h) => h), syncDir: () => Promise.resolve() }) },
  },
  {
    name: "removing a file does nothing (the sweep leaves orphans)",
    mutate: { disk: (d) => ({ ...withHandle(d, (h) => h), remove: () => Promise.resolve() }) },
  },
  {
    name: "a KV commit answers before it is durable",
    mutate: {
      kv: (kv): MetaKv => ({
        get: (k) => kv.get(k),
        getMany: (k) => kv.getMany(k),
        list: (s, o) => kv.list(s, o),
        close: () => kv.close(),
        atomic: () => {
          const a = kv.atomic();
          const m: KvAtomic = {
            check: (k, v) => (a.check(k, v), m),
            set: (k, v) => (a.set(k, v), m),
            delete: (k) => (a.delete(k), m),
            commit: () => {
              a.commit();
              return Promise.resolve(true);
            },
          };
          return m;
        },
      }),
    },
  },
  {
    name: "a KV range read drops its last entry (the sweep removes live data)",
    mutate: {
      kv: (kv): MetaKv => ({
        get: (k) => kv.get(k),
        getMany: (k) => kv.getMany(k),
        list: async function* <T>(
          s: Parameters<MetaKv["list"]>[0],
          o: Parameters<MetaKv["list"]>[1],
        ): AsyncIterable<KvEntry<T>> {
          const all: KvEntry<T>[] = [];
          for await (const e of kv.list<T>(s, o)) all.push(e);
          yield* all.slice(0, -1);
        },
        close: () => kv.close(),
        atomic: () => kv.atomic(),
      }),
    },
  },
];

/** Seeds per mutant. */
const MUTANT_SEEDS = 40;

for (const { name, mutate } of MUTANTS) {
  Deno.test(`runEngine() catches a planted bug: ${name}`, async () => {
    let failed = 0;
    let first = "";
    for (let seed = 1; seed <= MUTANT_SEEDS; seed++) {
      try {
        await runEngine(seed, { mutate });
      } catch (err) {
        if (!(err instanceof SimFailure)) throw err;
        failed++;
        first ||= err.message.split("\n")[0].slice(0, 240);
      }
    }
    console.log(`${name}: ${failed} of ${MUTANT_SEEDS} seeds fail; first: ${first}`);
    assert.ok(failed > 0, `no seed of 1..${MUTANT_SEEDS} caught it`);
  });
}
