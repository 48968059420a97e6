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

/**
 * Whether this build has the replicated log (`openRaftLog` works). The
 * end-to-end cluster tests run only when it does.
 */
export const REPLICATED_LOG_AVAILABLE = false;

/**
 * Opens the replicated log.
 * @throws {Error} until the replication core is on this branch.
 */
export function openRaftLog(_opts: RaftLogOptions): Promise<ClusterLog> {
  return Promise.reject(
    new Error("The replicated log (src/cluster/raft_log.ts) is not part of this build yet"),
  );
}

/** Encodes a Raft message for a `Raft` frame. */
export function encodeRaftMessage(m: Message): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify(
      m,
      (_k, v) => v instanceof Uint8Array ? { $b: btoa(String.fromCharCode(...v)) } : v,
    ),
  );
}

/**
 * Decodes a `Raft` frame's payload.
 * @throws {Error} when it is not a message.
 */
export function decodeRaftMessage(bytes: Uint8Array): Message {
  return JSON.parse(
    new TextDecoder("utf-8", { fatal: true }).decode(bytes),
    (_k, v) =>
      v && typeof v === "object" && typeof v.$b === "string" && Object.keys(v).length === 1
        ? Uint8Array.from(atob(v.$b), (c) => c.charCodeAt(0))
        : v,
  ) as Message;
}
