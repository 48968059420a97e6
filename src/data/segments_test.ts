import assert from "node:assert/strict";
import { corruptByte } from "./_testing.ts";
import { DenoDisk } from "../io/deno/disk.ts";
import type { DataRef } from "../meta/records.ts";
import {
  encodeRecord,
  RECORD_HEADER_SIZE_BYTES,
  type RecordOwner,
  SEGMENT_HEADER_SIZE_BYTES,
} from "./segment_record.ts";
import { planCompaction, type SegmentRecord, type SegmentStats, SegmentStore } from "./segments.ts";

async function withStore(
  fn: (store: SegmentStore, root: string) => Promise<void>,
  rollBytes?: number,
): Promise<void> {
  const root = await Deno.makeTempDir();
  const store = new SegmentStore(new DenoDisk(root), rollBytes);
  await store.init();
  try {
    await fn(store, root);
  } finally {
    store.seal(); // closes the active segment's file
    await Deno.remove(root, { recursive: true });
  }
}

const dataId = (n: number): string => n.toString(16).padStart(32, "0");
const owner = (n: number): RecordOwner => ({ bucket: "b", key: `key-${n}` });

/** A payload no other `n` produces. */
function payload(n: number, size: number): Uint8Array {
  return Uint8Array.from({ length: size }, (_, i) => (n * 131 + i * 7 + (i >> 8)) & 0xff);
}

/** Appends records one after another (never batched together). */
async function appendSeq(store: SegmentStore, from: number, count: number, size: number) {
  const refs: DataRef[] = [];
  for (let n = from; n < from + count; n++) {
    refs.push(await store.append(dataId(n), payload(n, size), owner(n)));
  }
  return refs;
}

function segFile(root: string, id: string): string {
  return `${root}/${SegmentStore.path(id)}`;
}

async function segFilesOnDisk(root: string): Promise<string[]> {
  const ids: string[] = [];
  for await (const e of Deno.readDir(`${root}/segments`)) ids.push(e.name.replace(/\.seg$/, ""));
  return ids.sort();
}

function statsOf(store: SegmentStore, id: string): SegmentStats {
  const s = store.stats().find((s) => s.id === id);
  assert.ok(s, `segment ${id} is known`);
  return s;
}

/** A segment's state, liveCount, liveBytes and inflight. */
function estimates(store: SegmentStore, id: string) {
  const s = statsOf(store, id);
  return [s.state, s.liveCount, s.liveBytes, s.inflight];
}

async function scanAll(store: SegmentStore, id: string) {
  const records: SegmentRecord[] = [];
  const complete = await store.scan(id, (rec) => {
    records.push(rec);
    return Promise.resolve();
  });
  return { complete, records };
}

Deno.test("SegmentStore concurrent appends share one segment and each reads back byte for byte", async () => {
  await withStore(async (store, root) => {
    const payloads = Array.from({ length: 50 }, (_, n) => payload(n, 1 + n * 37));
    const refs = await Promise.all(payloads.map((p, n) => store.append(dataId(n), p, owner(n))));
    const id = refs[0].segment!.id;
    assert.ok(refs.every((r) => r.segment!.id === id), "one segment");
    // In call order, back to back: record n starts where record n-1 ends.
    let at = SEGMENT_HEADER_SIZE_BYTES;
    refs.forEach((ref, n) => {
      assert.deepEqual(ref, {
        dataId: dataId(n),
        k: 1,
        m: 0,
        sizeBytes: payloads[n].length,
        segment: { id, offsetBytes: at },
      });
      at += encodeRecord(dataId(n), payloads[n], owner(n)).length;
    });
    const s = statsOf(store, id);
    assert.equal(s.state, "active");
    assert.equal(s.sizeBytes, at);
    assert.equal(s.liveCount, 50);
    assert.equal(s.inflight, 50);
    assert.equal(s.liveBytes, payloads.reduce((sum, p) => sum + p.length, 0));
    assert.equal((await Deno.stat(segFile(root, id))).size, at);
    for (let n = 0; n < refs.length; n++) {
      assert.deepEqual(await store.readPayload(refs[n]), payloads[n], `payload ${n}`);
    }
  });
});

Deno.test("SegmentStore rolls to a new segment file at rollBytes, sealing the earlier ones", async () => {
  await withStore(async (store, root) => {
    const refs = await appendSeq(store, 0, 20, 500);
    const stats = store.stats().sort((a, b) => (a.id < b.id ? -1 : 1));
    assert.ok(stats.length >= 3, `${stats.length} segments`);
    assert.deepEqual(stats.map((s) => s.state), [
      ...stats.slice(1).map(() => "sealed"),
      "active",
    ]);
    assert.deepEqual(await segFilesOnDisk(root), stats.map((s) => s.id));
    for (const s of stats) {
      assert.ok(s.sizeBytes <= 4096, `segment ${s.id} holds ${s.sizeBytes} bytes`);
      assert.equal((await Deno.stat(segFile(root, s.id))).size, s.sizeBytes);
    }
    // Appends only ever go forward: segment ids do not decrease in append order.
    const ids = refs.map((r) => r.segment!.id);
    assert.deepEqual(ids, [...ids].sort());
    for (let i = 0; i < refs.length; i++) {
      assert.deepEqual(await store.readPayload(refs[i]), payload(i, 500));
    }
  }, 4096);
});

Deno.test("SegmentStore readPayload() throws on a corrupted payload byte and on a wrong data id", async () => {
  await withStore(async (store, root) => {
    const [a, b] = await appendSeq(store, 0, 2, 300);
    await corruptByte(
      segFile(root, a.segment!.id),
      a.segment!.offsetBytes + RECORD_HEADER_SIZE_BYTES + 17,
    );
    await assert.rejects(store.readPayload(a), /damaged/);
    assert.deepEqual(await store.readPayload(b), payload(1, 300), "the neighbour is intact");
    await assert.rejects(store.readPayload({ ...b, dataId: dataId(99) }), /damaged/);
    await assert.rejects(
      store.readPayload({
        ...b,
        segment: { ...b.segment!, offsetBytes: b.segment!.offsetBytes + 1 },
      }),
      /damaged/,
    );
  });
});

Deno.test("SegmentStore release() and settle() lower the estimates planCompaction() decides on", async () => {
  await withStore(async (store) => {
    const old = await appendSeq(store, 0, 6, 300);
    store.seal();
    const active = await appendSeq(store, 6, 2, 300);
    const oldId = old[0].segment!.id;
    const activeId = active[0].segment!.id;
    assert.notEqual(oldId, activeId);
    assert.deepEqual(estimates(store, oldId), ["sealed", 6, 1800, 6]);

    for (const ref of old.slice(0, 5)) store.release(ref);
    assert.deepEqual(estimates(store, oldId), ["sealed", 1, 300, 6]);
    assert.deepEqual(planCompaction(store.stats()), [], "appends in flight keep it");

    for (const ref of old) store.settle(ref);
    store.settle(old[0]); // settling twice does not go below zero
    assert.deepEqual(estimates(store, oldId), ["sealed", 1, 300, 0]);
    assert.deepEqual(planCompaction(store.stats()), [oldId]);

    for (const ref of active) {
      store.settle(ref);
      store.release(ref);
    }
    assert.deepEqual(estimates(store, activeId), ["active", 0, 0, 0]);
    assert.deepEqual(planCompaction(store.stats()), [oldId], "never the active segment");

    store.mark(oldId, "damaged");
    assert.equal(statsOf(store, oldId).state, "damaged");
    assert.deepEqual(planCompaction(store.stats()), [], "never a damaged segment");
  });
});

Deno.test("planCompaction() picks sealed, settled segments under the live fraction, emptiest first", () => {
  const seg = (
    n: number,
    state: SegmentStats["state"],
    liveBytes: number,
    liveCount: number,
    inflight = 0,
  ): SegmentStats => ({
    id: n.toString(16).padStart(16, "0"),
    sizeBytes: 1000,
    liveBytes,
    liveCount,
    inflight,
    state,
    trustedEndBytes: 1000,
  });
  const stats = [
    seg(1, "sealed", 400, 4),
    seg(2, "sealed", 600, 6),
    seg(3, "active", 0, 0),
    seg(4, "sealed", 100, 1, 1),
    seg(5, "damaged", 0, 0),
    seg(6, "retired", 0, 0),
    seg(7, "sealed", 0, 0),
    seg(8, "sealed", 500, 5),
    seg(9, "sealed", 100, 1),
  ];
  const ids = (...ns: number[]) => ns.map((n) => n.toString(16).padStart(16, "0"));
  assert.deepEqual(planCompaction(stats), ids(7, 9, 1));
  assert.deepEqual(planCompaction(stats, 0.7), ids(7, 9, 1, 8, 2));
  assert.deepEqual(planCompaction(stats, 0), ids(7), "an empty segment always qualifies");
  assert.deepEqual(planCompaction([]), []);
});

Deno.test("SegmentStore sweep() after a restart keeps referenced segments sealed and removes the rest", async () => {
  await withStore(async (first, root) => {
    const s1 = await appendSeq(first, 0, 3, 100);
    first.seal();
    const s2 = await appendSeq(first, 3, 2, 100);
    first.seal();
    const s3 = await appendSeq(first, 5, 2, 100);
    first.seal();
    const [id1, id2, id3] = [s1, s2, s3].map((refs) => refs[0].segment!.id);
    assert.deepEqual(await segFilesOnDisk(root), [id1, id2, id3]);
    const sizeBefore = (await Deno.stat(segFile(root, id1))).size;

    // A restart: a fresh store over the same files. Segment 3, the newest, is unreferenced.
    const store = new SegmentStore(new DenoDisk(root), 4096);
    await store.init();
    try {
      const live = [s1[0], s1[2], s2[1]];
      assert.equal(await store.sweep(live), 1);
      assert.deepEqual(await segFilesOnDisk(root), [id1, id2]);
      assert.deepEqual(
        store.stats().map((s) => [s.id, s.state, s.liveCount, s.liveBytes, s.inflight]).sort(),
        [[id1, "sealed", 2, 200, 0], [id2, "sealed", 1, 100, 0]],
      );
      assert.equal(statsOf(store, id1).sizeBytes, sizeBefore);
      for (const ref of live) {
        assert.deepEqual(await store.readPayload(ref), payload(parseInt(ref.dataId, 16), 100));
      }
      assert.equal((await scanAll(store, id1)).complete, true);

      const fresh = await store.append(dataId(50), payload(50, 100), owner(50));
      const newId = fresh.segment!.id;
      assert.ok(newId > id3, `new segment ${newId} is after every earlier one, removed ${id3} too`);
      assert.equal(fresh.segment!.offsetBytes, SEGMENT_HEADER_SIZE_BYTES);
      assert.deepEqual(await segFilesOnDisk(root), [id1, id2, newId]);
      assert.equal((await Deno.stat(segFile(root, id1))).size, sizeBefore, "old file untouched");
      assert.deepEqual(await store.readPayload(fresh), payload(50, 100));
    } finally {
      store.seal();
    }
  });
});

Deno.test("SegmentStore scan() visits every record in order and reports whether it reached the live end", async () => {
  await withStore(async (store, root) => {
    const refs = await appendSeq(store, 0, 5, 200);
    const id = refs[0].segment!.id;
    store.seal();
    const expected = refs.map((ref, n) => ({
      offsetBytes: ref.segment!.offsetBytes,
      dataId: dataId(n),
      owner: owner(n),
      payload: payload(n, 200),
      intact: true,
    }));
    assert.deepEqual(await scanAll(store, id), { complete: true, records: expected });
    assert.equal((await scanAll(store, "00000000000000ff")).complete, false, "an unknown segment");

    // A torn tail: half a record, then garbage, after the last synced record.
    const torn = encodeRecord(dataId(9), payload(9, 200), owner(9)).subarray(0, 120);
    await Deno.writeFile(segFile(root, id), torn, { append: true });
    await Deno.writeFile(segFile(root, id), payload(10, 77), { append: true });
    assert.deepEqual(await scanAll(store, id), { complete: true, records: expected });

    // A damaged payload is reported, not skipped, and the scan goes on.
    await corruptByte(segFile(root, id), refs[3].segment!.offsetBytes + RECORD_HEADER_SIZE_BYTES);
    const afterPayload = await scanAll(store, id);
    assert.equal(afterPayload.complete, true);
    assert.deepEqual(afterPayload.records.map((r) => r.intact), [true, true, true, false, true]);

    // A damaged header before the last record's end: the scan stops short.
    await corruptByte(segFile(root, id), refs[2].segment!.offsetBytes + 4);
    const afterHeader = await scanAll(store, id);
    assert.equal(afterHeader.complete, false);
    assert.deepEqual(afterHeader.records, expected.slice(0, 2));
  });
});
