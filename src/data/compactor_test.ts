import assert from "node:assert/strict";
import { corruptByte } from "./_testing.ts";
import { DenoDisk } from "../io/deno/disk.ts";
import { openDenoKv } from "../io/deno/kv.ts";
import type { MetaKv } from "../io/mod.ts";
import { type DataRef, keys, LocalLog, type ObjectRecord } from "../meta/mod.ts";
import { compactSegments } from "./compactor.ts";
import { LocalDataPath } from "./local.ts";
import { Reclaimer } from "./reclaim.ts";
import { RECORD_HEADER_SIZE_BYTES, SEGMENT_HEADER_SIZE_BYTES } from "./segment_record.ts";
import { planCompaction, SegmentStore } from "./segments.ts";

/** A real disk that remembers the removals it started, so a test can wait for them. */
class RemovalTrackingDisk extends DenoDisk {
  readonly removedPaths: string[] = [];
  readonly #removals: Promise<void>[] = [];

  override remove(path: string): Promise<void> {
    this.removedPaths.push(path);
    const p = super.remove(path);
    this.#removals.push(p);
    return p;
  }

  async removalsDone(): Promise<void> {
    await Promise.all(this.#removals);
  }
}

interface Env {
  root: string;
  disk: RemovalTrackingDisk;
  kv: MetaKv;
  log: LocalLog;
  data: LocalDataPath;
  reclaimer: Reclaimer;
}

async function withEnv(fn: (env: Env) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir();
  const kv = await openDenoKv(`${root}/kv.sqlite3`);
  const disk = new RemovalTrackingDisk(`${root}/data`);
  const data = new LocalDataPath(disk, { segmentRollBytes: 2048 });
  try {
    await data.init();
    const reclaimer = new Reclaimer((ref) => {
      data.remove(ref);
    });
    const log = await LocalLog.open(kv, { onGarbage: (refs) => reclaimer.retire(refs) });
    await log.propose({ type: "CreateBucket", bucket: { name: "b", createdMs: 1, region: "r" } });
    await fn({ root, disk, kv, log, data, reclaimer });
    await disk.removalsDone();
  } finally {
    data.segments.seal(); // closes the active segment's file
    kv.close();
    await Deno.remove(root, { recursive: true });
  }
}

let nextDataId = 1;
const BODY_BYTES = 200;

function body(n: number): Uint8Array {
  return Uint8Array.from({ length: BODY_BYTES }, (_, i) => (n * 53 + i * 11) & 0xff);
}

/** A small PUT as the S3 layer does it: packed write, PutObject, retire the old data, settle. */
async function put(env: Env, key: string, bytes: Uint8Array): Promise<DataRef> {
  const dataId = (nextDataId++).toString(16).padStart(32, "0");
  const w = await env.data.create(dataId, { packFor: { bucket: "b", key } });
  await w.write(bytes);
  const ref = await w.commit();
  try {
    const record: ObjectRecord = {
      sizeBytes: bytes.length,
      etag: dataId,
      lastModifiedMs: 1000,
      userMeta: {},
      data: ref,
    };
    await env.log.propose({ type: "PutObject", bucket: "b", key, record });
  } finally {
    env.data.settle(ref);
  }
  return ref;
}

async function del(env: Env, key: string): Promise<void> {
  await env.log.propose({ type: "DeleteObject", bucket: "b", key });
}

async function current(env: Env, key: string): Promise<ObjectRecord> {
  const e = await env.kv.get<ObjectRecord>(keys.object("b", key));
  assert.ok(e, `object "${key}" exists`);
  return e.value;
}

async function read(env: Env, ref: DataRef): Promise<Uint8Array> {
  return new Uint8Array(await new Response(env.data.read(ref, 0, ref.sizeBytes)).arrayBuffer());
}

function segFile(env: Env, id: string): string {
  return `${env.root}/data/${SegmentStore.path(id)}`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

const compact = (env: Env) =>
  compactSegments({
    segments: env.data.segments,
    kv: env.kv,
    log: env.log,
    reclaimer: env.reclaimer,
  });

/**
 * Writes `count` objects, then overwrites a quarter and deletes half of them,
 * and seals the active segment.
 *
 * @returns the bytes every surviving key must read back as
 */
async function writeAndThin(env: Env, count: number): Promise<Map<string, Uint8Array>> {
  const expected = new Map<string, Uint8Array>();
  const key = (i: number) => `k${i.toString().padStart(3, "0")}`;
  for (let i = 0; i < count; i++) {
    await put(env, key(i), body(i));
    expected.set(key(i), body(i));
  }
  for (let i = 0; i < count; i++) {
    if (i % 4 === 1) {
      await put(env, key(i), body(1000 + i));
      expected.set(key(i), body(1000 + i));
    } else if (i % 4 !== 0) {
      await del(env, key(i));
      expected.delete(key(i));
    }
  }
  env.data.segments.seal();
  return expected;
}

/** Keys whose current data lies in one of `segmentIds`. */
async function keysIn(env: Env, keyList: Iterable<string>, segmentIds: string[]) {
  const out: string[] = [];
  for (const key of keyList) {
    if (segmentIds.includes((await current(env, key)).data!.segment!.id)) out.push(key);
  }
  return out;
}

Deno.test("compactSegments() relocates live records out of mostly dead segments and removes their files", async () => {
  await withEnv(async (env) => {
    const expected = await writeAndThin(env, 40);
    const planned = planCompaction(env.data.segments.stats());
    const moving = await keysIn(env, expected.keys(), planned);
    assert.ok(planned.length > 0 && moving.length > 0, "the scenario leaves work to do");

    const report = await compact(env);
    assert.deepEqual(report, {
      compacted: planned.length,
      kept: 0,
      damage: [],
      relocated: moving.length,
    });

    const known = env.data.segments.stats().map((s) => s.id);
    for (const id of planned) assert.ok(!known.includes(id), `segment ${id} is forgotten`);
    await env.disk.removalsDone();
    for (const id of planned) assert.equal(await exists(segFile(env, id)), false, id);

    for (const [key, bytes] of expected) {
      const record = await current(env, key);
      const id = record.data!.segment!.id;
      assert.ok(!planned.includes(id), `"${key}" left the compacted segments`);
      assert.ok(await exists(segFile(env, id)), `"${key}" points to an existing segment`);
      assert.equal(record.etag, record.data!.dataId, "only the data moved");
      assert.deepEqual(await read(env, record.data!), bytes, `"${key}" reads back`);
    }
    assert.deepEqual(await compact(env), { compacted: 0, kept: 0, damage: [], relocated: 0 });
  });
});

Deno.test("compactSegments() keeps a compacted file until a read that began before it ends", async () => {
  await withEnv(async (env) => {
    const expected = await writeAndThin(env, 40);
    const planned = planCompaction(env.data.segments.stats());
    const [key] = await keysIn(env, expected.keys(), planned);
    const before = await current(env, key);

    const release = env.reclaimer.enter();
    const report = await compact(env);
    assert.equal(report.compacted, planned.length);
    assert.notDeepEqual((await current(env, key)).data, before.data, "the record moved");
    for (const id of planned) {
      assert.equal(env.data.segments.stats().find((s) => s.id === id)?.state, "retired");
      assert.ok(!env.disk.removedPaths.includes(SegmentStore.path(id)), `${id} not removed yet`);
      assert.ok(await exists(segFile(env, id)));
    }
    assert.deepEqual(await read(env, before.data!), expected.get(key), "the old place still reads");

    release();
    await env.disk.removalsDone();
    for (const id of planned) {
      assert.ok(env.disk.removedPaths.includes(SegmentStore.path(id)));
      assert.equal(await exists(segFile(env, id)), false);
    }
    assert.equal(env.reclaimer.pendingCount, 0);
  });
});

Deno.test("apply() RelocateData moves the data only while the object still holds `from`", async () => {
  await withEnv(async (env) => {
    const first = await put(env, "k", body(1));
    const moved = await put(env, "spare", body(2)); // a stand-in for a relocated copy
    const overwritten = await put(env, "k", body(3)); // a PUT racing the compactor
    const before = await current(env, "k");
    assert.deepEqual(before.data, overwritten);

    const stale = await env.log.propose({
      type: "RelocateData",
      bucket: "b",
      key: "k",
      from: first,
      to: moved,
    });
    assert.deepEqual(stale.garbage, [moved]);
    assert.deepEqual(await current(env, "k"), before);

    const gone = await env.log.propose({
      type: "RelocateData",
      bucket: "b",
      key: "missing",
      from: first,
      to: moved,
    });
    assert.deepEqual(gone.garbage, [moved]);
    assert.equal(await env.kv.get(keys.object("b", "missing")), null);

    const applied = await env.log.propose({
      type: "RelocateData",
      bucket: "b",
      key: "k",
      from: overwritten,
      to: moved,
    });
    assert.deepEqual(applied.garbage, [overwritten]);
    assert.deepEqual(await current(env, "k"), { ...before, data: moved });
  });
});

/**
 * Writes 12 objects and deletes every one in the first segment but one.
 *
 * @returns the first segment's id and the surviving key's ref
 */
async function oneSurvivorInFirstSegment(env: Env) {
  const refs = new Map<string, DataRef>();
  for (let i = 0; i < 12; i++) refs.set(`k${i}`, await put(env, `k${i}`, body(i)));
  const firstId = refs.get("k0")!.segment!.id;
  const inFirst = [...refs].filter(([, r]) => r.segment!.id === firstId).map(([k]) => k);
  assert.ok(inFirst.length >= 4, `${inFirst.length} records in the first segment`);
  const survivor = inFirst[inFirst.length - 1];
  for (const key of inFirst) if (key !== survivor) await del(env, key);
  env.data.segments.seal();
  assert.deepEqual(planCompaction(env.data.segments.stats()), [firstId]);
  return { firstId, survivor, ref: refs.get(survivor)! };
}

async function assertKeptWhole(env: Env, firstId: string, survivor: string, damage: RegExp) {
  const before = await current(env, survivor);
  const report = await compact(env);
  assert.equal(report.kept, 1);
  assert.equal(report.compacted, 0);
  assert.equal(report.relocated, 0);
  assert.equal(report.damage.length, 1);
  assert.match(report.damage[0], new RegExp(`segment ${firstId}: `));
  assert.match(report.damage[0], damage);
  assert.equal(env.data.segments.stats().find((s) => s.id === firstId)?.state, "damaged");
  assert.deepEqual(await current(env, survivor), before, "the live object is unchanged");
  await env.disk.removalsDone();
  assert.ok(await exists(segFile(env, firstId)), "the damaged file is kept");
  assert.deepEqual(await compact(env), { compacted: 0, kept: 0, damage: [], relocated: 0 });
}

Deno.test("compactSegments() keeps a segment whole when a live record's payload is corrupted", async () => {
  await withEnv(async (env) => {
    const { firstId, survivor, ref } = await oneSurvivorInFirstSegment(env);
    await corruptByte(segFile(env, firstId), ref.segment!.offsetBytes + RECORD_HEADER_SIZE_BYTES);
    await assertKeptWhole(env, firstId, survivor, /fails its checksum/);
  });
});

Deno.test("compactSegments() keeps a segment whole when a header before a live record is corrupted", async () => {
  await withEnv(async (env) => {
    const { firstId, survivor } = await oneSurvivorInFirstSegment(env);
    assert.equal(await env.kv.get(keys.object("b", "k0")), null, "the first record is dead");
    // The first record's payload size field: its header no longer decodes.
    await corruptByte(segFile(env, firstId), SEGMENT_HEADER_SIZE_BYTES + 4);
    await assertKeptWhole(env, firstId, survivor, /does not decode/);
    const bytes = await read(env, (await current(env, survivor)).data!);
    assert.deepEqual(bytes, body(Number(survivor.slice(1))), "the survivor still reads");
  });
});
