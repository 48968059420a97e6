import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import golden from "../../tests/ec/golden.json" with { type: "json" };
import { fillSeeded, seededDataShards } from "../../tests/ec/seeded_bytes.mjs";
import { createCodeMatrix } from "./_matrix.ts";
import { ReedSolomon } from "./mod.ts";

const THIS_FILE = "src/ec/reed_solomon_test.ts";

function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function replay(name: string): string {
  return `replay: deno test -A ${THIS_FILE} --filter "${name}"`;
}

/** xorshift32 for choosing sizes and erasure patterns from a seed. */
function rng(seed: number): (below: number) => number {
  let x = seed >>> 0 || 1;
  return (below) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % below;
  };
}

function stripe(k: number, m: number, shardSizeBytes: number, seed: number): Uint8Array[] {
  const data = seededDataShards(k, shardSizeBytes, seed);
  return [...data, ...Array.from({ length: m }, () => new Uint8Array(shardSizeBytes))];
}

/** Overwrites the shards not present with junk, reconstructs, and checks every shard. */
async function dropAndReconstruct(
  coder: ReedSolomon,
  encoded: readonly Uint8Array[],
  present: boolean[],
  message: string,
): Promise<void> {
  const shards = encoded.map((shard, i) =>
    present[i] ? shard.slice() : fillSeeded(new Uint8Array(shard.length), 0xdead + i)
  );
  await coder.reconstruct(shards, present);
  for (let i = 0; i < shards.length; i++) {
    assert.ok(
      sha256Hex(shards[i]) === sha256Hex(encoded[i]),
      `shard ${i} differs after reconstruct with present=${JSON.stringify(present)}; ${message}`,
    );
  }
}

/** Every subset of `n` indices with 1..`max` members, as present-flag arrays. */
function erasurePatterns(n: number, max: number): boolean[][] {
  const patterns: boolean[][] = [];
  for (let mask = 1; mask < 1 << n; mask++) {
    let count = 0;
    for (let i = 0; i < n; i++) count += (mask >> i) & 1;
    if (count <= max) patterns.push(Array.from({ length: n }, (_, i) => ((mask >> i) & 1) === 0));
  }
  return patterns;
}

Deno.test("createCodeMatrix() builds the addon's bit-matrix for every k in 1..24, m in 1..6", () => {
  const bitMatrices: Record<string, string> = golden.bitMatrices;
  for (let k = 1; k <= 24; k++) {
    for (let m = 1; m <= 6; m++) {
      const code = createCodeMatrix(k, m);
      const context = new Uint8Array(3 + code.bits.length);
      context.set([code.w, k, m]);
      context.set(code.bits, 3);
      assert.equal(sha256Hex(context), bitMatrices[`${k}+${m}`], `bit-matrix for ${k}+${m}`);
    }
  }
});

for (const scalar of [false, true]) {
  const kernel = scalar ? " with the scalar kernel" : "";
  const profiles = [...new Set(golden.vectors.map((v) => `${v.k}+${v.m}`))];
  for (const profile of profiles) {
    const name = `ReedSolomon.encode()${kernel} matches the addon's parity for ${profile}`;
    Deno.test(name, async (t) => {
      const vectors = golden.vectors.filter((v) => `${v.k}+${v.m}` === profile);
      const coder = ReedSolomon.create(vectors[0].k, vectors[0].m, { scalar });
      assert.equal(coder.simd, scalar ? false : coder.simd);
      for (const v of vectors) {
        await t.step(`shardSizeBytes=${v.shardSizeBytes} seed=${v.seed}`, async () => {
          const shards = stripe(v.k, v.m, v.shardSizeBytes, v.seed);
          if (v.dataHex) assert.deepEqual(shards.slice(0, v.k).map(hex), v.dataHex, "seeded input");
          await coder.encode(shards);
          const parity = shards.slice(v.k);
          if (v.parityHex) assert.deepEqual(parity.map(hex), v.parityHex);
          assert.deepEqual(parity.map(sha256Hex), v.paritySha256, replay(name));
          assert.equal(await coder.verify(shards), true);
        });
      }
    });
  }
}

Deno.test("ReedSolomon.reconstruct() restores every erasure pattern of up to m shards", async (t) => {
  const profiles = [[1, 1], [1, 2], [2, 1], [2, 2], [3, 2], [4, 2], [2, 4], [5, 3], [6, 3]];
  let seed = 100;
  for (const [k, m] of profiles) {
    for (const shardSizeBytes of [24, 8200]) {
      seed++;
      await t.step(`${k}+${m} shardSizeBytes=${shardSizeBytes} seed=${seed}`, async () => {
        const coder = ReedSolomon.create(k, m);
        const encoded = stripe(k, m, shardSizeBytes, seed);
        await coder.encode(encoded);
        for (const present of erasurePatterns(k + m, m)) {
          await dropAndReconstruct(coder, encoded, present, replay(`seed=${seed}`));
        }
      });
    }
  }
});

Deno.test("ReedSolomon.reconstruct() restores seeded erasure patterns above 6+3", async (t) => {
  const profiles = [[8, 4], [10, 4], [12, 4], [16, 4], [20, 6], [24, 6], [11, 6], [13, 5]];
  for (let seed = 1; seed <= 24; seed++) {
    const [k, m] = profiles[seed % profiles.length];
    await t.step(`seed=${seed}`, async () => {
      const random = rng(seed);
      const shardSizeBytes = 8 * (1 + random(seed % 3 === 0 ? 40000 : 600));
      const coder = ReedSolomon.create(k, m);
      const encoded = stripe(k, m, shardSizeBytes, seed);
      await coder.encode(encoded);
      for (let pattern = 0; pattern < 6; pattern++) {
        const present = new Array<boolean>(k + m).fill(true);
        const erasures = 1 + random(m);
        for (let e = 0; e < erasures;) {
          const i = random(k + m);
          if (present[i]) {
            present[i] = false;
            e++;
          }
        }
        await dropAndReconstruct(
          coder,
          encoded,
          present,
          `${k}+${m} shardSizeBytes=${shardSizeBytes}; ${replay(`seed=${seed}`)}`,
        );
      }
    });
  }
});

Deno.test("encode() then dropping any m shards then reconstruct() gives the input back", async (t) => {
  for (let seed = 1; seed <= 40; seed++) {
    await t.step(`seed=${seed}`, async () => {
      const random = rng(seed * 7919);
      const k = 1 + random(24);
      const m = 1 + random(6);
      const shardSizeBytes = 8 * (1 + random(4096));
      const coder = ReedSolomon.create(k, m, { scalar: seed % 4 === 0 });
      const encoded = stripe(k, m, shardSizeBytes, seed);
      const input = encoded.slice(0, k).map((shard) => shard.slice());
      await coder.encode(encoded);
      const present = new Array<boolean>(k + m).fill(true);
      for (let e = 0; e < m;) {
        const i = random(k + m);
        if (present[i]) {
          present[i] = false;
          e++;
        }
      }
      const shards = encoded.map((shard, i) => present[i] ? shard.slice() : new Uint8Array(0));
      for (let i = 0; i < k + m; i++) if (!present[i]) shards[i] = new Uint8Array(shardSizeBytes);
      await coder.reconstruct(shards, present);
      const message = `${k}+${m} shardSizeBytes=${shardSizeBytes}; ${replay(`seed=${seed}`)}`;
      for (let i = 0; i < k; i++) assert.deepEqual(shards[i], input[i], message);
      for (let i = k; i < k + m; i++) assert.deepEqual(shards[i], encoded[i], message);
    });
  }
});

Deno.test("ReedSolomon.create() throws RangeError on k or m out of range", () => {
  for (const [k, m] of [[0, 1], [25, 1], [1, 0], [1, 7], [1.5, 2], [4, NaN], [-1, 2]]) {
    assert.throws(() => ReedSolomon.create(k, m), RangeError, `${k}+${m}`);
  }
});

Deno.test("ReedSolomon methods throw RangeError on bad shards instead of aborting", () => {
  const coder = ReedSolomon.create(4, 2);
  const sized = (...sizes: number[]) => sizes.map((size) => new Uint8Array(size));
  assert.throws(() => coder.encodeSync(sized(0, 0, 0, 0, 0, 0)), RangeError);
  assert.throws(() => coder.encodeSync(sized(12, 12, 12, 12, 12, 12)), RangeError);
  assert.throws(() => coder.encodeSync(sized(8, 8, 8, 8, 8)), RangeError);
  assert.throws(() => coder.encodeSync(sized(8, 8, 8, 8, 8, 16)), RangeError);
  assert.throws(
    () => coder.reconstructSync(sized(8, 8, 8, 8, 8, 8), [true, true, true, false, false, false]),
    RangeError,
  );
  assert.throws(() => coder.reconstructSync(sized(8, 8, 8, 8, 8, 8), [true]), RangeError);
  assert.throws(() => coder.stripeShards(0), RangeError);
});

Deno.test("ReedSolomon.encode() rejects a zero-length stripe with a RangeError", async () => {
  const coder = ReedSolomon.create(2, 1);
  await assert.rejects(
    coder.encode([new Uint8Array(0), new Uint8Array(0), new Uint8Array(0)]),
    RangeError,
  );
});

Deno.test("ReedSolomon.verify() is false when one parity byte changes", async () => {
  const coder = ReedSolomon.create(4, 2);
  const shards = stripe(4, 2, 4096, 9);
  await coder.encode(shards);
  assert.equal(await coder.verify(shards), true);
  shards[5][1000] ^= 1;
  assert.equal(await coder.verify(shards), false);
});

Deno.test("ReedSolomon.encode() yields between slices and matches encodeSync()", async () => {
  let turns = 0;
  const coder = ReedSolomon.create(4, 2, {
    maxBytesPerTurn: 64 * 1024,
    yieldTurn: () => {
      turns++;
      return Promise.resolve();
    },
  });
  const sliced = stripe(4, 2, 1048576, 3);
  const whole = sliced.map((shard) => shard.slice());
  await coder.encode(sliced);
  ReedSolomon.create(4, 2).encodeSync(whole);
  // 1 MiB shards of 4+2 are 8 super-blocks of 4 packets of 32 KiB: one super-block per turn.
  assert.equal(coder.packetSizeBytes(1048576), 32768);
  assert.equal(turns, 7);
  assert.deepEqual(sliced.slice(4).map(sha256Hex), whole.slice(4).map(sha256Hex));
});

Deno.test("ReedSolomon async calls on one coder run one after another", async () => {
  const coder = ReedSolomon.create(3, 2, { maxBytesPerTurn: 4096 });
  const stripes = [1, 2, 3].map((seed) => stripe(3, 2, 65536, seed));
  const expected = stripes.map((shards) => shards.map((shard) => shard.slice()));
  for (const shards of expected) ReedSolomon.create(3, 2).encodeSync(shards);
  await Promise.all(stripes.map((shards) => coder.encode(shards)));
  stripes.forEach((shards, i) => assert.deepEqual(shards, expected[i]));
});

Deno.test("ReedSolomon.stripeShards() views encode in place without copies", async () => {
  const coder = ReedSolomon.create(4, 2);
  const views = coder.stripeShards(65536);
  const copies = stripe(4, 2, 65536, 5);
  copies.slice(0, 4).forEach((shard, i) => views[i].set(shard));
  await coder.encode(views);
  ReedSolomon.create(4, 2).encodeSync(copies);
  assert.deepEqual(views.slice(4).map(sha256Hex), copies.slice(4).map(sha256Hex));
  assert.equal(await coder.verify(views), true);
});
