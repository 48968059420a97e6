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
import { GroupCommitError, GroupKv } from "./group.ts";
import { type ApplyResult, type Command, MetaError } from "./commands.ts";
import { checkCommandLimits } from "./limits.ts";
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
export { compareKeys, GroupCommitError, GroupKv } from "./group.ts";
export { checkCommandLimits, checkWrite, keySizeBytes, valueSizeBytes } from "./limits.ts";

/**
 * The seam every metadata change goes through.
 *
 * What a rejection means (ADR 0009), and so what a caller may do with data it
 * stored for the command:
 * - {@link MetaError}: nothing of the command is visible, now or later; data
 *   only this command would have referenced may be released.
 * - anything else ({@link CommitOutcomeUnknown}, an I/O error): the command may
 *   be applied; data it references must be kept (the startup sweep removes
 *   it if no record does).
 */
export interface MetaLog {
  /**
   * Appends `cmd` to the log and resolves once it is applied and durable here.
   * @throws {MetaError} when the command did not apply
   * @throws {CommitOutcomeUnknown} when it may have
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

/**
 * A command whose group commit failed in a way that leaves its outcome
 * unknown: some or all of its writes may be durable. Callers must keep any
 * data the command references; it answers as `InternalError`.
 */
export class CommitOutcomeUnknown extends Error {
  override name = "CommitOutcomeUnknown";
  constructor(readonly command: Command["type"], override readonly cause: unknown) {
    super(
      `The metadata commit of a ${command} failed and may or may not have been written: ${
        (cause as Error)?.message ?? String(cause)
      }`,
    );
  }
}

/** Whether `err`, a rejection of `propose()`, promises that nothing of the command is visible. */
export function notApplied(err: unknown): boolean {
  return err instanceof MetaError;
}

/** Commands applied together in one group commit, at most. */
export const MAX_GROUP_COMMANDS = 256;

interface Pending {
  cmd: Command;
  resolve(result: ApplyResult): void;
  reject(err: unknown): void;
}

/**
 * A failure of `apply()` for `cmd`, after its writes were rolled back: a
 * `MetaError` as it is, anything else (a KV read that failed) as
 * `ServiceUnavailable`, which promises that nothing of the command is visible.
 */
function asNotApplied(cmd: Command, err: unknown): MetaError {
  if (err instanceof MetaError) return err;
  return new MetaError(
    "ServiceUnavailable",
    `Applying ${cmd.type} failed; nothing of it was written: ${(err as Error)?.message ?? err}`,
    { cause: err },
  );
}

/** How one command of a group came out of `apply()`: its units are `[firstUnit, endUnit)`. */
type Outcome =
  | { ok: true; result: ApplyResult; firstUnit: number; endUnit: number }
  | { ok: false; err: unknown; firstUnit: number; endUnit: number };

/**
 * The log of a cluster of one: commands apply in the order they are
 * proposed. Commands that arrive while a group commit is in flight apply
 * together in the next one (see `group.ts`), so concurrent writers share fsyncs.
 *
 * Failure semantics (ADR 0009): a command too large for Deno KV is refused
 * before it joins a group; a command that fails inside `apply()` is rolled
 * back alone (a `MetaError`; any other error becomes `ServiceUnavailable`)
 * and the group goes on; no command is answered before the group's
 * flush has ended, and a failed flush answers each command by what reached KV:
 * success if all its writes are durable, `MetaError` `ServiceUnavailable` if
 * none was written, {@link CommitOutcomeUnknown} otherwise.
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

  /**
   * @throws {MetaError} `MaxMessageLengthExceeded`, `MetadataTooLarge`, `KeyTooLongError`
   * before queueing when a record is too large for Deno KV; otherwise what `apply()` throws
   * @throws {CommitOutcomeUnknown} when the group's flush failed with this command's writes in flight
   */
  propose(cmd: Command): Promise<ApplyResult> {
    try {
      checkCommandLimits(cmd);
    } catch (err) {
      return Promise.reject(err);
    }
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
        const outcomes: Outcome[] = [];
        for (const p of group) {
          const firstUnit = this.#group.mark();
          try {
            const result = await apply(p.cmd, this.#group, ++this.#index);
            outcomes.push({ ok: true, result, firstUnit, endUnit: this.#group.mark() });
          } catch (err) {
            // Only this command's writes are undone; the group goes on without it.
            this.#group.rollback(firstUnit);
            outcomes.push({
              ok: false,
              err: asNotApplied(p.cmd, err),
              firstUnit,
              endUnit: firstUnit,
            });
          }
        }
        let failure: GroupCommitError | null = null;
        try {
          await this.#group.flush();
        } catch (err) {
          failure = err instanceof GroupCommitError ? err : new GroupCommitError(0, Infinity, err);
        }
        group.forEach((p, i) => {
          const o = outcomes[i];
          if (failure === null || o.endUnit <= failure.durableUnits) {
            // Durable, and so is everything before it that it read.
            if (o.ok) p.resolve(o.result);
            else p.reject(o.err);
          } else if (
            o.firstUnit >= failure.attemptedUnits || (!o.ok && o.firstUnit >= failure.durableUnits)
          ) {
            // Nothing of it was written (a failed command writes nothing); what it read may not be durable.
            p.reject(
              new MetaError(
                "ServiceUnavailable",
                "The metadata store failed to commit this request's group; nothing of it was written",
                { cause: failure.cause },
              ),
            );
          } else {
            p.reject(new CommitOutcomeUnknown(p.cmd.type, failure.cause));
          }
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
