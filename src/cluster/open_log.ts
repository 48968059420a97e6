/**
 * Where the node gets its replicated log and the Raft message codec: the
 * one place that names the implementation (`RaftLog`, `wire.ts`), so the
 * node and `main.ts` depend only on the `ClusterLog` shape.
 *
 * @module
 */
import type { Clock, Disk, MetaKv, Rng } from "../io/mod.ts";
import type { Membership, Message } from "../raft/mod.ts";
import type { Command, DataRef } from "../meta/mod.ts";
import type { ClusterLog } from "./node.ts";
import type { Timers } from "./rpc.ts";
import { RaftLog } from "./raft_log.ts";
import { decodeMessage, encodeMessage } from "./wire.ts";

/** Options of {@link openRaftLog} (the `RaftLog.open` options). */
export interface RaftLogOptions {
  id: string;
  kv: MetaKv;
  /** The data directory; Raft state lives under `raft/` on it. */
  disk: Disk;
  rng: Rng;
  clock: Clock;
  timers: Timers;
  send(m: Message): void;
  /** Bootstrap an empty Raft directory with these voters. */
  founding?: Membership | null;
  /** Bootstrap at the KV's applied index (a `serve` directory adopted). */
  adoptAppliedIndex?: boolean;
  onGarbage(refs: DataRef[]): void;
  onApplied?(cmd: Command, index: number): void;
  /** While no leader is known, proposals and read barriers wait this long, then SlowDown. */
  noLeaderWaitMs?: number;
  /** Snapshot once this many entries were applied since the last one. */
  compactEvery?: number;
}

/** Opens the replicated log (`RaftLog`, state under `raft/` on `disk`). */
export async function openRaftLog(opts: RaftLogOptions): Promise<ClusterLog> {
  return await RaftLog.open({ ...opts, dir: "raft" });
}

/** Encodes a Raft message for a `Raft` frame (`wire.ts`: checksummed JSON). */
export function encodeRaftMessage(m: Message): Uint8Array {
  return encodeMessage(m);
}

/**
 * Decodes a `Raft` frame's payload.
 * @throws {FrameCorruptError} when it is damaged or not a message.
 */
export function decodeRaftMessage(bytes: Uint8Array): Message {
  return decodeMessage(bytes);
}
