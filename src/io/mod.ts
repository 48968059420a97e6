/**
 * Ports: the only ways Hamster's logic reaches time, randomness, disk and the
 * metadata database. Interfaces only; no `Deno.*` here. Real adapters live in
 * `src/io/deno/`, simulated ones in `sim/`.
 *
 * Pure: this module declares types and has no behaviour.
 *
 * @module
 */

/** Wall-clock time, injected so `sim/` can run on virtual time. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  nowMs(): number;
  /** Resolves after `ms` milliseconds of this clock's time. */
  sleep(ms: number): Promise<void>;
}

/** Randomness, injected so a whole run replays from one seed. */
export interface Rng {
  /** A uniformly random unsigned 32-bit integer. */
  nextU32(): number;
  /** Fills `bytes` with random bytes and returns it. */
  fill(bytes: Uint8Array): Uint8Array;
}

/** A file open for writing. Writes are not durable until `sync()` resolves. */
export interface WriteHandle {
  /** Appends all of `bytes` at the current end of the file. */
  write(bytes: Uint8Array): Promise<void>;
  /** fsync: makes every write so far durable. */
  sync(): Promise<void>;
  close(): void;
}

/** A file open for positional reads. */
export interface ReadHandle {
  /** File size in bytes when it was opened. */
  readonly sizeBytes: number;
  /**
   * Reads up to `buf.length` bytes at `offsetBytes` into `buf`.
   * @returns the number of bytes read; 0 at end of file.
   */
  read(buf: Uint8Array, offsetBytes: number): Promise<number>;
  close(): void;
}

/** One entry of a directory listing. */
export interface DirEntry {
  name: string;
  isFile: boolean;
  isDirectory: boolean;
}

/**
 * The local disk. Paths are `/`-separated and relative to the adapter's root,
 * so an adapter can never be led outside its directory by a path it is given.
 *
 * Crash semantics the callers rely on (and `sim/` enforces): data written to a
 * file is durable only after `WriteHandle.sync()`; a created, renamed or
 * removed directory entry is durable only after `syncDir()` of its parent.
 */
export interface Disk {
  /** Creates `path` and any missing parents. */
  mkdirp(path: string): Promise<void>;
  /**
   * Creates a new file for writing.
   * @throws {AlreadyExistsError} if `path` exists.
   */
  create(path: string): Promise<WriteHandle>;
  /**
   * Opens an existing file for reading.
   * @throws {NotFoundError} if `path` does not exist.
   */
  open(path: string): Promise<ReadHandle>;
  /** Atomically replaces `to` with `from` (POSIX rename). */
  rename(from: string, to: string): Promise<void>;
  /** Removes a file; a missing file is not an error. */
  remove(path: string): Promise<void>;
  /** fsync of a directory, making entry changes inside it durable. */
  syncDir(path: string): Promise<void>;
  /** Lists a directory; a missing directory lists as empty. */
  list(path: string): AsyncIterable<DirEntry>;
  /** Size and modification time, or `null` when `path` does not exist. */
  stat(path: string): Promise<{ sizeBytes: number; mtimeMs: number } | null>;
}

/** Raised by a Disk when a path that must exist does not. */
export class NotFoundError extends Error {
  override name = "NotFoundError";
}

/** Raised by a Disk when a path that must not exist does. */
export class AlreadyExistsError extends Error {
  override name = "AlreadyExistsError";
}

/** A Deno KV key: a tuple ordered part by part, strings by UTF-8 bytes. */
export type KvKey = readonly (string | number | bigint | boolean | Uint8Array)[];

/** A stored entry with the versionstamp of the commit that wrote it. */
export interface KvEntry<T> {
  key: KvKey;
  value: T;
  versionstamp: string;
}

/** A key range: every key under `prefix`, bounded by `start` (inclusive) and `end` (exclusive). */
export type KvSelector =
  | { prefix: KvKey; start?: KvKey; end?: KvKey }
  | { start: KvKey; end: KvKey };

/** One atomic commit: all of it applies, or none. */
export interface KvAtomic {
  /** Fails the commit unless `key` still has `versionstamp` (`null`: absent). */
  check(key: KvKey, versionstamp: string | null): KvAtomic;
  set(key: KvKey, value: unknown): KvAtomic;
  delete(key: KvKey): KvAtomic;
  /** @returns `true` when committed, `false` when a check failed. */
  commit(): Promise<boolean>;
}

/**
 * The metadata database: the subset of `Deno.Kv` Hamster uses.
 *
 * Limits (Deno KV's, which every implementation enforces so `sim/` finds the
 * same bugs): 2 KiB per key, 64 KiB per value, 1000 mutations and 800 KiB
 * per atomic commit.
 */
export interface MetaKv {
  get<T>(key: KvKey): Promise<KvEntry<T> | null>;
  getMany<T>(keys: KvKey[]): Promise<(KvEntry<T> | null)[]>;
  /** Entries in key order (or reverse), at most `limit` of them. */
  list<T>(
    selector: KvSelector,
    options?: { limit?: number; reverse?: boolean; batchSize?: number },
  ): AsyncIterable<KvEntry<T>>;
  atomic(): KvAtomic;
  close(): void;
}

/** Deno KV's limits, in bytes and counts. */
export const KV_LIMITS = {
  keySizeBytes: 2048,
  valueSizeBytes: 65536,
  mutationsPerCommit: 1000,
  commitSizeBytes: 819200,
  /** Total size of the keys of one atomic commit. */
  totalKeySizeBytes: 81920,
  checksPerCommit: 100,
  /** Keys one getMany may read. */
  keysPerGetMany: 10,
  listBatch: 1000,
} as const;
