/**
 * XOR schedules: turns the rows of a bit-matrix (each output packet as a set of input packets)
 * into a short program of fan-in XORs for the kernel in wasm/xor_kernel.ts.
 *
 * Pure: no clock, no I/O.
 *
 * @module
 */
import { type CodeMatrix, invertBitMatrix } from "./_matrix.ts";

/**
 * A packet operand: shard `slot` of the stripe (0..k+m-1), packet `packet` (0..w-1) of every
 * super-block; or, with `slot` = -1, scratch temp number `packet`.
 */
export interface Operand {
  readonly slot: number;
  readonly packet: number;
}

/** One fan-in op: `dst = srcs[0] ^ srcs[1] ^ ...`; one source is a copy. */
export interface XorOp {
  readonly dst: Operand;
  readonly srcs: readonly Operand[];
}

/** A program over one super-block: ops run in order, so later ops may read earlier outputs. */
export interface XorProgram {
  /** Shard slots read (present shards). */
  readonly sources: readonly number[];
  /** Shard slots written (rebuilt or parity shards), ascending. */
  readonly targets: readonly number[];
  readonly ops: readonly XorOp[];
  /** Scratch temps used (each one strip long). */
  readonly tempCount: number;
  /** Packet loads per super-block if every row were summed from scratch. */
  readonly naiveLoads: number;
  /** Packet loads per super-block of this program (sum of op fan-ins). */
  readonly loads: number;
}

/** An output row: packet `packet` of shard `slot` = XOR of the input packets with a 1 bit. */
interface Row {
  readonly slot: number;
  readonly packet: number;
  /** One byte (0 or 1) per input packet, index `j*w + a` for input shard j, packet a. */
  readonly bits: Uint8Array;
}

/**
 * The encode program: parity shards k..k+m-1 from data shards 0..k-1.
 */
export function planEncode(code: CodeMatrix): XorProgram {
  const { k, m, w } = code;
  const kw = k * w;
  const rows: Row[] = [];
  for (let r = 0; r < m * w; r++) {
    rows.push({
      slot: k + Math.floor(r / w),
      packet: r % w,
      bits: code.bits.subarray(r * kw, r * kw + kw),
    });
  }
  const sources = Array.from({ length: k }, (_, i) => i);
  const targets = Array.from({ length: m }, (_, i) => k + i);
  return schedule(sources, targets, rows, w);
}

/**
 * The reconstruct program: every shard not in `present` from the first k present shards in index
 * order (the shards the addon would read). Rebuilt data and parity rows are both expressed over
 * those k sources directly, so the result does not depend on the order shards are rebuilt in.
 *
 * @throws {RangeError} if fewer than k shards are present
 */
export function planReconstruct(code: CodeMatrix, present: readonly boolean[]): XorProgram {
  const { k, m, w } = code;
  const n = k + m;
  const kw = k * w;
  const sources: number[] = [];
  for (let i = 0; i < n && sources.length < k; i++) if (present[i]) sources.push(i);
  if (sources.length < k) {
    throw new RangeError(
      `Cannot reconstruct: ${present.filter(Boolean).length} of ${n} shards present, need ${k}`,
    );
  }
  const targets: number[] = [];
  for (let i = 0; i < n; i++) if (!present[i]) targets.push(i);
  // Row j*w + a of `encoding` gives source packet (j, a) in terms of the data packets.
  const encoding = new Uint8Array(kw * kw);
  sources.forEach((shard, j) => {
    for (let a = 0; a < w; a++) {
      const row = encoding.subarray((j * w + a) * kw, (j * w + a + 1) * kw);
      if (shard < k) row[shard * w + a] = 1;
      else row.set(code.bits.subarray(((shard - k) * w + a) * kw, ((shard - k) * w + a + 1) * kw));
    }
  });
  const decoding = invertBitMatrix(encoding, kw);
  const rows: Row[] = [];
  for (const shard of targets) {
    for (let b = 0; b < w; b++) {
      let bits: Uint8Array;
      if (shard < k) {
        bits = decoding.slice((shard * w + b) * kw, (shard * w + b + 1) * kw);
      } else {
        // Parity row times the decoding matrix: parity in terms of the source packets.
        const parityRow = code.bits.subarray(
          ((shard - k) * w + b) * kw,
          ((shard - k) * w + b + 1) * kw,
        );
        bits = new Uint8Array(kw);
        for (let d = 0; d < kw; d++) {
          if (parityRow[d]) xorInto(bits, decoding.subarray(d * kw, d * kw + kw));
        }
      }
      rows.push({ slot: shard, packet: b, bits });
    }
  }
  return schedule(sources, targets, rows, w);
}

function xorInto(target: Uint8Array, source: Uint8Array): void {
  for (let i = 0; i < target.length; i++) target[i] ^= source[i];
}

function weight(bits: Uint8Array): number {
  let count = 0;
  for (let i = 0; i < bits.length; i++) count += bits[i];
  return count;
}

function distance(a: Uint8Array, b: Uint8Array): number {
  let count = 0;
  for (let i = 0; i < a.length; i++) count += a[i] ^ b[i];
  return count;
}

/** Rows with a total weight above this skip pair extraction (it is quadratic in the weight). */
const MAX_CSE_WEIGHT = 640;

/**
 * Picks the cheapest of several programs for the rows, by packet loads plus stores per
 * super-block: rows ordered as a minimum spanning tree alone, and after extracting pairs of
 * inputs shared by at least 3 or 4 rows into scratch temps (computed once per strip).
 */
function schedule(
  sources: readonly number[],
  targets: readonly number[],
  rows: readonly Row[],
  w: number,
): XorProgram {
  const naiveLoads = rows.reduce((sum, row) => sum + weight(row.bits), 0);
  const candidates = [spanningTree(sources, targets, rows, w, [], naiveLoads)];
  if (naiveLoads <= MAX_CSE_WEIGHT) {
    for (const minUses of [3, 4]) {
      const { temps, rows: reduced } = extractPairs(rows, minUses);
      candidates.push(spanningTree(sources, targets, reduced, w, temps, naiveLoads));
    }
  }
  const cost = (program: XorProgram) => program.loads + program.ops.length;
  return candidates.reduce((best, next) => cost(next) < cost(best) ? next : best);
}

/**
 * Greedy common-subexpression extraction: while some pair of columns is set in at least
 * `minUses` rows, adds a temp column equal to their XOR and uses it in those rows instead.
 * Column `inputs + t` is temp t; `temps[t]` holds the two columns it sums.
 */
function extractPairs(
  rows: readonly Row[],
  minUses: number,
): { temps: [number, number][]; rows: Row[] } {
  const inputs = rows[0].bits.length;
  const sets = rows.map((row) => {
    const columns: number[] = [];
    row.bits.forEach((bit, i) => bit && columns.push(i));
    return new Set(columns);
  });
  const temps: [number, number][] = [];
  while (true) {
    const counts = new Map<number, number>();
    let best = -1;
    let bestCount = minUses - 1;
    for (const set of sets) {
      const columns = [...set].sort((a, b) => a - b);
      for (let i = 0; i < columns.length; i++) {
        for (let j = i + 1; j < columns.length; j++) {
          const key = columns[i] * 65536 + columns[j];
          const count = (counts.get(key) ?? 0) + 1;
          counts.set(key, count);
          if (count > bestCount || (count === bestCount && key < best)) {
            bestCount = count;
            best = key;
          }
        }
      }
    }
    if (best < 0) break;
    const a = Math.floor(best / 65536);
    const b = best % 65536;
    const temp = inputs + temps.length;
    temps.push([a, b]);
    for (const set of sets) {
      if (set.has(a) && set.has(b)) {
        set.delete(a);
        set.delete(b);
        set.add(temp);
      }
    }
  }
  const width = inputs + temps.length;
  return {
    temps,
    rows: rows.map((row, r) => {
      const bits = new Uint8Array(width);
      for (const column of sets[r]) bits[column] = 1;
      return { slot: row.slot, packet: row.packet, bits };
    }),
  };
}

/**
 * Orders the rows as a minimum spanning tree (Prim) where a row costs its weight when summed from
 * the columns, or its distance + 1 when derived from an output already computed (that output plus
 * the columns where the two rows differ); each op's cost is the packet loads it makes. The temps
 * are computed first.
 */
function spanningTree(
  sources: readonly number[],
  targets: readonly number[],
  rows: readonly Row[],
  w: number,
  temps: readonly [number, number][],
  naiveLoads: number,
): XorProgram {
  const inputs = sources.length * w;
  const column = (index: number): Operand =>
    index >= inputs ? { slot: -1, packet: index - inputs } : {
      slot: sources[Math.floor(index / w)],
      packet: index % w,
    };
  const ops: XorOp[] = temps.map(([a, b], t) => ({
    dst: { slot: -1, packet: t },
    srcs: [column(a), column(b)],
  }));
  let loads = 2 * temps.length;
  const n = rows.length;
  const cost = rows.map((row) => weight(row.bits));
  const parent = new Array<number>(n).fill(-1);
  const done = new Array<boolean>(n).fill(false);
  for (let step = 0; step < n; step++) {
    let next = -1;
    for (let i = 0; i < n; i++) if (!done[i] && (next < 0 || cost[i] < cost[next])) next = i;
    done[next] = true;
    loads += cost[next];
    const row = rows[next];
    const srcs: Operand[] = [];
    let bits = row.bits;
    if (parent[next] >= 0) {
      const from = rows[parent[next]];
      srcs.push({ slot: from.slot, packet: from.packet });
      bits = row.bits.slice();
      xorInto(bits, from.bits);
    }
    for (let i = 0; i < bits.length; i++) if (bits[i]) srcs.push(column(i));
    if (srcs.length === 0) {
      throw new Error(`Row for shard ${row.slot} packet ${row.packet} is zero`);
    }
    ops.push({ dst: { slot: row.slot, packet: row.packet }, srcs });
    for (let i = 0; i < n; i++) {
      if (done[i]) continue;
      const derived = distance(rows[i].bits, row.bits) + 1;
      if (derived < cost[i]) {
        cost[i] = derived;
        parent[i] = next;
      }
    }
  }
  return { sources, targets, ops, tempCount: temps.length, naiveLoads, loads };
}
