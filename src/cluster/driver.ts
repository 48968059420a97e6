/**
 * The Raft driver: the one "ready loop" that turns a pure `Raft` core into a
 * running member. The simulator (`sim/raft_node.ts`) and the real node run
 * this same code; only the ports differ (virtual or real timers, the
 * simulated network or the mTLS transport, a test state machine or Deno KV).
 *
 * For each ready, in this order (Raft paper Figure 2, "respond to RPCs only
 * after updating stable storage"):
 * 1. persist snapshot, entries and hard state through `RaftStorage`, fsynced;
 * 2. restore the state machine from an installed snapshot;
 * 3. send the messages (only now: they may promise what step 1 stored);
 * 4. apply the committed entries, in log order, awaiting `apply()`;
 * 5. serve ReadIndex read points once lastApplied reaches them;
 * 6. `advance()`, then compact when enough was applied since the last snapshot.
 *
 * A storage or apply error is fatal: the driver stops at once (nothing more
 * is sent) and reports it through `onFatal`; the process must restart from
 * disk (after an fsync error the page cache cannot be trusted).
 *
 * Not pure: it does I/O, but only through the injected ports; no `Deno.*`,
 * no global timers, no global randomness.
 *
 * @module
 */
import type { Disk, Rng } from "../io/mod.ts";
import {
  type ConfChange,
  type Entry,
  type Membership,
  type Message,
  type NodeId,
  Raft,
  type RaftConfig,
  type Ready,
  type Role,
  type StoredState,
} from "../raft/mod.ts";
import { RaftStorage } from "../raft/storage.ts";

/** Timers, injected so the simulator runs the driver on virtual time. */
export interface DriverTimers {
  /** Runs `fn` once after `delayMs`; returns a function that cancels it. */
  setTimeout(delayMs: number, fn: () => void): () => void;
}

/** The replicated state machine the driver feeds. */
export interface StateMachine {
  /**
   * Applies committed entries in log order (including the leader's empty
   * no-ops and `conf` entries, which a machine may skip). Resolves when they
   * are applied; a rejection is fatal for the driver.
   */
  apply(entries: readonly Entry[]): Promise<void>;
  /** The state at lastApplied, for a snapshot at that index. */
  takeSnapshot(): Promise<Uint8Array>;
  /**
   * Replaces the state with `data`, the state at `index` (at boot from the
   * stored snapshot, and when the leader sent one).
   */
  restoreSnapshot(data: Uint8Array, index: number): Promise<void>;
}

/**
 * Hooks for checkers (the simulator's); a real node leaves them unset.
 * They run synchronously at the named point of the loop.
 */
export interface DriverObserver {
  /** After recovery, before the core is built. */
  onBoot?(state: StoredState): void;
  /** After each input (tick, proposal; `message` when it was one) and after each advance. */
  afterStep?(raft: Raft, message?: Message): void;
  /** When a ready's durable part is on disk (after fsync), before its messages leave. */
  onPersisted?(raft: Raft, ready: Ready): void;
  /** When a message leaves the node (after `onPersisted` of its ready). */
  onSend?(raft: Raft, message: Message): void;
}

/** How to build a driver. */
export interface DriverOptions {
  readonly id: NodeId;
  /** The node's disk; Raft state lives in `dir` on it. */
  readonly disk: Disk;
  /** Directory of the Raft state on `disk`. Default `"raft"`. */
  readonly dir?: string;
  /** Election jitter and request ids. */
  readonly rng: Rng;
  readonly timers: DriverTimers;
  /** Sends a message to a peer (best effort; lost, duplicated, reordered messages are fine). */
  readonly send: (message: Message) => void;
  readonly stateMachine: StateMachine;
  /** Tunables of the core (`id` and `rng` come from above). */
  readonly raft?: Partial<Omit<RaftConfig, "id" | "rng">>;
  /** Milliseconds per Raft tick. Default 100. */
  readonly tickMs?: number;
  /** Delay of the first tick (spread ticks of members started together). Default `tickMs`. */
  readonly firstTickMs?: number;
  /** Take a snapshot once this many entries were applied since the last one. Default 10000. */
  readonly compactEvery?: number;
  /** The founding membership when `disk` holds no Raft state; null for a joiner. */
  readonly founding?: Membership | null;
  /** Called once when the driver stops on an error; the process should restart. */
  readonly onFatal?: (err: unknown) => void;
  readonly observer?: DriverObserver;
}

/** A member's view of one peer, from its leader's progress tracking. */
export interface PeerStatus {
  readonly id: NodeId;
  readonly role: "voter" | "learner";
  /** Highest index known to be on the peer's log; undefined unless this node leads. */
  readonly matchIndex: number | undefined;
}

/** A snapshot of the driver's state, for health checks and operators. */
export interface DriverStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: number;
  readonly leader: NodeId | null;
  readonly commitIndex: number;
  readonly lastApplied: number;
  readonly lastIndex: number;
  readonly snapshotIndex: number;
  readonly members: readonly PeerStatus[];
  /** True once this node committed its own removal. */
  readonly removed: boolean;
  /** True after `stop()` or a fatal error. */
  readonly stopped: boolean;
}

/** Raised to pending callers when the driver stops. */
export class DriverStoppedError extends Error {
  override name = "DriverStoppedError";
}

type Input =
  | { kind: "tick" }
  | { kind: "msg"; m: Message }
  | { kind: "call"; fn: (r: Raft) => void };

interface Waiter<T> {
  resolve: (v: T) => void;
  reject: (err: unknown) => void;
}

/**
 * One running Raft member.
 *
 * @example
 * ```ts
 * const d = await RaftDriver.open({ id: "n1", disk, rng, timers, send, stateMachine,
 *   founding: { voters: ["n1", "n2", "n3"], learners: [] } });
 * transport.onMessage((m) => d.step(m));
 * const { index } = await d.propose(bytes, "client-17");
 * const readIndex = await d.readIndex(); // then read the state machine
 * ```
 * @see Raft paper Figure 2; Raft thesis §6.3 (client ids), §6.4 (ReadIndex)
 */
export class RaftDriver {
  readonly id: NodeId;
  readonly #o: DriverOptions;
  readonly #storage: RaftStorage;
  readonly #raft: Raft;
  readonly #tickMs: number;
  readonly #compactEvery: number;
  #inbox: Input[] = [];
  #busy = false;
  #stopped = false;
  #cancelTick: (() => void) | null = null;
  #applyWaiters = new Map<string, Waiter<number>[]>();
  #readWaiters = new Map<string, Waiter<number>>();
  #appliedWaiters: { index: number; w: Waiter<number> }[] = [];
  #applied: number;

  private constructor(o: DriverOptions, storage: RaftStorage, raft: Raft) {
    this.id = o.id;
    this.#o = o;
    this.#storage = storage;
    this.#raft = raft;
    this.#tickMs = o.tickMs ?? 100;
    this.#compactEvery = o.compactEvery ?? 10000;
    this.#applied = raft.lastApplied;
  }

  /**
   * Recovers the node from its disk (bootstrapping `founding` on an empty
   * one), restores the state machine from the stored snapshot, and starts
   * ticking.
   * @throws {StorageCorruptError} when the stored state is damaged (the node
   * must not rejoin with it: remove it and add it back as a new member).
   */
  static async open(o: DriverOptions): Promise<RaftDriver> {
    const storage = await RaftStorage.open(o.disk, o.dir ?? "raft");
    if (storage.isEmpty && o.founding) await storage.bootstrap(o.founding);
    const state = storage.state;
    o.observer?.onBoot?.(state);
    const raft = new Raft({ ...o.raft, id: o.id, rng: o.rng }, state);
    await o.stateMachine.restoreSnapshot(
      state.snapshot?.data ?? new Uint8Array(0),
      raft.snapshotMeta.index,
    );
    const d = new RaftDriver(o, storage, raft);
    d.#scheduleTick(o.firstTickMs ?? d.#tickMs);
    return d;
  }

  /** The core, read-only use only (status, checkers); never call its mutating methods. */
  get raft(): Raft {
    return this.#raft;
  }

  /** What `open()` recovered and cut. */
  get recovery(): RaftStorage["report"] {
    return this.#storage.report;
  }

  /** True after `stop()` or a fatal error. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** Hands one inbound message to the core (at the next safe point). */
  step(m: Message): void {
    this.#push({ kind: "msg", m });
  }

  /**
   * Proposes `data`. Resolves with the entry's index once an entry carrying
   * `id` is applied here (so the caller can read its effect); a retry with
   * the same `id` through any member is applied once (the state machine
   * drops repeats). Never times out by itself: pass `signal` to give up.
   * @throws {ProposalDroppedError} (rejects) when no leader is known, or the node was removed.
   * @throws {DriverStoppedError} (rejects) when the driver stops first.
   */
  propose(data: Uint8Array, id?: string, signal?: AbortSignal): Promise<number> {
    const cid = id ?? this.#newId("p");
    return this.#whenApplied(cid, signal, (r) => r.propose(data, cid));
  }

  /**
   * Proposes one membership change (add a learner, promote, remove);
   * resolves with its index once applied here. Only one change is in flight
   * at a time; the leader promotes caught-up learners itself.
   * @throws {ProposalDroppedError} (rejects) when no leader is known or a change is pending.
   * @throws {RangeError} (rejects) when the change does not apply to the membership.
   * @see Raft thesis §4.1, §4.2.1
   */
  changeMembership(cc: ConfChange, id?: string, signal?: AbortSignal): Promise<number> {
    const cid = id ?? this.#newId("c");
    return this.#whenApplied(cid, signal, (r) => r.proposeConfChange(cc, cid));
  }

  /**
   * A linearizable read point: resolves with an index once the leader
   * confirmed it with a heartbeat round and this node has applied up to it;
   * reading the state machine then is linearizable. Never times out by
   * itself (a lost request stays pending): pass `signal` to give up.
   * @throws {ProposalDroppedError} (rejects) when no leader is known.
   * @see Raft thesis §6.4
   */
  readIndex(signal?: AbortSignal): Promise<number> {
    const ctx = this.#newId("r");
    return new Promise<number>((resolve, reject) => {
      if (this.#stopped) return reject(new DriverStoppedError(`Node "${this.id}" stopped`));
      const w: Waiter<number> = {
        resolve: (index) => this.#whenAppliedIndex(index, { resolve, reject }),
        reject,
      };
      this.#readWaiters.set(ctx, w);
      signal?.addEventListener("abort", () => {
        if (this.#readWaiters.delete(ctx)) reject(signal.reason);
      }, { once: true });
      this.#push({
        kind: "call",
        fn: (r) => {
          try {
            r.readIndex(ctx);
          } catch (err) {
            this.#readWaiters.delete(ctx);
            reject(err);
          }
        },
      });
    });
  }

  /** Runs `fn` against the core at the next safe point (between ready cycles). */
  call(fn: (r: Raft) => void): void {
    this.#push({ kind: "call", fn });
  }

  /** The node's role, term, indexes and members (with match indexes when it leads). */
  status(): DriverStatus {
    const r = this.#raft;
    const m = r.membership;
    const peer = (id: NodeId, role: "voter" | "learner"): PeerStatus => ({
      id,
      role,
      matchIndex: r.role === "leader" ? (id === r.id ? r.lastIndex : r.matchOf(id)) : undefined,
    });
    return {
      id: r.id,
      role: r.role,
      term: r.term,
      leader: r.leader,
      commitIndex: r.commitIndex,
      lastApplied: this.#applied,
      lastIndex: r.lastIndex,
      snapshotIndex: r.snapshotMeta.index,
      members: [
        ...m.voters.map((v) => peer(v, "voter")),
        ...m.learners.map((l) => peer(l, "learner")),
      ],
      removed: r.removed,
      stopped: this.#stopped,
    };
  }

  /**
   * Stops ticking and processing; pending calls reject with
   * `DriverStoppedError`. Work already handed to the disk is not waited for.
   */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#cancelTick?.();
    this.#cancelTick = null;
    this.#storage.close();
    const err = new DriverStoppedError(`Node "${this.id}" stopped`);
    for (const ws of this.#applyWaiters.values()) for (const w of ws) w.reject(err);
    for (const w of this.#readWaiters.values()) w.reject(err);
    for (const x of this.#appliedWaiters) x.w.reject(err);
    this.#applyWaiters.clear();
    this.#readWaiters.clear();
    this.#appliedWaiters = [];
  }

  // ---- internals -------------------------------------------------------------

  #newId(prefix: string): string {
    const b = this.#o.rng.fill(new Uint8Array(12));
    return `${prefix}-${this.id}-${Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("")}`;
  }

  #scheduleTick(delayMs: number): void {
    this.#cancelTick = this.#o.timers.setTimeout(delayMs, () => {
      if (this.#stopped || this.#raft.removed) return;
      this.#push({ kind: "tick" });
      this.#scheduleTick(this.#tickMs);
    });
  }

  #whenApplied(
    id: string,
    signal: AbortSignal | undefined,
    fn: (r: Raft) => void,
  ): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      if (this.#stopped) return reject(new DriverStoppedError(`Node "${this.id}" stopped`));
      const w: Waiter<number> = { resolve, reject };
      const list = this.#applyWaiters.get(id) ?? [];
      list.push(w);
      this.#applyWaiters.set(id, list);
      const drop = () => {
        const l = this.#applyWaiters.get(id);
        if (!l) return;
        const rest = l.filter((x) => x !== w);
        if (rest.length > 0) this.#applyWaiters.set(id, rest);
        else this.#applyWaiters.delete(id);
      };
      signal?.addEventListener("abort", () => {
        drop();
        reject(signal.reason);
      }, { once: true });
      this.#push({
        kind: "call",
        fn: (r) => {
          try {
            fn(r);
          } catch (err) {
            drop();
            reject(err);
          }
        },
      });
    });
  }

  #whenAppliedIndex(index: number, w: Waiter<number>): void {
    if (this.#applied >= index) w.resolve(index);
    else this.#appliedWaiters.push({ index, w });
  }

  #push(i: Input): void {
    if (this.#stopped) return;
    this.#inbox.push(i);
    if (!this.#busy) void this.#loop();
  }

  #fatal(err: unknown): void {
    if (this.#stopped) return;
    this.stop();
    this.#o.onFatal?.(err);
  }

  async #loop(): Promise<void> {
    const raft = this.#raft;
    const obs = this.#o.observer;
    this.#busy = true;
    try {
      while (!this.#stopped) {
        const inbox = this.#inbox;
        this.#inbox = [];
        for (const i of inbox) {
          if (i.kind === "tick") raft.tick();
          else if (i.kind === "msg") raft.step(i.m);
          else i.fn(raft);
          obs?.afterStep?.(raft, i.kind === "msg" ? i.m : undefined);
        }
        if (!raft.hasReady()) {
          if (this.#inbox.length > 0) continue;
          break;
        }
        const rd = raft.ready();
        await this.#storage.save(rd);
        if (this.#stopped) return;
        obs?.onPersisted?.(raft, rd);
        if (rd.snapshot?.restore) {
          await this.#o.stateMachine.restoreSnapshot(rd.snapshot.data, rd.snapshot.meta.index);
          if (this.#stopped) return;
          this.#applied = rd.snapshot.meta.index;
        }
        for (const m of rd.messages) {
          obs?.onSend?.(raft, m);
          this.#o.send(m);
        }
        if (rd.committedEntries.length > 0) {
          await this.#o.stateMachine.apply(rd.committedEntries);
          if (this.#stopped) return;
          this.#applied = rd.committedEntries.at(-1)!.index;
          for (const e of rd.committedEntries) {
            if (e.id === undefined) continue;
            const ws = this.#applyWaiters.get(e.id);
            if (!ws) continue;
            this.#applyWaiters.delete(e.id);
            for (const w of ws) w.resolve(e.index);
          }
        }
        for (const rs of rd.readStates) {
          const w = this.#readWaiters.get(rs.ctx);
          if (w) {
            this.#readWaiters.delete(rs.ctx);
            w.resolve(rs.index);
          }
        }
        raft.advance(rd);
        if (this.#appliedWaiters.length > 0) {
          const a = this.#applied;
          const due = this.#appliedWaiters.filter((x) => x.index <= a);
          this.#appliedWaiters = this.#appliedWaiters.filter((x) => x.index > a);
          for (const x of due) x.w.resolve(x.index);
        }
        if (raft.lastApplied - raft.snapshotMeta.index >= this.#compactEvery && !raft.removed) {
          const at = raft.lastApplied;
          const data = await this.#o.stateMachine.takeSnapshot();
          if (this.#stopped) return;
          raft.compact(at, data);
        }
        obs?.afterStep?.(raft);
        if (raft.removed) this.#cancelTick?.();
      }
    } catch (err) {
      this.#fatal(err);
    } finally {
      this.#busy = false;
    }
  }
}
