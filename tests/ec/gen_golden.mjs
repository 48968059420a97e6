/**
 * Writes tests/ec/golden.json from the real `@ronomon/reed-solomon` 6.0.0 addon: the SHA-256 of
 * every (k, m) bit-matrix the addon builds, and, for each profile and shard size, the SHA-256 of
 * every parity shard the addon computes from seeded data (tests/ec/seeded_bytes.mjs), plus the
 * parity bytes in hex for shards of 24 bytes or less. CI checks our coder against this file and
 * never needs the addon.
 *
 * Run with Node (the addon is a native N-API module, built by node-gyp on install):
 *
 *     mkdir -p /tmp/rs && (cd /tmp/rs && npm install @ronomon/reed-solomon@6.0.0)
 *     node tests/ec/gen_golden.mjs /tmp/rs/node_modules/@ronomon/reed-solomon
 *
 * @module
 */
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import { Buffer } from "node:buffer";
import { writeFileSync } from "node:fs";
import process from "node:process";
import { seededDataShards } from "./seeded_bytes.mjs";

export const PROFILES = [
  [1, 1],
  [1, 2],
  [2, 1],
  [2, 2],
  [3, 2],
  [4, 2],
  [6, 3],
  [8, 4],
  [10, 4],
  [12, 4],
  [16, 4],
  [20, 6],
  [24, 6],
];
export const SHARD_SIZES_BYTES = [8, 24, 4096, 65536, 1048576, 1000008];
const HEX_MAX_BYTES = 24;

const addonPath = process.argv[2] ?? "@ronomon/reed-solomon";
const require = createRequire(import.meta.url);
const addon = require(addonPath);
const addonVersion = require(`${addonPath}/package.json`).version;
if (addonVersion !== "6.0.0") {
  throw new Error(`Expected @ronomon/reed-solomon 6.0.0, got ${addonVersion}`);
}

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

function encode(context, k, m, data, sizeBytes) {
  const buffer = Buffer.concat(data);
  const parity = Buffer.alloc(m * sizeBytes);
  const sources = (1 << k) - 1;
  const targets = ((1 << m) - 1) << k;
  return new Promise((resolve, reject) => {
    addon.encode(
      context,
      sources,
      targets,
      buffer,
      0,
      buffer.length,
      parity,
      0,
      parity.length,
      (error) => {
        if (error) reject(error);
        else {resolve(
            Array.from(
              { length: m },
              (_, r) => parity.subarray(r * sizeBytes, (r + 1) * sizeBytes),
            ),
          );}
      },
    );
  });
}

const bitMatrices = {};
for (let k = 1; k <= 24; k++) {
  for (let m = 1; m <= 6; m++) {
    // The addon's context: w, k, m, then the m*w x k*w bit-matrix, one byte per bit.
    bitMatrices[`${k}+${m}`] = sha256(addon.create(k, m));
  }
}

const vectors = [];
let seed = 1;
for (const [k, m] of PROFILES) {
  const context = addon.create(k, m);
  for (const shardSizeBytes of SHARD_SIZES_BYTES) {
    const data = seededDataShards(k, shardSizeBytes, seed);
    const parity = await encode(context, k, m, data, shardSizeBytes);
    const vector = { k, m, shardSizeBytes, seed, paritySha256: parity.map(sha256) };
    if (shardSizeBytes <= HEX_MAX_BYTES) {
      vector.dataHex = data.map((shard) => Buffer.from(shard).toString("hex"));
      vector.parityHex = parity.map((shard) => shard.toString("hex"));
    }
    vectors.push(vector);
    seed++;
  }
}

const golden = {
  generator: "tests/ec/gen_golden.mjs",
  addon: `@ronomon/reed-solomon@${addonVersion}`,
  input: "seededDataShards(k, shardSizeBytes, seed) from tests/ec/seeded_bytes.mjs",
  bitMatrixSha256:
    "SHA-256 of the addon's context for (k, m): w, k, m, then the bit-matrix, one byte per bit",
  bitMatrices,
  vectors,
};
const out = new URL("./golden.json", import.meta.url);
writeFileSync(out, JSON.stringify(golden, null, 2) + "\n");
console.log(
  `Wrote ${out.pathname}: ${vectors.length} vectors, ${
    Object.keys(bitMatrices).length
  } bit-matrices`,
);
