import assert from "node:assert/strict";
import { openDenoKv } from "../io/deno/kv.ts";
import type { KvKey, MetaKv } from "../io/mod.ts";
import { compareKeys, GroupKv } from "./group.ts";
import { LocalLog } from "./mod.ts";

async function withKv(fn: (kv: MetaKv) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  const kv = await openDenoKv(`${dir}/kv.sqlite3`);
  try {
    await fn(kv);
  } finally {
    kv.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** A small seeded PRNG (xorshift32) so every case replays. */
function rng(seed: number): () => number {
  let x = seed || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

const ALPHABET = ["a", "b", "/", "\u00e9", "\uFF5E", "\u{1F600}", "\u0000", "z"];

function randomKey(r: () => number): KvKey {
  const s = Array.from(
    { length: 1 + Math.floor(r() * 4) },
    () => ALPHABET[Math.floor(r() * ALPHABET.length)],
  ).join("");
  return r() < 0.5 ? ["t", s] : ["t", s, Math.floor(r() * 20) - 5];
}

async function keysOf(
  kv: MetaKv,
  opts: { reverse?: boolean; limit?: number } = {},
): Promise<KvKey[]> {
  const out: KvKey[] = [];
  for await (const e of kv.list({ prefix: ["t"] }, opts)) out.push(e.key);
  return out;
}

Deno.test("compareKeys() orders keys exactly as Deno KV lists them", async (t) => {
  for (const seed of [1, 2, 3]) {
    await t.step(`seed=${seed}`, async () => {
      await withKv(async (kv) => {
        const r = rng(seed);
        const keys = Array.from({ length: 200 }, () => randomKey(r));
        for (const k of keys) await kv.atomic().set(k, 1).commit();
        const listed = await keysOf(kv);
        const sorted = [...listed].sort(compareKeys);
        assert.deepEqual(listed, sorted);
      });
    });
  }
});

Deno.test("GroupKv reads its pending writes merged with the base, then flushes them", async (t) => {
  for (const seed of [7, 8, 9]) {
    await t.step(`seed=${seed}`, async () => {
      await withKv(async (kv) => {
        const r = rng(seed);
        for (let i = 0; i < 60; i++) await kv.atomic().set(randomKey(r), "base").commit();
        const group = new GroupKv(kv);
        // The model: what the base plus the pending writes must look like.
        const model = new Map<string, { key: KvKey; value: string }>();
        for await (const e of kv.list<string>({ prefix: ["t"] })) {
          model.set(JSON.stringify(e.key), { key: e.key, value: e.value });
        }
        for (let i = 0; i < 80; i++) {
          const existing = [...model.values()];
          const a = group.atomic();
          if (r() < 0.4 && existing.length > 0) {
            const victim = existing[Math.floor(r() * existing.length)];
            a.delete(victim.key);
            model.delete(JSON.stringify(victim.key));
          } else {
            const k = randomKey(r);
            a.set(k, `v${i}`);
            model.set(JSON.stringify(k), { key: k, value: `v${i}` });
          }
          await a.commit();
        }
        const want = [...model.values()].map((e) => e.key).sort(compareKeys);
        assert.deepEqual(await keysOf(group), want);
        assert.deepEqual(await keysOf(group, { reverse: true }), [...want].reverse());
        assert.deepEqual(await keysOf(group, { limit: 7 }), want.slice(0, 7));
        for (const e of model.values()) assert.equal((await group.get(e.key))?.value, e.value);
        await group.flush();
        assert.deepEqual(await keysOf(kv), want);
      });
    });
  }
});

Deno.test("LocalLog applies concurrent proposals in one group and answers each on its own", async () => {
  await withKv(async (kv) => {
    const log = await LocalLog.open(kv);
    await log.propose({ type: "CreateBucket", bucket: { name: "b", createdMs: 1, region: "r" } });
    const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) =>
      log.propose({
        type: "PutObject",
        bucket: i % 10 === 0 ? "missing" : "b",
        key: `k${i}`,
        record: { sizeBytes: 1, etag: "e", lastModifiedMs: 1, userMeta: {} },
        condition: { ifNoneMatch: "*" },
      })));
    assert.equal(results.filter((r) => r.status === "rejected").length, 5);
    let n = 0;
    for await (const _ of kv.list({ prefix: ["cur", "b"] })) n++;
    assert.equal(n, 45);
    assert.equal((await kv.get<number>(["sys", "applied"]))?.value, 51);
  });
});
