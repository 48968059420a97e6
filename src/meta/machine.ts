/**
 * The replicated metadata state machine: applies a batch of committed log
 * entries into Deno KV through one group commit, so that applying the same
 * entries again (after a crash, from a retry) changes nothing.
 *
 * - Entries at or below `["sys", "applied"]` are skipped: that key is written
 *   in the same KV commit as the last writes of the command it names.
 * - An entry with a proposal id already applied within the last
 *   {@link PROPOSAL_WINDOW} entries is skipped (a forwarded retry). The id is
 *   recorded in the command's own last commit, with the error when `apply()`
 *   refused it, so a retry never gets a second try either.
 * - Pruning is deterministic: the group's last commit deletes every
 *   proposal record more than {@link PROPOSAL_WINDOW} entries old, and the
 *   duplicate test only looks inside the window, so replicas that group
 *   entries differently decide the same.
 *
 * Pure apart from the MetaKv it is given: no clock, no randomness.
 *
 * @see docs/adr/0060-replay-safe-metadata.md
 * @module
 */
import { apply, readKeys, type SysWrite } from "./apply.ts";
import { type ApplyResult, type Command, MetaError } from "./commands.ts";
import type { GroupKv } from "./group.ts";
import { keys, type ProposalRecord } from "./records.ts";

/**
 * How many entries back a proposal id is remembered: a retry of an id older
 * than this applies again. Retries come within seconds of the first try;
 * 100,000 entries is minutes at the cluster's full write rate.
 */
export const PROPOSAL_WINDOW = 100_000;

/** One committed entry for the machine: its index, proposal id, and command (`null`: a no-op). */
export interface LogCommand {
  index: number;
  id?: string;
  cmd: Command | null;
}

/**
 * What became of one entry. `applied` and `refused` entries are in the
 * group's pending units `[firstUnit, endUnit)`; `skipped` ones wrote nothing
 * (`duplicate` names the earlier application of its proposal id).
 */
export type EntryOutcome =
  | { kind: "applied"; entry: LogCommand; result: ApplyResult; endUnit: number }
  | { kind: "refused"; entry: LogCommand; err: MetaError; endUnit: number }
  | { kind: "skipped"; entry: LogCommand; duplicate?: ProposalRecord };

/**
 * Applies `entries` (in log order, indexes increasing) into `group` without
 * flushing it; the caller flushes once for the batch. `window` (entries a
 * proposal id is remembered) must be the same on every replica.
 *
 * @throws anything but a `MetaError` from `apply()` (a KV read that failed):
 * the batch is then not applied and the caller must not flush it.
 */
export async function applyEntries(
  group: GroupKv,
  entries: readonly LogCommand[],
  window: number = PROPOSAL_WINDOW,
): Promise<EntryOutcome[]> {
  const outcomes: EntryOutcome[] = [];
  if (entries.length === 0) return outcomes;
  const applied = (await group.get<number>(keys.applied()))?.value ?? 0;
  const todo = entries.filter((e) => e.index > applied && e.cmd !== null);
  await group.prefetch([
    ...todo.flatMap((e) => readKeys(e.cmd!)),
    ...todo.flatMap((e) => (e.id === undefined ? [] : [keys.proposal(e.id)])),
  ]).catch(() => {
    // a failed read-ahead only means the commands read for themselves
  });
  for (const entry of entries) {
    if (entry.index <= applied || entry.cmd === null) {
      outcomes.push({ kind: "skipped", entry });
      continue;
    }
    if (entry.id !== undefined) {
      const seen = await group.get<ProposalRecord>(keys.proposal(entry.id));
      if (seen && seen.value.index > entry.index - window) {
        outcomes.push({ kind: "skipped", entry, duplicate: seen.value });
        continue;
      }
    }
    const mark = group.mark();
    const bookkeeping = (extra: Partial<ProposalRecord>): SysWrite[] =>
      entry.id === undefined ? [] : [
        { key: keys.proposal(entry.id), value: { index: entry.index, ...extra } },
        { key: keys.proposalAt(entry.index), value: entry.id },
      ];
    try {
      const result = await apply(entry.cmd, group, entry.index, bookkeeping({}));
      outcomes.push({ kind: "applied", entry, result, endUnit: group.mark() });
    } catch (err) {
      if (!(err instanceof MetaError)) throw err;
      // Only this command's writes are undone; its index and id are still consumed.
      group.rollback(mark);
      const atomic = group.atomic().set(keys.applied(), entry.index);
      for (const w of bookkeeping({ code: err.code, message: err.message })) {
        atomic.set(w.key, w.value);
      }
      await atomic.commit();
      outcomes.push({ kind: "refused", entry, err, endUnit: group.mark() });
    }
  }
  const last = entries.at(-1)!.index;
  if (last > applied) {
    // The batch's last unit: the applied index past trailing no-ops, and the pruning.
    const atomic = group.atomic().set(keys.applied(), last);
    const end = [...keys.proposalsAt(), last - window + 1];
    for await (
      const e of group.list<string>({ prefix: keys.proposalsAt(), end })
    ) {
      atomic.delete(e.key);
      const rec = await group.get<ProposalRecord>(keys.proposal(e.value));
      if (rec && rec.value.index === e.key[2]) atomic.delete(keys.proposal(e.value));
    }
    await atomic.commit();
  }
  return outcomes;
}
