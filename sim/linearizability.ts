/**
 * A linearizability check of a history of register writes and reads (one
 * register per key), using the order in which the log applied the writes as
 * the witness: the check accepts exactly the histories that are
 * linearizable with the writes in that order, which is the order every
 * replica's state follows.
 *
 * Pure: no clock, no I/O.
 *
 * @see Herlihy & Wing 1990, "Linearizability" (locality: per-key checks compose)
 * @module
 */

/** A write of a unique `value`; `respMs` Infinity when never acknowledged. */
export interface WriteOp {
  readonly key: string;
  readonly value: string;
  readonly invokeMs: number;
  readonly respMs: number;
  /** Log index where the write first applied; undefined when it never did. */
  readonly index: number | undefined;
}

/** A completed read that returned `value` (undefined: the key was never written). */
export interface ReadOp {
  readonly key: string;
  readonly value: string | undefined;
  readonly invokeMs: number;
  readonly respMs: number;
  readonly node: string;
}

/**
 * Returns a description of the first violation, or null when the history is
 * linearizable with the log order of writes.
 */
export function checkRegisters(
  writes: readonly WriteOp[],
  reads: readonly ReadOp[],
): string | null {
  for (const w of writes) {
    if (w.respMs !== Infinity && w.index === undefined) {
      return `Acknowledged write ${w.key}=${w.value} is not in the log`;
    }
  }
  const keys = new Set([...writes.map((w) => w.key), ...reads.map((r) => r.key)]);
  for (const key of keys) {
    const ws = writes.filter((w) => w.key === key && w.index !== undefined)
      .sort((a, b) => a.index! - b.index!);
    // Real-time order of writes must agree with the log order.
    let maxInvoke = -Infinity;
    let maxInvokeOp: WriteOp | null = null;
    for (const w of ws) {
      if (maxInvokeOp && w.respMs < maxInvoke) {
        return `Write ${key}=${w.value} (log ${w.index}) finished at ${w.respMs} before ` +
          `${key}=${maxInvokeOp.value} (log ${maxInvokeOp.index}) started at ${maxInvoke}`;
      }
      if (w.invokeMs > maxInvoke) {
        maxInvoke = w.invokeMs;
        maxInvokeOp = w;
      }
    }
    const rank = new Map<string, number>();
    ws.forEach((w, i) => rank.set(w.value, i + 1));
    // minResp[k]: earliest response among writes ranked above k.
    const minResp: number[] = new Array(ws.length + 2).fill(Infinity);
    for (let k = ws.length - 1; k >= 0; k--) minResp[k] = Math.min(minResp[k + 1], ws[k].respMs);
    const rs = reads.filter((r) => r.key === key).map((r) => {
      const k = r.value === undefined ? 0 : rank.get(r.value);
      return { r, k };
    });
    for (const { r, k } of rs) {
      if (k === undefined) return `Read of ${key} on ${r.node} returned ${r.value}, never written`;
      if (k > 0 && r.respMs < ws[k - 1].invokeMs) {
        return `Read of ${key} on ${r.node} returned ${r.value} before its write started`;
      }
      if (minResp[k] < r.invokeMs) {
        return `Stale read of ${key} on ${r.node} at ${r.invokeMs}: returned ${
          r.value ?? "nothing"
        }, ` +
          `but a later write finished at ${minResp[k]}`;
      }
    }
    // Reads ordered in real time must not go back in the write order.
    const byResp = [...rs].sort((a, b) => a.r.respMs - b.r.respMs);
    let best = -1;
    let j = 0;
    for (const x of [...rs].sort((a, b) => a.r.invokeMs - b.r.invokeMs)) {
      while (j < byResp.length && byResp[j].r.respMs < x.r.invokeMs) {
        best = Math.max(best, byResp[j++].k!);
      }
      if (x.k! < best) {
        return `Read of ${key} on ${x.r.node} at ${x.r.invokeMs} returned an older value than a read finished before it`;
      }
    }
  }
  return null;
}
