/**
 * `RaftLog`: the metadata log of a cluster member. Every metadata command is
 * a Raft entry (payload: the command as UTF-8 JSON; entry id: the proposal
 * id `<nodeId>.<incarnation>.<seq>`) applied, once committed, in log order
 * into this node's Deno KV by the replay-safe machine of `src/meta/machine.ts`,
 * one group commit per ready batch.
 *
 * - `propose()` works on any member: a follower's proposal goes to the leader
 *   (the core forwards it); it is re-sent with the same id until it applies
 *   here, and the machine applies an id once (ADR 0060).
 * - `readBarrier()` is ReadIndex, batched: callers that arrive while a round
 *   is in flight share the next round. On a lone voter it reads the commit
 *   index and costs no network (ADR 0059).
 * - Snapshots are a dump of every KV key at the applied index; a restore
 *   wipes KV and loads the dump in commits within Deno KV's limits.
 * - While no leader is known, calls wait up to `noLeaderWaitMs`, then fail
 *   with `MetaError("SlowDown")` (nothing of them is visible).
 *
 * Not pure: I/O only through the injected ports; no `Deno.*`, no global timers.
 *
 * @see docs/adr/0059-forwarding-and-readindex.md
 * @module
 */
import { deserialize, serialize } from "node:v8";
import { type Clock, type Disk, KV_LIMITS, type KvKey, type MetaKv, type Rng } from "../io/mod.ts";
import {
  applyEntries,
  type ApplyResult,
  checkCommandLimits,
  type Command,
  CommitOutcomeUnknown,
  type DataRef,
  GroupKv,
  keys,
  keySizeBytes,
  type LogCommand,
  MetaError,
  type MetaLog,
  type ProposalRecord,
  valueSizeBytes,
} from "../meta/mod.ts";
import {
  type ConfChange,
  type Entry,
  type Membership,
  type Message,
  ProposalDroppedError,
  type RaftConfig,
} from "../raft/mod.ts";
import { RaftStorage } from "../raft/storage.ts";
import { type DriverStatus, DriverStoppedError, type DriverTimers, RaftDriver } from "./driver.ts";

/** How to open a {@link RaftLog}. */
export interface RaftLogOptions {
  /** This member's node id. */
  id: string;
  /** The node's metadata store; every write to it goes through this log. */
  kv: MetaKv;
  /** The disk holding the Raft state, in `dir` on it. */
  disk: Disk;
  /** Directory of the Raft state on `disk`. Default `"raft"`. */
  dir?: string;
  rng: Rng;
  clock: Clock;
  timers: DriverTimers;
  /** Sends a Raft message to a peer (best effort). */
  send(m: Message): void;
  /** Bootstrap an empty Raft directory with these members; `null`/absent: a joiner. */
  founding?: Membership | null;
  /**
   * Bootstrap an empty Raft directory at the KV's applied index (adopting the
   * metadata of a `serve` data directory in place). Needs `founding`.
   */
  adoptAppliedIndex?: boolean;
  /** Data released by an applied command and held by this node (`node` absent or this id). */
  onGarbage(refs: DataRef[]): void;
  /** After a command applied here (and is durable), e.g. to refresh caches. */
  onApplied?(cmd: Command, index: number): void;
  /** How long a call waits while no leader is known, then `SlowDown`. Default 5000. */
  noLeaderWaitMs?: number;
  /** A forwarded proposal or ReadIndex unanswered this long is sent again. Default 1000. */
  retryMs?: number;
  /** A proposal handed to a leader but not applied this long fails as outcome unknown. Default 30000. */
  commitTimeoutMs?: number;
  /** Raft core tunables. */
  raft?: Partial<Omit<RaftConfig, "id" | "rng">>;
  /** Milliseconds per tick. Default 100. */
  tickMs?: number;
  /** Snapshot after this many applied entries. Default 10000. */
  compactEvery?: number;
  /** The driver stopped on an error (storage or KV): the process should restart. */
  onFatal?(err: unknown): void;
}

/** Entries applied per KV group commit, at most (keeps the pruning unit within KV limits). */
const MAX_BATCH_ENTRIES = 256;
/** Poll interval while no leader is known. */
const NO_LEADER_POLL_MS = 50;

interface Pending {
  cmd: Command;
  resolve(r: ApplyResult): void;
  reject(err: unknown): void;
  /** Handed to a leader at least once: its outcome is unknown until it applies. */
  handed: boolean;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Snapshot dump format version. */
const DUMP_VERSION = 1;

function isFlushKey(key: KvKey): boolean {
  return key.length === 2 && key[0] === "sys" && key[1] === "flush";
}

/**
 * The Raft-replicated {@link MetaLog}.
 *
 * @example
 * ```ts
 * const log = await RaftLog.open({ id: "n1", kv, disk, rng, clock, timers, send,
 *   founding: { voters: ["n1"], learners: [] }, adoptAppliedIndex: true, onGarbage });
 * transport.onMessage((m) => log.step(m));
 * await log.propose({ type: "CreateBucket", bucket });
 * ```
 */
export class RaftLog implements MetaLog {
  #driver!: RaftDriver;
  readonly #o: RaftLogOptions;
  readonly #group: GroupKv;
  readonly #pending = new Map<string, Pending>();
  readonly #incarnation: string;
  #seq = 0;
  #closed = false;
  /** The read round in flight, and the one callers arriving meanwhile share. */
  #round: Promise<void> | null = null;
  #next: { promise: Promise<void>; resolve(): void; reject(err: unknown): void } | null = null;

  private constructor(o: RaftLogOptions) {
    this.#o = o;
    this.#group = new GroupKv(o.kv);
    const b = o.rng.fill(new Uint8Array(6));
    this.#incarnation = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  /**
   * Opens the log: bootstraps or recovers the Raft state, brings KV to the
   * stored snapshot if it is behind, and starts the node (entries committed
   * but not yet in KV apply as the node catches up).
   * @throws {Error} when KV holds applied entries but the Raft directory is
   * empty and `adoptAppliedIndex` is not set (they would be skipped silently)
   * @throws {StorageCorruptError} when the stored Raft state is damaged
   */
  static async open(o: RaftLogOptions): Promise<RaftLog> {
    const log = new RaftLog(o);
    const dir = o.dir ?? "raft";
    const storage = await RaftStorage.open(o.disk, dir);
    try {
      if (storage.isEmpty) {
        const applied = (await o.kv.get<number>(keys.applied()))?.value ?? 0;
        if (o.adoptAppliedIndex && o.founding) {
          await storage.bootstrap(o.founding, Math.max(1, applied));
        } else if (applied > 0) {
          throw new Error(
            `The metadata store has ${applied} applied entries but the Raft state in "${dir}" is empty: ` +
              `adopt it (cluster init on this data directory) or start from an empty store`,
          );
        }
      }
    } finally {
      storage.close();
    }
    log.#driver = await RaftDriver.open({
      id: o.id,
      disk: o.disk,
      dir,
      rng: o.rng,
      timers: o.timers,
      send: (m) => o.send(m),
      stateMachine: {
        apply: (entries) => log.#apply(entries),
        takeSnapshot: () => log.#takeSnapshot(),
        restoreSnapshot: (data, index) => log.#restore(data, index),
      },
      raft: o.raft,
      tickMs: o.tickMs,
      compactEvery: o.compactEvery,
      founding: o.founding ?? null,
      onFatal: (err) => {
        log.#failAll(err);
        o.onFatal?.(err);
      },
    });
    return log;
  }

  /** Hands one inbound Raft message to the node. */
  step(m: Message): void {
    this.#driver.step(m);
  }

  /**
   * Proposes `cmd` through the leader; resolves once it applied here.
   * @throws {MetaError} when it did not apply: what `apply()` refused,
   * `SlowDown` when no leader was known within `noLeaderWaitMs` (never sent)
   * @throws {CommitOutcomeUnknown} when it was handed to a leader but did not
   * apply here within `commitTimeoutMs`, or the node stopped first
   */
  propose(cmd: Command): Promise<ApplyResult> {
    try {
      checkCommandLimits(cmd);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#closed) {
      return Promise.reject(new MetaError("ServiceUnavailable", "The node stopped"));
    }
    const id = `${this.#o.id}.${this.#incarnation}.${++this.#seq}`;
    const data = encoder.encode(JSON.stringify(cmd));
    return new Promise<ApplyResult>((resolve, reject) => {
      const p: Pending = { cmd, resolve, reject, handed: false };
      this.#pending.set(id, p);
      const startMs = this.#o.clock.nowMs();
      const attempt = () => {
        if (this.#pending.get(id) !== p) return;
        const elapsedMs = this.#o.clock.nowMs() - startMs;
        if (elapsedMs >= (this.#o.commitTimeoutMs ?? 30000) && p.handed) {
          this.#pending.delete(id);
          return reject(new CommitOutcomeUnknown(cmd.type, new Error("No answer from the leader")));
        }
        this.#driver.call((r) => {
          if (this.#pending.get(id) !== p) return;
          try {
            r.propose(data, id);
            p.handed = true;
            this.#o.timers.setTimeout(this.#o.retryMs ?? 1000, attempt);
          } catch (err) {
            if (!(err instanceof ProposalDroppedError)) throw err;
            if (!p.handed && elapsedMs >= (this.#o.noLeaderWaitMs ?? 5000)) {
              this.#pending.delete(id);
              reject(slowDown(err));
            } else this.#o.timers.setTimeout(NO_LEADER_POLL_MS, attempt);
          }
        });
      };
      attempt();
    });
  }

  /**
   * Resolves once this node has applied every command committed before the
   * call (ReadIndex, batched).
   * @throws {MetaError} `SlowDown` when no leader confirmed a read point within `noLeaderWaitMs`
   */
  readBarrier(): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new MetaError("ServiceUnavailable", "The node stopped"));
    }
    const raft = this.#driver.raft;
    const voters = raft.membership.voters;
    if (
      voters.length === 1 && voters[0] === this.#o.id && raft.role === "leader" &&
      this.#driver.status().lastApplied >= raft.commitIndex
    ) {
      // A lone voter's commit index is the cluster's, and all of it is applied here.
      return Promise.resolve();
    }
    if (this.#round === null) return this.#startRound();
    if (this.#next === null) {
      let resolve!: () => void;
      let reject!: (err: unknown) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.#next = { promise, resolve, reject };
    }
    return this.#next.promise;
  }

  /**
   * Proposes one membership change through the leader (from any member);
   * resolves once it applied here. Re-sent with the same id every `retryMs`
   * until then, like `propose()` (ADR 0059).
   * @throws {MetaError} `SlowDown` when no leader was known within `noLeaderWaitMs`
   * @throws {RangeError} when the change does not apply to the membership
   */
  async changeMembership(cc: ConfChange): Promise<void> {
    const startMs = this.#o.clock.nowMs();
    const id = `${this.#o.id}.${this.#incarnation}.c${++this.#seq}`;
    for (;;) {
      const ctl = new AbortController();
      const cancel = this.#o.timers.setTimeout(
        this.#o.commitTimeoutMs ?? 30000,
        () => ctl.abort(new Error("The membership change did not apply in time")),
      );
      // Once handed over, send the same id again every `retryMs` until it
      // applies here: a forwarded change the leader dropped (it had not yet
      // committed in its term, another change was pending, the message or the
      // leader was lost) is not answered. The leader drops an id in flight in
      // its log, and a change already made no longer applies to its membership.
      let retrying = true;
      let cancelResend = () => {};
      const resend = () => {
        this.#driver.call((r) => {
          if (!retrying) return;
          try {
            r.proposeConfChange(cc, id);
          } catch (err) {
            if (!(err instanceof ProposalDroppedError) && !(err instanceof RangeError)) throw err;
          }
          cancelResend = this.#o.timers.setTimeout(this.#o.retryMs ?? 1000, resend);
        });
      };
      const first = this.#driver.changeMembership(cc, id, ctl.signal);
      cancelResend = this.#o.timers.setTimeout(this.#o.retryMs ?? 1000, resend);
      try {
        await first;
        return;
      } catch (err) {
        if (!(err instanceof ProposalDroppedError)) throw err;
        if (this.#o.clock.nowMs() - startMs >= (this.#o.noLeaderWaitMs ?? 5000)) {
          throw slowDown(err);
        }
        await new Promise<void>((r) => this.#o.timers.setTimeout(NO_LEADER_POLL_MS, r));
      } finally {
        retrying = false;
        cancelResend();
        cancel();
      }
    }
  }

  /** Term, leader, commit and applied indexes, members with their match index (on the leader). */
  status(): DriverStatus {
    return this.#driver.status();
  }

  /** True once this node committed its own removal. */
  get removed(): boolean {
    return this.#driver.status().removed;
  }

  /** Stops the node; pending calls fail. The KV store stays open (the caller owns it). */
  close(): Promise<void> {
    this.#closed = true;
    this.#driver.stop();
    this.#failAll(new Error("The node stopped"));
    return Promise.resolve();
  }

  // ---- internals -------------------------------------------------------------

  #failAll(err: unknown): void {
    for (const [id, p] of this.#pending) {
      this.#pending.delete(id);
      p.reject(
        p.handed
          ? new CommitOutcomeUnknown(p.cmd.type, err)
          : new MetaError("ServiceUnavailable", `The node stopped: ${(err as Error)?.message}`),
      );
    }
  }

  #startRound(): Promise<void> {
    const round = this.#readRound().finally(() => {
      this.#round = null;
      const next = this.#next;
      this.#next = null;
      if (next) this.#startRound().then(next.resolve, next.reject);
    });
    this.#round = round;
    return round;
  }

  async #readRound(): Promise<void> {
    const startMs = this.#o.clock.nowMs();
    for (;;) {
      const ctl = new AbortController();
      const cancel = this.#o.timers.setTimeout(this.#o.retryMs ?? 1000, () => ctl.abort());
      try {
        await this.#driver.readIndex(ctl.signal);
        return;
      } catch (err) {
        if (err instanceof DriverStoppedError) {
          throw new MetaError("ServiceUnavailable", "The node stopped", { cause: err });
        }
        if (!(err instanceof ProposalDroppedError) && !ctl.signal.aborted) throw err;
        if (this.#o.clock.nowMs() - startMs >= (this.#o.noLeaderWaitMs ?? 5000)) {
          throw slowDown(err);
        }
        if (!ctl.signal.aborted) {
          await new Promise<void>((r) => this.#o.timers.setTimeout(NO_LEADER_POLL_MS, r));
        }
      } finally {
        cancel();
      }
    }
  }

  async #apply(entries: readonly Entry[]): Promise<void> {
    for (let i = 0; i < entries.length; i += MAX_BATCH_ENTRIES) {
      await this.#applyBatch(entries.slice(i, i + MAX_BATCH_ENTRIES));
    }
  }

  async #applyBatch(entries: readonly Entry[]): Promise<void> {
    const cmds: LogCommand[] = entries.map((e) => ({
      index: e.index,
      ...(e.id === undefined ? {} : { id: e.id }),
      cmd: e.kind === "normal" && e.data.length > 0 ? decodeCommand(e.data) : null,
    }));
    const outcomes = await applyEntries(this.#group, cmds);
    await this.#group.flush();
    for (const o of outcomes) {
      const id = o.entry.id;
      const p = id === undefined ? undefined : this.#pending.get(id);
      if (p && id !== undefined) this.#pending.delete(id);
      if (o.kind === "applied") {
        const mine = o.result.garbage.filter((r) => r.node === undefined || r.node === this.#o.id);
        if (mine.length > 0) this.#o.onGarbage(mine);
        this.#o.onApplied?.(o.entry.cmd!, o.entry.index);
        p?.resolve(o.result);
      } else if (o.kind === "refused") {
        p?.reject(o.err);
      } else if (p && o.duplicate) {
        settleFromRecord(p, o.duplicate);
      } else if (p) {
        this.#pending.set(id!, p); // an old copy skipped at boot: keep waiting
      }
    }
  }

  async #takeSnapshot(): Promise<Uint8Array> {
    const entries: [KvKey, unknown][] = [];
    for await (const e of this.#o.kv.list({ prefix: [] })) {
      if (!isFlushKey(e.key)) entries.push([e.key, e.value]);
    }
    return new Uint8Array(serialize({ v: DUMP_VERSION, entries }));
  }

  async #restore(data: Uint8Array, index: number): Promise<void> {
    const kv = this.#o.kv;
    const applied = (await kv.get<number>(keys.applied()))?.value ?? 0;
    let entries: [KvKey, unknown][] = [];
    let target = index;
    if (data.length > 0) {
      const dump = deserialize(data) as { v: number; entries: [KvKey, unknown][] };
      if (dump.v !== DUMP_VERSION) throw new Error(`Unknown snapshot format ${dump.v}`);
      entries = dump.entries;
      const at = entries.find(([k]) => k.length === 2 && k[0] === "sys" && k[1] === "applied");
      target = (at?.[1] as number | undefined) ?? 0;
    }
    // KV already holds this state or a later one (its applied index says so).
    if (applied >= target) return;
    // Wipe, marking KV as behind first (a crash part-way restores again at boot).
    const wipe: KvKey[] = [];
    for await (const e of kv.list({ prefix: [] })) if (!isFlushKey(e.key)) wipe.push(e.key);
    await commitInChunks(kv, [
      [keys.applied(), 0],
      ...wipe.map((k): [KvKey, unknown] => [k, DELETE]),
    ]);
    // Load, the applied index last.
    const load = entries.filter(([k]) => !isFlushKey(k) && !(k[0] === "sys" && k[1] === "applied"));
    await commitInChunks(kv, load);
    await kv.atomic().set(keys.applied(), target).commit();
    // Proposals of ours the snapshot covers: answer them from their records.
    for (const [id, p] of [...this.#pending]) {
      const rec = await kv.get<ProposalRecord>(keys.proposal(id));
      if (rec) {
        this.#pending.delete(id);
        settleFromRecord(p, rec.value);
      }
    }
  }
}

const DELETE = Symbol("delete");

/** Writes `ops` (`DELETE` deletes) in as few commits as Deno KV's limits allow. */
async function commitInChunks(kv: MetaKv, ops: [KvKey, unknown][]): Promise<void> {
  let atomic = kv.atomic();
  let count = 0;
  let sizeBytes = 0;
  for (const [key, value] of ops) {
    const n = keySizeBytes(key) + (value === DELETE ? 0 : valueSizeBytes(value));
    if (
      count > 0 && (count + 1 > KV_LIMITS.mutationsPerCommit / 2 ||
        sizeBytes + n > KV_LIMITS.commitSizeBytes * 0.75)
    ) {
      if (!await atomic.commit()) throw new Error("Snapshot restore commit failed a check");
      atomic = kv.atomic();
      count = 0;
      sizeBytes = 0;
    }
    if (value === DELETE) atomic.delete(key);
    else atomic.set(key, value);
    count++;
    sizeBytes += n;
  }
  if (count > 0 && !await atomic.commit()) {
    throw new Error("Snapshot restore commit failed a check");
  }
}

/** Answers a proposal whose application this node did not see (a snapshot covered it). */
function settleFromRecord(p: Pending, rec: ProposalRecord): void {
  if (rec.code !== undefined) p.reject(new MetaError(rec.code, rec.message ?? rec.code));
  else {
    const cmd = p.cmd;
    p.resolve({
      garbage: [],
      ...(cmd.type === "PutObject" ? { record: cmd.record } : {}),
      ...(cmd.type === "DeleteObjects" ? { deleted: cmd.keys.map(() => null) } : {}),
    });
  }
}

function decodeCommand(data: Uint8Array): Command | null {
  try {
    return JSON.parse(decoder.decode(data)) as Command;
  } catch {
    return null; // the same bytes on every replica: a no-op everywhere
  }
}

function slowDown(cause: unknown): MetaError {
  return new MetaError(
    "SlowDown",
    "No metadata leader is reachable right now; retry shortly",
    { cause },
  );
}
