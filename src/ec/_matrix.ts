/**
 * Galois-field arithmetic, the Cauchy coding matrix and its GF(2) bit-matrix, built exactly as
 * `@ronomon/reed-solomon` v6 builds them, so that parity is byte-identical to the addon's.
 *
 * Pure: no clock, no I/O. Everything here is small (at most 48 x 192 bits) and computed once per
 * (k, m) or per erasure pattern, then cached by the caller.
 *
 * @module
 */

/** The largest number of data shards the code supports. */
export const MAX_K = 24;
/** The largest number of parity shards the code supports. */
export const MAX_M = 6;

/**
 * Field parameters per (k, m): `[w, polynomial, xOffset, yOffset, ones]`, indexed `[k - 1][m - 1]`.
 *
 * - `w`: the field is GF(2^w), so each shard is cut into w packets per super-block.
 * - `polynomial`: the primitive polynomial, with or without the x^w term (it is masked off).
 * - `xOffset`, `yOffset`: the Cauchy matrix is `1 / ((yOffset + r) ^ (xOffset + c))`; -1 when
 *   m <= 2, where the matrix is built without them.
 * - `ones`: the number of ones in the resulting m*w x k*w bit-matrix, a self-check.
 *
 * These values are facts about the addon's format (its parameter search results); changing any
 * of them changes the parity bytes.
 *
 * @see https://github.com/ronomon/reed-solomon (binding.c, v6.0.0)
 */
// deno-fmt-ignore
const FIELD_PARAMETERS: readonly (readonly (readonly number[])[])[] = [
  /* k= 1 */ [[2, 7, -1, -1, 2], [2, 7, -1, -1, 4], [2, 7, 0, 1, 6], [4, 19, 0, 1, 16], [4, 19, 0, 1, 20], [4, 19, 0, 1, 24]],
  /* k= 2 */ [[2, 7, -1, -1, 4], [2, 7, -1, -1, 9], [4, 19, 0, 4, 28], [4, 19, 0, 5, 40], [4, 19, 2, 9, 51], [4, 19, 4, 10, 62]],
  /* k= 3 */ [[2, 7, -1, -1, 6], [4, 19, -1, -1, 26], [4, 19, 0, 9, 44], [4, 19, 1, 8, 63], [4, 19, 1, 9, 82], [4, 19, 0, 9, 101]],
  /* k= 4 */ [[4, 19, -1, -1, 16], [4, 19, -1, -1, 36], [4, 19, 0, 9, 63], [4, 19, 3, 11, 89], [4, 19, 3, 11, 116], [4, 19, 11, 4, 145]],
  /* k= 5 */ [[4, 19, -1, -1, 20], [4, 19, -1, -1, 47], [4, 19, 4, 13, 82], [4, 19, 3, 12, 118], [4, 19, 0, 9, 152], [4, 19, 0, 9, 185]],
  /* k= 6 */ [[4, 19, -1, -1, 24], [4, 19, -1, -1, 58], [4, 19, 2, 12, 102], [4, 19, 2, 12, 144], [4, 19, 0, 9, 186], [4, 19, 0, 9, 231]],
  /* k= 7 */ [[4, 19, -1, -1, 28], [4, 19, -1, -1, 71], [4, 19, 1, 13, 123], [4, 19, 2, 12, 174], [4, 19, 0, 9, 226], [4, 19, 7, 0, 277]],
  /* k= 8 */ [[4, 19, -1, -1, 32], [4, 19, -1, -1, 84], [4, 19, 2, 13, 142], [4, 19, 2, 12, 205], [4, 19, 0, 9, 265], [4, 19, 0, 8, 328]],
  /* k= 9 */ [[4, 19, -1, -1, 36], [4, 19, -1, -1, 97], [4, 19, 1, 13, 162], [4, 19, 2, 12, 237], [4, 19, 0, 9, 308], [4, 19, 1, 10, 376]],
  /* k=10 */ [[4, 19, -1, -1, 40], [4, 19, -1, -1, 111], [4, 19, 1, 13, 186], [4, 19, 0, 12, 268], [4, 19, 0, 11, 347], [4, 19, 0, 10, 426]],
  /* k=11 */ [[4, 19, -1, -1, 44], [4, 19, -1, -1, 125], [4, 19, 0, 13, 211], [4, 19, 0, 12, 300], [4, 19, 0, 11, 390], [8, 135, 58, 188, 1401]],
  /* k=12 */ [[4, 19, -1, -1, 48], [4, 19, -1, -1, 139], [4, 19, 3, 0, 234], [4, 19, 0, 12, 334], [8, 113, 24, 208, 1269], [8, 135, 57, 188, 1577]],
  /* k=13 */ [[4, 19, -1, -1, 52], [4, 19, -1, -1, 155], [4, 19, 0, 13, 261], [8, 135, 59, 189, 1037], [8, 113, 27, 236, 1393], [8, 113, 27, 236, 1733]],
  /* k=14 */ [[4, 19, -1, -1, 56], [4, 19, -1, -1, 171], [8, 169, 4, 252, 777], [8, 135, 58, 189, 1121], [8, 135, 58, 189, 1508], [8, 135, 58, 188, 1880]],
  /* k=15 */ [[4, 19, -1, -1, 60], [8, 135, -1, -1, 353], [8, 113, 24, 209, 836], [8, 135, 58, 189, 1225], [8, 101, 28, 232, 1644], [8, 113, 120, 241, 2037]],
  /* k=16 */ [[8, 29, -1, -1, 128], [8, 135, -1, -1, 380], [8, 113, 22, 213, 901], [8, 113, 22, 212, 1324], [8, 101, 28, 232, 1765], [8, 101, 28, 232, 2195]],
  /* k=17 */ [[8, 29, -1, -1, 136], [8, 135, -1, -1, 407], [8, 113, 22, 213, 960], [8, 135, 58, 189, 1423], [8, 101, 27, 232, 1880], [8, 101, 27, 232, 2343]],
  /* k=18 */ [[8, 29, -1, -1, 144], [8, 135, -1, -1, 434], [8, 113, 24, 213, 1027], [8, 113, 22, 212, 1513], [8, 195, 8, 32, 2019], [8, 113, 205, 126, 2500]],
  /* k=19 */ [[8, 29, -1, -1, 152], [8, 135, -1, -1, 462], [8, 113, 22, 213, 1086], [8, 113, 23, 212, 1604], [8, 195, 7, 32, 2131], [8, 195, 3, 60, 2654]],
  /* k=20 */ [[8, 29, -1, -1, 160], [8, 135, -1, -1, 490], [8, 113, 22, 213, 1147], [8, 113, 22, 212, 1695], [8, 195, 4, 238, 2270], [8, 113, 21, 233, 2816]],
  /* k=21 */ [[8, 29, -1, -1, 168], [8, 135, -1, -1, 518], [8, 113, 21, 213, 1225], [8, 113, 21, 212, 1801], [8, 195, 3, 60, 2395], [8, 195, 3, 60, 2980]],
  /* k=22 */ [[8, 29, -1, -1, 176], [8, 135, -1, -1, 546], [8, 113, 20, 213, 1292], [8, 113, 21, 212, 1906], [8, 195, 35, 28, 2512], [8, 195, 3, 60, 3135]],
  /* k=23 */ [[8, 29, -1, -1, 184], [8, 135, -1, -1, 574], [8, 113, 19, 213, 1366], [8, 113, 19, 212, 2008], [8, 195, 3, 238, 2652], [8, 113, 205, 126, 3291]],
  /* k=24 */ [[8, 29, -1, -1, 192], [8, 135, -1, -1, 603], [8, 113, 18, 213, 1437], [8, 195, 125, 91, 2110], [8, 195, 3, 238, 2787], [8, 195, 42, 225, 3466]],
];

/** Arithmetic tables of GF(2^w) for one primitive polynomial. */
interface Field {
  readonly w: number;
  /** `log[a]` for a in 1..2^w-1; `log[0]` is unused. */
  readonly log: Int32Array;
  /** `exp[i]` for i in 0..2^w-2. */
  readonly exp: Int32Array;
  /** Number of ones in the w x w bit-matrix of each element. */
  readonly ones: Int32Array;
  /** Nonzero elements sorted by (ones, value), with `byOnes[0] = 0`. */
  readonly byOnes: Int32Array;
}

function createField(w: number, polynomial: number): Field {
  const size = 1 << w;
  const order = size - 1;
  const log = new Int32Array(size).fill(order);
  const exp = new Int32Array(size);
  let element = 1;
  for (let i = 0; i < order; i++) {
    if (log[element] !== order) {
      throw new Error(`Polynomial "${polynomial}" is not primitive for w=${w}`);
    }
    log[element] = i;
    exp[i] = element;
    element <<= 1;
    if (element & size) element = (element ^ polynomial) & order;
  }
  const field = { w, log, exp, ones: new Int32Array(size), byOnes: new Int32Array(size) };
  for (let n = 0; n < size; n++) {
    let count = 0;
    let row = n;
    for (let r = 0; r < w; r++) {
      for (let bit = 0; bit < w; bit++) count += (row >> bit) & 1;
      row = gfMultiply(field, row, 2);
    }
    field.ones[n] = count;
  }
  const sorted = Array.from({ length: order }, (_, i) => i + 1)
    .sort((a, b) => field.ones[a] - field.ones[b] || a - b);
  field.byOnes.set(sorted, 1);
  return field;
}

function gfMultiply(field: Field, a: number, b: number): number {
  if (a === 0 || b === 0) return 0;
  const order = (1 << field.w) - 1;
  return field.exp[(field.log[a] + field.log[b]) % order];
}

function gfDivide(field: Field, a: number, b: number): number {
  if (b === 0) throw new Error("Cannot divide by zero in GF(2^w)");
  if (a === 0) return 0;
  const order = (1 << field.w) - 1;
  return field.exp[(field.log[a] + order - field.log[b]) % order];
}

/** The code for one (k, m): its field width and its m*w x k*w encoding bit-matrix. */
export interface CodeMatrix {
  readonly k: number;
  readonly m: number;
  /** Field width: packets per shard per super-block. One of 2, 4, 8. */
  readonly w: number;
  /** The m x k coding matrix over GF(2^w), row-major; row 0 is all ones. */
  readonly matrix: Uint8Array;
  /**
   * The encoding bit-matrix, row-major, `m*w` rows by `k*w` columns, one byte (0 or 1) per bit.
   * Row `r*w + b` is parity shard r's packet b; column `c*w + a` is data shard c's packet a.
   */
  readonly bits: Uint8Array;
}

/**
 * Builds the coding matrix and bit-matrix for k data and m parity shards, the way the addon does:
 * row 0 all ones (parity 0 is the XOR of the data); for m = 2 row 1 takes the nonzero elements
 * with the fewest ones; for m >= 3 a Cauchy matrix normalised so row 0 is all ones and each later
 * row divided by the element that minimises its ones.
 *
 * @throws {RangeError} if k is not in 1..24 or m is not in 1..6
 * @see https://github.com/ronomon/reed-solomon (binding.c, v6.0.0: create_matrix)
 */
export function createCodeMatrix(k: number, m: number): CodeMatrix {
  if (!Number.isInteger(k) || k < 1 || k > MAX_K) {
    throw new RangeError(`Invalid k: "${k}" is not an integer in 1..${MAX_K}`);
  }
  if (!Number.isInteger(m) || m < 1 || m > MAX_M) {
    throw new RangeError(`Invalid m: "${m}" is not an integer in 1..${MAX_M}`);
  }
  const [w, polynomial, xOffset, yOffset, expectedOnes] = FIELD_PARAMETERS[k - 1][m - 1];
  const field = createField(w, polynomial);
  const matrix = new Uint8Array(m * k);
  matrix.fill(1, 0, k);
  if (m === 2) {
    for (let c = 0; c < k; c++) matrix[k + c] = field.byOnes[c + 1];
  } else if (m > 2) {
    for (let r = 0; r < m; r++) {
      for (let c = 0; c < k; c++) {
        matrix[r * k + c] = gfDivide(field, 1, (yOffset + r) ^ (xOffset + c));
      }
    }
    for (let r = 1; r < m; r++) {
      for (let c = 0; c < k; c++) {
        matrix[r * k + c] = gfDivide(field, matrix[r * k + c], matrix[c]);
      }
    }
    matrix.fill(1, 0, k);
    for (let r = 1; r < m; r++) {
      const row = matrix.subarray(r * k, r * k + k);
      let best = 0;
      for (let c = 0; c < k; c++) best += field.ones[row[c]];
      let divisor = -1;
      for (let c = 0; c < k; c++) {
        let ones = 0;
        for (let d = 0; d < k; d++) ones += field.ones[gfDivide(field, row[d], row[c])];
        if (ones < best) {
          best = ones;
          divisor = row[c];
        }
      }
      if (divisor >= 0) {
        for (let c = 0; c < k; c++) row[c] = gfDivide(field, row[c], divisor);
      }
    }
  }
  const kw = k * w;
  const bits = new Uint8Array(m * w * kw);
  let ones = 0;
  for (let r = 0; r < m; r++) {
    for (let c = 0; c < k; c++) {
      let element = matrix[r * k + c];
      for (let a = 0; a < w; a++) {
        for (let b = 0; b < w; b++) {
          const bit = (element >> b) & 1;
          bits[(r * w + b) * kw + c * w + a] = bit;
          ones += bit;
        }
        element = gfMultiply(field, element, 2);
      }
    }
  }
  if (ones !== expectedOnes) {
    throw new Error(`Bit-matrix for ${k}+${m} has ${ones} ones, expected ${expectedOnes}`);
  }
  return { k, m, w, matrix, bits };
}

/**
 * Inverts a square matrix over GF(2) by Gauss-Jordan elimination.
 *
 * @param source n x n, row-major, one byte (0 or 1) per bit; not modified
 * @returns the n x n inverse, same layout
 * @throws {Error} if the matrix is singular (never for a Cauchy code's k surviving shards)
 */
export function invertBitMatrix(source: Uint8Array, n: number): Uint8Array {
  const a = source.slice();
  const inverse = new Uint8Array(n * n);
  for (let i = 0; i < n; i++) inverse[i * n + i] = 1;
  for (let col = 0; col < n; col++) {
    let pivot = col;
    while (pivot < n && a[pivot * n + col] === 0) pivot++;
    if (pivot === n) throw new Error(`Cannot invert bit-matrix: column ${col} has no pivot`);
    if (pivot !== col) {
      swapRows(a, n, pivot, col);
      swapRows(inverse, n, pivot, col);
    }
    for (let row = 0; row < n; row++) {
      if (row !== col && a[row * n + col] !== 0) {
        xorRow(a, n, col, row);
        xorRow(inverse, n, col, row);
      }
    }
  }
  return inverse;
}

function swapRows(matrix: Uint8Array, n: number, x: number, y: number): void {
  for (let i = 0; i < n; i++) {
    const t = matrix[x * n + i];
    matrix[x * n + i] = matrix[y * n + i];
    matrix[y * n + i] = t;
  }
}

function xorRow(matrix: Uint8Array, n: number, from: number, to: number): void {
  for (let i = 0; i < n; i++) matrix[to * n + i] ^= matrix[from * n + i];
}

/**
 * The packet size the addon uses for a shard size: the shard is cut into super-blocks of w
 * packets, and the packet size starts at `shardSizeBytes / w` and is halved while it is above 64,
 * even, and `(1 + k*w) * packetSizeBytes` exceeds 1 MiB. Parity depends on it, so the shard size
 * must be recorded with the data and reused on every decode.
 *
 * @see https://github.com/ronomon/reed-solomon (binding.c, v6.0.0: dot_chunk_size)
 */
export function packetSizeBytes(k: number, w: number, shardSizeBytes: number): number {
  let size = shardSizeBytes / w;
  while (size > 64 && size % 2 === 0 && (1 + k * w) * size > 1048576) size /= 2;
  return size;
}
