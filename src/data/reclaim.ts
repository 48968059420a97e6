/**
 * Epoch-based reclamation of unreferenced data: bytes that a metadata commit
 * stopped referencing are removed only once every read that started before
 * that commit has finished, so a GET or a copy never loses the file it is
 * streaming to a concurrent overwrite or delete.
 *
 * Readers `enter()` and call the returned release when done. `retire(refs)`
 * tags garbage with the current epoch and opens a new one; garbage is removed
 * when no reader of its epoch or an earlier one is still active. A crash
 * loses the pending list: what it held is then an orphan for the startup sweep.
 *
 * Pure apart from the `remove` callback it is given: no clock, no I/O.
 *
 * @module
 */
import type { DataRef } from "../meta/records.ts";

/** Removals deferred at an epoch. */
interface Retired {
  epoch: number;
  /** How many refs (or other removals) `run` performs. */
  count: number;
  run(): void;
}

/** Defers the removal of retired data until the reads that may use it are done. */
export class Reclaimer {
  #epoch = 0;
  /** Active readers per epoch. */
  readonly #active = new Map<number, number>();
  #pending: Retired[] = [];

  constructor(readonly remove: (ref: DataRef) => void) {}

  /** Registers a read; the returned function (idempotent) ends it. */
  enter(): () => void {
    const epoch = this.#epoch;
    this.#active.set(epoch, (this.#active.get(epoch) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = this.#active.get(epoch)! - 1;
      if (n === 0) this.#active.delete(epoch);
      else this.#active.set(epoch, n);
      this.#collect();
    };
  }

  /** Hands over data no record references any more (call after the commit that dropped it). */
  retire(refs: DataRef[]): void {
    if (refs.length === 0) return;
    this.defer(() => {
      for (const ref of refs) this.remove(ref);
    }, refs.length);
  }

  /**
   * Runs `removal` once every read active now has ended: for storage that a
   * commit made unreachable other than by retiring refs (a compacted segment file).
   */
  defer(removal: () => void, count = 1): void {
    this.#pending.push({ epoch: this.#epoch, count, run: removal });
    this.#epoch++;
    this.#collect();
  }

  /** Retired data still waiting for readers, in refs. */
  get pendingCount(): number {
    return this.#pending.reduce((n, p) => n + p.count, 0);
  }

  #collect(): void {
    let oldest = Infinity;
    for (const epoch of this.#active.keys()) oldest = Math.min(oldest, epoch);
    const keep: Retired[] = [];
    for (const p of this.#pending) {
      if (p.epoch < oldest) p.run();
      else keep.push(p);
    }
    this.#pending = keep;
  }
}
