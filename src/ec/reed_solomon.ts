/**
 * The Reed-Solomon coder: a systematic Cauchy bit-matrix code, byte-compatible with
 * `@ronomon/reed-solomon` v6, running its XORs in the WebAssembly kernel of wasm/.
 *
 * Pure: no clock, no I/O. The async methods yield to the event loop between slices of work
 * through an injectable `yieldTurn` (default: one MessageChannel message, no timer).
 *
 * @module
 */
import { type CodeMatrix, createCodeMatrix, MAX_K, MAX_M, packetSizeBytes } from "./_matrix.ts";
import { planEncode, planReconstruct, type XorProgram } from "./_schedule.ts";
import { type StripeLayout, XorKernel } from "./_xor_kernel.ts";

/** Options of {@linkcode ReedSolomon.create}. */
export interface ReedSolomonOptions {
  /**
   * Data bytes (k shards' worth) the async methods process per event-loop turn before yielding.
   * Default 2 MiB, about half a millisecond; a 4+2 stripe of 256 KiB slices is one turn.
   */
  maxBytesPerTurn?: number;
  /** Yields one event-loop turn; default posts one message on a MessageChannel. */
  yieldTurn?: () => Promise<void>;
  /** Use the scalar (non-SIMD) kernel even where SIMD is available. */
  scalar?: boolean;
}

const DEFAULT_MAX_BYTES_PER_TURN = 2 * 1024 * 1024;
const MAX_CACHED_PROGRAMS = 256;

/**
 * A Reed-Solomon coder for k data shards and m parity shards.
 *
 * A stripe is k + m shards of equal size (a slice of each shard of an object): shards 0..k-1
 * hold data, k..k+m-1 parity. Each shard is cut into super-blocks of w packets (w = 2, 4 or 8
 * from the code's field); parity packet b of parity shard r is the XOR of the data packets whose
 * bit is set in row `r*w + b` of the bit-matrix. The packet size follows from k, w and the shard
 * size (see {@linkcode packetSizeBytes}), so parity depends on the shard size: record the slice
 * size with each object and decode with the same one.
 *
 * Each coder owns one kernel instance and its memory; async calls on one coder run one after
 * another. Shards are copied into kernel memory and results copied out (one copy each way),
 * unless they already are the views {@linkcode ReedSolomon.stripeShards} returned.
 *
 * @example
 * ```ts
 * const coder = ReedSolomon.create(4, 2);
 * const shards = Array.from({ length: 6 }, () => new Uint8Array(262144));
 * // ... fill shards 0..3 with data ...
 * await coder.encode(shards);
 * const present = [false, true, true, true, false, true];
 * await coder.reconstruct(shards, present); // rebuilds shards 0 and 4
 * ```
 * @see https://github.com/ronomon/reed-solomon (v6.0.0, binding.c)
 * @see docs/adr/0020-erasure-coder-wasm-kernel.md
 */
export class ReedSolomon {
  /** Data shards per stripe, 1..24. */
  readonly k: number;
  /** Parity shards per stripe, 1..6. */
  readonly m: number;
  /** Packets per super-block (the field is GF(2^w)): 2, 4 or 8. */
  readonly w: number;
  /** Whether the kernel runs with WebAssembly SIMD. */
  readonly simd: boolean;
  readonly #kernel: XorKernel;
  readonly #codeMatrix: CodeMatrix;
  readonly #encodeProgram: XorProgram;
  readonly #verifyProgram: XorProgram;
  readonly #programs = new Map<number, XorProgram>();
  readonly #maxBytesPerTurn: number;
  readonly #yieldTurn: (() => Promise<void>) | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #busy = false;

  private constructor(k: number, m: number, options: ReedSolomonOptions) {
    const code = createCodeMatrix(k, m);
    this.k = k;
    this.m = m;
    this.w = code.w;
    this.#kernel = XorKernel.create(options.scalar ?? false);
    this.simd = this.#kernel.simd;
    this.#encodeProgram = planEncode(code);
    this.#verifyProgram = remapTargets(this.#encodeProgram, k, m);
    this.#programs.set(0, this.#encodeProgram);
    this.#codeMatrix = code;
    const maxBytesPerTurn = options.maxBytesPerTurn ?? DEFAULT_MAX_BYTES_PER_TURN;
    if (!(maxBytesPerTurn > 0)) {
      throw new RangeError(`Invalid maxBytesPerTurn: "${maxBytesPerTurn}" is not positive`);
    }
    this.#maxBytesPerTurn = maxBytesPerTurn;
    this.#yieldTurn = options.yieldTurn;
  }

  /**
   * Creates a coder for k data and m parity shards.
   *
   * @throws {RangeError} if k is not an integer in 1..24 or m is not an integer in 1..6
   */
  static create(k: number, m: number, options: ReedSolomonOptions = {}): ReedSolomon {
    return new ReedSolomon(k, m, options);
  }

  /** The largest k. */
  static readonly MAX_K = MAX_K;
  /** The largest m. */
  static readonly MAX_M = MAX_M;

  /**
   * Fills parity shards k..k+m-1 from data shards 0..k-1.
   *
   * @param shards k + m shards of one equal size, a positive multiple of 8 bytes
   * @throws {RangeError} on a wrong shard count or size
   */
  encode(shards: Uint8Array[]): Promise<void> {
    return this.#async(() => this.#encodeSteps(shards));
  }

  /** {@linkcode encode} without yielding: blocks for the whole stripe. */
  encodeSync(shards: Uint8Array[]): void {
    this.#sync(this.#encodeSteps(shards));
  }

  /**
   * Rebuilds in place every shard whose `present[i]` is false (data and parity) from the first k
   * shards that are present, in index order. Present shards are only read.
   *
   * @param shards k + m shards of one equal size, a positive multiple of 8 bytes; the missing
   *   ones are buffers of that size whose contents are overwritten
   * @param present k + m flags; at least k must be true
   * @throws {RangeError} on a wrong shard count or size, or fewer than k shards present
   */
  reconstruct(shards: Uint8Array[], present: readonly boolean[]): Promise<void> {
    return this.#async(() => this.#reconstructSteps(shards, present));
  }

  /** {@linkcode reconstruct} without yielding: blocks for the whole stripe. */
  reconstructSync(shards: Uint8Array[], present: readonly boolean[]): void {
    this.#sync(this.#reconstructSteps(shards, present));
  }

  /**
   * Whether parity shards k..k+m-1 are exactly the encoding of data shards 0..k-1.
   *
   * @throws {RangeError} on a wrong shard count or size
   */
  verify(shards: Uint8Array[]): Promise<boolean> {
    return this.#async(() => this.#verifySteps(shards));
  }

  /** {@linkcode verify} without yielding. */
  verifySync(shards: Uint8Array[]): boolean {
    return this.#sync(this.#verifySteps(shards));
  }

  /**
   * k + m views of `shardSizeBytes` each into this coder's kernel memory, in stripe order. Fill
   * the data shards in place and pass the views to {@linkcode encode} (or {@linkcode reconstruct})
   * to skip the copies in and out. The views stay valid until this coder is next called with a
   * larger shard size (kernel memory may grow and move).
   *
   * @throws {RangeError} if the size is not a positive multiple of 8
   */
  stripeShards(shardSizeBytes: number): Uint8Array[] {
    checkShardSize(shardSizeBytes);
    // Room for verify's recomputed parity too, so that no later call of this size grows memory.
    const layout = this.#kernel.layout(this.k + 2 * this.m, shardSizeBytes, 0);
    const bytes = this.#kernel.bytes();
    return Array.from({ length: this.k + this.m }, (_, i) => shardView(bytes, layout, i));
  }

  /** The packet size this coder uses for a shard size; see {@linkcode packetSizeBytes}. */
  packetSizeBytes(shardSizeBytes: number): number {
    return packetSizeBytes(this.k, this.w, shardSizeBytes);
  }

  #async<T>(steps: () => Generator<void, T>): Promise<T> {
    const run = async (): Promise<T> => {
      this.#busy = true;
      let channel: MessageChannel | undefined;
      try {
        const iterator = steps();
        while (true) {
          const next = iterator.next();
          if (next.done) return next.value;
          if (this.#yieldTurn) {
            await this.#yieldTurn();
          } else {
            channel ??= new MessageChannel();
            await yieldOnChannel(channel);
          }
        }
      } finally {
        channel?.port1.close();
        channel?.port2.close();
        this.#busy = false;
      }
    };
    const result = this.#queue.then(run, run);
    this.#queue = result.catch(() => {});
    return result;
  }

  #sync<T>(steps: Generator<void, T>): T {
    if (this.#busy) throw new Error("Cannot run a sync call while an async call is in progress");
    while (true) {
      const next = steps.next();
      if (next.done) return next.value;
    }
  }

  #checkShards(shards: Uint8Array[]): number {
    const n = this.k + this.m;
    if (!Array.isArray(shards) || shards.length !== n) {
      throw new RangeError(
        `Invalid shards: expected ${n} (k=${this.k} + m=${this.m}), got "${shards?.length}"`,
      );
    }
    const size = shards[0]?.length;
    for (let i = 0; i < n; i++) {
      if (!(shards[i] instanceof Uint8Array)) {
        throw new RangeError(`Invalid shard ${i}: not a Uint8Array`);
      }
      if (shards[i].length !== size) {
        throw new RangeError(
          `Invalid shard ${i}: length ${shards[i].length} differs from shard 0's ${size}`,
        );
      }
    }
    checkShardSize(size);
    return size;
  }

  /**
   * Runs `program` over every super-block in slices of at most `maxBytesPerTurn` data bytes,
   * yielding between slices. Each slice copies its range of the `copyIn` slots into kernel
   * memory, runs, and copies its range of the `copyOut` slots back, so the copies are spread over
   * the turns too. Shards that already are views of kernel memory at their slot are not copied.
   */
  *#runSteps(
    program: XorProgram,
    layout: StripeLayout,
    shards: Uint8Array[],
    copyIn: readonly number[],
    copyOut: readonly number[],
  ): Generator<void> {
    const size = layout.shardSizeBytes;
    const packet = packetSizeBytes(this.k, this.w, size);
    const superBlockBytes = this.w * packet;
    const superBlocks = size / superBlockBytes;
    let bytes = this.#kernel.bytes();
    const slotOffset = (slot: number) => layout.shardsOffset + slot * layout.shardStrideBytes;
    const inSlots = copyIn.filter((slot) => !isAt(shards[slot], bytes, slotOffset(slot)));
    const outSlots = copyOut.filter((slot) => !isAt(shards[slot], bytes, slotOffset(slot)));
    const perTurn = Math.max(1, Math.floor(this.#maxBytesPerTurn / (this.k * superBlockBytes)));
    let sinceYield = 0;
    for (let start = 0; start < superBlocks;) {
      if (sinceYield >= perTurn) {
        yield;
        bytes = this.#kernel.bytes();
        sinceYield = 0;
      }
      const end = Math.min(superBlocks, start + perTurn - sinceYield);
      const from = start * superBlockBytes;
      const to = end * superBlockBytes;
      for (const slot of inSlots) {
        bytes.set(shards[slot].subarray(from, to), slotOffset(slot) + from);
      }
      this.#kernel.run(program, layout, this.w, packet, start, end);
      for (const slot of outSlots) {
        shards[slot].set(bytes.subarray(slotOffset(slot) + from, slotOffset(slot) + to), from);
      }
      sinceYield += end - start;
      start = end;
    }
  }

  *#encodeSteps(shards: Uint8Array[]): Generator<void> {
    const size = this.#checkShards(shards);
    const program = this.#encodeProgram;
    const layout = this.#kernel.layout(this.k + this.m, size, program.tempCount);
    yield* this.#runSteps(program, layout, shards, program.sources, program.targets);
  }

  *#reconstructSteps(shards: Uint8Array[], present: readonly boolean[]): Generator<void> {
    const size = this.#checkShards(shards);
    const n = this.k + this.m;
    if (!Array.isArray(present) || present.length !== n) {
      throw new RangeError(`Invalid present: expected ${n} flags, got "${present?.length}"`);
    }
    let mask = 0;
    for (let i = 0; i < n; i++) if (!present[i]) mask |= 1 << i;
    if (mask === 0) return;
    let program = this.#programs.get(mask);
    if (!program) {
      program = planReconstruct(this.#codeMatrix, present);
      if (this.#programs.size >= MAX_CACHED_PROGRAMS) {
        this.#programs.clear();
        this.#programs.set(0, this.#encodeProgram);
      }
      this.#programs.set(mask, program);
    }
    const layout = this.#kernel.layout(n, size, program.tempCount);
    yield* this.#runSteps(program, layout, shards, program.sources, program.targets);
  }

  *#verifySteps(shards: Uint8Array[]): Generator<void, boolean> {
    const size = this.#checkShards(shards);
    const { k, m } = this;
    const program = this.#verifyProgram;
    // Slots k+m..k+2m-1 receive the recomputed parity.
    const layout = this.#kernel.layout(k + 2 * m, size, program.tempCount);
    const all = Array.from({ length: k + m }, (_, i) => i);
    yield* this.#runSteps(program, layout, shards, all, []);
    const bytes = this.#kernel.bytes();
    for (let r = 0; r < m; r++) {
      const given = layout.shardsOffset + (k + r) * layout.shardStrideBytes;
      const computed = layout.shardsOffset + (k + m + r) * layout.shardStrideBytes;
      if (!equalBytes(bytes, given, computed, size)) return false;
    }
    return true;
  }
}

function checkShardSize(size: number): void {
  if (!Number.isInteger(size) || size <= 0 || size % 8 !== 0) {
    throw new RangeError(`Invalid shard size: "${size}" bytes is not a positive multiple of 8`);
  }
}

function shardView(bytes: Uint8Array, layout: StripeLayout, slot: number): Uint8Array {
  const offset = layout.shardsOffset + slot * layout.shardStrideBytes;
  return bytes.subarray(offset, offset + layout.shardSizeBytes);
}

function isAt(shard: Uint8Array, bytes: Uint8Array, offset: number): boolean {
  return shard.buffer === bytes.buffer && shard.byteOffset === offset;
}

function equalBytes(bytes: Uint8Array, a: number, b: number, length: number): boolean {
  let i = 0;
  if (a % 4 === 0 && b % 4 === 0) {
    const words = length >>> 2;
    const x = new Uint32Array(bytes.buffer, a, words);
    const y = new Uint32Array(bytes.buffer, b, words);
    for (; i < words; i++) if (x[i] !== y[i]) return false;
    i = words << 2;
  }
  for (; i < length; i++) if (bytes[a + i] !== bytes[b + i]) return false;
  return true;
}

/** The encode program writing parity into slots k+m.. instead of k.. (for verify). */
function remapTargets(program: XorProgram, k: number, m: number): XorProgram {
  const move = (operand: { slot: number; packet: number }) =>
    operand.slot >= k ? { slot: operand.slot + m, packet: operand.packet } : operand;
  return {
    ...program,
    targets: program.targets.map((slot) => slot + m),
    ops: program.ops.map((op) => ({ dst: move(op.dst), srcs: op.srcs.map(move) })),
  };
}

function yieldOnChannel(channel: MessageChannel): Promise<void> {
  return new Promise((resolve) => {
    channel.port1.onmessage = () => resolve();
    channel.port2.postMessage(0);
  });
}
