import assert from "node:assert/strict";
import { KV_LIMITS, type KvKey, type MetaKv } from "../src/io/mod.ts";
import { openDenoKv } from "../src/io/deno/kv.ts";
import { encodeKey, SimKv } from "./kv.ts";
import { SimRng } from "./rng.ts";

function randomPart(rng: SimRng): KvKey[number] {
  switch (rng.int(7)) {
    case 0:
      return rng.fill(new Uint8Array(rng.int(4)));
    case 1:
      return rng.pick(["", "a", "ab", "b", "\u0000", "é", "z", "\uffff", "😀", "a\u0000b"]);
    case 2:
      return rng.pick([-5n, -256n, -255n, 0n, 1n, 255n, 256n, 2n ** 64n, -(2n ** 64n), 2n ** 70n]);
    case 3:
      return rng.pick([-Infinity, -1e300, -1, -0.5, -0, 0, 0.5, 1, 2 ** 53, Infinity, NaN]);
    case 4:
      return rng.chance(0.5);
    default:
      return rng.pick(["k", "l"]) + rng.int(20);
  }
}

function randomKey(rng: SimRng): KvKey {
  return Array.from({ length: 1 + rng.int(3) }, () => randomPart(rng));
}

async function listKeys(kv: MetaKv, prefix: KvKey = []): Promise<string[]> {
  const out: string[] = [];
  for await (const e of kv.list({ prefix })) out.push(Deno.inspect(e.key));
  return out;
}

Deno.test("SimKv orders keys exactly as Deno KV does (differential, seeded)", async (t) => {
  for (const seed of [1, 2, 3, 4, 5]) {
    await t.step(`seed=${seed}`, async () => {
      const rng = new SimRng(seed);
      const real = await openDenoKv(":memory:");
      const sim = new SimKv().open();
      try {
        for (let i = 0; i < 150; i++) {
          const k = randomKey(rng);
          await real.atomic().set(k, i).commit();
          await sim.atomic().set(k, i).commit();
        }
        assert.deepEqual(await listKeys(sim), await listKeys(real), `replay: seed=${seed}`);
        for (const p of [["k1"], [true], [0]] as KvKey[]) {
          assert.deepEqual(await listKeys(sim, p), await listKeys(real, p));
        }
      } finally {
        real.close();
      }
    });
  }
});

Deno.test("encodeKey() sorts numbers as f64 with -0 before 0 and NaN last", () => {
  const nums = [NaN, Infinity, 1, 0, -0, -1, -Infinity];
  const sorted = [...nums].map((n) => ({ n, e: encodeKey([n]) })).sort((a, b) => {
    for (let i = 0; i < 9; i++) if (a.e[i] !== b.e[i]) return a.e[i] - b.e[i];
    return 0;
  }).map((x) => Object.is(x.n, -0) ? "-0" : String(x.n));
  assert.deepEqual(sorted, ["-Infinity", "-1", "-0", "0", "1", "Infinity", "NaN"]);
});

Deno.test("SimKv enforces KV_LIMITS with Deno KV's errors (differential)", async () => {
  const real = await openDenoKv(":memory:");
  const sim = new SimKv().open();
  const outcome = async (kv: MetaKv, f: (kv: MetaKv) => Promise<unknown>) => {
    try {
      await f(kv);
      return "ok";
    } catch (err) {
      return `${(err as Error).name}: ${(err as Error).message}`;
    }
  };
  const cases: [string, (kv: MetaKv) => Promise<unknown>][] = [
    ["key 2048 bytes", (kv) => kv.atomic().set(["x".repeat(2046)], 1).commit()],
    ["key 2049 bytes", (kv) => kv.atomic().set(["x".repeat(2047)], 1).commit()],
    ["value 65536 bytes", (kv) => kv.atomic().set(["v"], new Uint8Array(65536)).commit()],
    ["value 65537 bytes", (kv) => kv.atomic().set(["v"], new Uint8Array(65537)).commit()],
    ["string value at the limit", (kv) => kv.atomic().set(["v"], "x".repeat(65530)).commit()],
    ["string value past the limit", (kv) => kv.atomic().set(["v"], "x".repeat(65531)).commit()],
    ["1000 mutations", (kv) => {
      const a = kv.atomic();
      for (let i = 0; i < KV_LIMITS.mutationsPerCommit; i++) a.set(["m", i], 1);
      return a.commit();
    }],
    ["1001 mutations", (kv) => {
      const a = kv.atomic();
      for (let i = 0; i <= KV_LIMITS.mutationsPerCommit; i++) a.set(["m", i], 1);
      return a.commit();
    }],
    ["commit of 12 x 65000 bytes", (kv) => {
      const a = kv.atomic();
      for (let i = 0; i < 12; i++) a.set(["m", i], new Uint8Array(65000));
      return a.commit();
    }],
    ["commit of 13 x 65000 bytes", (kv) => {
      const a = kv.atomic();
      for (let i = 0; i < 13; i++) a.set(["m", i], new Uint8Array(65000));
      return a.commit();
    }],
    ["101 checks", (kv) => {
      const a = kv.atomic();
      for (let i = 0; i < 101; i++) a.check(["c", i], null);
      return a.commit();
    }],
    ["81 keys of 1020 bytes", (kv) => {
      const a = kv.atomic();
      for (let i = 0; i < 81; i++) a.set(["k".repeat(1020), i], 1);
      return a.commit();
    }],
  ];
  try {
    for (const [name, f] of cases) {
      assert.equal(await outcome(sim, f), await outcome(real, f), name);
    }
  } finally {
    real.close();
  }
});

Deno.test("SimKv list() honours prefix, start, end, reverse and limit like Deno KV", async () => {
  const real = await openDenoKv(":memory:");
  const sim = new SimKv().open();
  try {
    for (const kv of [real, sim]) {
      for (const k of [["p"], ["p", 1], ["p", "a"], ["p", "b"], ["q"], ["p", "a", 1]] as KvKey[]) {
        await kv.atomic().set(k, 1).commit();
      }
    }
    const run = async (kv: MetaKv) => {
      const out: string[] = [];
      const sels = [
        [{ prefix: ["p"] }, {}],
        [{ prefix: ["p"], start: ["p", "b"] }, {}],
        [{ prefix: ["p"], end: ["p", "b"] }, {}],
        [{ start: ["p"], end: ["q"] }, { reverse: true }],
        [{ prefix: ["p"] }, { limit: 2, reverse: true }],
      ] as const;
      for (const [sel, opt] of sels) {
        const keys: string[] = [];
        for await (const e of kv.list(sel, opt)) keys.push(Deno.inspect(e.key));
        out.push(keys.join(" "));
      }
      return out;
    };
    assert.deepEqual(await run(sim), await run(real));
  } finally {
    real.close();
  }
});

Deno.test("SimKv atomic() checks versionstamps and stamps commits in order", async () => {
  const sim = new SimKv().open();
  assert.equal(await sim.atomic().check(["a"], null).set(["a"], { n: 1 }).commit(), true);
  const e1 = (await sim.get<{ n: number }>(["a"]))!;
  assert.equal(e1.versionstamp.length, 20);
  assert.deepEqual(e1.value, { n: 1 });
  assert.equal(await sim.atomic().check(["a"], null).set(["a"], 2).commit(), false);
  assert.equal(await sim.atomic().check(["a"], e1.versionstamp).set(["a"], 3).commit(), true);
  const e2 = (await sim.get<number>(["a"]))!;
  assert.ok(e2.versionstamp > e1.versionstamp);
  e1.value.n = 99; // values are copies
  assert.equal((await sim.get<number>(["a"]))!.value, 3);
  await sim.atomic().delete(["a"]).commit();
  assert.equal(await sim.get(["a"]), null);
});

Deno.test("SimKv crash() loses a commit in flight whole and keeps resolved ones", async () => {
  const pending: (() => void)[] = [];
  const kv = new SimKv({ schedule: (_ms, fn) => pending.push(fn) });
  const h = kv.open();
  const first = h.atomic().set(["a"], 1).commit();
  pending.shift()!();
  assert.equal(await first, true);
  let settled = false;
  void h.atomic().set(["b"], 1).set(["c"], 1).commit().then(() => (settled = true));
  kv.crash();
  for (const fn of pending.splice(0)) fn();
  await Promise.resolve();
  assert.equal(settled, false, "calls of the dead process never settle");
  const h2 = kv.open();
  const got = h2.getMany([["a"], ["b"], ["c"]]);
  pending.shift()!();
  assert.deepEqual((await got).map((e) => e?.value ?? null), [1, null, null]);
});
