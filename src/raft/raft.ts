/**
 * The Raft state machine: one node's role, log and progress tracking,
 * driven by `tick()`, `step()`, `propose()` and `readIndex()`, drained by
 * `ready()` / `advance()`.
 *
 * Pure: no clock, no I/O; randomness only from the injected `Rng`.
 *
 * @module
 */
import type { Rng } from "../io/mod.ts";
import {
  applyConfChange,
  type ConfChange,
  decodeConfChange,
  encodeConfChange,
  type Entry,
  type EntryKind,
  type HardState,
  type Membership,
  type Message,
  type NodeId,
  type ReadState,
  type Ready,
  type Snapshot,
  type SnapshotMeta,
} from "./types.ts";

/** Tunables of one node. Times are in ticks; the caller decides how long a tick is. */
export interface RaftConfig {
  readonly id: NodeId;
  /** Source of election jitter. */
  readonly rng: Rng;
  /** Base election timeout; each timeout is drawn from [electionTicks, 2*electionTicks). Default 10. */
  readonly electionTicks?: number;
  /** Heartbeat interval of a leader. Default 1. */
  readonly heartbeatTicks?: number;
  /** Run a PreVote round before a real election (Raft thesis §9.6). Default true. */
  readonly preVote?: boolean;
  /** A leader steps down when a quorum is silent for electionTicks (thesis §6.2). Default true. */
  readonly checkQuorum?: boolean;
  /** Cap on voters; learners are promoted automatically below it. Default 5. */
  readonly maxVoters?: number;
  /** Promote caught-up learners automatically. Default true. */
  readonly autoPromote?: boolean;
  /** A learner is caught up when it matches the commit index and is within this many entries of the log end. Default 16. */
  readonly promoteLagEntries?: number;
  /** Most entries in one AppendEntries. Default 64. */
  readonly maxEntriesPerMessage?: number;
  /** Most unacknowledged AppendEntries to one follower. Default 16. */
  readonly maxInflightMessages?: number;
  /** Largest snapshot chunk. Default 61440 (60 KiB, fits one 64 KiB KV value). */
  readonly snapshotChunkBytes?: number;
  /**
   * Entries kept before a new snapshot's index by `compact()`, so a follower
   * slightly behind catches up from the log, and one that just installed a
   * snapshot finds the entries after it. Default 0.
   */
  readonly retainEntries?: number;
}

/** What a node has on stable storage when it starts. */
export interface StoredState {
  readonly hardState: HardState;
  /** The latest snapshot, or null for a node that has never had one (a joiner). */
  readonly snapshot: Snapshot | null;
  /**
   * Contiguous entries; they may start before the snapshot's index (kept by
   * `retainEntries`) but never after the entry following it.
   */
  readonly entries: readonly Entry[];
}

/** The role of a node. @see Raft paper §5.1, thesis §9.6 (preCandidate) */
export type Role = "follower" | "preCandidate" | "candidate" | "leader";

/** Raised when a proposal or read cannot be accepted now; the caller retries later. */
export class ProposalDroppedError extends Error {
  override name = "ProposalDroppedError";
}

/** Raised when the caller breaks the ready/advance protocol or a Raft invariant breaks. */
export class RaftInvariantError extends Error {
  override name = "RaftInvariantError";
}

interface Progress {
  match: number;
  next: number;
  state: "probe" | "replicate" | "snapshot";
  paused: boolean;
  inflight: number[];
  recentActive: boolean;
  /** The snapshot being sent, pinned until the follower has it all. */
  snap: Snapshot | null;
  snapOffset: number;
}

interface PendingRead {
  seq: number;
  ctx: string;
  from: NodeId;
  index: number;
}

const EMPTY: Uint8Array = new Uint8Array(0);
const NO_MEMBERS: Membership = { voters: [], learners: [] };

/** Size of a majority of `n` voters. */
export function quorum(n: number): number {
  return Math.floor(n / 2) + 1;
}

/**
 * The persistent state of a founding member: a snapshot at `index` (default
 * 1), term 1, carrying the initial membership, so later joiners catch up from
 * a snapshot rather than an empty log. An `index` above 1 adopts a state
 * machine that already applied that many entries (its state is the
 * snapshot's; the snapshot data is empty and the machine keeps what it has).
 * @throws {RangeError} when `index` is not a positive integer.
 */
export function bootstrapState(membership: Membership, index = 1): StoredState {
  if (!Number.isSafeInteger(index) || index < 1) {
    throw new RangeError(`Cannot bootstrap at index ${index}: it must be a positive integer`);
  }
  const m = { voters: [...membership.voters].sort(), learners: [...membership.learners].sort() };
  return {
    hardState: { term: 1, vote: null, commit: index },
    snapshot: { meta: { index, term: 1, membership: m }, data: EMPTY },
    entries: [],
  };
}

/**
 * One Raft node as a pure state machine.
 *
 * Between `ready()` and `advance()` the caller must not call any other
 * mutating method.
 *
 * @example
 * ```ts
 * const r = new Raft({ id: "a", rng }, bootstrapState({ voters: ["a"], learners: [] }));
 * r.tick();
 * while (r.hasReady()) { const rd = r.ready(); persist(rd); send(rd.messages); apply(rd.committedEntries); r.advance(rd); }
 * ```
 * @see Ongaro & Ousterhout 2014, "In Search of an Understandable Consensus Algorithm"
 */
export class Raft {
  readonly id: NodeId;
  readonly #rng: Rng;
  readonly #electionTicks: number;
  readonly #heartbeatTicks: number;
  readonly #preVote: boolean;
  readonly #checkQuorum: boolean;
  readonly #maxVoters: number;
  readonly #autoPromote: boolean;
  readonly #promoteLag: number;
  readonly #maxEntries: number;
  readonly #maxInflight: number;
  readonly #chunkBytes: number;
  readonly #retain: number;

  #term: number;
  #vote: NodeId | null;
  #role: Role = "follower";
  #leader: NodeId | null = null;
  #removed = false;

  #snapshot: Snapshot;
  /** The entry just before `#entries[0]` (index and term); never after the snapshot. */
  #baseIndex: number;
  #baseTerm: number;
  #entries: Entry[];
  #commit: number;
  #applied: number;
  #stable: number;
  #membership: Membership;
  #confApplied: number;

  #electionElapsed = 0;
  #heartbeatElapsed = 0;
  #randomizedElectionTicks = 0;
  #votes = new Map<NodeId, boolean>();
  #progress = new Map<NodeId, Progress>();

  #msgs: Message[] = [];
  #readStates: ReadState[] = [];
  #readSeq = 0;
  #pendingReads: PendingRead[] = [];
  #waitingReads: { ctx: string; from: NodeId }[] = [];
  #ackedSeq = new Map<NodeId, number>();
  /** Leader only: non-members being sent our snapshot so they learn their removal. */
  #strangers = new Map<NodeId, Progress>();
  /** Leader only: client ids of entries above the commit index, and their index. */
  #pendingIds = new Map<string, number>();
  #incoming: { meta: SnapshotMeta; chunks: Uint8Array[]; received: number } | null = null;
  #snapshotToPersist: (Snapshot & { restore: boolean; firstIndex: number }) | null = null;
  #prevHardState: HardState;
  #outstanding = false;

  /**
   * @throws {RaftInvariantError} when `stored` is inconsistent (entries not
   * contiguous after the snapshot, commit beyond the log).
   */
  constructor(config: RaftConfig, stored: StoredState) {
    this.id = config.id;
    this.#rng = config.rng;
    this.#electionTicks = config.electionTicks ?? 10;
    this.#heartbeatTicks = config.heartbeatTicks ?? 1;
    this.#preVote = config.preVote ?? true;
    this.#checkQuorum = config.checkQuorum ?? true;
    this.#maxVoters = config.maxVoters ?? 5;
    this.#autoPromote = config.autoPromote ?? true;
    this.#promoteLag = config.promoteLagEntries ?? 16;
    this.#maxEntries = config.maxEntriesPerMessage ?? 64;
    this.#maxInflight = config.maxInflightMessages ?? 16;
    this.#chunkBytes = config.snapshotChunkBytes ?? 61440;
    this.#retain = config.retainEntries ?? 0;

    this.#snapshot = stored.snapshot ??
      { meta: { index: 0, term: 0, membership: NO_MEMBERS }, data: EMPTY };
    const snapIndex = this.#snapshot.meta.index;
    const first = stored.entries[0];
    const base = first && first.index <= snapIndex ? first.index - 1 : snapIndex;
    this.#baseIndex = base;
    this.#baseTerm = base === snapIndex ? this.#snapshot.meta.term : 0;
    stored.entries.forEach((e, i) => {
      if (e.index !== base + 1 + i) {
        throw new RaftInvariantError(`Stored entry ${e.index} is not at position ${base + 1 + i}`);
      }
    });
    this.#entries = [...stored.entries];
    if (base !== snapIndex) {
      if (this.termAt(snapIndex) !== this.#snapshot.meta.term) {
        throw new RaftInvariantError(`Stored entries disagree with the snapshot at ${snapIndex}`);
      }
      // The term before the first entry is unknown; treat that index as compacted.
      this.#entries = this.#entries.slice(1);
      this.#baseIndex = base + 1;
      this.#baseTerm = stored.entries[0].term;
    }
    this.#term = stored.hardState.term;
    this.#vote = stored.hardState.vote;
    this.#commit = Math.max(stored.hardState.commit, snapIndex);
    if (this.#commit > this.lastIndex) {
      throw new RaftInvariantError(
        `Stored commit ${this.#commit} is beyond the last index ${this.lastIndex}`,
      );
    }
    this.#applied = snapIndex;
    this.#stable = this.lastIndex;
    this.#membership = this.#snapshot.meta.membership;
    this.#confApplied = snapIndex;
    this.#foldConf();
    this.#prevHardState = this.#hardState();
    this.#resetRandomizedTimeout();
  }

  // ---- read-only views -------------------------------------------------

  /** currentTerm. */
  get term(): number {
    return this.#term;
  }
  /** votedFor in the current term. */
  get vote(): NodeId | null {
    return this.#vote;
  }
  get role(): Role {
    return this.#role;
  }
  /** The leader this node follows (itself when leader), or null. */
  get leader(): NodeId | null {
    return this.#leader;
  }
  /** commitIndex. */
  get commitIndex(): number {
    return this.#commit;
  }
  /** lastApplied: the highest index handed out in committedEntries and advanced. */
  get lastApplied(): number {
    return this.#applied;
  }
  /** Index of the last log entry (the snapshot index when the log is empty). */
  get lastIndex(): number {
    return this.#baseIndex + this.#entries.length;
  }
  /** Term of the last log entry. */
  get lastTerm(): number {
    return this.termAt(this.lastIndex) ?? 0;
  }
  /** The committed membership. */
  get membership(): Membership {
    return this.#membership;
  }
  /** The latest snapshot's position. */
  get snapshotMeta(): SnapshotMeta {
    return this.#snapshot.meta;
  }
  /** Index of the first entry still in the log (earlier ones were compacted). */
  get firstIndex(): number {
    return this.#baseIndex + 1;
  }
  /** True once this node has committed its own removal: it has stopped and ignores everything. */
  get removed(): boolean {
    return this.#removed;
  }

  /** Term of the entry at `index`, or undefined when compacted or beyond the log. */
  termAt(index: number): number | undefined {
    const base = this.#baseIndex;
    if (index === base) return this.#baseTerm;
    if (index < base || index > this.lastIndex) return undefined;
    return this.#entries[index - base - 1].term;
  }

  /** The entry at `index`, or undefined when compacted or beyond the log. */
  entryAt(index: number): Entry | undefined {
    const base = this.#baseIndex;
    if (index <= base || index > this.lastIndex) return undefined;
    return this.#entries[index - base - 1];
  }

  /** Match index of a peer as the leader sees it (undefined when not leader or unknown). */
  matchOf(peer: NodeId): number | undefined {
    return this.#progress.get(peer)?.match;
  }

  // ---- inputs ------------------------------------------------------------

  /**
   * Advances logical time by one tick: election timeouts for followers and
   * candidates; heartbeats and CheckQuorum for a leader.
   * @see Raft paper §5.2, thesis §6.2 (CheckQuorum)
   */
  tick(): void {
    this.#assertIdle();
    if (this.#removed) return;
    if (this.#role === "leader") {
      this.#heartbeatElapsed++;
      this.#electionElapsed++;
      if (this.#electionElapsed >= this.#electionTicks) {
        this.#electionElapsed = 0;
        if (this.#checkQuorum && !this.#quorumActive()) {
          this.#becomeFollower(this.#term, null);
          return;
        }
        for (const pr of this.#progress.values()) pr.recentActive = false;
      }
      if (this.#heartbeatElapsed >= this.#heartbeatTicks) {
        this.#heartbeatElapsed = 0;
        this.#bcastHeartbeat(this.#pendingReads.at(-1)?.seq ?? 0);
      }
      this.#maybePromote();
      return;
    }
    this.#electionElapsed++;
    if (this.#isPromotable() && this.#electionElapsed >= this.#randomizedElectionTicks) {
      this.#electionElapsed = 0;
      this.#campaign();
    }
  }

  /**
   * Handles one message from a peer.
   * @throws {RaftInvariantError} on a broken safety invariant (two leaders
   * in one term, a conflict below the commit index).
   * @see Raft paper Figure 2 ("Rules for servers")
   */
  step(m: Message): void {
    this.#assertIdle();
    if (this.#removed) return;
    switch (m.type) {
      case "Propose":
        if (this.#role === "leader") {
          if (m.kind === "normal") this.#appendEntry("normal", m.data, m.id);
          else {
            const err = this.#checkConfChange(decodeConfChange(m.data));
            if (err === null) this.#appendEntry("conf", m.data, m.id);
          }
        }
        return;
      case "ReadIndex":
        if (this.#role === "leader") this.#handleReadRequest(m.ctx, m.from);
        return;
      case "ReadIndexResponse":
        this.#readStates.push({ ctx: m.ctx, index: m.index });
        return;
    }

    if (
      this.#role === "leader" && m.type !== "InstallSnapshotResponse" && m.from !== this.id &&
      !this.#membership.voters.includes(m.from) && !this.#membership.learners.includes(m.from)
    ) {
      this.#noticeStranger(m.from);
    }

    if (m.term > this.#term) {
      if (m.type === "PreVote" || m.type === "RequestVote") {
        const inLease = this.#checkQuorum && this.#leader !== null &&
          this.#electionElapsed < this.#electionTicks;
        if (inLease) return; // thesis §4.2.3: ignore disruptive servers
      }
      if (m.type === "PreVote" || (m.type === "PreVoteResponse" && m.granted)) {
        // A PreVote does not change anyone's term.
      } else {
        const fromLeader = m.type === "AppendEntries" || m.type === "Heartbeat" ||
          m.type === "InstallSnapshot";
        this.#becomeFollower(m.term, fromLeader ? m.from : null);
      }
    } else if (m.term < this.#term) {
      if (
        (this.#checkQuorum || this.#preVote) &&
        (m.type === "AppendEntries" || m.type === "Heartbeat" || m.type === "InstallSnapshot")
      ) {
        // Tell a stale leader about the newer term so it steps down.
        this.#send({
          type: "AppendEntriesResponse",
          to: m.from,
          term: this.#term,
          success: false,
          matchIndex: 0,
          rejectedIndex: -1,
          conflictIndex: 0,
          conflictTerm: 0,
        });
      } else if (m.type === "PreVote") {
        this.#send({ type: "PreVoteResponse", to: m.from, term: this.#term, granted: false });
      }
      return;
    }

    switch (m.type) {
      case "PreVote":
      case "RequestVote": {
        const canVote = this.#vote === m.from ||
          (this.#vote === null && this.#leader === null) ||
          (m.type === "PreVote" && m.term > this.#term);
        const resp = m.type === "PreVote" ? "PreVoteResponse" : "RequestVoteResponse";
        if (canVote && this.#isUpToDate(m.lastLogIndex, m.lastLogTerm)) {
          this.#send({ type: resp, to: m.from, term: m.term, granted: true });
          if (m.type === "RequestVote") {
            this.#electionElapsed = 0;
            this.#vote = m.from;
          }
        } else {
          this.#send({ type: resp, to: m.from, term: this.#term, granted: false });
        }
        return;
      }
      case "PreVoteResponse":
        if (this.#role === "preCandidate" && m.term === this.#term + 1) {
          this.#poll(m.from, m.granted);
        }
        return;
      case "RequestVoteResponse":
        if (this.#role === "candidate") this.#poll(m.from, m.granted);
        return;
      case "AppendEntries":
      case "Heartbeat":
      case "InstallSnapshot":
        if (this.#role === "leader") {
          throw new RaftInvariantError(
            `Two leaders in term ${this.#term}: "${this.id}" and "${m.from}"`,
          );
        }
        if (this.#role !== "follower") this.#becomeFollower(this.#term, m.from);
        this.#leader = m.from;
        this.#electionElapsed = 0;
        if (m.type === "AppendEntries") this.#handleAppend(m);
        else if (m.type === "Heartbeat") this.#handleHeartbeat(m);
        else this.#handleSnapshot(m);
        return;
      case "AppendEntriesResponse":
        if (this.#role === "leader") this.#handleAppendResponse(m);
        return;
      case "HeartbeatResponse":
        if (this.#role === "leader") this.#handleHeartbeatResponse(m);
        return;
      case "InstallSnapshotResponse":
        if (this.#role === "leader") this.#handleSnapshotResponse(m);
        return;
    }
  }

  /**
   * Proposes an opaque command. On the leader it is appended; on a follower
   * it is forwarded to the leader (and may be lost: the caller retries with
   * the same `id`, and the applier drops an `id` it has already applied).
   * @returns "appended" or "forwarded".
   * @throws {ProposalDroppedError} when no leader is known or the node was removed.
   * @see Raft thesis §6.3 (client interaction, duplicate detection)
   */
  propose(data: Uint8Array, id?: string): "appended" | "forwarded" {
    this.#assertIdle();
    return this.#proposeKind("normal", data, id);
  }

  /**
   * Proposes one membership change. Only one change may be pending, and the
   * leader must have committed an entry of its own term first.
   * @throws {ProposalDroppedError} when no leader is known or a change is pending.
   * @throws {RangeError} when the change does not apply to the membership.
   * @see Raft thesis §4.1, and Ongaro's 2015 note on single-server changes
   */
  proposeConfChange(cc: ConfChange, id?: string): "appended" | "forwarded" {
    this.#assertIdle();
    if (this.#role === "leader") {
      const err = this.#checkConfChange(cc);
      if (err !== null) {
        if (err.startsWith("Pending") || err.startsWith("Leader")) {
          throw new ProposalDroppedError(err);
        }
        throw new RangeError(err);
      }
    }
    return this.#proposeKind("conf", encodeConfChange(cc), id);
  }

  /**
   * Requests a linearizable read point for `ctx`; it arrives in
   * `ready().readStates`. Lost requests are not retried: the caller
   * retries with a new ctx.
   * @throws {ProposalDroppedError} when no leader is known.
   * @see Raft thesis §6.4 (ReadIndex)
   */
  readIndex(ctx: string): void {
    this.#assertIdle();
    if (this.#removed) throw new ProposalDroppedError(`Node "${this.id}" was removed`);
    if (this.#role === "leader") this.#handleReadRequest(ctx, this.id);
    else if (this.#leader !== null) {
      this.#send({ type: "ReadIndex", to: this.#leader, term: this.#term, ctx });
    } else throw new ProposalDroppedError(`No leader known to "${this.id}"`);
  }

  /**
   * Records a snapshot of the applied state at `index` and discards the log
   * up to it. No-op when `index` is not past the current snapshot.
   * @throws {RangeError} when `index` is beyond lastApplied.
   * @see Raft paper §7
   */
  compact(index: number, data: Uint8Array): void {
    this.#assertIdle();
    if (index > this.#applied) {
      throw new RangeError(`Cannot compact to ${index}: lastApplied is ${this.#applied}`);
    }
    if (index <= this.#snapshot.meta.index) return;
    const meta: SnapshotMeta = {
      index,
      term: this.termAt(index)!,
      membership: this.#membershipAt(index),
    };
    const newBase = Math.max(this.#baseIndex, index - this.#retain);
    this.#baseTerm = this.termAt(newBase)!;
    this.#entries = this.#entries.slice(newBase - this.#baseIndex);
    this.#baseIndex = newBase;
    this.#snapshot = { meta, data };
    this.#snapshotToPersist = { meta, data, restore: false, firstIndex: newBase + 1 };
  }

  // ---- output ------------------------------------------------------------

  /** True when `ready()` has work. */
  hasReady(): boolean {
    return this.#msgs.length > 0 || this.#readStates.length > 0 ||
      this.#snapshotToPersist !== null || this.#stable < this.lastIndex ||
      this.#applied < this.#commit || !sameHardState(this.#prevHardState, this.#hardState());
  }

  /**
   * Takes the pending work. The caller must call `advance(ready)` before
   * any other mutating call.
   * @throws {RaftInvariantError} when the previous ready was not advanced.
   */
  ready(): Ready {
    this.#assertIdle();
    this.#outstanding = true;
    const hs = this.#hardState();
    const snap = this.#snapshotToPersist;
    const from = snap?.restore ? snap.meta.index : this.#applied;
    const committed: Entry[] = [];
    for (let i = from + 1; i <= this.#commit; i++) committed.push(this.entryAt(i)!);
    const rd: Ready = {
      hardState: sameHardState(this.#prevHardState, hs) ? null : hs,
      entries: this.#entries.slice(this.#stable - this.#baseIndex),
      snapshot: snap,
      messages: this.#msgs,
      committedEntries: committed,
      readStates: this.#readStates,
    };
    this.#msgs = [];
    this.#readStates = [];
    this.#snapshotToPersist = null;
    return rd;
  }

  /** Marks `rd` as persisted, sent and applied. */
  advance(rd: Ready): void {
    if (!this.#outstanding) throw new RaftInvariantError("advance() without ready()");
    this.#outstanding = false;
    if (rd.hardState) this.#prevHardState = rd.hardState;
    if (rd.snapshot?.restore) this.#applied = Math.max(this.#applied, rd.snapshot.meta.index);
    if (rd.entries.length > 0) this.#stable = Math.max(this.#stable, rd.entries.at(-1)!.index);
    this.#stable = Math.min(this.#stable, this.lastIndex);
    if (rd.committedEntries.length > 0) this.#applied = rd.committedEntries.at(-1)!.index;
    if (this.#role === "leader") {
      if (this.#maybeCommit()) this.#bcastAppend();
    }
  }

  // ---- roles -------------------------------------------------------------

  #becomeFollower(term: number, leader: NodeId | null): void {
    if (term > this.#term) {
      this.#term = term;
      this.#vote = null;
    }
    this.#role = "follower";
    this.#leader = leader;
    this.#electionElapsed = 0;
    this.#resetRandomizedTimeout();
    this.#votes.clear();
    this.#progress.clear();
    this.#pendingReads = [];
    this.#waitingReads = [];
    this.#pendingIds.clear();
    this.#strangers.clear();
  }

  #campaign(): void {
    if (this.#preVote) {
      this.#role = "preCandidate";
      this.#leader = null;
      this.#votes.clear();
      this.#resetRandomizedTimeout();
    } else {
      this.#becomeCandidate();
    }
    this.#requestVotes();
  }

  #becomeCandidate(): void {
    this.#term++;
    this.#vote = this.id;
    this.#role = "candidate";
    this.#leader = null;
    this.#votes.clear();
    this.#resetRandomizedTimeout();
  }

  #requestVotes(): void {
    const pre = this.#role === "preCandidate";
    const term = pre ? this.#term + 1 : this.#term;
    if (this.#poll(this.id, true)) return;
    for (const v of this.#membership.voters) {
      if (v === this.id) continue;
      this.#send({
        type: pre ? "PreVote" : "RequestVote",
        to: v,
        term,
        lastLogIndex: this.lastIndex,
        lastLogTerm: this.lastTerm,
      });
    }
  }

  /** Records a vote; returns true when the round ended (won or lost). */
  #poll(from: NodeId, granted: boolean): boolean {
    if (!this.#membership.voters.includes(from)) return false;
    this.#votes.set(from, granted);
    let yes = 0;
    let no = 0;
    for (const g of this.#votes.values()) g ? yes++ : no++;
    const n = this.#membership.voters.length;
    const q = quorum(n);
    if (yes >= q) {
      if (this.#role === "preCandidate") {
        this.#becomeCandidate();
        this.#requestVotes();
      } else {
        this.#becomeLeader();
      }
      return true;
    }
    if (no > n - q) {
      this.#becomeFollower(this.#term, null);
      return true;
    }
    return false;
  }

  #becomeLeader(): void {
    this.#role = "leader";
    this.#leader = this.id;
    this.#heartbeatElapsed = 0;
    this.#electionElapsed = 0;
    this.#ackedSeq = new Map();
    this.#progress.clear();
    for (const p of this.#peers()) this.#progress.set(p, this.#newProgress());
    this.#pendingIds.clear();
    for (let i = this.#commit + 1; i <= this.lastIndex; i++) {
      const id = this.entryAt(i)!.id;
      if (id !== undefined) this.#pendingIds.set(id, i);
    }
    // A no-op of the new term, so earlier entries commit with it (§5.4.2).
    this.#appendEntry("normal", EMPTY, undefined);
  }

  #newProgress(): Progress {
    return {
      match: 0,
      next: this.lastIndex + 1,
      state: "probe",
      paused: false,
      inflight: [],
      recentActive: true,
      snap: null,
      snapOffset: 0,
    };
  }

  // ---- leader: replication -------------------------------------------------

  #proposeKind(kind: EntryKind, data: Uint8Array, id?: string): "appended" | "forwarded" {
    if (this.#removed) throw new ProposalDroppedError(`Node "${this.id}" was removed`);
    if (this.#role === "leader") {
      this.#appendEntry(kind, data, id);
      return "appended";
    }
    if (this.#leader === null) throw new ProposalDroppedError(`No leader known to "${this.id}"`);
    this.#send({
      type: "Propose",
      to: this.#leader,
      term: this.#term,
      kind,
      data,
      ...(id === undefined ? {} : { id }),
    });
    return "forwarded";
  }

  #appendEntry(kind: EntryKind, data: Uint8Array, id: string | undefined): void {
    if (id !== undefined) {
      // A retry of a proposal still in flight in our log: drop it, so client
      // retries cannot flood a slow cluster (the applier drops committed ones).
      if (this.#pendingIds.has(id)) return;
      this.#pendingIds.set(id, this.lastIndex + 1);
    }
    const e: Entry = {
      index: this.lastIndex + 1,
      term: this.#term,
      kind,
      data,
      ...(id === undefined ? {} : { id }),
    };
    this.#entries.push(e);
    this.#bcastAppend();
  }

  #checkConfChange(cc: ConfChange): string | null {
    if (this.termAt(this.#commit) !== this.#term) {
      return "Leader has not yet committed an entry in its term";
    }
    for (let i = this.#commit + 1; i <= this.lastIndex; i++) {
      if (this.entryAt(i)!.kind === "conf") return "Pending membership change not yet committed";
    }
    const next = applyConfChange(this.#membership, cc, this.#maxVoters);
    return typeof next === "string" ? next : null;
  }

  #maybePromote(): void {
    if (!this.#autoPromote || this.#role !== "leader") return;
    if (this.#membership.voters.length >= this.#maxVoters) return;
    for (const l of this.#membership.learners) {
      const pr = this.#progress.get(l);
      if (!pr || pr.match < this.#commit || pr.match + this.#promoteLag < this.lastIndex) continue;
      const cc: ConfChange = { type: "promote", nodeId: l };
      if (this.#checkConfChange(cc) === null) {
        this.#appendEntry("conf", encodeConfChange(cc), undefined);
      }
      return;
    }
  }

  #bcastAppend(): void {
    for (const p of this.#progress.keys()) this.#sendAppend(p);
  }

  #sendAppend(to: NodeId): void {
    const pr = this.#progress.get(to);
    if (!pr || pr.state === "snapshot") return;
    if (pr.state === "probe" && pr.paused) return;
    if (pr.state === "replicate" && pr.inflight.length >= this.#maxInflight) return;
    const prevLogIndex = pr.next - 1;
    const prevLogTerm = this.termAt(prevLogIndex);
    if (prevLogTerm === undefined) {
      this.#startSnapshot(to, pr);
      return;
    }
    const last = Math.min(this.lastIndex, prevLogIndex + this.#maxEntries);
    const entries: Entry[] = [];
    for (let i = pr.next; i <= last; i++) entries.push(this.entryAt(i)!);
    this.#send({
      type: "AppendEntries",
      to,
      term: this.#term,
      prevLogIndex,
      prevLogTerm,
      entries,
      leaderCommit: this.#commit,
    });
    if (pr.state === "replicate") {
      if (entries.length > 0) {
        pr.next = last + 1;
        pr.inflight.push(last);
      }
    } else {
      pr.paused = true;
    }
  }

  #sendAppendAnyway(to: NodeId): void {
    const pr = this.#progress.get(to)!;
    pr.paused = false;
    pr.inflight = [];
    if (pr.state === "snapshot") pr.state = "probe";
    this.#sendAppend(to);
  }

  #handleAppendResponse(m: Message & { type: "AppendEntriesResponse" }): void {
    const pr = this.#progress.get(m.from);
    if (!pr) return;
    pr.recentActive = true;
    if (!m.success) {
      if (pr.state === "snapshot") return;
      const stale = pr.state === "replicate"
        ? m.rejectedIndex <= pr.match
        : m.rejectedIndex !== pr.next - 1;
      if (stale || m.rejectedIndex < 0) return;
      let next = m.conflictIndex;
      if (m.conflictTerm > 0) {
        // Skip the follower's whole conflicting term; if we hold entries of that
        // term, resume right after our last one of it (§5.3).
        let i = Math.min(m.rejectedIndex, this.lastIndex);
        const base = this.#baseIndex;
        while (i > base && (this.termAt(i) ?? 0) > m.conflictTerm) i--;
        if (this.termAt(i) === m.conflictTerm) next = i + 1;
      }
      pr.next = Math.max(pr.match + 1, Math.min(next, m.rejectedIndex));
      pr.state = "probe";
      pr.paused = false;
      pr.inflight = [];
      this.#sendAppend(m.from);
      return;
    }
    const advanced = m.matchIndex > pr.match;
    if (advanced) pr.match = m.matchIndex;
    pr.next = Math.max(pr.next, pr.match + 1);
    pr.inflight = pr.inflight.filter((i) => i > m.matchIndex);
    if (pr.state === "probe") {
      pr.state = "replicate";
      pr.inflight = [];
    }
    pr.paused = false;
    if (advanced && this.#maybeCommit()) this.#bcastAppend();
    else if (pr.next <= this.lastIndex) this.#sendAppend(m.from);
    if (advanced) this.#maybePromote();
  }

  /** Advances commitIndex to the quorum match when that entry is of the current term (§5.4.2). */
  #maybeCommit(): boolean {
    const voters = this.#membership.voters;
    if (!voters.includes(this.id)) return false;
    const matches = voters.map((v) =>
      v === this.id ? this.#stable : this.#progress.get(v)?.match ?? 0
    )
      .sort((a, b) => b - a);
    const q = matches[quorum(voters.length) - 1];
    if (q > this.#commit && this.termAt(q) === this.#term) {
      this.#commitTo(q);
      return true;
    }
    return false;
  }

  #quorumActive(): boolean {
    let active = 0;
    for (const v of this.#membership.voters) {
      if (v === this.id || this.#progress.get(v)?.recentActive) active++;
    }
    return active >= quorum(this.#membership.voters.length);
  }

  #bcastHeartbeat(readSeq: number): void {
    for (const [p, pr] of this.#progress) {
      this.#send({
        type: "Heartbeat",
        to: p,
        term: this.#term,
        commit: Math.min(pr.match, this.#commit),
        readSeq,
      });
    }
  }

  #handleHeartbeatResponse(m: Message & { type: "HeartbeatResponse" }): void {
    const pr = this.#progress.get(m.from);
    if (!pr) return;
    pr.recentActive = true;
    if (pr.state === "snapshot") {
      this.#sendSnapshotChunk(m.from, pr);
    } else if (pr.match < this.lastIndex) {
      if (pr.state === "replicate" && pr.inflight.length >= this.#maxInflight) {
        pr.state = "probe";
        pr.next = pr.match + 1;
        pr.inflight = [];
      }
      pr.paused = false;
      this.#sendAppend(m.from);
    }
    if (m.readSeq > (this.#ackedSeq.get(m.from) ?? 0)) {
      this.#ackedSeq.set(m.from, m.readSeq);
      this.#releaseReads();
    }
  }

  // ---- leader: snapshots ---------------------------------------------------

  #startSnapshot(to: NodeId, pr: Progress): void {
    pr.state = "snapshot";
    pr.snap = this.#snapshot;
    pr.snapOffset = 0;
    pr.inflight = [];
    this.#sendSnapshotChunk(to, pr);
  }

  #sendSnapshotChunk(to: NodeId, pr: Progress): void {
    const { meta, data } = pr.snap ?? this.#snapshot;
    const end = Math.min(data.length, pr.snapOffset + this.#chunkBytes);
    this.#send({
      type: "InstallSnapshot",
      to,
      term: this.#term,
      meta,
      offsetBytes: pr.snapOffset,
      totalBytes: data.length,
      data: data.subarray(pr.snapOffset, end),
      done: end === data.length,
    });
  }

  /**
   * A node outside the membership wrote to us: most likely a member removed
   * without learning it (its last append was lost). If our snapshot already
   * excludes it, send that snapshot: installing it, the node sees its
   * removal and stops itself.
   */
  #noticeStranger(id: NodeId): void {
    const sm = this.#snapshot.meta.membership;
    if (sm.voters.includes(id) || sm.learners.includes(id)) return;
    let pr = this.#strangers.get(id);
    if (!pr) {
      pr = { ...this.#newProgress(), state: "snapshot", snap: this.#snapshot };
      this.#strangers.set(id, pr);
    }
    this.#sendSnapshotChunk(id, pr);
  }

  #handleSnapshotResponse(m: Message & { type: "InstallSnapshotResponse" }): void {
    const stranger = this.#strangers.get(m.from);
    if (stranger && !this.#progress.has(m.from)) {
      if (m.done) this.#strangers.delete(m.from);
      else if (
        m.snapshotIndex === stranger.snap?.meta.index && m.offsetBytes !== stranger.snapOffset
      ) {
        stranger.snapOffset = m.offsetBytes;
        this.#sendSnapshotChunk(m.from, stranger);
      }
      return;
    }
    const pr = this.#progress.get(m.from);
    if (!pr) return;
    pr.recentActive = true;
    if (m.done) {
      if (m.matchIndex > pr.match) pr.match = m.matchIndex;
      if (pr.state === "snapshot") {
        pr.snap = null;
        pr.state = "probe";
        pr.paused = false;
        pr.next = pr.match + 1;
        if (this.#maybeCommit()) this.#bcastAppend();
        else this.#sendAppend(m.from);
      }
      return;
    }
    if (pr.state !== "snapshot" || m.snapshotIndex !== pr.snap?.meta.index) return;
    if (m.offsetBytes === pr.snapOffset) return; // duplicate ack
    pr.snapOffset = m.offsetBytes;
    this.#sendSnapshotChunk(m.from, pr);
  }

  // ---- leader: reads ---------------------------------------------------------

  #handleReadRequest(ctx: string, from: NodeId): void {
    if (this.termAt(this.#commit) !== this.#term) {
      this.#waitingReads.push({ ctx, from });
      return;
    }
    if (this.#membership.voters.length === 1) {
      this.#deliverRead(ctx, from, this.#commit);
      return;
    }
    const seq = ++this.#readSeq;
    this.#pendingReads.push({ seq, ctx, from, index: this.#commit });
    this.#bcastHeartbeat(seq);
  }

  #releaseReads(): void {
    const voters = this.#membership.voters;
    const q = quorum(voters.length);
    while (this.#pendingReads.length > 0) {
      const p = this.#pendingReads[0];
      let acks = 0;
      for (const v of voters) {
        if (v === this.id || (this.#ackedSeq.get(v) ?? 0) >= p.seq) acks++;
      }
      if (acks < q) return;
      this.#pendingReads.shift();
      this.#deliverRead(p.ctx, p.from, p.index);
    }
  }

  #deliverRead(ctx: string, from: NodeId, index: number): void {
    if (from === this.id) this.#readStates.push({ ctx, index });
    else this.#send({ type: "ReadIndexResponse", to: from, term: this.#term, ctx, index });
  }

  // ---- follower ------------------------------------------------------------

  #handleAppend(m: Message & { type: "AppendEntries" }): void {
    const reply = (success: boolean, matchIndex: number, conflictIndex = 0, conflictTerm = 0) =>
      this.#send({
        type: "AppendEntriesResponse",
        to: m.from,
        term: this.#term,
        success,
        matchIndex,
        rejectedIndex: success ? 0 : m.prevLogIndex,
        conflictIndex,
        conflictTerm,
      });
    if (m.prevLogIndex < this.#commit) {
      reply(true, this.#commit);
      return;
    }
    const t = this.termAt(m.prevLogIndex);
    if (t !== m.prevLogTerm) {
      if (t === undefined) {
        reply(false, 0, this.lastIndex + 1, 0);
      } else {
        let ci = m.prevLogIndex;
        const base = this.#baseIndex;
        while (ci - 1 > base && this.termAt(ci - 1) === t) ci--;
        reply(false, 0, ci, t);
      }
      return;
    }
    for (const e of m.entries) {
      if (e.index <= this.lastIndex) {
        if (this.termAt(e.index) === e.term) continue;
        if (e.index <= this.#commit) {
          throw new RaftInvariantError(
            `Conflict at committed index ${e.index} (commit ${this.#commit}) on "${this.id}"`,
          );
        }
        this.#truncateFrom(e.index);
      }
      this.#entries.push(e);
    }
    const lastNew = m.prevLogIndex + m.entries.length;
    if (m.leaderCommit > this.#commit) this.#commitTo(Math.min(m.leaderCommit, lastNew));
    reply(true, lastNew);
  }

  #handleHeartbeat(m: Message & { type: "Heartbeat" }): void {
    if (m.commit > this.#commit) this.#commitTo(Math.min(m.commit, this.lastIndex));
    this.#send({ type: "HeartbeatResponse", to: m.from, term: this.#term, readSeq: m.readSeq });
  }

  #handleSnapshot(m: Message & { type: "InstallSnapshot" }): void {
    const reply = (offsetBytes: number, done: boolean, matchIndex: number) =>
      this.#send({
        type: "InstallSnapshotResponse",
        to: m.from,
        term: this.#term,
        snapshotIndex: m.meta.index,
        offsetBytes,
        done,
        matchIndex,
      });
    const meta = m.meta;
    if (meta.index <= this.#commit) {
      this.#incoming = null;
      reply(0, true, this.#commit);
      return;
    }
    if (m.offsetBytes === 0) this.#incoming = { meta, chunks: [], received: 0 };
    const inc = this.#incoming;
    if (
      inc === null || inc.meta.index !== meta.index || inc.meta.term !== meta.term ||
      inc.received !== m.offsetBytes
    ) {
      const same = inc !== null && inc.meta.index === meta.index && inc.meta.term === meta.term;
      reply(same ? inc.received : 0, false, 0);
      return;
    }
    inc.chunks.push(m.data);
    inc.received += m.data.length;
    if (!m.done) {
      reply(inc.received, false, 0);
      return;
    }
    this.#incoming = null;
    if (inc.received !== m.totalBytes) {
      reply(0, false, 0);
      return;
    }
    const data = new Uint8Array(inc.received);
    let off = 0;
    for (const c of inc.chunks) {
      data.set(c, off);
      off += c.length;
    }
    this.#restore({ meta, data });
    reply(inc.received, true, meta.index);
  }

  #restore(snap: Snapshot): void {
    const { meta } = snap;
    if (this.termAt(meta.index) === meta.term) {
      // We already hold that entry: just commit up to it (§7: retain the suffix).
      this.#commitTo(meta.index);
      return;
    }
    this.#entries = [];
    this.#snapshot = snap;
    this.#baseIndex = meta.index;
    this.#baseTerm = meta.term;
    this.#stable = meta.index;
    this.#commit = meta.index;
    this.#confApplied = meta.index;
    this.#setMembership(meta.membership);
    this.#snapshotToPersist = { ...snap, restore: true, firstIndex: meta.index + 1 };
  }

  // ---- log and membership helpers -------------------------------------------

  #truncateFrom(index: number): void {
    this.#entries.length = index - this.#baseIndex - 1;
    this.#stable = Math.min(this.#stable, index - 1);
  }

  #commitTo(index: number): void {
    if (index <= this.#commit) return;
    if (this.#pendingIds.size > 0) {
      for (const [id, i] of this.#pendingIds) if (i <= index) this.#pendingIds.delete(id);
    }
    this.#commit = index;
    this.#foldConf();
    if (this.#role === "leader" && this.termAt(index) === this.#term) {
      const waiting = this.#waitingReads;
      this.#waitingReads = [];
      for (const w of waiting) this.#handleReadRequest(w.ctx, w.from);
    }
  }

  #foldConf(): void {
    let m = this.#membership;
    for (let i = this.#confApplied + 1; i <= this.#commit; i++) {
      const e = this.entryAt(i);
      if (e?.kind !== "conf") continue;
      const next = applyConfChange(m, decodeConfChange(e.data), this.#maxVoters);
      if (typeof next !== "string") m = next;
    }
    this.#confApplied = this.#commit;
    if (m !== this.#membership) this.#setMembership(m);
  }

  #setMembership(m: Membership): void {
    const was = this.#membership.voters.includes(this.id) ||
      this.#membership.learners.includes(this.id);
    const is = m.voters.includes(this.id) || m.learners.includes(this.id);
    this.#membership = m;
    if (was && !is) {
      // Tell the others about the commit before stopping.
      if (this.#role === "leader") this.#bcastAppend();
      this.#removed = true;
      this.#role = "follower";
      this.#leader = null;
      this.#progress.clear();
      this.#pendingReads = [];
      this.#waitingReads = [];
      return;
    }
    if (this.#role === "leader") {
      const peers = new Set(this.#peers());
      for (const p of [...this.#progress.keys()]) {
        if (peers.has(p)) continue;
        // A last append carries the commit of its removal, so the member stops itself.
        this.#sendAppendAnyway(p);
        this.#progress.delete(p);
      }
      for (const p of peers) {
        if (!this.#progress.has(p)) {
          this.#progress.set(p, this.#newProgress());
          this.#sendAppend(p);
        }
      }
      if (this.#maybeCommit()) this.#bcastAppend();
      this.#releaseReads();
    }
  }

  #membershipAt(index: number): Membership {
    let m = this.#snapshot.meta.membership;
    for (let i = this.#snapshot.meta.index + 1; i <= index; i++) {
      const e = this.entryAt(i)!;
      if (e.kind !== "conf") continue;
      const next = applyConfChange(m, decodeConfChange(e.data), this.#maxVoters);
      if (typeof next !== "string") m = next;
    }
    return m;
  }

  #peers(): NodeId[] {
    return [...this.#membership.voters, ...this.#membership.learners].filter((p) => p !== this.id);
  }

  #isPromotable(): boolean {
    return !this.#removed && this.#membership.voters.includes(this.id);
  }

  /** §5.4.1: a candidate's log is at least as up-to-date as ours. */
  #isUpToDate(lastIndex: number, lastTerm: number): boolean {
    return lastTerm > this.lastTerm || (lastTerm === this.lastTerm && lastIndex >= this.lastIndex);
  }

  #resetRandomizedTimeout(): void {
    this.#randomizedElectionTicks = this.#electionTicks +
      (this.#rng.nextU32() % this.#electionTicks);
  }

  #hardState(): HardState {
    return { term: this.#term, vote: this.#vote, commit: this.#commit };
  }

  #send(m: DistributiveOmit<Message, "from">): void {
    this.#msgs.push({ ...m, from: this.id } as Message);
  }

  #assertIdle(): void {
    if (this.#outstanding) {
      throw new RaftInvariantError("Call advance() before using the node again");
    }
  }
}

type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}
