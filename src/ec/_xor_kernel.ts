/**
 * Loads the XOR kernel (wasm/xor_kernel.ts, embedded as base64 by wasm/build.ts so that
 * `deno compile` binaries carry it) and lays out one stripe in its linear memory.
 *
 * Pure: no clock, no I/O; instantiating WebAssembly is computation only.
 *
 * @module
 */
import { SCALAR_WASM_BASE64, SIMD_WASM_BASE64 } from "./_xor_kernel_wasm.ts";
import type { XorProgram } from "./_schedule.ts";

const PAGE_BYTES = 65536;
/** Bytes below this are left to the AssemblyScript runtime. */
const RESERVED_BYTES = PAGE_BYTES;
/** Scratch for up to 256 resolved source addresses. */
const ADDRS_BYTES = 1024;
/** Each shard starts on a 64-byte boundary. */
const ALIGN_BYTES = 64;
/** Strip length: the kernel runs the whole program over one strip of every packet at a time. */
export const STRIP_BYTES = 2048;
/** Kernel addresses are 32-bit and signed in the program words: stay below 2 GiB. */
const MAX_MEMORY_BYTES = 2 ** 31 - PAGE_BYTES;

interface KernelExports {
  memory: WebAssembly.Memory;
  run(
    program: number,
    opCount: number,
    superBlockStart: number,
    superBlockEnd: number,
    superBlockStrideBytes: number,
    packetBytes: number,
    stripBytes: number,
    addrs: number,
  ): void;
}

let compiled: { module: WebAssembly.Module; simd: boolean } | undefined;

function decodeBase64(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/**
 * Compiles the kernel once per process: the SIMD build when the runtime validates it, else the
 * scalar build.
 */
function compile(forceScalar: boolean): { module: WebAssembly.Module; simd: boolean } {
  if (forceScalar) {
    return { module: new WebAssembly.Module(decodeBase64(SCALAR_WASM_BASE64)), simd: false };
  }
  if (!compiled) {
    const simdBytes = decodeBase64(SIMD_WASM_BASE64);
    compiled = WebAssembly.validate(simdBytes)
      ? { module: new WebAssembly.Module(simdBytes), simd: true }
      : { module: new WebAssembly.Module(decodeBase64(SCALAR_WASM_BASE64)), simd: false };
  }
  return compiled;
}

/** Where one stripe's pieces live in kernel memory (byte offsets). */
export interface StripeLayout {
  readonly shardSizeBytes: number;
  readonly shardCount: number;
  /** Offset of shard i is `shardsOffset + i * shardStrideBytes`. */
  readonly shardsOffset: number;
  readonly shardStrideBytes: number;
  readonly endBytes: number;
}

/**
 * One kernel instance with its own linear memory. Memory layout:
 *
 * `[0, 64 KiB)` runtime | addrs (1 KiB) | program (i32 words) | temps | shards (64-byte aligned)
 *
 * The program region is sized for the largest program (48 rows x (3 + 2*193) words).
 */
export class XorKernel {
  readonly simd: boolean;
  readonly #exports: KernelExports;
  /** The program now written in kernel memory, and the layout it was linked for. */
  #loaded: { program: XorProgram; key: string } | undefined;
  static readonly #PROGRAM_BYTES = 48 * (3 + 2 * 193) * 4 + 1024;
  static readonly #TEMPS_OFFSET = RESERVED_BYTES + ADDRS_BYTES + XorKernel.#PROGRAM_BYTES;

  private constructor(module: WebAssembly.Module, simd: boolean) {
    this.simd = simd;
    this.#exports = new WebAssembly.Instance(module, {}).exports as unknown as KernelExports;
  }

  /** @param forceScalar use the scalar build even where SIMD is available (tests, benchmarks) */
  static create(forceScalar = false): XorKernel {
    const { module, simd } = compile(forceScalar);
    return new XorKernel(module, simd);
  }

  /** The kernel's memory as bytes; a fresh view, invalid after the memory grows. */
  bytes(): Uint8Array {
    return new Uint8Array(this.#exports.memory.buffer);
  }

  /** The layout for `shardCount` shards of `shardSizeBytes`, growing memory to fit it. */
  layout(shardCount: number, shardSizeBytes: number, tempCount: number): StripeLayout {
    const tempsEnd = XorKernel.#TEMPS_OFFSET + tempCount * STRIP_BYTES;
    const shardsOffset = Math.ceil(tempsEnd / ALIGN_BYTES) * ALIGN_BYTES;
    const shardStrideBytes = Math.ceil(shardSizeBytes / ALIGN_BYTES) * ALIGN_BYTES;
    const endBytes = shardsOffset + shardCount * shardStrideBytes;
    if (endBytes > MAX_MEMORY_BYTES) {
      throw new RangeError(
        `Invalid stripe: ${shardCount} shards of ${shardSizeBytes} bytes exceed the kernel's 2 GiB`,
      );
    }
    const memory = this.#exports.memory;
    if (endBytes > memory.buffer.byteLength) {
      memory.grow(Math.ceil((endBytes - memory.buffer.byteLength) / PAGE_BYTES));
    }
    return { shardSizeBytes, shardCount, shardsOffset, shardStrideBytes, endBytes };
  }

  /**
   * Writes `program` for `layout` and runs it over super-blocks `[superBlockStart,
   * superBlockEnd)`. Each super-block is w packets of `packetBytes` per shard.
   */
  run(
    program: XorProgram,
    layout: StripeLayout,
    w: number,
    packetBytes: number,
    superBlockStart: number,
    superBlockEnd: number,
  ): void {
    const programOffset = RESERVED_BYTES + ADDRS_BYTES;
    const key = `${layout.shardsOffset}/${layout.shardStrideBytes}/${packetBytes}`;
    if (this.#loaded?.program !== program || this.#loaded.key !== key) {
      const words = linkProgram(program, layout, packetBytes, XorKernel.#TEMPS_OFFSET);
      if (words.length * 4 > XorKernel.#PROGRAM_BYTES) {
        throw new Error(`XOR program of ${words.length} words exceeds its kernel region`);
      }
      new Int32Array(this.#exports.memory.buffer, programOffset, words.length).set(words);
      this.#loaded = { program, key };
    }
    this.#exports.run(
      programOffset,
      program.ops.length,
      superBlockStart,
      superBlockEnd,
      w * packetBytes,
      packetBytes,
      STRIP_BYTES,
      RESERVED_BYTES,
    );
  }
}

/** The program as kernel words (see wasm/xor_kernel.ts) for one layout and packet size. */
function linkProgram(
  program: XorProgram,
  layout: StripeLayout,
  packetBytes: number,
  tempsOffset: number,
): Int32Array {
  const words: number[] = [];
  const push = (slot: number, packet: number) => {
    if (slot < 0) words.push(tempsOffset + packet * STRIP_BYTES, 0);
    else {words.push(
        layout.shardsOffset + slot * layout.shardStrideBytes + packet * packetBytes,
        -1,
      );}
  };
  for (const op of program.ops) {
    words.push(op.srcs.length);
    push(op.dst.slot, op.dst.packet);
    for (const src of op.srcs) push(src.slot, src.packet);
  }
  return Int32Array.from(words);
}
