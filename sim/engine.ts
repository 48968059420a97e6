/**
 * Engine schedules: one seed drives the single-node storage engine (the S3
 * app over `LocalDataPath`, `LocalLog` and the startup sweeps, wired as
 * `main.ts` wires them, with inline hashing) on a `SimDisk` and a `SimKv`.
 * Concurrent clients send seeded S3 requests (PutObject, overwrites,
 * DeleteObject, DeleteObjects, CopyObject, multipart uploads, GetObject);
 * at a random disk write, fsync, metadata commit or instant the process
 * crashes, every request in flight is abandoned, and a new process recovers
 * from the same disk and KV. Each recovery is checked against a reference
 * model of what clients were told (see {@link checkRecovery} and
 * docs/SIMULATION.md); then the workload resumes, and crashes again.
 * With `commitFaults`, metadata commands that cannot apply or commit join the
 * group commits too (see {@link FaultyKv}).
 *
 * Pure: everything comes from the World built from the seed.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { serialize } from "node:v8";
import { formatAmzDate, sha256Hex, signRequest } from "../src/auth/sign.ts";
import { LocalDataPath } from "../src/data/local.ts";
import { type CompactionReport, compactSegments } from "../src/data/compactor.ts";
import { Reclaimer } from "../src/data/reclaim.ts";
import { SegmentStore } from "../src/data/segments.ts";
import { SHARD_HEADER_SIZE_BYTES } from "../src/data/shard_file.ts";
import type {
  Clock,
  DirEntry,
  Disk,
  KvAtomic,
  KvEntry,
  KvKey,
  KvSelector,
  MetaKv,
  ReadHandle,
  WriteHandle,
} from "../src/io/mod.ts";
import {
  type Command,
  type DataRef,
  LocalLog,
  type ManifestChunk,
  MetaError,
  MIN_PART_SIZE_BYTES,
  type ObjectRecord,
  type PartRecord,
  sweepMetadata,
  type UploadRecord,
} from "../src/meta/mod.ts";
import { createS3App } from "../src/s3/app.ts";
import { SimDisk } from "./disk.ts";
import { SimKv } from "./kv.ts";
import type { SimRng } from "./rng.ts";
import { SIM_EPOCH_MS, SimFailure, World } from "./world.ts";

/** Knobs of one engine run; unset ones are drawn from the seed. */
export interface EngineOptions {
  /** Crashes (each followed by a recovery and a check). Default: drawn, 2 to 4. */
  readonly crashes?: number;
  /** Requests per phase between crashes, at most. Default: drawn, 8 to 40. */
  readonly opsPerPhase?: number;
  /** Concurrent clients. Default: drawn, 1 to 6. */
  readonly clients?: number;
  /** Allow multi-MiB multipart uploads (parts of 5 MiB). Default: drawn (20% of seeds). */
  readonly bigParts?: boolean;
  /** Send GetObject during the workload and check what it returns. Default true. */
  readonly readsDuringWrites?: boolean;
  /**
   * Let a GetObject or the source read of a CopyObject run while a write or
   * delete of the same key is in flight. Default false: such reads can fail
   * today (see `ENGINE_BUG_SEEDS` in corpus.ts), so the CI schedules keep
   * readers and writers of one key apart and only writers race each other.
   */
  readonly readRaces?: boolean;
  /**
   * POSIX directory semantics, stricter than SimDisk's: a directory made by
   * `mkdirp()` is durable only once its parent directory is fsynced; at a
   * crash each directory still not durable is lost with everything in it, with
   * probability 1/2. Default false: the engine does not fsync the parents of
   * the directories it makes (see `ENGINE_BUG_SEEDS` in corpus.ts).
   */
  readonly strictDirs?: boolean;
  /**
   * Metadata commands that fail inside a group commit (ADR 0009): during the
   * workload some KV commits fail (before or after they are durable) and some
   * KV reads fail; commands too large for Deno KV are proposed directly to
   * the log (failing inside `apply()`) and sent as oversized requests. A 503
   * then means "not applied" and is checked as such; a 500 means "may have
   * applied". Default false.
   */
  readonly commitFaults?: boolean;
  /** Record an event trace. Default false. */
  readonly trace?: boolean;
  /**
   * For checking the checkers: wraps the Disk and the MetaKv the engine
   * sees (the checks read the true SimDisk and SimKv), so a test can plant a
   * bug such as an fsync that does nothing and expect a failure.
   */
  readonly mutate?: {
    readonly disk?: (disk: Disk) => Disk;
    readonly kv?: (kv: MetaKv) => MetaKv;
  };
}

/** What one engine run did. */
export interface EngineReport {
  readonly seed: number;
  readonly virtualMs: number;
  readonly events: number;
  /** Requests sent, and those answered before a crash. */
  readonly requests: number;
  readonly acked: number;
  readonly crashes: number;
  /** Crashes by where they hit: disk write, fsync, KV commit (before/after it is durable), timer, idle, boot. */
  readonly crashPoints: Readonly<Record<string, number>>;
  /** Requests in flight when the process crashed. */
  readonly inFlightAtCrash: number;
  /** Object writes cut by a crash, and those of them found applied after recovery. */
  readonly writesCut: number;
  readonly writesCutApplied: number;
  /** Objects compared after recoveries, and bytes read doing so. */
  readonly objectsChecked: number;
  readonly bytesChecked: number;
  /** Files the sweeps removed, torn files and lost directory changes the crashes made. */
  readonly sweptFiles: number;
  /** Segments compaction emptied, and the live objects it moved out of them. */
  readonly compactedSegments: number;
  readonly relocatedObjects: number;
  readonly tornFiles: number;
  readonly lostDirOps: number;
  /** With `commitFaults`: KV faults injected, answers 503 (not applied) and 500 (unknown), and oversized commands refused. */
  readonly injectedFaults: number;
  readonly notAppliedAnswers: number;
  readonly unknownAnswers: number;
  readonly refusedOversized: number;
  readonly bytesWritten: number;
  readonly trace: string[] | null;
}

const BUCKET = "bkt";
const CREDS = { accessKeyId: "SIMKEY", secretAccessKey: "sim-secret" };
const REGION = "us-east-1";

/** An object's content as a client can observe it: the bytes and the ETag (unquoted). */
interface Version {
  readonly bytes: Uint8Array;
  readonly etag: string;
}

type Effect =
  | { kind: "put"; version: Version }
  | { kind: "delete" }
  | { kind: "copy"; src: string; etag?: string };

/**
 * One write to a key: its invocation and response on the run's logical
 * clock (`resp` is Infinity while unanswered), whether it succeeded, and its effect.
 */
interface KeyOp {
  readonly invoke: number;
  resp: number;
  /** `unknown`: answered 500 under `commitFaults`, so it may or may not have taken effect. */
  status: "pending" | "ok" | "failed" | "unknown";
  readonly effect: Effect;
  readonly label: string;
}

interface PartAttempt {
  readonly version: Version;
  status: "pending" | "ok" | "failed";
}

interface Upload {
  readonly key: string;
  id: string | null;
  readonly planBytes: number[];
  readonly parts: Map<number, PartAttempt[]>;
  /** Known to exist (created with an answer, or seen in a listing). */
  open: boolean;
  busy: boolean;
  complete?: KeyOp;
  abort?: "pending" | "ok";
}

interface Proc {
  readonly gen: { dead: boolean };
  readonly kv: MetaKv;
  /** The process's log, for proposing commands no request can carry. */
  log: LocalLog | null;
  readonly disk: Disk;
  app: ReturnType<typeof createS3App> | null;
  /** One segment compaction pass on this process (what main.ts runs on a timer). */
  compact: (() => Promise<CompactionReport>) | null;
}

interface Reply {
  status: number;
  headers: Headers;
  body: Uint8Array;
}

function never<T>(): Promise<T> {
  return new Promise<T>(() => {});
}

function md5Hex(bytes: Uint8Array): string {
  return createHash("md5").update(bytes).digest("hex");
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length &&
    Buffer.from(a.buffer, a.byteOffset, a.length).equals(
      Buffer.from(b.buffer, b.byteOffset, b.length),
    );
}

/** Fast seeded bytes (xorshift32 words): bodies of different writes never share content. */
function makeBody(seed: number, sizeBytes: number): Uint8Array {
  const out = new Uint8Array(sizeBytes);
  const words = new Uint32Array(out.buffer, 0, sizeBytes >>> 2);
  let x = seed | 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
  for (let i = words.length * 4; i < sizeBytes; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function xmlTags(xml: string, name: string): string[] {
  return [...xml.matchAll(new RegExp(`<${name}>([^<]*)</${name}>`, "g"))].map((m) =>
    m[1].replaceAll("&quot;", '"').replaceAll("&amp;", "&")
  );
}

function xmlBlocks(xml: string, name: string): string[] {
  return [...xml.matchAll(new RegExp(`<${name}>([\\s\\S]*?)</${name}>`, "g"))].map((m) => m[1]);
}

function unquote(etag: string | null): string {
  return (etag ?? "").replaceAll('"', "");
}

function describe(v: Version | null): string {
  return v === null ? "absent" : `${v.bytes.length} B etag ${v.etag}`;
}

/**
 * A Disk that belongs to one process: once the process is dead, its calls
 * never settle, so code still running from before a crash cannot touch the
 * disk of the restarted process.
 */
class FencedDisk implements Disk {
  constructor(readonly inner: Disk, readonly gen: { dead: boolean }) {}
  #fence<T>(p: () => Promise<T>): Promise<T> {
    if (this.gen.dead) return never();
    return p().then((v) => (this.gen.dead ? never<T>() : v));
  }
  mkdirp(path: string): Promise<void> {
    return this.#fence(() => this.inner.mkdirp(path));
  }
  create(path: string): Promise<WriteHandle> {
    return this.#fence(() => this.inner.create(path));
  }
  open(path: string): Promise<ReadHandle> {
    return this.#fence(() => this.inner.open(path));
  }
  rename(from: string, to: string): Promise<void> {
    return this.#fence(() => this.inner.rename(from, to));
  }
  remove(path: string): Promise<void> {
    return this.#fence(() => this.inner.remove(path));
  }
  syncDir(path: string): Promise<void> {
    return this.#fence(() => this.inner.syncDir(path));
  }
  async *list(path: string): AsyncIterable<DirEntry> {
    if (this.gen.dead) await never();
    const all: DirEntry[] = [];
    for await (const e of this.inner.list(path)) all.push(e);
    if (this.gen.dead) await never();
    yield* all;
  }
  stat(path: string): Promise<{ sizeBytes: number; mtimeMs: number } | null> {
    return this.#fence(() => this.inner.stat(path));
  }
}

/**
 * A MetaKv that belongs to one process (the SimKv handle already ignores
 * calls after a crash) and reports each atomic commit, so a run can crash
 * just before a commit or just after it became durable.
 */
class HookedKv implements MetaKv {
  constructor(
    readonly inner: MetaKv,
    readonly gen: { dead: boolean },
    readonly onCommit: (phase: "before" | "after") => void,
  ) {}
  get<T>(key: KvKey): Promise<KvEntry<T> | null> {
    return this.inner.get<T>(key);
  }
  getMany<T>(keys: KvKey[]): Promise<(KvEntry<T> | null)[]> {
    return this.inner.getMany<T>(keys);
  }
  list<T>(
    selector: KvSelector,
    options?: { limit?: number; reverse?: boolean; batchSize?: number },
  ): AsyncIterable<KvEntry<T>> {
    return this.inner.list<T>(selector, options);
  }
  atomic(): KvAtomic {
    const a = this.inner.atomic();
    const hooked: KvAtomic = {
      check: (key, vs) => (a.check(key, vs), hooked),
      set: (key, value) => (a.set(key, value), hooked),
      delete: (key) => (a.delete(key), hooked),
      commit: async () => {
        if (this.gen.dead) return never();
        const pending = a.commit();
        this.onCommit("before");
        const ok = await pending;
        this.onCommit("after");
        if (this.gen.dead) return never();
        return ok;
      },
    };
    return hooked;
  }
  close(): void {
    this.inner.close();
  }
}

/**
 * Metadata faults (`commitFaults`): while `active` (the workload phases, not
 * boot or the checks), a KV commit fails with probability 8% before it is
 * written and 5% after it is durable, and a `get` or `getMany` fails with 2%,
 * or 50% for the first read after a failed commit (a store that fails a
 * commit often fails the read that asks what became of it: the group's
 * outcome is then unknown). A failed commit inside a group commit fails the
 * rest of that group's flush.
 */
class FaultyKv implements MetaKv {
  active = false;
  injected = 0;
  /** A commit just failed: the next read fails with probability 1/2. */
  #shaken = false;
  constructor(readonly inner: MetaKv, readonly rng: SimRng, readonly log: (l: string) => void) {}
  #fault(what: string, p: number): boolean {
    if (!this.active || !this.rng.chance(p)) return false;
    this.injected++;
    this.log(`inject ${what} failure`);
    return true;
  }
  get<T>(key: KvKey): Promise<KvEntry<T> | null> {
    const p = this.#shaken ? 0.5 : 0.02;
    this.#shaken = false;
    if (this.#fault("KV get", p)) return Promise.reject(new Error("Injected KV read failure"));
    return this.inner.get<T>(key);
  }
  getMany<T>(keys: KvKey[]): Promise<(KvEntry<T> | null)[]> {
    if (this.#fault("KV getMany", 0.02)) {
      return Promise.reject(new Error("Injected KV read failure"));
    }
    return this.inner.getMany<T>(keys);
  }
  list<T>(
    selector: KvSelector,
    options?: { limit?: number; reverse?: boolean; batchSize?: number },
  ): AsyncIterable<KvEntry<T>> {
    return this.inner.list<T>(selector, options);
  }
  atomic(): KvAtomic {
    const a = this.inner.atomic();
    const faulty: KvAtomic = {
      check: (key, vs) => (a.check(key, vs), faulty),
      set: (key, value) => (a.set(key, value), faulty),
      delete: (key) => (a.delete(key), faulty),
      commit: async () => {
        if (this.#fault("KV commit (not written)", 0.08)) {
          this.#shaken = true;
          throw new Error("Injected KV commit failure (not written)");
        }
        const ok = await a.commit();
        if (this.#fault("KV commit (durable)", 0.05)) {
          this.#shaken = true;
          throw new Error("Injected KV commit failure (written)");
        }
        return ok;
      },
    };
    return faulty;
  }
  close(): void {
    this.inner.close();
  }
}

/**
 * Tracks directories made by `mkdirp()` whose parent has not been fsynced
 * since, and after a crash loses each of them (and its subtree) with
 * probability 1/2, as a POSIX file system may.
 */
class StrictDirs {
  readonly #volatile = new Set<string>();
  constructor(readonly disk: SimDisk, readonly rng: SimRng, readonly log: (l: string) => void) {}

  wrap(d: Disk): Disk {
    return {
      mkdirp: async (path) => {
        const parts = path.split("/").filter((p) => p !== "");
        const fresh: string[] = [];
        for (let i = 1; i <= parts.length; i++) {
          const dir = parts.slice(0, i).join("/");
          if (await d.stat(dir) === null) fresh.push(dir);
        }
        await d.mkdirp(path);
        for (const dir of fresh) this.#volatile.add(dir);
      },
      create: (p) => d.create(p),
      open: (p) => d.open(p),
      rename: (a, b) => d.rename(a, b),
      remove: (p) => d.remove(p),
      syncDir: async (path) => {
        await d.syncDir(path);
        const p = path.split("/").filter((x) => x !== "").join("/");
        for (const dir of [...this.#volatile]) {
          if (parentDir(dir) === p) this.#volatile.delete(dir);
        }
      },
      list: (p) => d.list(p),
      stat: (p) => d.stat(p),
    };
  }

  /** Run after `SimDisk.crash()`: loses volatile directories at random. */
  async afterCrash(): Promise<void> {
    const dirs = [...this.#volatile].sort((a, b) => a.split("/").length - b.split("/").length);
    this.#volatile.clear();
    const lost: string[] = [];
    for (const dir of dirs) {
      if (lost.some((l) => dir.startsWith(`${l}/`))) continue;
      if (!this.rng.chance(0.5)) continue;
      lost.push(dir);
      await this.#removeTree(dir);
      this.log(`lost directory ${dir} (its parent was never fsynced)`);
    }
  }

  async #removeTree(dir: string): Promise<void> {
    for await (const e of this.disk.list(dir)) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) await this.#removeTree(path);
      else await this.disk.remove(path);
    }
    await this.disk.syncDir(dir);
    await this.disk.remove(dir);
  }
}

function parentDir(p: string): string {
  const i = p.lastIndexOf("/");
  return i < 0 ? "" : p.slice(0, i);
}

type CrashTrigger =
  | { kind: "disk"; afterOps: number }
  | { kind: "kv"; afterCommits: number; phase: "before" | "after" }
  | { kind: "time"; atMs: number }
  | { kind: "idle" };

/**
 * Runs one seeded engine schedule.
 * @throws {SimFailure} on the first broken invariant, carrying the seed.
 */
export async function runEngine(seed: number, options: EngineOptions = {}): Promise<EngineReport> {
  const run = new EngineRun(seed, options);
  return await run.run();
}

class EngineRun {
  readonly world: World;
  readonly rng: SimRng;
  readonly disk: SimDisk;
  readonly kvStore: SimKv;
  readonly crashes: number;
  readonly opsPerPhase: number;
  readonly clients: number;
  readonly bigParts: boolean;
  readonly readsDuringWrites: boolean;
  readonly readRaces: boolean;
  readonly strictDirs: StrictDirs | null;
  readonly commitFaults: boolean;
  /** The current process's fault injector (`commitFaults`). */
  faults: FaultyKv | null = null;
  readonly keyNames: string[];
  readonly weights: { op: string; w: number }[];
  readonly segmentRollBytes: number;

  proc: Proc | null = null;
  crashed = false;
  /** Counts crashes; a client loop started before the latest crash stops. */
  epoch = 0;
  trigger: CrashTrigger = { kind: "idle" };
  diskOps = 0;
  kvCommits = 0;
  /** Logical clock ordering invocations and responses (real-time order of the history). */
  seq = 0;
  readonly history = new Map<string, KeyOp[]>();
  /** Every version a key may ever have held, and the keys copied into it. */
  readonly ever = new Map<string, Version[]>();
  readonly copiedFrom = new Map<string, Set<string>>();
  readonly uploads: Upload[] = [];
  /** Creates of uploads for a key that got no answer: their ids may show up in listings. */
  readonly unansweredCreates = new Map<string, number>();
  readonly copyForm = new Map<Version, Version>();
  readonly internalErrors: string[] = [];
  opsLeft = 0;
  /** Requests, virtual time, disk operations and KV commits of workload phases, for aiming crashes. */
  workloadRequests = 0;
  workloadMs = 0;
  workloadDiskOps = 0;
  workloadKvCommits = 0;
  /** Reads and writes in flight per key, for keeping them apart unless `readRaces`. */
  readers = new Map<string, number>();
  writers = new Map<string, number>();

  stats = {
    requests: 0,
    acked: 0,
    inFlight: 0,
    inFlightAtCrash: 0,
    writesCut: 0,
    writesCutApplied: 0,
    objectsChecked: 0,
    bytesChecked: 0,
    sweptFiles: 0,
    compactedSegments: 0,
    relocatedObjects: 0,
    tornFiles: 0,
    lostDirOps: 0,
    injectedFaults: 0,
    notAppliedAnswers: 0,
    unknownAnswers: 0,
    refusedOversized: 0,
    crashPoints: {} as Record<string, number>,
  };

  constructor(readonly seed: number, readonly options: EngineOptions) {
    this.world = new World(seed, { trace: options.trace });
    const rng = this.rng = this.world.rng;
    const world = this.world;
    this.disk = new SimDisk({
      rng: rng.fork(),
      schedule: (ms, fn) => world.schedule(ms, fn),
      nowMs: () => world.nowMs,
      latency: { syncMs: 0.1 + rng.float() * 1.5, writeMs: rng.pick([0.005, 0.02, 0.1]) },
    });
    this.kvStore = new SimKv({
      schedule: (ms, fn) => world.schedule(ms, fn),
      latencyMs: rng.pick([0.02, 0.05, 0.5]),
    });
    this.crashes = options.crashes ?? rng.range(2, 4);
    this.opsPerPhase = options.opsPerPhase ?? rng.range(8, 40);
    this.clients = options.clients ?? rng.range(1, 6);
    this.bigParts = options.bigParts ?? rng.chance(0.2);
    this.readsDuringWrites = options.readsDuringWrites ?? true;
    this.readRaces = options.readRaces ?? false;
    this.strictDirs = options.strictDirs
      ? new StrictDirs(this.disk, rng.fork(), (l) => this.log(l))
      : null;
    this.commitFaults = options.commitFaults ?? false;
    const keyCount = rng.range(3, 12);
    this.keyNames = Array.from(
      { length: keyCount },
      (_, i) => (i % 3 === 0 ? `k${i}` : `d${i % 2}/k${i}`),
    );
    const w = (lo: number, hi: number) => rng.range(lo, hi);
    this.weights = [
      { op: "put", w: w(20, 40) },
      { op: "delete", w: w(3, 12) },
      { op: "deleteMany", w: w(0, 6) },
      { op: "copy", w: w(0, 12) },
      { op: "multipart", w: w(4, 14) },
      { op: "get", w: this.readsDuringWrites ? w(0, 15) : 0 },
      { op: "compact", w: w(0, 6) },
    ];
    // Drawn only with commitFaults, so that the schedules of other runs stay as they were.
    if (this.commitFaults) this.weights.push({ op: "oversized", w: w(2, 8) });
    // Small segments, so that rolls, sealed segments and compaction happen within a few writes.
    this.segmentRollBytes = rng.pick([4 << 10, 64 << 10, 1 << 20]);
    this.disk.afterOp = (kind) => {
      this.diskOps++;
      if (this.trigger.kind === "disk" && this.diskOps >= this.trigger.afterOps) {
        this.crash(kind === "write" ? "disk write" : "fsync");
      }
    };
  }

  log(line: string | (() => string)): void {
    this.world.log(line);
  }

  fail(message: string): Error {
    return this.world.fail(message);
  }

  // ---------------------------------------------------------------- driving

  /** Runs the world until `done()`; fails when nothing is left to run and it is still not done. */
  async drive(done: () => boolean, what: string): Promise<void> {
    let idle = 0;
    while (!done()) {
      const before = this.world.events;
      await this.world.run(this.world.nowMs + 20, done);
      if (this.world.failure) throw this.world.failure;
      if (this.world.events === before) {
        for (let i = 0; i < 200; i++) await null;
        if (++idle > 50) throw this.fail(`Stalled: ${what} never finished`);
      } else idle = 0;
    }
  }

  async settle<T>(p: Promise<T>, what: string): Promise<T> {
    let state: { v: T } | { e: unknown } | null = null;
    p.then((v) => (state = { v }), (e) => (state = { e }));
    await this.drive(() => state !== null, what);
    const s = state as unknown as { v: T } | { e: unknown };
    if ("e" in s) throw s.e;
    return s.v;
  }

  // ---------------------------------------------------------------- process

  async boot(): Promise<Proc> {
    const gen = { dead: false };
    const mutate = this.options.mutate;
    const rawKv = this.kvStore.open();
    const planted = mutate?.kv ? mutate.kv(rawKv) : rawKv;
    if (this.faults) this.stats.injectedFaults += this.faults.injected;
    this.faults = this.commitFaults
      ? new FaultyKv(planted, this.rng.fork(), (l) => this.log(l))
      : null;
    const kv = new HookedKv(this.faults ?? planted, gen, (phase) => {
      if (gen.dead) return;
      if (phase === "after") this.kvCommits++;
      const t = this.trigger;
      if (t.kind === "kv" && t.phase === phase && this.kvCommits >= t.afterCommits) {
        this.crash(`KV commit (${phase === "before" ? "in flight" : "durable, unanswered"})`);
      }
    });
    const base = this.strictDirs ? this.strictDirs.wrap(this.disk) : this.disk;
    const disk = new FencedDisk(mutate?.disk ? mutate.disk(base) : base, gen);
    const proc: Proc = { gen, kv, disk, log: null, app: null, compact: null };
    this.proc = proc;
    const world = this.world;
    const clock: Clock = {
      nowMs: () => SIM_EPOCH_MS + world.nowMs,
      sleep: (ms) =>
        gen.dead ? never() : new Promise((resolve) =>
          world.schedule(ms, () => {
            if (!gen.dead) resolve();
          })
        ),
    };
    // The startup order of main.ts.
    const data = new LocalDataPath(disk, { segmentRollBytes: this.segmentRollBytes });
    await data.init();
    const live = await sweepMetadata(kv);
    const removed = await data.sweep(live);
    this.stats.sweptFiles += removed;
    const log = await LocalLog.open(kv);
    proc.log = log;
    const logError = (requestId: string, err: unknown) => {
      if (!gen.dead) {
        this.internalErrors.push(`request ${requestId}: ${(err as Error)?.stack ?? err}`);
      }
    };
    const reclaimer = new Reclaimer((ref) => {
      data.remove(ref).catch((err) => logError("reclaim", err));
    });
    proc.app = createS3App({
      kv,
      log,
      data,
      clock,
      rng: this.rng.fork(),
      secretFor: (id) => (id === CREDS.accessKeyId ? CREDS.secretAccessKey : undefined),
      region: REGION,
      reclaimer,
      logError,
    });
    // The most eager setting, so that compaction runs whenever any record is dead.
    proc.compact = () => compactSegments({ segments: data.segments, kv, log, reclaimer }, 1);
    this.log(() => `boot: swept ${removed} file(s)`);
    return proc;
  }

  crash(where: string): void {
    if (this.crashed || !this.proc) return;
    this.crashed = true;
    this.epoch++;
    this.proc.gen.dead = true;
    const r = this.disk.crash();
    this.kvStore.crash();
    this.trigger = { kind: "idle" };
    this.stats.crashPoints[where] = (this.stats.crashPoints[where] ?? 0) + 1;
    this.stats.tornFiles += r.tornFiles;
    this.stats.lostDirOps += r.lostDirOps;
    this.stats.inFlightAtCrash += this.stats.inFlight;
    this.log(() =>
      `CRASH at ${where}: ${this.stats.inFlight} request(s) in flight, ${r.tornFiles} torn file(s), ` +
      `${r.lostDirOps} lost / ${r.keptDirOps} kept dir op(s), ${r.lostBytes} B lost`
    );
  }

  /** Boots a new process after a crash; with some chance crashes it once more during the boot. */
  async recover(): Promise<void> {
    if (this.strictDirs) await this.settle(this.strictDirs.afterCrash(), "directory loss");
    if (this.rng.chance(0.2)) {
      this.crashed = false;
      const t = this.rng.range(1, 4) * this.rng.float() * 3;
      let bootDone = false;
      this.world.schedule(t, () => {
        if (!bootDone) this.crash("boot");
      });
      const p = this.boot();
      p.then(() => (bootDone = true), () => {});
      await this.drive(() => bootDone || this.crashed, "boot");
      if (this.crashed) {
        this.log("boot crashed; booting again");
        if (this.strictDirs) await this.settle(this.strictDirs.afterCrash(), "directory loss");
      }
    }
    this.crashed = false;
    await this.settle(this.boot(), "boot");
  }

  // ---------------------------------------------------------------- requests

  async send(
    method: string,
    path: string,
    opts: { query?: string; headers?: Record<string, string>; body?: Uint8Array } = {},
  ): Promise<Reply> {
    const proc = this.proc!;
    const body = opts.body;
    const hash = body === undefined
      ? sha256Hex("")
      : body.length <= 4096
      ? sha256Hex(body)
      : "UNSIGNED-PAYLOAD";
    const headers: Record<string, string> = { host: "localhost", ...opts.headers };
    if (body !== undefined) headers["content-length"] = String(body.length);
    const signed = signRequest({
      method,
      rawPath: path,
      rawQuery: opts.query,
      headers,
      credentials: CREDS,
      region: REGION,
      amzDate: formatAmzDate(SIM_EPOCH_MS + this.world.nowMs),
    }, hash);
    const url = `http://localhost${path}${opts.query ? `?${opts.query}` : ""}`;
    this.stats.requests++;
    this.stats.inFlight++;
    try {
      const res = await proc.app!.request(url, {
        method,
        headers: signed.headers,
        body: body && body.length > 0 ? body as BodyInit : undefined,
      });
      let bytes: Uint8Array;
      try {
        bytes = new Uint8Array(await res.arrayBuffer());
      } catch (err) {
        if (proc.gen.dead) return never();
        throw this.fail(
          `${method} ${path}${opts.query ? `?${opts.query}` : ""} answered ${res.status} ` +
            `but its body failed: ${(err as Error)?.message ?? err}`,
        );
      }
      if (proc.gen.dead) return never();
      this.stats.acked++;
      if (res.status >= 500 && !(this.commitFaults && (res.status === 500 || res.status === 503))) {
        throw this.fail(
          `${method} ${path}${opts.query ? `?${opts.query}` : ""} answered ${res.status}: ` +
            `${new TextDecoder().decode(bytes).slice(0, 300)}` +
            (this.internalErrors.length ? `\n${this.internalErrors.join("\n")}` : ""),
        );
      }
      return { status: res.status, headers: res.headers, body: bytes };
    } finally {
      if (!proc.gen.dead) this.stats.inFlight--;
    }
  }

  // ---------------------------------------------------------------- model

  hist(key: string): KeyOp[] {
    let h = this.history.get(key);
    if (!h) {
      h = [{ invoke: -1, resp: -1, status: "ok", effect: { kind: "delete" }, label: "initial" }];
      this.history.set(key, h);
    }
    return h;
  }

  begin(key: string, effect: Effect, label: string): KeyOp {
    const op: KeyOp = { invoke: this.seq++, resp: Infinity, status: "pending", effect, label };
    this.hist(key).push(op);
    if (effect.kind === "put") {
      const e = this.ever.get(key) ?? [];
      e.push(effect.version);
      this.ever.set(key, e);
    } else if (effect.kind === "copy") {
      const s = this.copiedFrom.get(key) ?? new Set();
      s.add(effect.src);
      this.copiedFrom.set(key, s);
    }
    this.log(() => `invoke ${label}`);
    return op;
  }

  end(op: KeyOp, ok: boolean): void {
    op.resp = this.seq++;
    op.status = ok ? "ok" : "failed";
    this.log(() => `${ok ? "ok" : "failed"} ${op.label}`);
  }

  /**
   * Under `commitFaults`, a 5xx answer to a write: 503 means nothing of it
   * was applied (the op is failed, and the checks hold it to that), 500 that
   * it may have been (unknown, like a write cut by a crash, but answered).
   * @returns whether `r` was such an answer
   */
  faulted(r: Reply, ops: KeyOp[]): boolean {
    const kind = this.faultKind(r);
    if (kind === null) return false;
    for (const op of ops) {
      if (kind === "failed") {
        this.end(op, false);
      } else {
        op.resp = this.seq++;
        op.status = "unknown";
        this.log(() => `unknown ${op.label}`);
      }
    }
    return true;
  }

  /** `failed` for a 503, `unknown` for a 500, under `commitFaults`; else null. */
  faultKind(r: Reply): "failed" | "unknown" | null {
    if (!this.commitFaults || (r.status !== 500 && r.status !== 503)) return null;
    if (r.status === 503) this.stats.notAppliedAnswers++;
    else this.stats.unknownAnswers++;
    return r.status === 503 ? "failed" : "unknown";
  }

  /** A version as CopyObject reproduces it: same bytes, ETag the MD5 of the bytes. */
  copied(v: Version): Version {
    if (!v.etag.includes("-")) return v;
    let c = this.copyForm.get(v);
    if (!c) {
      c = { bytes: v.bytes, etag: md5Hex(v.bytes) };
      this.copyForm.set(v, c);
    }
    return c;
  }

  /** Every version `key` may ever have held, including what copies may have brought. */
  everVersions(key: string): Version[] {
    const out = [...(this.ever.get(key) ?? [])];
    // Every key copies can have carried content from, the key itself included (a -> b -> a).
    const seen = new Set<string>();
    const queue = [...(this.copiedFrom.get(key) ?? [])];
    while (queue.length > 0) {
      const k = queue.shift()!;
      if (seen.has(k)) continue;
      seen.add(k);
      for (const v of this.ever.get(k) ?? []) out.push(this.copied(v));
      queue.push(...(this.copiedFrom.get(k) ?? []));
    }
    return out;
  }

  outcomes(op: KeyOp): (Version | null)[] {
    const e = op.effect;
    if (e.kind === "delete") return [null];
    if (e.kind === "put") return [e.version];
    const vs = this.everVersions(e.src).map((v) => this.copied(v));
    return e.etag === undefined ? vs : vs.filter((v) => v.etag === e.etag);
  }

  /**
   * The states `key` may be in now: the outcome of any write that may have
   * taken effect (answered with success, or unanswered) and that no
   * successful write must follow in real time (one invoked after it answered).
   */
  allowed(key: string): { states: (Version | null)[]; why: string[] } {
    const h = this.hist(key);
    const states: (Version | null)[] = [];
    const why: string[] = [];
    for (const x of h) {
      if (x.status === "failed") continue;
      const superseded = h.some((y) => y !== x && y.status === "ok" && y.invoke > x.resp);
      if (superseded) continue;
      for (const s of this.outcomes(x)) states.push(s);
      why.push(`${x.label} [${x.status}]`);
    }
    return { states, why };
  }

  matches(states: (Version | null)[], got: Version | null): boolean {
    if (got === null) return states.includes(null);
    return states.some((s) => s !== null && s.etag === got.etag && sameBytes(s.bytes, got.bytes));
  }

  // ---------------------------------------------------------------- workload

  newBody(sizeBytes: number): Version {
    const bytes = makeBody(this.rng.nextU32(), sizeBytes);
    return { bytes, etag: md5Hex(bytes) };
  }

  /** Mostly small objects; about one in twenty crosses the 1 MiB write buffer, one in a hundred reaches 3 MiB. */
  objectSize(): number {
    const r = this.rng.float();
    if (r < 0.08) return 0;
    if (r < 0.65) return this.rng.range(1, 4096);
    if (r < 0.95) return this.rng.range(4097, 128 << 10);
    if (r < 0.99) {
      return this.rng.pick([
        1 << 20,
        (1 << 20) - 1,
        (1 << 20) + 1,
        this.rng.range(128 << 10, 1200 << 10),
      ]);
    }
    return this.rng.range(1200 << 10, 3 << 20);
  }

  pickOp(): string {
    const total = this.weights.reduce((s, x) => s + x.w, 0);
    let r = this.rng.int(total);
    for (const x of this.weights) {
      if (r < x.w) return x.op;
      r -= x.w;
    }
    return "put";
  }

  path(key: string): string {
    return `/${BUCKET}/${key}`;
  }

  async client(id: number): Promise<void> {
    const epoch = this.epoch;
    while (this.opsLeft > 0 && this.epoch === epoch) {
      this.opsLeft--;
      await this.think();
      if (this.epoch !== epoch) return;
      const op = this.pickOp();
      const key = this.rng.pick(this.keyNames);
      if (op === "compact") {
        await this.compact(id);
        continue;
      }
      if (op === "multipart") {
        await this.multipart(id, key, epoch);
        continue;
      }
      const names = op === "deleteMany"
        ? this.rng.shuffle(this.keyNames).slice(0, this.rng.range(1, 4))
        : [key];
      const src = op === "copy" ? this.rng.pick(this.keyNames.filter((k) => k !== key)) : "";
      const reads = op === "get" ? [key] : op === "copy" && src ? [src] : [];
      const writes = op === "get" ? [] : names;
      if (!await this.lock(reads, writes, epoch)) return;
      await this.request(id, op, names, src);
      this.unlock(reads, writes);
    }
  }

  /** One compaction pass, racing the other clients' requests; it changes nothing they can see. */
  async compact(id: number): Promise<void> {
    const proc = this.proc!;
    this.stats.inFlight++;
    try {
      const r = await proc.compact!();
      this.stats.compactedSegments += r.compacted;
      this.stats.relocatedObjects += r.relocated;
      if (r.kept > 0) throw this.fail(`Compaction found damage: ${r.damage.join("; ")}`);
      this.log(() => `c${id} compaction: ${r.compacted} segment(s), ${r.relocated} moved`);
    } catch (err) {
      if (proc.gen.dead) return never();
      if (this.commitFaults && !(err instanceof SimFailure)) {
        this.log(() => `c${id} compaction failed: ${(err as Error)?.message ?? err}`);
        return;
      }
      throw err instanceof SimFailure
        ? err
        : this.fail(`Compaction failed: ${(err as Error)?.stack ?? err}`);
    } finally {
      this.stats.inFlight--;
    }
  }

  /** One request of the workload, recorded in the model. */
  async request(id: number, op: string, names: string[], src: string): Promise<void> {
    const key = names[0];
    switch (op) {
      case "put": {
        const v = this.newBody(this.objectSize());
        const k = this.begin(
          key,
          { kind: "put", version: v },
          `c${id} PutObject ${key} ${describe(v)}`,
        );
        const r = await this.send("PUT", this.path(key), { body: v.bytes });
        if (this.faulted(r, [k])) return;
        this.expect(r.status === 200 && unquote(r.headers.get("etag")) === v.etag, r, k.label);
        this.end(k, true);
        return;
      }
      case "delete": {
        const k = this.begin(key, { kind: "delete" }, `c${id} DeleteObject ${key}`);
        const r = await this.send("DELETE", this.path(key));
        if (this.faulted(r, [k])) return;
        this.expect(r.status === 204, r, k.label);
        this.end(k, true);
        return;
      }
      case "deleteMany": {
        const ops = names.map((n) =>
          this.begin(n, { kind: "delete" }, `c${id} DeleteObjects ${names.join(",")} (${n})`)
        );
        const xml = `<Delete>${
          names.map((n) => `<Object><Key>${n}</Key></Object>`).join("")
        }</Delete>`;
        const r = await this.send("POST", `/${BUCKET}`, {
          query: "delete",
          body: new TextEncoder().encode(xml),
        });
        if (this.faulted(r, ops)) return;
        const text = new TextDecoder().decode(r.body);
        this.expect(r.status === 200 && xmlBlocks(text, "Error").length === 0, r, ops[0].label);
        for (const o of ops) this.end(o, true);
        return;
      }
      case "copy": {
        if (!src) return;
        const k = this.begin(key, { kind: "copy", src }, `c${id} CopyObject ${src} -> ${key}`);
        const r = await this.send("PUT", this.path(key), {
          headers: { "x-amz-copy-source": `/${BUCKET}/${src}` },
        });
        if (r.status === 404) {
          this.end(k, false);
          return;
        }
        if (this.faulted(r, [k])) return;
        this.expect(r.status === 200, r, k.label);
        const etag = unquote(xmlTags(new TextDecoder().decode(r.body), "ETag")[0] ?? "");
        (k.effect as { etag?: string }).etag = etag;
        this.end(k, true);
        return;
      }
      case "get":
        await this.readCheck(id, key);
        return;
      case "oversized":
        await this.oversized(id, key);
        return;
    }
  }

  /**
   * Under `commitFaults`: a command too large for Deno KV, three ways. Sent
   * as a PutObject with 3 KiB of user metadata (400 MetadataTooLarge) or a
   * 64 to 200 KiB PutBucketCors (400 MaxMessageLengthExceeded), it is refused
   * before it is proposed; proposed straight to the log as a PutBucketCors
   * whose rules pass the check before proposing but whose bucket record does
   * not fit 64 KiB, it fails inside `apply()`, within whatever group it joins.
   * The bucket never gets a CORS configuration (`checkRecovery` looks).
   */
  async oversized(id: number, key: string): Promise<void> {
    const how = this.rng.pick(["metadata", "cors", "apply"] as const);
    if (how === "metadata") {
      const v = this.newBody(this.rng.range(0, 4096));
      const k = this.begin(
        key,
        { kind: "put", version: v },
        `c${id} PutObject ${key} (3 KiB metadata)`,
      );
      const r = await this.send("PUT", this.path(key), {
        body: v.bytes,
        headers: { "x-amz-meta-big": "m".repeat(3072) },
      });
      if (this.faulted(r, [k])) return;
      this.expect(
        r.status === 400 && /MetadataTooLarge/.test(new TextDecoder().decode(r.body)),
        r,
        k.label,
      );
      this.stats.refusedOversized++;
      this.end(k, false);
      return;
    }
    if (how === "cors") {
      const origin = `<AllowedOrigin>https://${"o".repeat(60)}.example</AllowedOrigin>`;
      const n = Math.ceil(this.rng.range(64 << 10, 200 << 10) / origin.length);
      const xml = `<CORSConfiguration><CORSRule>${origin.repeat(n)}` +
        `<AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>`;
      this.log(() => `invoke c${id} PutBucketCors (${xml.length} B)`);
      const r = await this.send("PUT", `/${BUCKET}`, {
        query: "cors",
        body: new TextEncoder().encode(xml),
      });
      if (this.faultKind(r) !== null) return;
      this.expect(
        r.status === 400 && /MaxMessageLengthExceeded/.test(new TextDecoder().decode(r.body)),
        r,
        `c${id} PutBucketCors (${xml.length} B)`,
      );
      this.stats.refusedOversized++;
      return;
    }
    const proc = this.proc!;
    const cmd = this.poisonCors();
    this.log(() => `invoke c${id} propose oversized PutBucketCors`);
    this.stats.requests++;
    this.stats.inFlight++;
    try {
      await proc.log!.propose(cmd);
    } catch (err) {
      if (proc.gen.dead) return never();
      if (!(err instanceof MetaError)) {
        throw this.fail(`An oversized PutBucketCors failed with ${err}; want a MetaError`);
      }
      this.log(() => `refused c${id} oversized PutBucketCors: ${err.code}`);
      this.stats.refusedOversized++;
      return;
    } finally {
      if (!proc.gen.dead) this.stats.inFlight--;
    }
    if (proc.gen.dead) return never();
    throw this.fail("An oversized PutBucketCors was applied");
  }

  /** A PutBucketCors whose rules pass `checkCommandLimits` but whose bucket record is over 64 KiB. */
  poisonCors(): Command {
    const rule = {
      allowedOrigins: [""],
      allowedMethods: ["GET"],
      allowedHeaders: [],
      exposeHeaders: [],
    };
    // The check measures the rules in a minimal bucket record; the real one is longer.
    const minimal = { name: BUCKET, createdMs: 0, region: "", cors: [rule] };
    rule.allowedOrigins[0] = "x".repeat(65536 - 4 - serialize(minimal).byteLength);
    return { type: "PutBucketCors", bucket: BUCKET, rules: [rule] };
  }

  /**
   * Waits until reading `reads` and writing `writes` races no write of a key
   * read and no read of a key written (unless `readRaces`), then registers them.
   * @returns false when the process crashed meanwhile
   */
  async lock(reads: string[], writes: string[], epoch: number): Promise<boolean> {
    if (!this.readRaces) {
      while (
        reads.some((k) => (this.writers.get(k) ?? 0) > 0) ||
        writes.some((k) => (this.readers.get(k) ?? 0) > 0)
      ) {
        await this.think(0.5);
        if (this.epoch !== epoch) return false;
      }
    }
    for (const k of reads) this.readers.set(k, (this.readers.get(k) ?? 0) + 1);
    for (const k of writes) this.writers.set(k, (this.writers.get(k) ?? 0) + 1);
    return true;
  }

  unlock(reads: string[], writes: string[]): void {
    for (const k of reads) this.readers.set(k, this.readers.get(k)! - 1);
    for (const k of writes) this.writers.set(k, this.writers.get(k)! - 1);
  }

  think(minMs = 0): Promise<void> {
    const ms = Math.max(minMs, this.rng.chance(0.3) ? 0 : this.rng.float() * 2);
    return new Promise((resolve) => this.world.schedule(ms, resolve));
  }

  expect(cond: boolean, r: Reply, label: string): void {
    if (!cond) {
      throw this.fail(
        `${label}: unexpected answer ${r.status} ${new TextDecoder().decode(r.body).slice(0, 300)}`,
      );
    }
  }

  /** GetObject during the workload: a 200 carries exactly some version the key may ever have held. */
  async readCheck(id: number, key: string): Promise<void> {
    this.log(() => `invoke c${id} GetObject ${key}`);
    const r = await this.send("GET", this.path(key));
    this.log(() => `answer c${id} GetObject ${key}: ${r.status}, ${r.body.length} B`);
    if (r.status === 404 || this.faultKind(r) !== null) return;
    this.expect(r.status === 200, r, `c${id} GetObject ${key}`);
    const got = { bytes: r.body, etag: unquote(r.headers.get("etag")) };
    const candidates = this.everVersions(key);
    if (!this.matches(candidates, got)) {
      throw this.fail(
        `c${id} GetObject ${key} answered 200 with Content-Length ` +
          `${r.headers.get("content-length")} and ${describe(got)}, which no write of the key ` +
          `produced (torn read; ${candidates.length} candidate versions)`,
      );
    }
  }

  planParts(): number[] {
    const n = this.bigParts ? this.rng.pick([1, 1, 1, 2, 2, 3]) : 1;
    const sizes: number[] = [];
    for (let i = 1; i < n; i++) sizes.push(MIN_PART_SIZE_BYTES + this.rng.range(0, 1000));
    sizes.push(n > 1 && this.rng.chance(0.1) ? 0 : this.rng.range(1, 300 << 10));
    return sizes;
  }

  async multipart(id: number, key: string, epoch: number): Promise<void> {
    const free = this.uploads.filter((u) =>
      u.open && !u.busy && u.id !== null && !u.complete && !u.abort
    );
    let u: Upload;
    if (free.length > 0 && this.rng.chance(0.6)) {
      u = this.rng.pick(free);
      u.busy = true;
      this.log(() => `c${id} resumes upload ${u.id} of ${u.key}`);
    } else {
      u = { key, id: null, planBytes: this.planParts(), parts: new Map(), open: false, busy: true };
      this.uploads.push(u);
      this.seq++;
      this.unansweredCreates.set(key, (this.unansweredCreates.get(key) ?? 0) + 1);
      this.log(() => `invoke c${id} CreateMultipartUpload ${key}`);
      const r = await this.send("POST", this.path(key), { query: "uploads" });
      const fault = this.faultKind(r);
      if (fault !== null) {
        // Not applied: no upload can show up; unknown: it may, as after a crash.
        if (fault === "failed") {
          this.unansweredCreates.set(key, this.unansweredCreates.get(key)! - 1);
        }
        u.busy = false;
        this.log(() => `${fault} c${id} CreateMultipartUpload ${key}`);
        return;
      }
      this.expect(r.status === 200, r, `c${id} CreateMultipartUpload ${key}`);
      this.unansweredCreates.set(key, this.unansweredCreates.get(key)! - 1);
      u.id = xmlTags(new TextDecoder().decode(r.body), "UploadId")[0];
      u.open = true;
      this.log(() => `ok c${id} CreateMultipartUpload ${key} -> ${u.id}`);
    }
    const n = u.planBytes.length;
    for (let p = 1; p <= n; p++) {
      const attempts = u.parts.get(p) ?? [];
      const redo = attempts.some((a) => a.status === "ok") && this.rng.chance(0.1);
      if (attempts.some((a) => a.status === "ok") && !redo) continue;
      await this.think();
      if (this.epoch !== epoch) return;
      const v = this.newBody(u.planBytes[p - 1]);
      const a: PartAttempt = { version: v, status: "pending" };
      attempts.push(a);
      u.parts.set(p, attempts);
      this.log(() => `invoke c${id} UploadPart ${u.key} ${u.id} #${p} ${describe(v)}`);
      const r = await this.send("PUT", this.path(u.key), {
        query: `partNumber=${p}&uploadId=${u.id}`,
        body: v.bytes,
      });
      const fault = this.faultKind(r);
      if (fault !== null) {
        if (fault === "failed") a.status = "failed";
        else {
          // Either this upload of the part or an earlier answered one is current: upload it again.
          for (const other of attempts) if (other.status === "ok") other.status = "pending";
        }
        u.busy = false; // resumed later, the part uploaded again
        this.log(() => `${fault} c${id} UploadPart ${u.key} ${u.id} #${p}`);
        return;
      }
      this.expect(
        r.status === 200 && unquote(r.headers.get("etag")) === v.etag,
        r,
        `UploadPart #${p}`,
      );
      a.status = "ok";
      for (const other of attempts) {
        if (other !== a && other.status === "pending") other.status = "failed";
      }
      this.log(() => `ok c${id} UploadPart ${u.key} ${u.id} #${p}`);
    }
    await this.think();
    if (this.epoch !== epoch) return;
    if (this.rng.chance(0.15)) {
      u.abort = "pending";
      this.seq++;
      this.log(() => `invoke c${id} AbortMultipartUpload ${u.key} ${u.id}`);
      const r = await this.send("DELETE", this.path(u.key), { query: `uploadId=${u.id}` });
      const fault = this.faultKind(r);
      if (fault !== null) {
        if (fault === "failed") u.abort = undefined;
        u.busy = false;
        this.log(() => `${fault} c${id} AbortMultipartUpload ${u.key} ${u.id}`);
        return;
      }
      this.expect(r.status === 204, r, `AbortMultipartUpload ${u.id}`);
      u.abort = "ok";
      u.open = false;
      u.busy = false;
      this.seq++;
      this.log(() => `ok c${id} AbortMultipartUpload ${u.key} ${u.id}`);
      return;
    }
    const chosen: { n: number; v: Version }[] = [];
    for (let p = 1; p <= n; p++) {
      const ok = u.parts.get(p)!.filter((a) => a.status === "ok");
      chosen.push({ n: p, v: ok[ok.length - 1].version });
    }
    const bytes = chosen.length === 1
      ? chosen[0].v.bytes
      : new Uint8Array(Buffer.concat(chosen.map((c) => c.v.bytes)));
    const etag =
      createHash("md5").update(Buffer.concat(chosen.map((c) => Buffer.from(c.v.etag, "hex"))))
        .digest("hex") + `-${n}`;
    const version: Version = { bytes, etag };
    if (!await this.lock([], [u.key], epoch)) return;
    const k = this.begin(
      u.key,
      { kind: "put", version },
      `c${id} CompleteMultipartUpload ${u.key} ${u.id} ${describe(version)}`,
    );
    u.complete = k;
    const xml = `<CompleteMultipartUpload>${
      chosen.map((c) => `<Part><PartNumber>${c.n}</PartNumber><ETag>"${c.v.etag}"</ETag></Part>`)
        .join("")
    }</CompleteMultipartUpload>`;
    const r = await this.send("POST", this.path(u.key), {
      query: `uploadId=${u.id}`,
      body: new TextEncoder().encode(xml),
    });
    if (this.faulted(r, [k])) {
      // Not applied: the upload is still open and may be completed later.
      if (k.status === "failed") u.complete = undefined;
      this.unlock([], [u.key]);
      u.busy = false;
      return;
    }
    this.expect(
      r.status === 200 &&
        unquote(xmlTags(new TextDecoder().decode(r.body), "ETag")[0] ?? "") === etag,
      r,
      k.label,
    );
    this.end(k, true);
    this.unlock([], [u.key]);
    u.open = false;
    u.busy = false;
  }

  // ---------------------------------------------------------------- phases

  /**
   * Picks where this phase crashes: at a uniformly drawn disk write or fsync,
   * KV commit (in flight, or durable but unanswered) or instant within the
   * phase's expected span (estimated from the run so far), or only once the
   * workload is done (10%).
   */
  armTrigger(): void {
    const r = this.rng.float();
    const n = this.opsPerPhase;
    const perRequest = (total: number, guess: number) =>
      this.workloadRequests > 20 ? total / this.workloadRequests : guess;
    if (r < 0.4) {
      const est = Math.ceil(n * perRequest(this.workloadDiskOps, 2));
      this.trigger = { kind: "disk", afterOps: this.diskOps + this.rng.range(1, est) };
    } else if (r < 0.7) {
      const est = Math.ceil(n * perRequest(this.workloadKvCommits, 0.7));
      this.trigger = {
        kind: "kv",
        afterCommits: this.kvCommits + this.rng.range(1, est),
        phase: this.rng.chance(0.5) ? "before" : "after",
      };
    } else if (r < 0.9) {
      const atMs = this.world.nowMs + this.rng.float() * n * perRequest(this.workloadMs, 1);
      this.trigger = { kind: "time", atMs };
      this.world.schedule(atMs - this.world.nowMs, () => {
        if (this.trigger.kind === "time" && this.trigger.atMs === atMs) this.crash("timer");
      });
    } else this.trigger = { kind: "idle" };
    this.log(() => `arm ${JSON.stringify(this.trigger)}`);
  }

  async phase(): Promise<void> {
    const started = {
      ms: this.world.nowMs,
      requests: this.stats.requests,
      disk: this.diskOps,
      kv: this.kvCommits,
    };
    this.opsLeft = this.opsPerPhase;
    this.readers.clear();
    this.writers.clear();
    this.armTrigger();
    if (this.faults) this.faults.active = true;
    let running = this.clients;
    for (let c = 0; c < this.clients; c++) {
      this.client(c).then(
        () => running--,
        (err) => {
          running--;
          if (!this.world.failure) this.fail(`Client ${c} threw: ${(err as Error)?.stack ?? err}`);
        },
      );
    }
    await this.drive(() => this.crashed || running === 0, "the workload");
    if (this.faults) this.faults.active = false;
    if (!this.crashed) this.crash("idle");
    this.workloadRequests += this.stats.requests - started.requests;
    this.workloadMs += this.world.nowMs - started.ms;
    this.workloadDiskOps += this.diskOps - started.disk;
    this.workloadKvCommits += this.kvCommits - started.kv;
  }

  async run(): Promise<EngineReport> {
    await this.settle(this.boot(), "boot");
    const r = await this.settle(this.send("PUT", `/${BUCKET}`), "CreateBucket");
    this.expect(r.status === 200, r, "CreateBucket");
    for (let i = 0; i < this.crashes; i++) {
      await this.phase();
      await this.recover();
      await this.settle(this.checkRecovery(), "the recovery check");
    }
    return {
      seed: this.seed,
      virtualMs: this.world.nowMs,
      events: this.world.events,
      requests: this.stats.requests,
      acked: this.stats.acked,
      crashes: this.crashes,
      crashPoints: this.stats.crashPoints,
      inFlightAtCrash: this.stats.inFlightAtCrash,
      writesCut: this.stats.writesCut,
      writesCutApplied: this.stats.writesCutApplied,
      objectsChecked: this.stats.objectsChecked,
      bytesChecked: this.stats.bytesChecked,
      sweptFiles: this.stats.sweptFiles,
      compactedSegments: this.stats.compactedSegments,
      relocatedObjects: this.stats.relocatedObjects,
      tornFiles: this.stats.tornFiles,
      lostDirOps: this.stats.lostDirOps,
      injectedFaults: this.stats.injectedFaults + (this.faults?.injected ?? 0),
      notAppliedAnswers: this.stats.notAppliedAnswers,
      unknownAnswers: this.stats.unknownAnswers,
      refusedOversized: this.stats.refusedOversized,
      bytesWritten: this.disk.stats.writtenBytes,
      trace: this.world.trace,
    };
  }

  // ---------------------------------------------------------------- the recovery check

  /**
   * After a recovery, checks the engine against the model:
   * - every key holds a state the history allows: each write answered
   *   before the crash is there unless a later write replaced it, a key whose
   *   last answered write was a delete is absent, and a write in flight is
   *   there whole or not at all (bytes and ETag equal to one version sent);
   * - ListObjectsV2 agrees with HeadObject and GetObject (keys, sizes, ETags);
   * - multipart uploads: answered creates exist until completed or aborted,
   *   answered parts are listed with their ETags, and a completion is atomic
   *   (the upload is gone if the object appeared);
   * - the sweep left no orphans: `tmp/` empty, every shard file referenced
   *   and every reference backed by a file of the right size, no manifest
   *   chunk or part record without its object or upload.
   */
  async checkRecovery(): Promise<void> {
    this.stats.inFlight = 0;
    await this.checkFiles();
    // Listing, paged.
    const listed = new Map<string, { etag: string; size: number }>();
    const pageKeys = this.rng.pick([1, 2, 3, 1000]);
    let token: string | undefined;
    do {
      const q = `list-type=2&max-keys=${pageKeys}${
        token ? `&continuation-token=${encodeURIComponent(token)}` : ""
      }`;
      const r = await this.send("GET", `/${BUCKET}`, { query: q });
      this.expect(r.status === 200, r, "ListObjectsV2");
      const xml = new TextDecoder().decode(r.body);
      for (const c of xmlBlocks(xml, "Contents")) {
        const key = xmlTags(c, "Key")[0];
        if (listed.has(key)) throw this.fail(`ListObjectsV2 returned ${key} twice`);
        listed.set(key, {
          etag: unquote(xmlTags(c, "ETag")[0]),
          size: Number(xmlTags(c, "Size")[0]),
        });
      }
      token = xmlTags(xml, "NextContinuationToken")[0];
    } while (token);

    const observed = new Map<string, Version | null>();
    const all = new Set([...this.keyNames, ...listed.keys()]);
    for (const key of all) {
      if (!this.keyNames.includes(key)) {
        throw this.fail(`ListObjectsV2 returned ${key}, never written`);
      }
      const head = await this.send("HEAD", this.path(key));
      const l = listed.get(key);
      if (head.status === 404) {
        if (l) throw this.fail(`${key} is listed but HeadObject answers 404`);
        const get = await this.send("GET", this.path(key));
        if (get.status !== 404) {
          throw this.fail(`${key}: HeadObject 404 but GetObject ${get.status}`);
        }
        observed.set(key, null);
      } else {
        this.expect(head.status === 200, head, `HeadObject ${key}`);
        const etag = unquote(head.headers.get("etag"));
        const size = Number(head.headers.get("content-length"));
        if (!l) throw this.fail(`${key} answers HeadObject 200 but is not listed`);
        if (l.etag !== etag || l.size !== size) {
          throw this.fail(
            `${key}: listed as ${l.size} B ${l.etag}, HeadObject says ${size} B ${etag}`,
          );
        }
        const get = await this.send("GET", this.path(key));
        this.expect(get.status === 200, get, `GetObject ${key}`);
        if (unquote(get.headers.get("etag")) !== etag || get.body.length !== size) {
          throw this.fail(
            `${key}: GetObject returned ${get.body.length} B ${
              get.headers.get("etag")
            }, HeadObject ${size} B ${etag}`,
          );
        }
        this.stats.bytesChecked += size;
        observed.set(key, { bytes: get.body, etag });
        if (size > 64 << 10) await this.rangeCheck(key, get.body);
      }
      this.stats.objectsChecked++;
      const got = observed.get(key)!;
      const { states, why } = this.allowed(key);
      const pending = this.hist(key).filter((o) => o.status === "pending");
      this.stats.writesCut += pending.length;
      const fromOk = this.hist(key).filter((o) => o.status === "ok").flatMap((o) =>
        this.outcomes(o)
      );
      if (
        !this.matches(fromOk, got) && this.matches(pending.flatMap((o) => this.outcomes(o)), got)
      ) {
        this.stats.writesCutApplied++;
      }
      if (!this.matches(states, got)) {
        const known = this.everVersions(key).some((v) => got && v.etag === got.etag);
        throw this.fail(
          `After recovery ${key} is ${describe(got)}${
            got && !known ? " (bytes no write produced: torn or mixed)" : ""
          }; allowed: ${states.map(describe).join(" | ")}; from writes: ${why.join("; ")}`,
        );
      }
    }

    await this.checkUploads(observed);
    if (this.commitFaults) {
      const cors = await this.send("GET", `/${BUCKET}`, { query: "cors" });
      this.expect(cors.status === 404, cors, "GetBucketCors after oversized PutBucketCors");
    }

    // The observed state is now the model's starting point.
    const now = this.seq++;
    for (const [key, v] of observed) {
      this.history.set(key, [{
        invoke: now,
        resp: now,
        status: "ok",
        effect: v === null ? { kind: "delete" } : { kind: "put", version: v },
        label: `recovered ${describe(v)}`,
      }]);
      if (v !== null) {
        const e = this.ever.get(key) ?? [];
        if (!e.includes(v)) e.push(v);
        this.ever.set(key, e);
      }
    }
    this.log(() =>
      `check ok: ${observed.size} keys, ${[...observed.values()].filter((v) => v).length} present`
    );
  }

  /** A few ranged reads of an object agree with its full read. */
  async rangeCheck(key: string, full: Uint8Array): Promise<void> {
    for (let i = 0; i < 2; i++) {
      const start = this.rng.int(full.length);
      const end = Math.min(full.length - 1, start + this.rng.range(0, 200 << 10));
      const r = await this.send("GET", this.path(key), {
        headers: { range: `bytes=${start}-${end}` },
      });
      this.expect(r.status === 206, r, `GetObject ${key} range`);
      if (!sameBytes(r.body, full.subarray(start, end + 1))) {
        throw this.fail(
          `${key}: bytes ${start}-${end} differ from the same range of the full read`,
        );
      }
    }
  }

  async checkUploads(observed: Map<string, Version | null>): Promise<void> {
    const r = await this.send("GET", `/${BUCKET}`, { query: "uploads" });
    this.expect(r.status === 200, r, "ListMultipartUploads");
    const listed = new Map<string, string>();
    for (const b of xmlBlocks(new TextDecoder().decode(r.body), "Upload")) {
      listed.set(xmlTags(b, "UploadId")[0], xmlTags(b, "Key")[0]);
    }
    const known = new Map(this.uploads.filter((u) => u.id !== null).map((u) => [u.id!, u]));
    for (const [id, key] of listed) {
      if (known.has(id)) continue;
      const n = this.unansweredCreates.get(key) ?? 0;
      if (n <= 0) throw this.fail(`Upload ${id} of ${key} is listed but was never created`);
      // Created by a request whose answer the crash lost: adopt it.
      this.unansweredCreates.set(key, n - 1);
      const u: Upload = {
        key,
        id,
        planBytes: this.planParts(),
        parts: new Map(),
        open: true,
        busy: false,
      };
      this.uploads.push(u);
      known.set(id, u);
      this.log(() => `adopt upload ${id} of ${key}`);
    }
    for (const u of known.values()) {
      u.busy = false;
      const isListed = listed.has(u.id!);
      if (isListed && listed.get(u.id!) !== u.key) {
        throw this.fail(
          `Upload ${u.id} is listed under ${listed.get(u.id!)}, created for ${u.key}`,
        );
      }
      const completed = u.complete?.status === "ok";
      if (isListed && (completed || u.abort === "ok")) {
        throw this.fail(
          `Upload ${u.id} of ${u.key} was ${
            completed ? "completed" : "aborted"
          } but is still listed`,
        );
      }
      if (!isListed && u.open && !u.complete && !u.abort) {
        throw this.fail(
          `Upload ${u.id} of ${u.key} was created (answered) but is gone after recovery`,
        );
      }
      if (isListed && u.complete) {
        const v = (u.complete.effect as { version: Version }).version;
        const got = observed.get(u.key);
        if (got && got.etag === v.etag && sameBytes(got.bytes, v.bytes)) {
          throw this.fail(
            `Upload ${u.id} of ${u.key} is still listed although its completion is visible`,
          );
        }
      }
      if (isListed) await this.checkParts(u);
      u.open = isListed;
      if (isListed) {
        u.complete = undefined;
        u.abort = undefined;
      }
    }
  }

  async checkParts(u: Upload): Promise<void> {
    const r = await this.send("GET", this.path(u.key), { query: `uploadId=${u.id}` });
    this.expect(r.status === 200, r, `ListParts ${u.id}`);
    const seen = new Map<number, { etag: string; size: number }>();
    for (const b of xmlBlocks(new TextDecoder().decode(r.body), "Part")) {
      seen.set(Number(xmlTags(b, "PartNumber")[0]), {
        etag: unquote(xmlTags(b, "ETag")[0]),
        size: Number(xmlTags(b, "Size")[0]),
      });
    }
    for (const [n, s] of seen) {
      const attempts = u.parts.get(n) ?? [];
      const match = attempts.find((a) => a.status !== "failed" && a.version.etag === s.etag);
      if (!match || match.version.bytes.length !== s.size) {
        throw this.fail(
          `Upload ${u.id} lists part ${n} as ${s.size} B ${s.etag}, which no answered or pending UploadPart sent`,
        );
      }
      const lastOk = attempts.map((a, i) => ({ a, i })).filter(({ a }) => a.status === "ok").pop();
      if (lastOk && attempts.indexOf(match) < lastOk.i) {
        throw this.fail(`Upload ${u.id} part ${n} went back to an older upload of the part`);
      }
      match.status = "ok";
      u.parts.set(n, [match]);
    }
    for (const [n, attempts] of u.parts) {
      if (seen.has(n)) continue;
      if (attempts.some((a) => a.status === "ok")) {
        throw this.fail(`Upload ${u.id} lost part ${n}, whose UploadPart was answered`);
      }
      u.parts.delete(n);
    }
  }

  async checkFiles(): Promise<void> {
    const kv = this.kvStore.open(); // the true state, past any planted bug
    const referenced = new Map<string, DataRef>();
    const owner = new Map<string, string>();
    const manifests = new Map<string, number>();
    for await (const e of kv.list<ObjectRecord>({ prefix: ["cur"] })) {
      if (e.value.data) {
        referenced.set(e.value.data.dataId, e.value.data);
        owner.set(e.value.data.dataId, `object ${e.key[2] as string}`);
      }
      if (e.value.multipart) {
        manifests.set(e.value.multipart.manifestId, e.value.multipart.chunkCount);
        owner.set(e.value.multipart.manifestId, `object ${e.key[2] as string}`);
      }
    }
    const chunks = new Map<string, number>();
    for await (const e of kv.list<ManifestChunk>({ prefix: ["manifest"] })) {
      const id = e.key[1] as string;
      if (!manifests.has(id)) throw this.fail(`Orphan manifest chunk ${JSON.stringify(e.key)}`);
      chunks.set(id, (chunks.get(id) ?? 0) + 1);
      for (const p of e.value.parts) {
        referenced.set(p.data.dataId, p.data);
        owner.set(p.data.dataId, `part ${p.partNumber} of ${owner.get(id)}`);
      }
    }
    for (const [id, n] of manifests) {
      if ((chunks.get(id) ?? 0) !== n) {
        throw this.fail(`Manifest ${id} has ${chunks.get(id) ?? 0} of ${n} chunks`);
      }
    }
    const uploads = new Set<string>();
    for await (const e of kv.list<UploadRecord>({ prefix: ["upload"] })) {
      uploads.add(e.value.uploadId);
    }
    for await (const e of kv.list<PartRecord>({ prefix: ["part"] })) {
      if (!uploads.has(e.key[1] as string)) {
        throw this.fail(`Orphan part record ${JSON.stringify(e.key)}`);
      }
      referenced.set(e.value.data.dataId, e.value.data);
      owner.set(e.value.data.dataId, `part ${e.key[2]} of upload ${e.key[1]}`);
    }
    const segmentsInUse = new Set<string>();
    for (const ref of referenced.values()) if (ref.segment) segmentsInUse.add(ref.segment.id);
    for (const p of this.disk.paths()) {
      if (p.startsWith("tmp/")) throw this.fail(`Temp file ${p} survived the startup sweep`);
      const seg = /^segments\/([0-9a-f]{16})\.seg$/.exec(p);
      if (seg) {
        if (!segmentsInUse.has(seg[1])) {
          throw this.fail(`Segment ${p} survived the startup sweep with no live record`);
        }
        continue;
      }
      const m = /^shards\/([0-9a-f]{2})\/([0-9a-f]{32})\.0$/.exec(p);
      if (!m) throw this.fail(`Unexpected file ${p}`);
      if (m[1] !== m[2].slice(0, 2)) throw this.fail(`Shard file ${p} is in the wrong directory`);
      const ref = referenced.get(m[2]);
      if (!ref || ref.segment) {
        throw this.fail(`Orphan shard file ${p} survived the startup sweep`);
      }
    }
    const segments = new SegmentStore(this.disk);
    for (const [id, ref] of referenced) {
      if (ref.segment) {
        try {
          await segments.readPayload(ref);
        } catch (err) {
          throw this.fail(
            `After recovery the packed record of ${owner.get(id)} (data ${id}) is unreadable: ` +
              (err as Error).message,
          );
        }
        continue;
      }
      const size = ref.sizeBytes;
      const st = await this.disk.stat(LocalDataPath.shardPath(id));
      if (!st) {
        throw this.fail(
          `After recovery the shard file of ${owner.get(id)} (data ${id}) is missing`,
        );
      }
      if (st.sizeBytes !== SHARD_HEADER_SIZE_BYTES + size) {
        throw this.fail(
          `After recovery the shard file of ${owner.get(id)} (data ${id}) is ${st.sizeBytes} B; ` +
            `the metadata says ${size} B + the ${SHARD_HEADER_SIZE_BYTES} B header (torn)`,
        );
      }
    }
  }
}
