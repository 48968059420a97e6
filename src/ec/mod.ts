/**
 * Erasure coding for the data path: a Reed-Solomon coder (k data + m parity shards per stripe)
 * byte-compatible with `@ronomon/reed-solomon` v6, a systematic Cauchy bit-matrix code whose XORs
 * run in the WebAssembly kernel of wasm/ (SIMD, with a scalar fallback).
 *
 * Pure: no clock, no I/O. Long calls yield to the event loop between bounded slices of work.
 *
 * @example
 * ```ts
 * import { ReedSolomon } from "./mod.ts";
 * const coder = ReedSolomon.create(4, 2);
 * const shards = Array.from({ length: 6 }, () => new Uint8Array(262144));
 * await coder.encode(shards); // fills shards 4 and 5
 * await coder.reconstruct(shards, [false, true, true, true, true, false]);
 * ```
 *
 * @see docs/adr/0020-erasure-coder-wasm-kernel.md
 * @module
 */
export { ReedSolomon, type ReedSolomonOptions } from "./reed_solomon.ts";
export { MAX_K, MAX_M, packetSizeBytes } from "./_matrix.ts";
