/**
 * The metadata layer: records and key tuples, commands, the deterministic
 * `apply`, the `propose()` seam, and the startup sweep that removes what a
 * crash left unreferenced.
 *
 * `LocalLog` is the one-voter log: `propose()` applies each command in
 * arrival order. The Raft-replicated log replaces it behind the same
 * {@link MetaLog} interface; callers do not change.
 *
 * No clock, no randomness: times and ids arrive inside commands.
 *
 * @module
 */
import type { MetaKv } from "../io/mod.ts";
import { apply, readKeys } from "./apply.ts";
import { GroupKv } from "./group.ts";
import type { ApplyResult, Command } from "./commands.ts";
import {
  type DataRef,
  keys,
  type ManifestChunk,
  type ObjectRecord,
  type PartRecord,
  type UploadRecord,
} from "./records.ts";

export * from "./records.ts";
export * from "./commands.ts";
export { apply, MIN_PART_SIZE_BYTES, readKeys, readManifest } from "./apply.ts";
export { compareKeys, GroupKv } from "./group.ts";

/** The seam every metadata change goes through. */
export interface MetaLog {
  /**
   * Appends `cmd` to the log and resolves once it is applied here.
   * @throws {MetaError} when the command cannot apply
   */
  propose(cmd: Command): Promise<ApplyResult>;
  /**
   * Resolves once this replica has applied every command committed before
   * the call, so a read of the local replica made after it sees every write
   * acknowledged before the call (a linearizable read). On a Raft cluster this
   * is ReadIndex: the leader confirms it still leads and the replica waits
   * until it has applied up to the leader's commit index.
   *
   * @throws when the barrier cannot be confirmed (no leader, or the leader lost its quorum)
   * @see Ongaro 2014, "Consensus: Bridging Theory and Practice", §6.4 (ReadIndex)
   */
  readBarrier(): Promise<void>;
}

/** Commands applied together in one group commit, at most. */
export const MAX_GROUP_COMMANDS = 256;

interface Pending {
  cmd: Command;
  resolve(result: ApplyResult): void;
  reject(err: unknown): void;
}

/**
 * The log of a cluster of one: commands apply in the order they are
 * proposed. Commands that arrive while a group commit is in flight apply
 * together in the next one (see `group.ts`), so concurrent writers share fsyncs.
 */
export class LocalLog implements MetaLog {
  #queue: Pending[] = [];
  #draining = false;
  #index: number;
  readonly #group: GroupKv;

  private constructor(readonly kv: MetaKv, index: number) {
    this.#index = index;
    this.#group = new GroupKv(kv);
  }

  /** Opens the log over `kv`, resuming after its last applied index. */
  static async open(kv: MetaKv): Promise<LocalLog> {
    const applied = await kv.get<number>(keys.applied());
    return new LocalLog(kv, applied?.value ?? 0);
  }

  /** At once: `propose()` answers only after apply and flush, so every acknowledged write is readable. */
  readBarrier(): Promise<void> {
    return Promise.resolve();
  }

  /** The index of the last command applied. */
  get index(): number {
    return this.#index;
  }

  propose(cmd: Command): Promise<ApplyResult> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ cmd, resolve, reject });
      if (!this.#draining) this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#draining = true;
    try {
      while (this.#queue.length > 0) {
        const group = this.#queue.splice(0, MAX_GROUP_COMMANDS);
        await this.#group.prefetch(group.flatMap((p) => readKeys(p.cmd))).catch(() => {
          // a failed read-ahead only means the commands read for themselves
        });
        const outcomes: ({ ok: true; result: ApplyResult } | { ok: false; err: unknown })[] = [];
        for (const p of group) {
          try {
            outcomes.push({ ok: true, result: await apply(p.cmd, this.#group, ++this.#index) });
          } catch (err) {
            outcomes.push({ ok: false, err });
          }
        }
        try {
          await this.#group.flush();
        } catch (err) {
          for (const p of group) p.reject(err);
          continue;
        }
        group.forEach((p, i) => {
          const o = outcomes[i];
          if (o.ok) p.resolve(o.result);
          else p.reject(o.err);
        });
      }
    } finally {
      this.#draining = false;
    }
  }
}

/**
 * Removes metadata a crash left unreachable (manifest chunks no object names,
 * parts of uploads that no longer exist) and returns every data ref still
 * referenced, by data id. Run at startup, before serving.
 */
export async function sweepMetadata(kv: MetaKv): Promise<Map<string, DataRef>> {
  const live = new Map<string, DataRef>();
  const manifests = new Set<string>();
  for await (const e of kv.list<ObjectRecord>({ prefix: ["cur"] })) {
    if (e.value.data) live.set(e.value.data.dataId, e.value.data);
    if (e.value.multipart) manifests.add(e.value.multipart.manifestId);
  }
  for await (const e of kv.list<ManifestChunk>({ prefix: ["manifest"] })) {
    if (manifests.has(e.key[1] as string)) {
      for (const p of e.value.parts) live.set(p.data.dataId, p.data);
    } else {
      await kv.atomic().delete(e.key).commit();
    }
  }
  const uploads = new Set<string>();
  for await (const e of kv.list<UploadRecord>({ prefix: ["upload"] })) {
    uploads.add(e.value.uploadId);
  }
  for await (const e of kv.list<PartRecord>({ prefix: ["part"] })) {
    if (uploads.has(e.key[1] as string)) live.set(e.value.data.dataId, e.value.data);
    else await kv.atomic().delete(e.key).commit();
  }
  return live;
}
