/**
 * `hamster cluster recover -force`: after permanent loss of a quorum,
 * rewrites this node's stored Raft state into a one-voter cluster of itself,
 * keeping every entry of its log.
 *
 * What it does to the stored state (`src/raft/storage.ts`):
 * - the snapshot keeps its data and index, its membership becomes
 *   `{voters: [self], learners: []}`;
 * - membership-change entries after it become empty no-op entries (they
 *   would otherwise re-add the lost members);
 * - every entry this node holds is declared committed (commit = last index);
 * - the term goes up by one, with a vote for itself.
 *
 * What may be lost: entries that the lost majority committed but this node
 * never received. What may appear: entries this node held but that were
 * never committed (their writers got no answer, or an error). The caller
 * prints both.
 *
 * No `Deno.*`: the disk is a port.
 *
 * @module
 */
import type { Disk } from "../io/mod.ts";
import { RaftStorage } from "../raft/storage.ts";
import type { Entry, Membership } from "../raft/mod.ts";

/** What `recoverOneVoter` found and did. */
export interface RecoveryOutcome {
  /** Members (voters and learners) in the configuration before, this node included. */
  previousMembers: string[];
  /** The commit index this node knew before. */
  knownCommit: number;
  /** The last index of its log: everything up to it is now committed. */
  lastIndex: number;
  /** Entries after `knownCommit` that were not known to be committed. */
  uncertainEntries: number;
  /** Membership-change entries turned into no-ops. */
  confEntriesDropped: number;
  /** The new term. */
  term: number;
}

/**
 * Rewrites the Raft state in `dir` on `disk` into a one-voter cluster of
 * `selfId`. Run only while the node is stopped (the caller holds the data
 * directory lock).
 * @throws {Error} when the directory holds no Raft state (nothing to recover).
 */
export async function recoverOneVoter(
  disk: Disk,
  dir: string,
  selfId: string,
): Promise<RecoveryOutcome> {
  const st = await RaftStorage.open(disk, dir);
  try {
    if (st.isEmpty) throw new Error(`No Raft state in ${dir}: nothing to recover`);
    const state = st.state;
    const snap = state.snapshot ?? {
      meta: { index: 0, term: 0, membership: { voters: [], learners: [] } },
      data: new Uint8Array(0),
    };
    const before = membershipAfter(snap.meta.membership, state.entries);
    const lastIndex = state.entries.length > 0
      ? state.entries[state.entries.length - 1].index
      : snap.meta.index;
    let confEntriesDropped = 0;
    const entries: Entry[] = state.entries.map((e) => {
      if (e.kind !== "conf") return e;
      confEntriesDropped++;
      return { term: e.term, index: e.index, kind: "normal", data: new Uint8Array(0) };
    });
    const knownCommit = Math.max(state.hardState.commit, snap.meta.index);
    const term = state.hardState.term + 1;
    const one: Membership = { voters: [selfId], learners: [] };
    await st.save({
      hardState: { term, vote: selfId, commit: lastIndex },
      entries,
      snapshot: {
        meta: { ...snap.meta, membership: one },
        data: snap.data,
        restore: true,
        firstIndex: snap.meta.index + 1,
      },
      messages: [],
      committedEntries: [],
      readStates: [],
    });
    return {
      previousMembers: [...before.voters, ...before.learners],
      knownCommit,
      lastIndex,
      uncertainEntries: Math.max(0, lastIndex - knownCommit),
      confEntriesDropped,
      term,
    };
  } finally {
    st.close();
  }
}

/**
 * The members (voters and learners) of the Raft state in `dir`, or `null`
 * when it holds none. Used to recognise `serve`'s one-voter log.
 */
export async function storedMembers(disk: Disk, dir: string): Promise<string[] | null> {
  const st = await RaftStorage.open(disk, dir);
  try {
    if (st.isEmpty) return null;
    const state = st.state;
    const m = membershipAfter(
      state.snapshot?.meta.membership ?? { voters: [], learners: [] },
      state.entries,
    );
    return [...m.voters, ...m.learners];
  } finally {
    st.close();
  }
}

/** The membership after folding the conf entries of `entries` into `m` (best effort, for the report). */
function membershipAfter(m: Membership, entries: readonly Entry[]): Membership {
  const voters = new Set(m.voters);
  const learners = new Set(m.learners);
  for (const e of entries) {
    if (e.kind !== "conf") continue;
    try {
      const cc = JSON.parse(new TextDecoder().decode(e.data)) as { type: string; nodeId: string };
      if (cc.type === "addLearner") learners.add(cc.nodeId);
      if (cc.type === "promote") {
        learners.delete(cc.nodeId);
        voters.add(cc.nodeId);
      }
      if (cc.type === "remove") {
        voters.delete(cc.nodeId);
        learners.delete(cc.nodeId);
      }
    } catch {
      // not a change this report can read
    }
  }
  return { voters: [...voters].sort(), learners: [...learners].sort() };
}
