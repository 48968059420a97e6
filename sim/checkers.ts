/**
 * Safety checkers run continuously by the cluster simulation. Each one
 * crashes the run (a `SimFailure` with the seed) the moment its invariant
 * breaks.
 *
 * | checker | property | source |
 * |---|---|---|
 * | `observe` | at most one leader per term | Raft paper §5.2 (Election Safety) |
 * | `observe` | a new leader holds every entry committed before (same index, same term) | §5.4 (Leader Completeness) |
 * | `observe` | an index, once committed anywhere, holds the same entry everywhere | §5.3 (Log Matching), §5.4.3 |
 * | `observe` | no node sees more than `maxVoters` voters | thesis §4.2.1 (our cap) |
 * | `onApply` | every replica reaches the same state after applying each index | §5.4.3 (State Machine Safety) |
 * | `onSend` | a message leaves a node only once what it promises is on that node's disk: its term, its vote, the entry it acknowledges | Figure 2 (persist before responding) |
 * | `onBoot` | what a node told others survives its crash: its term, its vote, the log it acknowledged | Figure 2 |
 * | `observe` | each commit advance of a leader: the entry is on the disks of a majority of voters, and no voter lacking it could win an election with the logs on disk | §5.4.2 (commitment rule), §5.4.1 (election restriction) |
 * | `observe` | a node that hears a request or response of a higher term adopts that term (a leader steps down) | Figure 2 ("Rules for Servers") |
 * | `readFloor` | a ReadIndex read point covers every entry committed before the read was issued | thesis §6.4 |
 *
 * Pure: no clock, no I/O.
 *
 * @module
 */
import {
  type Entry,
  type HardState,
  type Message,
  quorum,
  type Raft,
  type Ready,
  type StoredState,
} from "../src/raft/mod.ts";
import type { World } from "./world.ts";

/** Per-node bookkeeping of what the checker already saw. */
interface NodeView {
  commit: number;
  leaderTerm: number;
  voters: readonly string[];
}

/** What a node has promised others, so it must still hold after a crash. */
interface Promised {
  maxTerm: number;
  vote: { term: number; to: string } | null;
  match: { term: number; index: number; entryTerm: number } | null;
}

/**
 * A node's Raft state as it is on its disk (fsynced): hard state, snapshot
 * position and the terms of its stored entries.
 */
class DurableLog {
  hs: HardState = { term: 0, vote: null, commit: 0 };
  snapIndex = 0;
  /** Index before `terms[0]`, and its term (-1: unknown). */
  base = 0;
  baseTerm = 0;
  terms: number[] = [];

  static fromState(s: StoredState): DurableLog {
    const d = new DurableLog();
    d.hs = s.hardState;
    const snap = s.snapshot?.meta;
    d.snapIndex = snap?.index ?? 0;
    const first = s.entries[0];
    d.base = first && first.index <= d.snapIndex ? first.index - 1 : d.snapIndex;
    d.baseTerm = d.base === d.snapIndex ? snap?.term ?? 0 : -1;
    d.terms = s.entries.filter((e) => e.index > d.base).map((e) => e.term);
    return d;
  }

  get lastIndex(): number {
    return this.base + this.terms.length;
  }
  get lastTerm(): number {
    return this.terms.at(-1) ?? this.baseTerm;
  }
  termAt(i: number): number | undefined {
    if (i === this.base && this.baseTerm >= 0) return this.baseTerm;
    if (i <= this.base || i > this.lastIndex) return undefined;
    return this.terms[i - this.base - 1];
  }
  /** True when the disk holds entry `i` of term `t`, or a snapshot covering it. */
  holds(i: number, t: number): boolean {
    return this.termAt(i) === t || i <= this.snapIndex;
  }

  save(rd: Ready): void {
    const snap = rd.snapshot;
    if (snap) {
      if (snap.restore) {
        this.terms = [];
        this.base = snap.meta.index;
        this.baseTerm = snap.meta.term;
      } else {
        const base = Math.max(this.base, snap.firstIndex - 1);
        this.baseTerm = this.termAt(base) ?? -1;
        this.terms = this.terms.slice(base - this.base);
        this.base = base;
      }
      this.snapIndex = snap.meta.index;
    }
    for (const e of rd.entries) {
      if (e.index <= this.base) continue;
      this.terms.length = e.index - this.base - 1;
      this.terms.push(e.term);
    }
    if (rd.hardState) this.hs = rd.hardState;
  }
}

/** The Raft safety checker of one run. */
export class RaftChecker {
  readonly leaders = new Map<number, string>();
  readonly committed = new Map<number, Entry>();
  /** The lowest term in which each index was seen committed. */
  readonly #commitTerm = new Map<number, number>();
  maxCommitted = 0;
  readonly digests = new Map<number, string>();
  elections = 0;
  /** Commit advances checked against the disks. */
  commitChecks = 0;
  readonly #promised = new Map<string, Promised>();
  readonly #views = new Map<string, NodeView>();
  readonly #disks = new Map<string, DurableLog>();

  constructor(readonly world: World, readonly maxVoters = 5) {}

  /** Checks a node's state after it handled an input (`m` when it was a message). */
  observe(r: Raft, m?: Message): void {
    const w = this.world;
    if (m && !r.removed && adoptsTerm(m)) {
      w.assert(
        r.term >= m.term,
        () => `${r.id} stayed in term ${r.term} after a ${m.type} of term ${m.term} from ${m.from}`,
      );
    }
    let view = this.#views.get(r.id);
    if (!view) {
      view = { commit: r.snapshotMeta.index, leaderTerm: -1, voters: r.membership.voters };
      this.#views.set(r.id, view);
    }
    const voters = r.membership.voters.length;
    w.assert(
      voters <= this.maxVoters,
      () => `Node ${r.id} sees ${voters} voters (cap ${this.maxVoters})`,
    );
    if (r.commitIndex > view.commit) {
      if (r.role === "leader") this.#checkCommit(r, view);
      for (let i = view.commit + 1; i <= r.commitIndex; i++) {
        const e = r.entryAt(i);
        if (!e) continue;
        const c = this.committed.get(i);
        const ct = this.#commitTerm.get(i);
        if (ct === undefined || r.term < ct) this.#commitTerm.set(i, r.term);
        if (!c) this.committed.set(i, e);
        else {
          w.assert(
            c.term === e.term && sameBytes(c.data, e.data) && c.id === e.id,
            () => `Committed entry ${i} differs on ${r.id}: term ${e.term} vs ${c.term}`,
          );
        }
      }
      view.commit = r.commitIndex;
      this.maxCommitted = Math.max(this.maxCommitted, r.commitIndex);
    }
    view.voters = r.membership.voters;
    if (r.role === "leader" && view.leaderTerm !== r.term) {
      view.leaderTerm = r.term;
      this.elections++;
      const prev = this.leaders.get(r.term);
      w.assert(
        prev === undefined || prev === r.id,
        () => `Two leaders in term ${r.term}: ${prev} and ${r.id}`,
      );
      this.leaders.set(r.term, r.id);
      w.log(() => `leader ${r.id} term ${r.term} last ${r.lastIndex}`);
      this.onLeader?.(r.id, r.term);
      // §5.4 Leader Completeness: entries committed in earlier terms (a
      // leader of an old term, elected late, owes nothing to later terms).
      let owed = this.maxCommitted;
      while (owed > 0 && (this.#commitTerm.get(owed) ?? Infinity) >= r.term) owed--;
      w.assert(
        r.lastIndex >= owed,
        () =>
          `Leader ${r.id} of term ${r.term} ends at ${r.lastIndex}, before ${owed} committed in an earlier term`,
      );
      for (let i = r.firstIndex; i <= owed; i++) {
        const c = this.committed.get(i);
        if (c && (this.#commitTerm.get(i) ?? Infinity) < r.term) {
          w.assert(
            r.termAt(i) === c.term,
            () =>
              `Leader ${r.id} of term ${r.term} lost committed entry ${i} (term ${c.term}, has ${
                r.termAt(i)
              })`,
          );
        }
      }
    }
  }

  /** Called when a node becomes leader of a term (for fault schedules). */
  onLeader: ((id: string, term: number) => void) | null = null;

  /**
   * A leader advanced its commit index to `c`: the entry must be on the
   * disks of a majority of the voters (before or after a membership change
   * committed in the same step), and no voter whose disk lacks it may be
   * able to win an election with the logs on disk (§5.4.1: a candidate
   * needs votes from a majority whose logs are no more up-to-date than its
   * own). The second check is what a broken §5.4.2 rule (an earlier-term
   * entry committed by counting replicas) breaks at once, long before a
   * Figure 8 schedule overwrites the entry.
   */
  #checkCommit(r: Raft, view: NodeView): void {
    const w = this.world;
    const c = r.commitIndex;
    const t = r.termAt(c);
    if (t === undefined) return;
    this.commitChecks++;
    const disk = (id: string) => this.#disks.get(id) ?? new DurableLog();
    const on = (vs: readonly string[]) => vs.filter((v) => disk(v).holds(c, t));
    const before = view.voters;
    const after = r.membership.voters;
    const okBefore = on(before).length >= quorum(before.length);
    const okAfter = on(after).length >= quorum(after.length);
    w.assert(
      okBefore || okAfter,
      () =>
        `Leader ${r.id} of term ${r.term} committed ${c} (term ${t}) held on disk by ${
          on(after).join(",") || "none"
        } of voters ${after.join(",")}`,
    );
    for (const v of after) {
      const dv = disk(v);
      if (dv.holds(c, t)) continue;
      const electors = after.filter((u) => {
        const du = disk(u);
        return du.lastTerm < dv.lastTerm ||
          (du.lastTerm === dv.lastTerm && du.lastIndex <= dv.lastIndex);
      });
      w.assert(
        electors.length < quorum(after.length),
        () =>
          `Leader ${r.id} of term ${r.term} committed ${c} (term ${t}), but ${v} lacks it on disk ` +
          `(last ${dv.lastIndex}/${dv.lastTerm}) and could be elected by ${electors.join(",")}`,
      );
    }
  }

  /** Records that `rd`'s durable part of node `id` is on its disk (fsynced). */
  onPersisted(id: string, rd: Ready): void {
    let d = this.#disks.get(id);
    if (!d) {
      d = new DurableLog();
      this.#disks.set(id, d);
    }
    d.save(rd);
  }

  /**
   * Checks, as `m` leaves node `r`, that its disk already holds what `m`
   * promises (Figure 2: persist before responding), and records the promise
   * for the check after a crash.
   */
  onSend(r: Raft, m: Message): void {
    if (
      m.type === "PreVote" || m.type === "PreVoteResponse" || m.type === "Propose" ||
      m.type === "ReadIndex" || m.type === "ReadIndexResponse"
    ) {
      return;
    }
    const w = this.world;
    const d = this.#disks.get(r.id) ?? new DurableLog();
    w.assert(
      m.term <= d.hs.term,
      () => `${r.id} sent ${m.type} of term ${m.term} with term ${d.hs.term} on disk`,
    );
    const p = this.#promised.get(r.id) ?? { maxTerm: 0, vote: null, match: null };
    p.maxTerm = Math.max(p.maxTerm, m.term);
    if (m.type === "RequestVoteResponse" && m.granted) {
      // A later term on disk also keeps the vote: the node can never vote in m.term again.
      w.assert(
        d.hs.term > m.term || (d.hs.term === m.term && d.hs.vote === m.to),
        () =>
          `${r.id} granted its vote in term ${m.term} to ${m.to} with ${d.hs.vote} in term ${d.hs.term} on disk`,
      );
      p.vote = { term: m.term, to: m.to };
    }
    const ok = (m.type === "AppendEntriesResponse" && m.success) ||
      (m.type === "InstallSnapshotResponse" && m.done);
    if (ok) {
      const entryTerm = r.termAt(m.matchIndex);
      if (entryTerm !== undefined) {
        w.assert(
          d.holds(m.matchIndex, entryTerm),
          () =>
            `${r.id} acknowledged entry ${m.matchIndex} (term ${entryTerm}) with ${
              d.termAt(m.matchIndex)
            } on disk`,
        );
        p.match = { term: m.term, index: m.matchIndex, entryTerm };
      }
    }
    this.#promised.set(r.id, p);
  }

  /** Checks that a restarted node recovered everything it had promised before its crash. */
  onBoot(id: string, state: StoredState): void {
    this.#views.delete(id);
    this.#disks.set(id, DurableLog.fromState(state));
    const p = this.#promised.get(id);
    if (!p) return;
    const w = this.world;
    const hs = state.hardState;
    w.assert(
      hs.term >= p.maxTerm,
      () => `${id} recovered term ${hs.term} after sending term ${p.maxTerm}`,
    );
    if (p.vote && hs.term === p.vote.term) {
      w.assert(
        hs.vote === p.vote.to,
        () => `${id} recovered vote ${hs.vote} in term ${hs.term} after voting for ${p.vote!.to}`,
      );
    }
    if (p.match && hs.term === p.match.term) {
      const snap = state.snapshot?.meta;
      const e = state.entries.find((x) => x.index === p.match!.index);
      const term = e?.term ?? (snap?.index === p.match.index ? snap.term : undefined);
      const covered = snap !== undefined && snap.index >= p.match.index;
      w.assert(
        term === p.match.entryTerm || (term === undefined && covered),
        () =>
          `${id} acknowledged entry ${p.match!.index} (term ${
            p.match!.entryTerm
          }) but recovered ${term}`,
      );
    }
  }

  /**
   * Checks a ReadIndex read point: it must cover every entry committed
   * before the read was issued (`floor`: `maxCommitted` at that time).
   * @see Raft thesis §6.4
   */
  readFloor(nodeId: string, floor: number, index: number): void {
    this.world.assert(
      index >= floor,
      () => `ReadIndex on ${nodeId} returned ${index}, below ${floor} committed before the read`,
    );
  }

  /** Checks the state digest of a replica right after it applied `index`. */
  onApply(nodeId: string, index: number, digest: string): void {
    const d = this.digests.get(index);
    if (d === undefined) this.digests.set(index, digest);
    else {
      this.world.assert(
        d === digest,
        () => `Replica ${nodeId} diverged at index ${index}: digest ${digest}, others ${d}`,
      );
    }
  }
}

/**
 * True when stepping `m` must raise the receiver's term to `m.term`: every
 * message with a higher term except a PreVote (which changes no term), a
 * granted PreVoteResponse (its term is the one the candidate would use), a
 * RequestVote (a node in a leader lease ignores it, thesis §4.2.3) and the
 * term-agnostic forwards.
 */
function adoptsTerm(m: Message): boolean {
  switch (m.type) {
    case "PreVote":
    case "RequestVote":
    case "Propose":
    case "ReadIndex":
    case "ReadIndexResponse":
      return false;
    case "PreVoteResponse":
      return !m.granted;
    default:
      return true;
  }
}

/** Byte-for-byte equality. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
