/**
 * A simulated `Disk` with the crash semantics of a POSIX file system that
 * `src/io/mod.ts` promises: file data is durable only after
 * `WriteHandle.sync()`, and a create, rename or remove only after
 * `syncDir()` of its parent directory.
 *
 * On `crash()`:
 * - each file keeps its synced bytes plus a random-length prefix of its
 *   unsynced appends (lost, or torn at any byte);
 * - of the directory changes not yet made durable by `syncDir()`, a random
 *   prefix (in issue order) survives, the rest are lost;
 * - operations in flight never complete; handles of the old process are dead
 *   (their calls never resolve, as the process that made them is gone).
 *
 * Directories made by `mkdirp()` are durable at once (a simplification:
 * Hamster creates its directories at startup, before anything is acked).
 *
 * Pure: no clock and no I/O of its own; time and delays come from the
 * injected scheduler, chance from the injected `SimRng`.
 *
 * @module
 */
import {
  AlreadyExistsError,
  type DirEntry,
  type Disk,
  NotFoundError,
  type ReadHandle,
  type WriteHandle,
} from "../src/io/mod.ts";
import type { SimRng } from "./rng.ts";

/** Runs `fn` after `delayMs` of virtual time. */
export type Scheduler = (delayMs: number, fn: () => void) => void;

/** An injected disk error, with the errno name a real disk reports. */
export class SimDiskError extends Error {
  override name = "SimDiskError";
  constructor(readonly code: "EIO" | "ENOSPC", op: string) {
    super(`${code}: injected ${code === "EIO" ? "I/O error" : "no space left on device"} on ${op}`);
  }
}

/** Virtual latencies of disk operations, in milliseconds. */
export interface DiskLatency {
  readonly writeMs: number;
  readonly syncMs: number;
  readonly metaMs: number;
}

/** Options of a SimDisk. */
export interface SimDiskOptions {
  readonly rng: SimRng;
  /** Delays operations in virtual time; without one, operations complete in a microtask. */
  readonly schedule?: Scheduler;
  /** Modification times. Default: always 0. */
  readonly nowMs?: () => number;
  readonly latency?: Partial<DiskLatency>;
}

interface Inode {
  data: Uint8Array;
  len: number;
  syncedLen: number;
  mtimeMs: number;
}

type MetaOp =
  | { kind: "link"; path: string; inode: Inode; durable: boolean }
  | { kind: "unlink"; path: string; durable: boolean }
  | { kind: "rename"; from: string; to: string; inode: Inode; durable: boolean };

/** What one `crash()` did, for traces and tests. */
export interface CrashReport {
  readonly lostDirOps: number;
  readonly keptDirOps: number;
  readonly tornFiles: number;
  readonly lostBytes: number;
}

/**
 * A simulated disk. One instance outlives process crashes: call `crash()`
 * when the simulated process dies and keep using the same instance for the
 * restarted process.
 */
export class SimDisk implements Disk {
  readonly #rng: SimRng;
  readonly #schedule: Scheduler;
  readonly #nowMs: () => number;
  readonly #latency: DiskLatency;
  #files = new Map<string, Inode>();
  #durable = new Map<string, Inode>();
  #dirs = new Set<string>([""]);
  #pending: MetaOp[] = [];
  #epoch = 0;
  /**
   * Called when a write has completed or a sync is about to take effect,
   * before the caller resumes; the simulation uses it to crash a process at
   * an arbitrary write or in the middle of an fsync.
   */
  afterOp: ((kind: "write" | "sync") => void) | null = null;
  /**
   * Called before a file is created, written or fsynced; an error it
   * returns fails that call (an injected EIO or ENOSPC). A failed write
   * appends nothing; a failed fsync makes nothing durable.
   */
  failOp: ((kind: "create" | "write" | "sync") => Error | null) | null = null;
  /** Counters for figures: bytes written, syncs, crashes. */
  readonly stats = { writtenBytes: 0, syncs: 0, crashes: 0 };

  constructor(options: SimDiskOptions) {
    this.#rng = options.rng;
    this.#schedule = options.schedule ?? ((_ms, fn) => queueMicrotask(fn));
    this.#nowMs = options.nowMs ?? (() => 0);
    this.#latency = { writeMs: 0.02, syncMs: 1, metaMs: 0.05, ...options.latency };
  }

  /**
   * Simulates power loss: unsynced data and un-syncDir'd entries are lost or
   * torn at random, and every operation in flight is abandoned.
   */
  crash(): CrashReport {
    this.#epoch++;
    this.stats.crashes++;
    const keep = this.#rng.int(this.#pending.length + 1);
    const ns = new Map(this.#durable);
    let kept = 0;
    this.#pending.forEach((op, i) => {
      if (i < keep || op.durable) {
        applyOp(ns, op);
        kept++;
      }
    });
    let torn = 0;
    let lost = 0;
    for (const inode of new Set(ns.values())) {
      if (inode.len > inode.syncedLen) {
        const len = inode.syncedLen + this.#rng.int(inode.len - inode.syncedLen + 1);
        lost += inode.len - len;
        if (len > inode.syncedLen) torn++;
        inode.len = len;
      }
      inode.syncedLen = inode.len;
    }
    const report = {
      lostDirOps: this.#pending.length - kept,
      keptDirOps: kept,
      tornFiles: torn,
      lostBytes: lost,
    };
    this.#pending = [];
    this.#files = ns;
    this.#durable = new Map(ns);
    return report;
  }

  /** A copy of the current bytes of `path`, or null (for fault injection and tests). */
  peek(path: string): Uint8Array | null {
    const inode = this.#files.get(norm(path));
    return inode ? inode.data.slice(0, inode.len) : null;
  }

  /**
   * Bit rot: XORs the byte at `offsetBytes` of `path` with `mask` (non-zero),
   * in its durable copy too. Call it while the process is down.
   */
  corrupt(path: string, offsetBytes: number, mask: number): void {
    const inode = this.#files.get(norm(path));
    if (!inode || offsetBytes >= inode.len) return;
    inode.data[offsetBytes] ^= mask & 0xff || 1;
  }

  /** Paths of every file, sorted (for tests and traces). */
  paths(): string[] {
    return [...this.#files.keys()].sort();
  }

  mkdirp(path: string): Promise<void> {
    const p = norm(path);
    return this.#op(this.#latency.metaMs, () => {
      const parts = p === "" ? [] : p.split("/");
      for (let i = 1; i <= parts.length; i++) this.#dirs.add(parts.slice(0, i).join("/"));
    });
  }

  create(path: string): Promise<WriteHandle> {
    const p = norm(path);
    return this.#op(this.#latency.metaMs, () => {
      if (this.#files.has(p) || this.#dirs.has(p)) {
        throw new AlreadyExistsError(`File exists: "${path}"`);
      }
      const failure = this.failOp?.("create");
      if (failure) throw failure;
      if (!this.#dirs.has(parent(p))) throw new NotFoundError(`No such directory: "${parent(p)}"`);
      const inode: Inode = {
        data: new Uint8Array(64),
        len: 0,
        syncedLen: 0,
        mtimeMs: this.#nowMs(),
      };
      this.#files.set(p, inode);
      this.#pending.push({ kind: "link", path: p, inode, durable: false });
      return this.#writeHandle(inode);
    });
  }

  open(path: string): Promise<ReadHandle> {
    const p = norm(path);
    return this.#op(this.#latency.metaMs, () => {
      const inode = this.#files.get(p);
      if (!inode) throw new NotFoundError(`No such file: "${path}"`);
      const epoch = this.#epoch;
      return {
        sizeBytes: inode.len,
        read: (buf: Uint8Array, offsetBytes: number) =>
          this.#op(this.#latency.writeMs, () => {
            if (epoch !== this.#epoch) return never<number>();
            const n = Math.max(0, Math.min(buf.length, inode.len - offsetBytes));
            buf.set(inode.data.subarray(offsetBytes, offsetBytes + n));
            return n;
          }),
        close: () => {},
      };
    });
  }

  rename(from: string, to: string): Promise<void> {
    const f = norm(from);
    const t = norm(to);
    return this.#op(this.#latency.metaMs, () => {
      const inode = this.#files.get(f);
      if (!inode) throw new NotFoundError(`No such file: "${from}"`);
      if (!this.#dirs.has(parent(t))) throw new NotFoundError(`No such directory: "${parent(t)}"`);
      if (f === t) return;
      this.#files.set(t, inode);
      this.#files.delete(f);
      this.#pending.push({ kind: "rename", from: f, to: t, inode, durable: false });
    });
  }

  remove(path: string): Promise<void> {
    const p = norm(path);
    return this.#op(this.#latency.metaMs, () => {
      if (this.#files.has(p)) {
        this.#files.delete(p);
        this.#pending.push({ kind: "unlink", path: p, durable: false });
      } else if (this.#dirs.has(p) && p !== "") {
        const busy = [...this.#files.keys(), ...this.#dirs].some((x) => parent(x) === p && x !== p);
        if (busy) throw new Error(`Directory not empty: "${path}"`);
        this.#dirs.delete(p);
      }
    });
  }

  syncDir(path: string): Promise<void> {
    const p = norm(path);
    return this.#op(this.#latency.syncMs, () => {
      if (!this.#dirs.has(p)) throw new NotFoundError(`No such directory: "${path}"`);
      for (const op of this.#pending) {
        const dirs = op.kind === "rename" ? [parent(op.from), parent(op.to)] : [parent(op.path)];
        if (dirs.includes(p)) op.durable = true;
      }
      // Fold the durable prefix into the durable namespace.
      let i = 0;
      while (i < this.#pending.length && this.#pending[i].durable) {
        applyOp(this.#durable, this.#pending[i++]);
      }
      this.#pending = this.#pending.slice(i);
      this.stats.syncs++;
    });
  }

  async *list(path: string): AsyncIterable<DirEntry> {
    const p = norm(path);
    const names = await this.#op(this.#latency.metaMs, () => {
      const out: DirEntry[] = [];
      for (const f of this.#files.keys()) {
        if (parent(f) === p) out.push({ name: base(f), isFile: true, isDirectory: false });
      }
      for (const d of this.#dirs) {
        if (d !== "" && d !== p && parent(d) === p) {
          out.push({ name: base(d), isFile: false, isDirectory: true });
        }
      }
      return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    });
    yield* names;
  }

  stat(path: string): Promise<{ sizeBytes: number; mtimeMs: number } | null> {
    const p = norm(path);
    return this.#op(this.#latency.metaMs, () => {
      const inode = this.#files.get(p);
      if (inode) return { sizeBytes: inode.len, mtimeMs: inode.mtimeMs };
      if (this.#dirs.has(p)) return { sizeBytes: 0, mtimeMs: 0 };
      return null;
    });
  }

  #writeHandle(inode: Inode): WriteHandle {
    const epoch = this.#epoch;
    let closed = false;
    return {
      write: (bytes: Uint8Array) => {
        if (closed) return Promise.reject(new Error("Write to a closed file"));
        const copy = bytes.slice();
        return this.#op(this.#latency.writeMs, () => {
          if (epoch !== this.#epoch) return never<void>();
          const failure = this.failOp?.("write");
          if (failure) throw failure;
          if (inode.len + copy.length > inode.data.length) {
            let size = inode.data.length * 2;
            while (size < inode.len + copy.length) size *= 2;
            const next = new Uint8Array(size);
            next.set(inode.data.subarray(0, inode.len));
            inode.data = next;
          }
          inode.data.set(copy, inode.len);
          inode.len += copy.length;
          inode.mtimeMs = this.#nowMs();
          this.stats.writtenBytes += copy.length;
          this.afterOp?.("write");
          if (epoch !== this.#epoch) return never<void>();
          return Promise.resolve();
        });
      },
      sync: () => {
        if (closed) return Promise.reject(new Error("Sync of a closed file"));
        const upTo = inode.len;
        return this.#op(this.#latency.syncMs, () => {
          if (epoch !== this.#epoch) return never<void>();
          const failure = this.failOp?.("sync");
          if (failure) throw failure;
          this.afterOp?.("sync"); // a crash here is a crash mid-fsync: nothing synced
          if (epoch !== this.#epoch) return never<void>();
          inode.syncedLen = Math.max(inode.syncedLen, Math.min(upTo, inode.len));
          this.stats.syncs++;
          return Promise.resolve();
        });
      },
      close: () => {
        closed = true;
      },
    };
  }

  /** Runs `fn` after `delayMs`; if the process crashed meanwhile, never settles. */
  #op<T>(delayMs: number, fn: () => T | Promise<T>): Promise<T> {
    const epoch = this.#epoch;
    return new Promise<T>((resolve, reject) => {
      this.#schedule(delayMs, () => {
        if (epoch !== this.#epoch) return;
        try {
          const v = fn();
          if (v instanceof Promise) v.then(resolve, reject);
          else resolve(v);
        } catch (err) {
          reject(err);
        }
      });
    });
  }
}

function applyOp(ns: Map<string, Inode>, op: MetaOp): void {
  if (op.kind === "link") ns.set(op.path, op.inode);
  else if (op.kind === "unlink") ns.delete(op.path);
  else {
    ns.set(op.to, op.inode);
    ns.delete(op.from);
  }
}

function never<T>(): Promise<T> {
  return new Promise<T>(() => {});
}

/**
 * Normalizes a relative `/`-separated path.
 * @throws {RangeError} when the path is absolute or climbs out of the root.
 */
function norm(path: string): string {
  if (path.startsWith("/") || path.split("/").some((p) => p === "..")) {
    throw new RangeError(`Disk path must stay under the root: "${path}"`);
  }
  return path.split("/").filter((p) => p !== "" && p !== ".").join("/");
}

function parent(p: string): string {
  const i = p.lastIndexOf("/");
  return i < 0 ? "" : p.slice(0, i);
}

function base(p: string): string {
  return p.slice(p.lastIndexOf("/") + 1);
}
