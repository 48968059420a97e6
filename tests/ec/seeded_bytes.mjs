// @ts-self-types="./seeded_bytes.d.ts"
/**
 * Seeded test input shared by the golden-vector generator (Node) and the tests (Deno): a
 * xorshift32 stream written as little-endian 32-bit words, so the same seed gives the same bytes
 * on both runtimes.
 *
 * @module
 */

/**
 * Fills `bytes` with the xorshift32 stream (shifts 13, 17, 5) started at `seed`, one
 * little-endian word per step; a trailing partial word takes the low bytes of the next word.
 *
 * @param {Uint8Array} bytes the buffer to fill
 * @param {number} seed a nonzero 32-bit integer
 * @returns {Uint8Array} `bytes`
 */
export function fillSeeded(bytes, seed) {
  let x = seed >>> 0;
  if (x === 0) throw new RangeError(`Invalid seed: "${seed}" must be a nonzero 32-bit integer`);
  const words = bytes.length >>> 2;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  for (let i = 0; i < words; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    view.setUint32(i * 4, x >>> 0, true);
  }
  if (bytes.length % 4 !== 0) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    for (let i = words * 4, v = x >>> 0; i < bytes.length; i++, v >>>= 8) bytes[i] = v & 0xff;
  }
  return bytes;
}

/**
 * The data shards of a golden vector: k shards of `shardSizeBytes`, cut in order from one stream
 * of `k * shardSizeBytes` bytes started at `seed`.
 *
 * @param {number} k data shards
 * @param {number} shardSizeBytes bytes per shard
 * @param {number} seed a nonzero 32-bit integer
 * @returns {Uint8Array[]} k views into one buffer
 */
export function seededDataShards(k, shardSizeBytes, seed) {
  const all = fillSeeded(new Uint8Array(k * shardSizeBytes), seed);
  return Array.from(
    { length: k },
    (_, i) => all.subarray(i * shardSizeBytes, (i + 1) * shardSizeBytes),
  );
}
