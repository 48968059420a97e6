/**
 * Port: message passing between cluster members. Interfaces only; no
 * `Deno.*`. The simulated network lives in `sim/net.ts`; the mTLS transport
 * comes with the cluster wiring.
 *
 * Pure: this module declares types and has no behaviour.
 *
 * @module
 */

/**
 * Best-effort, unordered delivery of messages to peers by node id. A sent
 * message may be delayed, reordered, duplicated or lost; callers (Raft)
 * tolerate all four.
 */
export interface Net<M> {
  /** Queues `message` for `to`; never throws for an unreachable peer. */
  send(to: string, message: M): void;
}

/** Receives messages addressed to one node. */
export type NetHandler<M> = (from: string, message: M) => void;
