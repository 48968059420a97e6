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
 * | `onSent` / `onBoot` | what a node told others survives its crash: its term, its vote, the log it acknowledged | Figure 2 (persist before responding) |
 *
 * Pure: no clock, no I/O.
 *
 * @module
 */
import type { Entry, Message, Raft, StoredState } from "../src/raft/mod.ts";
import type { World } from "./world.ts";

/** Per-node bookkeeping of what the checker already saw. */
export interface NodeView {
  commit: number;
  leaderTerm: number;
}

/** What a node has promised others, so it must still hold after a crash. */
interface Promised {
  maxTerm: number;
  vote: { term: number; to: string } | null;
  match: { term: number; index: number; entryTerm: number } | null;
}

/** The Raft safety checker of one run. */
export class RaftChecker {
  readonly leaders = new Map<number, string>();
  readonly committed = new Map<number, Entry>();
  maxCommitted = 0;
  readonly digests = new Map<number, string>();
  elections = 0;
  readonly #promised = new Map<string, Promised>();

  constructor(readonly world: World, readonly maxVoters = 5) {}

  /** Checks a node's state after it handled input. */
  observe(r: Raft, view: NodeView): void {
    const w = this.world;
    const voters = r.membership.voters.length;
    w.assert(
      voters <= this.maxVoters,
      () => `Node ${r.id} sees ${voters} voters (cap ${this.maxVoters})`,
    );
    if (r.commitIndex > view.commit) {
      for (let i = view.commit + 1; i <= r.commitIndex; i++) {
        const e = r.entryAt(i);
        if (!e) continue;
        const c = this.committed.get(i);
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
      w.assert(
        r.lastIndex >= this.maxCommitted,
        () =>
          `Leader ${r.id} of term ${r.term} ends at ${r.lastIndex}, before commit ${this.maxCommitted}`,
      );
      for (let i = r.firstIndex; i <= this.maxCommitted; i++) {
        const c = this.committed.get(i);
        if (c) {
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

  /**
   * Records what `r` promised by sending `messages` (after its ready was
   * persisted and before `advance()`).
   */
  onSent(r: Raft, messages: readonly Message[]): void {
    const p = this.#promised.get(r.id) ?? { maxTerm: 0, vote: null, match: null };
    for (const m of messages) {
      if (m.type === "PreVote" || m.type === "PreVoteResponse") continue;
      if (m.type === "Propose" || m.type === "ReadIndex" || m.type === "ReadIndexResponse") {
        continue;
      }
      p.maxTerm = Math.max(p.maxTerm, m.term);
      if (m.type === "RequestVoteResponse" && m.granted) p.vote = { term: m.term, to: m.to };
      const ok = (m.type === "AppendEntriesResponse" && m.success) ||
        (m.type === "InstallSnapshotResponse" && m.done);
      if (ok) {
        const entryTerm = r.termAt(m.matchIndex);
        if (entryTerm !== undefined) p.match = { term: m.term, index: m.matchIndex, entryTerm };
      }
    }
    this.#promised.set(r.id, p);
  }

  /** Checks that a restarted node recovered everything it had promised before its crash. */
  onBoot(id: string, state: StoredState): void {
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

/** Byte-for-byte equality. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
