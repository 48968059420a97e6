/**
 * Hamster's Raft: the consensus core that orders metadata commands.
 *
 * `Raft` is a pure state machine in the style of etcd's raft: the caller
 * feeds it `tick()`, `step(message)`, `propose(data)` and `readIndex(ctx)`,
 * then drains `ready()` (what to persist, send, apply), and calls
 * `advance()`. It has no clock, no I/O and no randomness of its own (election
 * jitter comes from an injected `Rng`); entries are opaque bytes and it
 * never imports `meta`.
 *
 * `RaftStorage` (in `storage.ts`) is the one part that does I/O: it keeps
 * the hard state, log and snapshots durable through the injected `Disk`
 * port, never through `Deno.*`.
 *
 * @see Ongaro & Ousterhout 2014, "In Search of an Understandable Consensus Algorithm"
 * @see Ongaro 2014, "Consensus: Bridging Theory and Practice" (PreVote, CheckQuorum, ReadIndex, learners)
 * @module
 */
export * from "./types.ts";
export {
  bootstrapState,
  ProposalDroppedError,
  quorum,
  Raft,
  type RaftConfig,
  RaftInvariantError,
  type Role,
  type StoredState,
} from "./raft.ts";
export { crc32, RaftStorage, type RecoveryReport, StorageCorruptError } from "./storage.ts";
