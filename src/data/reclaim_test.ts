import assert from "node:assert/strict";
import type { DataRef } from "../meta/records.ts";
import { Reclaimer } from "./reclaim.ts";

const ref = (n: number): DataRef => ({
  dataId: n.toString(16).padStart(32, "0"),
  k: 1,
  m: 0,
  sizeBytes: 1,
});

Deno.test("Reclaimer removes retired data at once when no read is active", () => {
  const removed: number[] = [];
  const r = new Reclaimer((d) => removed.push(parseInt(d.dataId, 16)));
  r.retire([ref(1), ref(2)]);
  assert.deepEqual(removed, [1, 2]);
  assert.equal(r.pendingCount, 0);
});

Deno.test("Reclaimer keeps retired data until every read that began before the retire ends", () => {
  const removed: number[] = [];
  const r = new Reclaimer((d) => removed.push(parseInt(d.dataId, 16)));
  const early = r.enter();
  r.retire([ref(1)]);
  const late = r.enter(); // began after data 1 was unreferenced: it cannot be reading it
  r.retire([ref(2)]);
  assert.deepEqual(removed, []);
  early();
  assert.deepEqual(removed, [1], "data 1 waited only for the early read");
  early(); // releasing twice is harmless
  assert.deepEqual(removed, [1]);
  late();
  assert.deepEqual(removed, [1, 2]);
  assert.equal(r.pendingCount, 0);
});

Deno.test("Reclaimer over seeded interleavings never removes data a live earlier read may use", async (t) => {
  for (const seed of [1, 2, 3, 4, 5]) {
    await t.step(`seed=${seed}`, () => {
      let x = seed;
      const rand = () => ((x = (x * 1103515245 + 12345) >>> 0) / 2 ** 32);
      const removedAt = new Map<number, number>();
      let step = 0;
      const r = new Reclaimer((d) => removedAt.set(parseInt(d.dataId, 16), step));
      const reads: { release: () => void; start: number }[] = [];
      const retiredAt = new Map<number, number>();
      let next = 0;
      for (step = 0; step < 400; step++) {
        const p = rand();
        if (p < 0.4) reads.push({ release: r.enter(), start: step });
        else if (p < 0.7 && reads.length > 0) {
          reads.splice(Math.floor(rand() * reads.length), 1)[0].release();
        } else {
          retiredAt.set(next, step);
          r.retire([ref(next++)]);
        }
        // Invariant: data retired at step s is never removed while a read started before s is live.
        for (const [id, at] of removedAt) {
          assert.ok(
            !reads.some((rd) => rd.start < retiredAt.get(id)! && at >= rd.start),
            `data ${id}`,
          );
        }
      }
      for (const rd of reads) rd.release();
      assert.equal(r.pendingCount, 0);
      assert.equal(removedAt.size, next);
    });
  }
});
