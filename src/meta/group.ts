/**
 * Group commit for the metadata log: several commands apply, in log order,
 * against an overlay of their not-yet-durable writes, and the writes then
 * reach Deno KV in as few atomic commits as its limits allow. One fsync then
 * serves many commands.
 *
 * Every `atomic().commit()` a command makes is a unit: units are never split
 * across KV commits, so each stays all-or-nothing, as `apply()` expects.
 * A command that fails part-way is undone with `rollback(mark)`: only its own
 * units are dropped, and the group goes on. A flush writes the units in order,
 * so after a failed flush KV holds a prefix of them; {@link GroupCommitError}
 * says which prefix is durable and which units may or may not be (ADR 0009).
 * Every KV commit of a flush also sets `["sys", "flush"]` to the next
 * sequence number, so after a commit fails, reading that key back tells
 * whether it was written (a rejected Deno KV commit has finished either way).
 *
 * Pure apart from the MetaKv it wraps: no clock, no randomness.
 *
 * @module
 */
import {
  KV_LIMITS,
  type KvAtomic,
  type KvEntry,
  type KvKey,
  type KvSelector,
  type MetaKv,
} from "../io/mod.ts";
import { keySizeBytes, valueSizeBytes } from "./limits.ts";
import { keys } from "./records.ts";

type Part = KvKey[number];
interface Op {
  key: KvKey;
  value?: unknown;
  deleted: boolean;
  /** Encoded key and value size, as Deno KV counts it against a commit's size. */
  sizeBytes: number;
}

const encoder = new TextEncoder();

function typeRank(p: Part): number {
  if (p instanceof Uint8Array) return 0;
  switch (typeof p) {
    case "string":
      return 1;
    case "bigint":
      return 2;
    case "number":
      return 3;
    default:
      return 4;
  }
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

function comparePart(a: Part, b: Part): number {
  const ra = typeRank(a);
  const rb = typeRank(b);
  if (ra !== rb) return ra - rb;
  if (typeof a === "string") return compareBytes(encoder.encode(a), encoder.encode(b as string));
  if (a instanceof Uint8Array) return compareBytes(a, b as Uint8Array);
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Orders keys as Deno KV does: part by part, by type then value, strings by UTF-8 bytes. */
export function compareKeys(a: KvKey, b: KvKey): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const c = comparePart(a[i], b[i]);
    if (c !== 0) return c;
  }
  return a.length - b.length;
}

function inSelector(key: KvKey, sel: KvSelector): boolean {
  if ("prefix" in sel) {
    if (key.length <= sel.prefix.length) return false;
    for (let i = 0; i < sel.prefix.length; i++) {
      if (comparePart(key[i], sel.prefix[i]) !== 0) return false;
    }
  }
  if (sel.start && compareKeys(key, sel.start) < 0) return false;
  if (sel.end && compareKeys(key, sel.end) >= 0) return false;
  return true;
}

function keyId(key: KvKey): string {
  return JSON.stringify(
    key.map((p) => (typeof p === "bigint" ? `${p}n` : p instanceof Uint8Array ? [...p] : p)),
  );
}

/**
 * Measures a write as Deno KV does and refuses, as Deno KV's commit would,
 * a key or value over its limit: the writing command then fails alone.
 */
function measure(key: KvKey, value: unknown, deleted: boolean): Op {
  const keyBytes = keySizeBytes(key);
  if (keyBytes > KV_LIMITS.keySizeBytes) {
    throw new TypeError(`Key too large for write (max ${KV_LIMITS.keySizeBytes} bytes)`);
  }
  const valueBytes = deleted ? 0 : valueSizeBytes(value);
  if (valueBytes > KV_LIMITS.valueSizeBytes) {
    throw new TypeError(`Value too large (max ${KV_LIMITS.valueSizeBytes} bytes)`);
  }
  return { key, value, deleted, sizeBytes: keyBytes + valueBytes };
}

/**
 * Thrown by {@link GroupKv.flush} when a KV commit fails. Units are numbered
 * in the order they were written since the previous flush:
 * `[0, durableUnits)` reached KV, `[durableUnits, attemptedUnits)` were in the
 * commit that failed and may or may not have been written (empty when reading
 * back the flush sequence number told), and `[attemptedUnits, ...)` were never
 * written.
 */
export class GroupCommitError extends Error {
  override name = "GroupCommitError";
  constructor(
    readonly durableUnits: number,
    readonly attemptedUnits: number,
    override readonly cause: unknown,
  ) {
    super(
      `Metadata group commit failed after ${durableUnits} durable units: ${
        (cause as Error)?.message ?? String(cause)
      }`,
    );
  }
}

/**
 * A MetaKv whose writes stay in memory until `flush()`; reads see them.
 * Only `set` and `delete` are supported inside `atomic()` (apply uses no checks);
 * like Deno KV, `set` refuses a key or value over its limit (a `TypeError`).
 */
export class GroupKv implements MetaKv {
  #overlay = new Map<string, Op>();
  #units: Op[][] = [];
  /** Base values read ahead by `prefetch()`; valid until the next flush, as only flush writes the base. */
  #readAhead = new Map<string, KvEntry<unknown> | null>();
  /** The flush sequence number in the base KV; `null` until read (or after a read-back failed). */
  #flushSeq: number | null = null;

  constructor(readonly base: MetaKv) {}

  /** Units written since the last flush. */
  get pendingUnits(): number {
    return this.#units.length;
  }

  /** A savepoint: the number of units written so far, for {@link rollback}. */
  mark(): number {
    return this.#units.length;
  }

  /** Drops every unit written after `mark` (a command that failed part-way), as if never written. */
  rollback(mark: number): void {
    if (mark >= this.#units.length) return;
    this.#units.length = mark;
    this.#overlay.clear();
    for (const unit of this.#units) {
      for (const op of unit) this.#overlay.set(keyId(op.key), op);
    }
  }

  async get<T>(key: KvKey): Promise<KvEntry<T> | null> {
    const id = keyId(key);
    const op = this.#overlay.get(id);
    if (op) return op.deleted ? null : { key, value: op.value as T, versionstamp: "pending" };
    const ahead = this.#readAhead.get(id);
    if (ahead !== undefined) return ahead as KvEntry<T> | null;
    return await this.base.get<T>(key);
  }

  /**
   * Reads `keys` from the base KV together, in batches of Deno KV's getMany
   * limit, so that the `get`s of the commands about to apply are answered
   * from memory instead of one round trip each.
   */
  async prefetch(keys: KvKey[]): Promise<void> {
    const todo = new Map<string, KvKey>();
    for (const key of keys) {
      const id = keyId(key);
      if (!this.#overlay.has(id) && !this.#readAhead.has(id)) todo.set(id, key);
    }
    const ids = [...todo.keys()];
    const batches: Promise<void>[] = [];
    for (let i = 0; i < ids.length; i += KV_LIMITS.keysPerGetMany) {
      const chunk = ids.slice(i, i + KV_LIMITS.keysPerGetMany);
      batches.push(
        this.base.getMany(chunk.map((id) => todo.get(id)!)).then((entries) => {
          chunk.forEach((id, j) => this.#readAhead.set(id, entries[j]));
        }),
      );
    }
    await Promise.all(batches);
  }

  async getMany<T>(keys: KvKey[]): Promise<(KvEntry<T> | null)[]> {
    return await Promise.all(keys.map((k) => this.get<T>(k)));
  }

  async *list<T>(
    selector: KvSelector,
    options: { limit?: number; reverse?: boolean; batchSize?: number } = {},
  ): AsyncIterable<KvEntry<T>> {
    const reverse = options.reverse === true;
    const dir = reverse ? -1 : 1;
    const mine = [...this.#overlay.values()]
      .filter((op) => inSelector(op.key, selector))
      .sort((a, b) => dir * compareKeys(a.key, b.key));
    const limit = options.limit ?? Infinity;
    let yielded = 0;
    let i = 0;
    for await (const e of this.base.list<T>(selector, { reverse, batchSize: options.batchSize })) {
      while (i < mine.length && dir * compareKeys(mine[i].key, e.key) <= 0) {
        const op = mine[i++];
        if (!op.deleted) {
          if (yielded++ === limit) return;
          yield { key: op.key, value: op.value as T, versionstamp: "pending" };
        }
      }
      if (this.#overlay.has(keyId(e.key))) continue;
      if (yielded++ === limit) return;
      yield e;
    }
    for (; i < mine.length; i++) {
      const op = mine[i];
      if (op.deleted) continue;
      if (yielded++ === limit) return;
      yield { key: op.key, value: op.value as T, versionstamp: "pending" };
    }
  }

  atomic(): KvAtomic {
    const ops: Op[] = [];
    const builder: KvAtomic = {
      check: () => {
        throw new Error("GroupKv does not support checks");
      },
      set: (key, value) => {
        ops.push(measure(key, value, false));
        return builder;
      },
      delete: (key) => {
        ops.push(measure(key, undefined, true));
        return builder;
      },
      commit: () => {
        for (const op of ops) this.#overlay.set(keyId(op.key), op);
        this.#units.push(ops);
        return Promise.resolve(true);
      },
    };
    return builder;
  }

  /**
   * Writes every pending unit to the base KV, in order, packing units into as
   * few commits as the limits allow.
   *
   * @throws {GroupCommitError} when a commit fails: which units are durable
   */
  async flush(): Promise<void> {
    const units = this.#units;
    this.#units = [];
    // Later writes to a key win; one commit then carries one mutation per key.
    let batch = new Map<string, Op>();
    let sizeBytes = 0;
    let durableUnits = 0;
    let batchEnd = 0;
    const commit = async () => {
      if (batch.size === 0) return;
      if (this.#flushSeq === null) {
        try {
          this.#flushSeq = (await this.base.get<number>(keys.flush()))?.value ?? 0;
        } catch (err) {
          throw new GroupCommitError(durableUnits, durableUnits, err);
        }
      }
      const seq = this.#flushSeq + 1;
      const atomic = this.base.atomic();
      for (const op of batch.values()) {
        if (op.deleted) atomic.delete(op.key);
        else atomic.set(op.key, op.value);
      }
      atomic.set(keys.flush(), seq);
      try {
        if (!await atomic.commit()) throw new Error("Metadata group commit failed a check");
      } catch (err) {
        throw await this.#outcome(seq, durableUnits, batchEnd, err);
      }
      this.#flushSeq = seq;
      durableUnits = batchEnd;
      batch = new Map();
      sizeBytes = 0;
    };
    try {
      for (const unit of units) {
        const unitSize = unit.reduce((n, op) => n + op.sizeBytes, 0);
        if (
          batch.size + unit.length + 1 > KV_LIMITS.mutationsPerCommit ||
          sizeBytes + unitSize > KV_LIMITS.commitSizeBytes * 0.75
        ) {
          await commit();
        }
        for (const op of unit) {
          const id = keyId(op.key);
          batch.delete(id);
          batch.set(id, op);
        }
        sizeBytes += unitSize;
        batchEnd++;
      }
      await commit();
    } finally {
      this.#overlay.clear();
      this.#readAhead.clear();
    }
  }

  /** After the commit of units `[from, to)` with sequence number `seq` failed: was it written? */
  async #outcome(seq: number, from: number, to: number, err: unknown): Promise<GroupCommitError> {
    try {
      const now = (await this.base.get<number>(keys.flush()))?.value ?? 0;
      if (now === seq) {
        this.#flushSeq = seq;
        return new GroupCommitError(to, to, err);
      }
      if (now === seq - 1) return new GroupCommitError(from, from, err);
    } catch {
      // unknown: read the sequence number again before the next commit
    }
    this.#flushSeq = null;
    return new GroupCommitError(from, to, err);
  }

  close(): void {
    this.base.close();
  }
}
