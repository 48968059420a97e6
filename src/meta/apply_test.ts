import assert from "node:assert/strict";
import { openDenoKv } from "../io/deno/kv.ts";
import type { MetaKv } from "../io/mod.ts";
import {
  type DataRef,
  keys,
  LocalLog,
  MANIFEST_CHUNK_PARTS,
  MetaError,
  MIN_PART_SIZE_BYTES,
  type ObjectRecord,
  readManifest,
  sweepCommands,
  sweepMetadata,
} from "./mod.ts";

async function withKv(fn: (kv: MetaKv, log: LocalLog) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  const kv = await openDenoKv(`${dir}/kv.sqlite3`);
  try {
    await fn(kv, await LocalLog.open(kv));
  } finally {
    kv.close();
    await Deno.remove(dir, { recursive: true });
  }
}

let nextId = 0;
function dataRef(sizeBytes: number): DataRef {
  return { dataId: (nextId++).toString(16).padStart(32, "0"), k: 1, m: 0, sizeBytes };
}

function objectRecord(sizeBytes = 3, etag = "e1"): ObjectRecord {
  return { sizeBytes, etag, lastModifiedMs: 1000, userMeta: {}, data: dataRef(sizeBytes) };
}

async function rejects(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => err instanceof MetaError && err.code === code);
}

Deno.test("apply() CreateBucket twice answers BucketAlreadyOwnedByYou", async () => {
  await withKv(async (_kv, log) => {
    const bucket = { name: "b", createdMs: 1, region: "us-east-1" };
    await log.propose({ type: "CreateBucket", bucket });
    await rejects(log.propose({ type: "CreateBucket", bucket }), "BucketAlreadyOwnedByYou");
  });
});

Deno.test("apply() DeleteBucket refuses a bucket with objects or in-progress uploads", async () => {
  await withKv(async (kv, log) => {
    await log.propose({ type: "CreateBucket", bucket: { name: "b", createdMs: 1, region: "r" } });
    await log.propose({ type: "PutObject", bucket: "b", key: "k", record: objectRecord() });
    await rejects(log.propose({ type: "DeleteBucket", bucket: "b" }), "BucketNotEmpty");
    await log.propose({ type: "DeleteObject", bucket: "b", key: "k" });
    await log.propose({
      type: "CreateMultipartUpload",
      bucket: "b",
      key: "u",
      upload: { uploadId: "up1", initiatedMs: 1, userMeta: {} },
    });
    await rejects(log.propose({ type: "DeleteBucket", bucket: "b" }), "BucketNotEmpty");
    await log.propose({ type: "AbortMultipartUpload", bucket: "b", key: "u", uploadId: "up1" });
    await log.propose({ type: "DeleteBucket", bucket: "b" });
    assert.equal(await kv.get(keys.bucket("b")), null);
    await rejects(log.propose({ type: "DeleteBucket", bucket: "b" }), "NoSuchBucket");
  });
});

Deno.test("apply() PutObject returns the replaced data as garbage and honours conditions", async () => {
  await withKv(async (kv, log) => {
    await log.propose({ type: "CreateBucket", bucket: { name: "b", createdMs: 1, region: "r" } });
    const first = objectRecord(3, "aaa");
    const r1 = await log.propose({
      type: "PutObject",
      bucket: "b",
      key: "k",
      record: first,
      condition: { ifNoneMatch: "*" },
    });
    assert.deepEqual(r1.garbage, []);
    await rejects(
      log.propose({
        type: "PutObject",
        bucket: "b",
        key: "k",
        record: objectRecord(),
        condition: { ifNoneMatch: "*" },
      }),
      "PreconditionFailed",
    );
    await rejects(
      log.propose({
        type: "PutObject",
        bucket: "b",
        key: "k",
        record: objectRecord(),
        condition: { ifMatch: "zzz" },
      }),
      "PreconditionFailed",
    );
    await rejects(
      log.propose({
        type: "PutObject",
        bucket: "b",
        key: "new",
        record: objectRecord(),
        condition: { ifMatch: "aaa" },
      }),
      "NoSuchKey",
    );
    const second = objectRecord(4, "bbb");
    const r2 = await log.propose({
      type: "PutObject",
      bucket: "b",
      key: "k",
      record: second,
      condition: { ifMatch: "aaa" },
    });
    assert.deepEqual(r2.garbage, [first.data]);
    assert.deepEqual((await kv.get<ObjectRecord>(keys.object("b", "k")))?.value, second);
    await rejects(
      log.propose({ type: "PutObject", bucket: "nope", key: "k", record: objectRecord() }),
      "NoSuchBucket",
    );
  });
});

Deno.test("LocalLog records the applied index with each command and resumes after it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    let kv = await openDenoKv(`${dir}/kv.sqlite3`);
    let log = await LocalLog.open(kv);
    await log.propose({ type: "CreateBucket", bucket: { name: "b", createdMs: 1, region: "r" } });
    await log.propose({ type: "PutObject", bucket: "b", key: "k", record: objectRecord() });
    assert.equal((await kv.get<number>(keys.applied()))?.value, 2);
    kv.close();
    kv = await openDenoKv(`${dir}/kv.sqlite3`);
    log = await LocalLog.open(kv);
    assert.equal(log.index, 2);
    kv.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("apply() CompleteMultipartUpload of 10,000 parts fits Deno KV's limits", async () => {
  await withKv(async (kv, log) => {
    await log.propose({ type: "CreateBucket", bucket: { name: "b", createdMs: 1, region: "r" } });
    await log.propose({
      type: "CreateMultipartUpload",
      bucket: "b",
      key: "big",
      upload: { uploadId: "up", initiatedMs: 1, userMeta: { a: "1" }, contentType: "text/plain" },
    });
    // Part records written directly: 10,000 UploadPart proposals would only slow the test.
    const parts = [];
    let atomic = kv.atomic();
    for (let n = 1; n <= 10000; n++) {
      const etag = n.toString(16).padStart(32, "0");
      atomic.set(keys.part("up", n), {
        partNumber: n,
        etag,
        data: dataRef(MIN_PART_SIZE_BYTES),
        lastModifiedMs: 1,
      });
      parts.push({ partNumber: n, etag });
      if (n % 500 === 0) {
        assert.ok(await atomic.commit());
        atomic = kv.atomic();
      }
    }
    // A part uploaded but left out of the list becomes garbage.
    const result = await log.propose({
      type: "CompleteMultipartUpload",
      bucket: "b",
      key: "big",
      uploadId: "up",
      parts: parts.slice(0, 9999),
      manifestId: "m".repeat(32),
      nowMs: 5,
      etag: "x-9999",
    });
    assert.equal(result.garbage.length, 1);
    const record = (await kv.get<ObjectRecord>(keys.object("b", "big")))!.value;
    assert.equal(record.sizeBytes, 9999 * MIN_PART_SIZE_BYTES);
    assert.equal(record.multipart?.chunkCount, Math.ceil(9999 / MANIFEST_CHUNK_PARTS));
    assert.equal(record.contentType, "text/plain");
    const manifest = await readManifest(kv, record.multipart!);
    assert.deepEqual(
      manifest.map((p) => p.partNumber),
      parts.slice(0, 9999).map((p) => p.partNumber),
    );
    assert.equal(await kv.get(keys.upload("b", "big", "up")), null);
    for await (const _ of kv.list({ prefix: keys.parts("up") })) {
      assert.fail("part records must be gone");
    }
    // Deleting it returns every part's data and removes the manifest.
    const del = await log.propose({ type: "DeleteObject", bucket: "b", key: "big" });
    assert.equal(del.garbage.length, 9999);
    for await (const _ of kv.list({ prefix: ["manifest"] })) assert.fail("manifest must be gone");
  });
});

Deno.test("apply() CompleteMultipartUpload checks ETags and part sizes", async () => {
  await withKv(async (_kv, log) => {
    await log.propose({ type: "CreateBucket", bucket: { name: "b", createdMs: 1, region: "r" } });
    await log.propose({
      type: "CreateMultipartUpload",
      bucket: "b",
      key: "k",
      upload: { uploadId: "u", initiatedMs: 1, userMeta: {} },
    });
    for (const [n, size] of [[1, 100], [2, 100]]) {
      await log.propose({
        type: "UploadPart",
        bucket: "b",
        key: "k",
        uploadId: "u",
        part: { partNumber: n, etag: `e${n}`, data: dataRef(size), lastModifiedMs: 1 },
      });
    }
    const base = {
      type: "CompleteMultipartUpload",
      bucket: "b",
      key: "k",
      uploadId: "u",
      manifestId: "a".repeat(32),
      nowMs: 1,
      etag: "x-2",
    } as const;
    await rejects(
      log.propose({
        ...base,
        parts: [{ partNumber: 1, etag: "e1" }, { partNumber: 2, etag: "bad" }],
      }),
      "InvalidPart",
    );
    await rejects(log.propose({ ...base, parts: [{ partNumber: 3, etag: "e3" }] }), "InvalidPart");
    await rejects(
      log.propose({
        ...base,
        parts: [{ partNumber: 1, etag: "e1" }, { partNumber: 2, etag: "e2" }],
      }),
      "EntityTooSmall",
    );
    await log.propose({ ...base, parts: [{ partNumber: 2, etag: "e2" }] });
    await rejects(log.propose({ ...base, parts: [{ partNumber: 2, etag: "e2" }] }), "NoSuchUpload");
  });
});

Deno.test("apply() DeleteObjects of 1000 keys splits commits and removes every key", async () => {
  await withKv(async (kv, log) => {
    await log.propose({ type: "CreateBucket", bucket: { name: "b", createdMs: 1, region: "r" } });
    const names = Array.from({ length: 1000 }, (_, i) => `k${i}`);
    for (const k of names) {
      await log.propose({ type: "PutObject", bucket: "b", key: k, record: objectRecord() });
    }
    const result = await log.propose({
      type: "DeleteObjects",
      bucket: "b",
      keys: [...names, "missing"],
    });
    assert.equal(result.garbage.length, 1000);
    assert.equal(result.deleted?.length, 1001);
    for await (const _ of kv.list({ prefix: keys.objects("b") })) {
      assert.fail("all keys must be gone");
    }
  });
});

Deno.test("sweepMetadata() drops unreferenced manifests and orphan parts, keeps live data", async () => {
  await withKv(async (kv, log) => {
    await log.propose({ type: "CreateBucket", bucket: { name: "b", createdMs: 1, region: "r" } });
    const live = objectRecord();
    await log.propose({ type: "PutObject", bucket: "b", key: "k", record: live });
    await log.propose({
      type: "CreateMultipartUpload",
      bucket: "b",
      key: "u",
      upload: { uploadId: "up", initiatedMs: 1, userMeta: {} },
    });
    const livePart = dataRef(1);
    await log.propose({
      type: "UploadPart",
      bucket: "b",
      key: "u",
      uploadId: "up",
      part: { partNumber: 1, etag: "e", data: livePart, lastModifiedMs: 1 },
    });
    // What a crash in the middle of CompleteMultipartUpload can leave behind.
    const orphanPart = dataRef(1);
    await kv.atomic()
      .set(keys.manifest("orphan", 0), { parts: [{ partNumber: 1, data: dataRef(1), etag: "x" }] })
      .set(keys.part("gone", 1), { partNumber: 1, etag: "x", data: orphanPart, lastModifiedMs: 1 })
      .commit();
    const before = (await kv.get<number>(keys.applied()))?.value;
    const found = await sweepMetadata(kv);
    const refs = found.live;
    assert.deepEqual([...refs.keys()].sort(), [live.data!.dataId, livePart.dataId].sort());
    assert.deepEqual(refs.get(livePart.dataId), livePart);
    // The sweep itself writes nothing: its deletions are a command.
    assert.notEqual(await kv.get(keys.manifest("orphan", 0)), null);
    assert.equal((await kv.get<number>(keys.applied()))?.value, before);
    assert.deepEqual(found.orphans, [keys.manifest("orphan", 0), keys.part("gone", 1)]);
    for (const cmd of sweepCommands(found.orphans)) await log.propose(cmd);
    assert.equal(await kv.get(keys.manifest("orphan", 0)), null);
    assert.equal(await kv.get(keys.part("gone", 1)), null);
    assert.notEqual(await kv.get(keys.part("up", 1)), null);
  });
});
