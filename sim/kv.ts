/**
 * A simulated `MetaKv` that behaves like Deno KV where Hamster can tell:
 * key order (by type: Uint8Array < string < bigint < number < boolean; then
 * by value: bytes and UTF-8 strings bytewise, numbers as f64 with
 * -0 < 0 and NaN last), structured-clone values, versionstamps, atomic
 * checks, and the limits of `KV_LIMITS` with Deno KV's error messages.
 *
 * Keys are encoded as Deno KV encodes them (the FoundationDB tuple layer),
 * so order and key size are exact. Value size is the V8 serialization size
 * (raw length for a Uint8Array), as Deno KV measures it.
 *
 * Crash semantics: a commit is durable once its promise resolves; a commit
 * still in flight at `crash()` is lost whole (never half-applied). Calls
 * made before the crash never settle.
 *
 * Pure: no clock, no I/O; delays come from the injected scheduler.
 *
 * @module
 */
import { deserialize, serialize } from "node:v8";
import {
  KV_LIMITS,
  type KvAtomic,
  type KvEntry,
  type KvKey,
  type KvSelector,
  type MetaKv,
} from "../src/io/mod.ts";
import type { Scheduler } from "./disk.ts";

/** Largest total size of the keys set in one commit, in bytes (Deno KV's). */
export const KV_TOTAL_KEY_BYTES = 81920;
/** Most checks in one commit (Deno KV's). */
export const KV_MAX_CHECKS = 100;

interface Stored {
  key: KvKey;
  enc: Uint8Array;
  value: Uint8Array | { v8: Uint8Array };
  versionstamp: string;
}

/** Options of a SimKv. */
export interface SimKvOptions {
  /** Delays operations in virtual time; without one, they complete in a microtask. */
  readonly schedule?: Scheduler;
  /** Virtual latency of a read or a commit, milliseconds. Default 0.05. */
  readonly latencyMs?: number;
}

/**
 * A simulated Deno KV. One instance outlives process crashes: call
 * `crash()` when the simulated process dies, then `reopen()` for the new one.
 */
export class SimKv {
  #rows: Stored[] = [];
  #version = 0;
  #epoch = 0;
  readonly #schedule: Scheduler;
  readonly #latencyMs: number;

  constructor(options: SimKvOptions = {}) {
    this.#schedule = options.schedule ?? ((_ms, fn) => queueMicrotask(fn));
    this.#latencyMs = options.latencyMs ?? 0.05;
  }

  /** Loses every commit in flight; handles opened before stop working. */
  crash(): void {
    this.#epoch++;
  }

  /** A MetaKv handle for the current process. */
  open(): MetaKv {
    return new SimKvHandle(this, this.#epoch);
  }

  /** Number of stored keys. */
  get size(): number {
    return this.#rows.length;
  }

  /** @internal */
  op<T>(epoch: number, fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (epoch !== this.#epoch) return;
      this.#schedule(this.#latencyMs, () => {
        if (epoch !== this.#epoch) return;
        try {
          resolve(fn());
        } catch (err) {
          reject(err);
        }
      });
    });
  }

  /** @internal */
  find(enc: Uint8Array): { i: number; found: boolean } {
    let lo = 0;
    let hi = this.#rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareBytes(this.#rows[mid].enc, enc) < 0) lo = mid + 1;
      else hi = mid;
    }
    return { i: lo, found: lo < this.#rows.length && compareBytes(this.#rows[lo].enc, enc) === 0 };
  }

  /** @internal */
  row(enc: Uint8Array): Stored | null {
    const { i, found } = this.find(enc);
    return found ? this.#rows[i] : null;
  }

  /** @internal */
  range(from: Uint8Array, to: Uint8Array): Stored[] {
    const a = this.find(from).i;
    const b = this.find(to).i;
    return this.#rows.slice(a, Math.max(a, b));
  }

  /** @internal Applies a validated commit. */
  apply(mutations: { enc: Uint8Array; key: KvKey; value?: Stored["value"] }[]): string {
    const versionstamp = (++this.#version).toString(16).padStart(16, "0") + "0000";
    for (const m of mutations) {
      const { i, found } = this.find(m.enc);
      if (m.value === undefined) {
        if (found) this.#rows.splice(i, 1);
      } else {
        const row: Stored = { key: m.key, enc: m.enc, value: m.value, versionstamp };
        if (found) this.#rows[i] = row;
        else this.#rows.splice(i, 0, row);
      }
    }
    return versionstamp;
  }
}

class SimKvHandle implements MetaKv {
  #closed = false;
  constructor(readonly kv: SimKv, readonly epoch: number) {}

  #live(): void {
    if (this.#closed) throw new Error("Database closed");
  }

  get<T>(key: KvKey): Promise<KvEntry<T> | null> {
    this.#live();
    const enc = encodeReadKey(key);
    return this.kv.op(this.epoch, () => toEntry<T>(this.kv.row(enc)));
  }

  getMany<T>(keys: KvKey[]): Promise<(KvEntry<T> | null)[]> {
    this.#live();
    const encs = keys.map(encodeReadKey);
    return this.kv.op(this.epoch, () => encs.map((e) => toEntry<T>(this.kv.row(e))));
  }

  async *list<T>(
    selector: KvSelector,
    options: { limit?: number; reverse?: boolean; batchSize?: number } = {},
  ): AsyncIterable<KvEntry<T>> {
    this.#live();
    const { from, to } = selectorRange(selector);
    const rows = await this.kv.op(this.epoch, () => this.kv.range(from, to));
    if (options.reverse) rows.reverse();
    const limit = options.limit ?? Infinity;
    for (let i = 0; i < rows.length && i < limit; i++) yield toEntry<T>(rows[i])!;
  }

  atomic(): KvAtomic {
    this.#live();
    const checks: { enc: Uint8Array; versionstamp: string | null }[] = [];
    const mutations: { enc: Uint8Array; key: KvKey; value?: Stored["value"]; sizeBytes: number }[] =
      [];
    const op: KvAtomic = {
      check: (key, versionstamp) => {
        checks.push({ enc: encodeReadKey(key), versionstamp });
        return op;
      },
      set: (key, value) => {
        const enc = encodeWriteKey(key);
        const v = encodeValue(value);
        const size = v instanceof Uint8Array ? v.length : v.v8.length;
        mutations.push({ enc, key: cloneKey(key), value: v, sizeBytes: enc.length + size });
        return op;
      },
      delete: (key) => {
        const enc = encodeWriteKey(key);
        mutations.push({ enc, key: cloneKey(key), sizeBytes: enc.length });
        return op;
      },
      commit: () => {
        try {
          this.#live();
          if (checks.length > KV_MAX_CHECKS) {
            throw new TypeError(`Too many checks (max ${KV_MAX_CHECKS})`);
          }
          if (mutations.length > KV_LIMITS.mutationsPerCommit) {
            throw new TypeError(`Too many mutations (max ${KV_LIMITS.mutationsPerCommit})`);
          }
          const total = mutations.reduce((s, m) => s + m.sizeBytes, 0);
          if (total > KV_LIMITS.commitSizeBytes) {
            throw new TypeError(
              `Total mutation size too large (max ${KV_LIMITS.commitSizeBytes} bytes)`,
            );
          }
          const keyBytes = mutations.reduce(
            (s, m) => s + (m.value === undefined ? 0 : m.enc.length),
            0,
          );
          if (keyBytes > KV_TOTAL_KEY_BYTES) {
            throw new TypeError(`Total key size too large (max ${KV_TOTAL_KEY_BYTES} bytes)`);
          }
        } catch (err) {
          return Promise.reject(err);
        }
        return this.kv.op(this.epoch, () => {
          for (const c of checks) {
            const row = this.kv.row(c.enc);
            if ((row?.versionstamp ?? null) !== c.versionstamp) return false;
          }
          this.kv.apply(mutations);
          return true;
        });
      },
    };
    return op;
  }

  close(): void {
    this.#closed = true;
  }
}

function toEntry<T>(row: Stored | null): KvEntry<T> | null {
  if (!row) return null;
  const value = row.value instanceof Uint8Array ? row.value.slice() : deserialize(row.value.v8);
  return { key: cloneKey(row.key), value: value as T, versionstamp: row.versionstamp };
}

function cloneKey(key: KvKey): KvKey {
  return key.map((p) => (p instanceof Uint8Array ? p.slice() : p));
}

/**
 * The stored form of a value, as Deno KV keeps it.
 * @throws {TypeError} "Value too large (max 65536 bytes)" past the limit, or
 * when V8 cannot serialize the value.
 */
function encodeValue(value: unknown): Stored["value"] {
  if (value instanceof Uint8Array) {
    if (value.length > KV_LIMITS.valueSizeBytes) {
      throw new TypeError(`Value too large (max ${KV_LIMITS.valueSizeBytes} bytes)`);
    }
    return value.slice();
  }
  let v8: Uint8Array;
  try {
    v8 = serialize(value);
  } catch (err) {
    throw new TypeError(`Cannot serialize value: ${(err as Error).message}`);
  }
  if (v8.length > KV_LIMITS.valueSizeBytes) {
    throw new TypeError(`Value too large (max ${KV_LIMITS.valueSizeBytes} bytes)`);
  }
  return { v8 };
}

function encodeWriteKey(key: KvKey): Uint8Array {
  const enc = encodeKey(key);
  if (enc.length > KV_LIMITS.keySizeBytes) {
    throw new TypeError(`Key too large for write (max ${KV_LIMITS.keySizeBytes} bytes)`);
  }
  return enc;
}

function encodeReadKey(key: KvKey): Uint8Array {
  const enc = encodeKey(key);
  if (enc.length > KV_LIMITS.keySizeBytes) {
    throw new TypeError(`Key too large for read (max ${KV_LIMITS.keySizeBytes + 1} bytes)`);
  }
  return enc;
}

function selectorRange(sel: KvSelector): { from: Uint8Array; to: Uint8Array } {
  if ("prefix" in sel) {
    const p = encodeKey(sel.prefix);
    let from = concat(p, [0x00]);
    let to = concat(p, [0xff]);
    if (sel.start) {
      const s = encodeKey(sel.start);
      if (!startsWith(s, p)) {
        throw new TypeError("Start key is not in the keyspace defined by prefix");
      }
      from = s;
    }
    if (sel.end) {
      const e = encodeKey(sel.end);
      if (!startsWith(e, p)) {
        throw new TypeError("End key is not in the keyspace defined by prefix");
      }
      to = e;
    }
    return { from, to };
  }
  return { from: encodeKey(sel.start), to: encodeKey(sel.end) };
}

/**
 * Encodes a key as Deno KV does: per part a type byte, then the value.
 *
 * | part | encoding |
 * |---|---|
 * | Uint8Array | `0x01`, bytes with `0x00` escaped as `0x00 0xFF`, `0x00` |
 * | string | `0x02`, UTF-8 escaped the same way, `0x00` |
 * | bigint | `0x14` for 0; `0x14 ± n` and n big-endian bytes (one's complement when negative) for n <= 8; `0x1D`/`0x0B`, a length byte, bytes beyond |
 * | number | `0x21`, the f64 big-endian with the sign bit flipped (all bits when negative) |
 * | boolean | `0x26` false, `0x27` true |
 *
 * @throws {TypeError} for a part of another type.
 * @see https://github.com/apple/foundationdb/blob/main/design/tuple.md
 */
export function encodeKey(key: KvKey): Uint8Array {
  const out: number[] = [];
  const escaped = (bytes: Uint8Array) => {
    for (const b of bytes) {
      out.push(b);
      if (b === 0) out.push(0xff);
    }
    out.push(0);
  };
  for (const part of key) {
    if (part instanceof Uint8Array) {
      out.push(0x01);
      escaped(part);
    } else if (typeof part === "string") {
      out.push(0x02);
      escaped(new TextEncoder().encode(part));
    } else if (typeof part === "bigint") {
      encodeBigint(out, part);
    } else if (typeof part === "number") {
      out.push(0x21);
      const b = new Uint8Array(8);
      new DataView(b.buffer).setFloat64(0, part, false);
      if (b[0] & 0x80) { for (let i = 0; i < 8; i++) b[i] ^= 0xff; }
      else b[0] ^= 0x80;
      out.push(...b);
    } else if (typeof part === "boolean") {
      out.push(part ? 0x27 : 0x26);
    } else {
      throw new TypeError(`Invalid key part: ${typeof part}`);
    }
  }
  return new Uint8Array(out);
}

function encodeBigint(out: number[], v: bigint): void {
  if (v === 0n) {
    out.push(0x14);
    return;
  }
  const neg = v < 0n;
  let mag = neg ? -v : v;
  const bytes: number[] = [];
  while (mag > 0n) {
    bytes.unshift(Number(mag & 0xffn));
    mag >>= 8n;
  }
  const n = bytes.length;
  const body = neg ? bytes.map((b) => b ^ 0xff) : bytes;
  if (n <= 8) out.push(neg ? 0x14 - n : 0x14 + n);
  else if (neg) out.push(0x0b, n ^ 0xff);
  else out.push(0x1d, n);
  out.push(...body);
}

/** Bytewise comparison. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

function startsWith(a: Uint8Array, p: Uint8Array): boolean {
  if (a.length < p.length) return false;
  for (let i = 0; i < p.length; i++) if (a[i] !== p[i]) return false;
  return true;
}

function concat(a: Uint8Array, b: number[]): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
