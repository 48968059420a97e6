/**
 * The shapes the Raft core reads and writes: log entries, membership,
 * hard state, snapshots, messages and the `Ready` batch.
 *
 * Pure: types and small helpers only; no clock, no I/O.
 *
 * @module
 */

/** A member's id: opaque, compared as a string, sorted by UTF-16 code units. */
export type NodeId = string;

/**
 * What an entry carries. `normal` entries hold the application's opaque bytes
 * (an empty `normal` entry is the leader's no-op); `conf` entries hold an
 * encoded {@linkcode ConfChange}.
 */
export type EntryKind = "normal" | "conf";

/**
 * One log entry.
 * @see Raft paper §5.3 (log entries carry a term and an index)
 */
export interface Entry {
  /** Position in the log, from 1. */
  readonly index: number;
  /** Term of the leader that created the entry. */
  readonly term: number;
  readonly kind: EntryKind;
  /** Opaque application bytes, or the UTF-8 JSON of a ConfChange. */
  readonly data: Uint8Array;
  /** Client-chosen id of the proposal, used by the applier to drop retries. */
  readonly id?: string;
}

/** The voters and learners of the cluster, each list sorted. */
export interface Membership {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

/**
 * One membership change. Only one is in flight at a time; it takes effect
 * on every node when its entry is committed.
 * @see Raft thesis §4.1 (single-server changes), §4.2.1 (learners)
 */
export type ConfChange =
  | { readonly type: "addLearner"; readonly nodeId: NodeId }
  | { readonly type: "promote"; readonly nodeId: NodeId }
  | { readonly type: "remove"; readonly nodeId: NodeId };

/**
 * State that must be on stable storage before any message produced with it
 * is sent.
 * @see Raft paper Figure 2 ("Persistent state on all servers")
 */
export interface HardState {
  /** currentTerm. */
  readonly term: number;
  /** votedFor in `term`, or null. */
  readonly vote: NodeId | null;
  /** commitIndex (persisted so membership survives a restart). */
  readonly commit: number;
}

/** Where a snapshot sits in the log and the membership at that point. */
export interface SnapshotMeta {
  /** Index of the last entry the snapshot covers. */
  readonly index: number;
  /** Term of that entry. */
  readonly term: number;
  readonly membership: Membership;
}

/**
 * A snapshot of the applied state at `meta.index`; `data` is opaque.
 * @see Raft paper §7
 */
export interface Snapshot {
  readonly meta: SnapshotMeta;
  readonly data: Uint8Array;
}

/**
 * A linearizable read point: once `lastApplied >= index`, reading the local
 * state machine returns a linearizable result for the request `ctx`.
 * @see Raft thesis §6.4
 */
export interface ReadState {
  readonly ctx: string;
  readonly index: number;
}

interface MessageBase {
  readonly from: NodeId;
  readonly to: NodeId;
  /** Sender's term (for PreVote: the term it would campaign in). */
  readonly term: number;
}

/** @see Raft thesis §9.6 (PreVote) */
export interface PreVoteMessage extends MessageBase {
  readonly type: "PreVote";
  readonly lastLogIndex: number;
  readonly lastLogTerm: number;
}

/** @see Raft paper §5.2, Figure 2 (RequestVote RPC) */
export interface RequestVoteMessage extends MessageBase {
  readonly type: "RequestVote";
  readonly lastLogIndex: number;
  readonly lastLogTerm: number;
}

/** Answer to PreVote or RequestVote. */
export interface VoteResponseMessage extends MessageBase {
  readonly type: "PreVoteResponse" | "RequestVoteResponse";
  readonly granted: boolean;
}

/** @see Raft paper §5.3, Figure 2 (AppendEntries RPC) */
export interface AppendEntriesMessage extends MessageBase {
  readonly type: "AppendEntries";
  readonly prevLogIndex: number;
  readonly prevLogTerm: number;
  readonly entries: readonly Entry[];
  readonly leaderCommit: number;
}

/**
 * Answer to AppendEntries. On success `matchIndex` is the last index known to
 * match the leader. On rejection `rejectedIndex` is the request's
 * prevLogIndex and `conflictIndex` / `conflictTerm` let the leader skip a
 * whole conflicting term at once (`conflictTerm` 0: the log is too short).
 * @see Raft paper §5.3 (the optimization at the end of the section)
 */
export interface AppendEntriesResponseMessage extends MessageBase {
  readonly type: "AppendEntriesResponse";
  readonly success: boolean;
  readonly matchIndex: number;
  readonly rejectedIndex: number;
  readonly conflictIndex: number;
  readonly conflictTerm: number;
}

/**
 * Leader liveness and commit propagation without log matching. `commit` is
 * at most the receiver's known match. `readSeq` confirms pending ReadIndex
 * requests up to that sequence number.
 * @see Raft paper §5.2 (heartbeats), Raft thesis §6.4 (ReadIndex)
 */
export interface HeartbeatMessage extends MessageBase {
  readonly type: "Heartbeat";
  readonly commit: number;
  readonly readSeq: number;
}

export interface HeartbeatResponseMessage extends MessageBase {
  readonly type: "HeartbeatResponse";
  readonly readSeq: number;
}

/**
 * One chunk of a snapshot. Chunks are sent one at a time; each `data` is at
 * most the configured `snapshotChunkBytes` (60 KiB by default, so a chunk
 * fits one 64 KiB Deno KV value).
 * @see Raft paper §7, Figure 13 (InstallSnapshot RPC)
 */
export interface InstallSnapshotMessage extends MessageBase {
  readonly type: "InstallSnapshot";
  readonly meta: SnapshotMeta;
  readonly offsetBytes: number;
  readonly totalBytes: number;
  readonly data: Uint8Array;
  readonly done: boolean;
}

/**
 * Answer to a chunk: `offsetBytes` is the next offset the receiver expects;
 * when `done`, `matchIndex` is the index the receiver's log now starts from.
 */
export interface InstallSnapshotResponseMessage extends MessageBase {
  readonly type: "InstallSnapshotResponse";
  readonly snapshotIndex: number;
  readonly offsetBytes: number;
  readonly done: boolean;
  readonly matchIndex: number;
}

/** A proposal forwarded from a follower to the leader. Term-agnostic. */
export interface ProposeMessage extends MessageBase {
  readonly type: "Propose";
  readonly kind: EntryKind;
  readonly data: Uint8Array;
  readonly id?: string;
}

/** A ReadIndex request forwarded from a follower to the leader. Term-agnostic. */
export interface ReadIndexMessage extends MessageBase {
  readonly type: "ReadIndex";
  readonly ctx: string;
}

/** The leader's answer to ReadIndex: a confirmed read point. Term-agnostic. */
export interface ReadIndexResponseMessage extends MessageBase {
  readonly type: "ReadIndexResponse";
  readonly ctx: string;
  readonly index: number;
}

/** Everything one node sends another. */
export type Message =
  | PreVoteMessage
  | RequestVoteMessage
  | VoteResponseMessage
  | AppendEntriesMessage
  | AppendEntriesResponseMessage
  | HeartbeatMessage
  | HeartbeatResponseMessage
  | InstallSnapshotMessage
  | InstallSnapshotResponseMessage
  | ProposeMessage
  | ReadIndexMessage
  | ReadIndexResponseMessage;

/** Every message type name. */
export type MessageType = Message["type"];

/**
 * One batch of work for the caller, in this order:
 * 1. persist `snapshot` (if any), then `entries` (the first one truncates
 *    any stored entry at or after its index), then `hardState`, and fsync;
 * 2. if `snapshot?.restore`, reset the state machine from `snapshot.data`;
 * 3. send `messages`;
 * 4. apply `committedEntries` in order;
 * 5. serve `readStates` once lastApplied reaches their index;
 * 6. call `advance(ready)`.
 * @see Raft paper Figure 2 (respond to RPCs only after updating stable storage)
 */
export interface Ready {
  /** The hard state to persist, or null when unchanged. */
  readonly hardState: HardState | null;
  /** Entries to append to stable storage; may overwrite a stored suffix. */
  readonly entries: readonly Entry[];
  /**
   * A snapshot to persist: when `restore`, it came from the leader and the
   * whole stored log is replaced; otherwise it is a local compaction and
   * only entries before `firstIndex` are dropped.
   */
  readonly snapshot:
    | (Snapshot & {
      readonly restore: boolean;
      /** First log index to keep; stored entries before it are dropped. */
      readonly firstIndex: number;
    })
    | null;
  /** Messages to send after the above is durable. */
  readonly messages: readonly Message[];
  /** Committed entries to apply, in log order. */
  readonly committedEntries: readonly Entry[];
  /** Confirmed ReadIndex read points. */
  readonly readStates: readonly ReadState[];
}

/** Encodes a ConfChange as the data of a `conf` entry (UTF-8 JSON). */
export function encodeConfChange(cc: ConfChange): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(cc));
}

/**
 * Decodes the data of a `conf` entry.
 * @throws {RangeError} when the bytes are not a ConfChange.
 */
export function decodeConfChange(data: Uint8Array): ConfChange {
  const v = JSON.parse(new TextDecoder().decode(data));
  if (
    typeof v !== "object" || v === null || typeof v.nodeId !== "string" ||
    !["addLearner", "promote", "remove"].includes(v.type)
  ) {
    throw new RangeError(`Cannot decode conf change: "${JSON.stringify(v)}"`);
  }
  return { type: v.type, nodeId: v.nodeId };
}

/**
 * The membership after `cc`, or an error message when `cc` does not apply
 * (adding a member twice, promoting a non-learner, removing a stranger,
 * exceeding `maxVoters`, removing the last voter).
 * @see Raft thesis §4.1
 */
export function applyConfChange(
  m: Membership,
  cc: ConfChange,
  maxVoters: number,
): Membership | string {
  const isVoter = m.voters.includes(cc.nodeId);
  const isLearner = m.learners.includes(cc.nodeId);
  switch (cc.type) {
    case "addLearner":
      if (isVoter || isLearner) return `Node "${cc.nodeId}" is already a member`;
      return { voters: m.voters, learners: [...m.learners, cc.nodeId].sort() };
    case "promote":
      if (!isLearner) return `Node "${cc.nodeId}" is not a learner`;
      if (m.voters.length >= maxVoters) return `Voters already at the cap of ${maxVoters}`;
      return {
        voters: [...m.voters, cc.nodeId].sort(),
        learners: m.learners.filter((x) => x !== cc.nodeId),
      };
    case "remove":
      if (!isVoter && !isLearner) return `Node "${cc.nodeId}" is not a member`;
      if (isVoter && m.voters.length === 1) return `Cannot remove the last voter "${cc.nodeId}"`;
      return {
        voters: m.voters.filter((x) => x !== cc.nodeId),
        learners: m.learners.filter((x) => x !== cc.nodeId),
      };
  }
}
