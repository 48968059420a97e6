/**
 * The fixed seed corpus: every seed that ever found a bug, plus a spread of
 * ordinary ones. `deno task sim` runs all of them before any fresh seeds.
 *
 * Pure: data only.
 *
 * @module
 */

import type { ClusterOptions } from "./cluster.ts";
import type { EngineOptions } from "./engine.ts";

/** Seeds that found bugs, each with what it found and the options it ran with. Keep them after the fix. */
export const BUG_SEEDS: readonly { seed: number; found: string; options?: ClusterOptions }[] = [
  {
    seed: 34,
    found: "Liveness: a snapshot transfer restarted at offset 0 on every leader compaction, " +
      "so a lagging follower never caught up (fixed: pin the snapshot being sent, ADR 0033)",
  },
  {
    seed: 19,
    found:
      "Harness: a ReadIndex call reached a node still booting (raft null); inputs now wait for boot",
  },
  { seed: 46, found: "Harness: as seed 19" },
  { seed: 120, found: "Harness: as seed 19" },
  { seed: 138, found: "Harness: as seed 19" },
  {
    seed: 291,
    options: { faultMs: 12000, membership: true },
    found: "Durability: a torn WAL write kept the truncating entry of a ready but not its hard " +
      "state, losing an acknowledged entry in the same term (fixed: one record per ready, ADR 0032)",
  },
  {
    seed: 151,
    options: { faultMs: 12000, membership: true },
    found: "Durability: as seed 291, new-term entries recovered with the old term",
  },
  {
    seed: 200,
    options: { faultMs: 12000, membership: true },
    found: "Durability: as seed 151",
  },
  {
    seed: 74,
    options: { faultMs: 12000, membership: true },
    found: "Replay: a shuffle by sort(() => random) depended on earlier runs in the process " +
      "(fixed: SimRng.shuffle)",
  },
];

/** The corpus: bug seeds first, then 1..200. */
export const CORPUS: readonly number[] = [
  ...BUG_SEEDS.map((b) => b.seed),
  ...Array.from({ length: 200 }, (_, i) => i + 1),
];

/**
 * Engine seeds (`runEngine`, `deno task sim --engine`) that found bugs, with
 * the options they ran with. `open: true` marks a bug not fixed yet: its seed
 * still fails, so the CI test lists it as ignored until the fix lands, then
 * it runs like any other corpus seed.
 */
export const ENGINE_BUG_SEEDS: readonly {
  seed: number;
  found: string;
  options?: EngineOptions;
  open?: boolean;
}[] = [
  {
    seed: 1147,
    found:
      "Harness: the model lost versions carried by a cycle of copies (d0/k2 -> k9 -> d0/k2), " +
      "so a correct GetObject looked like a torn read",
  },
  {
    seed: 1,
    options: { strictDirs: true },
    found: "Durability: an acknowledged PutObject lost whole. LocalDataPath.publish() makes " +
      "shards/<xx>/ with mkdirp() when the first file of a data-id prefix arrives (a new prefix " +
      "every minute), renames the file in and fsyncs shards/<xx>/, but never fsyncs shards/, " +
      "so the directory entry itself (and init()'s tmp/ and shards/ in the root) may not " +
      "survive a power loss. Fix: fsync the parent of every directory mkdirp() creates " +
      "before a file in it is acknowledged",
  },
  {
    seed: 4,
    options: { readRaces: true },
    found: "CopyObject racing an overwrite or delete of its source answers 400 IncompleteBody: " +
      "the source record is read, then the writer's commit removes the source's shard file " +
      "(its garbage) before copyBytes() opens it",
  },
  {
    seed: 138,
    options: { readRaces: true, bigParts: true },
    found: "GetObject racing a DeleteObject or overwrite of the key answers 200 and then fails " +
      "mid-body (No such file): LocalDataPath.read() opens a shard file only at the stream's " +
      "first pull (and objectStream() each part's only when it reaches it), after the " +
      "writer's commit removed the file as garbage",
  },
  {
    seed: 111,
    options: { readRaces: true, bigParts: true },
    found: "Torn read: GetObject of a multipart object racing its DeleteObject answers 200 with " +
      "Content-Length 284978 and an empty body: getOrHead() reads the record, then " +
      "objectStream() reads the manifest in a second KV read, after the delete's commit " +
      "removed the chunks, and streams zero parts",
  },
  {
    seed: 439,
    options: { readRaces: true },
    found: "Torn read: as seed 111, with a one-part upload (57979 B answered as 0 B)",
  },
  {
    seed: 2391355646,
    options: { commitFaults: true },
    found: "Harness: an UploadPart answered 500 (may have applied) left the part's earlier " +
      "answered upload as the one to complete with, so CompleteMultipartUpload got InvalidPart",
  },
];

/** The engine corpus: fixed engine bug seeds with their options first, then seeds 1..200. */
export const ENGINE_CORPUS: readonly { seed: number; options?: EngineOptions }[] = [
  ...ENGINE_BUG_SEEDS.filter((b) => !b.open).map(({ seed, options }) => ({ seed, options })),
  ...Array.from({ length: 200 }, (_, i) => ({ seed: i + 1 })),
];
