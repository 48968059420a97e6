import assert from "node:assert/strict";
import { dumpReplicatedState as dump } from "./_testing.ts";
import { openDenoKv } from "../io/deno/kv.ts";
import type { MetaKv } from "../io/mod.ts";
import {
  apply,
  applyEntries,
  type Command,
  type DataRef,
  type EntryOutcome,
  GroupKv,
  keys,
  LocalLog,
  type LogCommand,
  type ObjectRecord,
} from "./mod.ts";

async function withKv(fn: (kv: MetaKv, dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  const kv = await openDenoKv(`${dir}/kv.sqlite3`);
  try {
    await fn(kv, dir);
  } finally {
    kv.close();
    await Deno.remove(dir, { recursive: true });
  }
}

let nextId = 0;
function dataRef(): DataRef {
  return { dataId: (nextId++).toString(16).padStart(32, "0"), k: 1, m: 0, sizeBytes: 3 };
}
function record(etag: string, data = dataRef()): ObjectRecord {
  return { sizeBytes: 3, etag, lastModifiedMs: 1000, userMeta: {}, data };
}
const bucket: Command = { type: "CreateBucket", bucket: { name: "b", createdMs: 1, region: "r" } };
const put = (key: string, rec: ObjectRecord, condition?: { ifMatch: string }): Command => ({
  type: "PutObject",
  bucket: "b",
  key,
  record: rec,
  ...(condition ? { condition } : {}),
});

async function run(kv: MetaKv, entries: LogCommand[], window?: number): Promise<EntryOutcome[]> {
  const group = new GroupKv(kv);
  const out = await applyEntries(group, entries, window);
  await group.flush();
  return out;
}

function workload(): LogCommand[] {
  const a = record("a");
  const b = record("b");
  return [
    { index: 2, id: "n1.x.1", cmd: bucket },
    { index: 3, id: "n1.x.2", cmd: put("k", a) },
    { index: 4, cmd: null },
    { index: 5, id: "n2.y.1", cmd: put("k", b) },
    { index: 6, id: "n2.y.2", cmd: { type: "DeleteObject", bucket: "b", key: "k" } },
    { index: 7, id: "n2.y.3", cmd: put("j", a) },
    { index: 8, id: "n2.y.4", cmd: { type: "DeleteObjects", bucket: "b", keys: ["j", "x"] } },
    { index: 9, id: "n1.x.3", cmd: put("k", record("c")) },
  ];
}

Deno.test("applyEntries() replaying a group after a crash changes nothing", async () => {
  await withKv(async (ref) => {
    const entries = workload();
    await run(ref, entries);
    const want = await dump(ref);
    const dir = await Deno.makeTempDir();
    try {
      const kv = await openDenoKv(`${dir}/kv.sqlite3`);
      // The crash: only the first part of the group reached KV before the node died.
      await run(kv, entries.slice(0, 4));
      kv.close();
      const again = await openDenoKv(`${dir}/kv.sqlite3`);
      try {
        // On restart the log delivers every entry of the group again.
        const out = await run(again, entries);
        assert.deepEqual(out.slice(0, 3).map((o) => o.kind), ["skipped", "skipped", "skipped"]);
        assert.equal(await dump(again), want);
        // And once more: all skipped, nothing changes.
        const third = await run(again, entries);
        assert.ok(third.every((o) => o.kind === "skipped"));
        assert.equal(await dump(again), want);
      } finally {
        again.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("applyEntries() applies a retried proposal id once, even after later writes", async () => {
  await withKv(async (kv) => {
    const first = record("first");
    await run(kv, [{ index: 2, id: "p1", cmd: bucket }, {
      index: 3,
      id: "p2",
      cmd: put("k", first),
    }]);
    const second = record("second");
    const out = await run(kv, [
      { index: 4, id: "p3", cmd: put("k", second) },
      // A forwarded retry of p2 committed again after a leader change.
      { index: 5, id: "p2", cmd: put("k", first) },
    ]);
    assert.equal(out[1].kind, "skipped");
    assert.deepEqual(out[1].kind === "skipped" && out[1].duplicate, { index: 3 });
    assert.equal((await kv.get<ObjectRecord>(keys.object("b", "k")))?.value.etag, "second");
    assert.equal((await kv.get<number>(keys.applied()))?.value, 5);
  });
});

Deno.test("applyEntries() a refused proposal's retry is refused too, not applied later", async () => {
  await withKv(async (kv) => {
    const out = await run(kv, [
      { index: 2, id: "early", cmd: put("k", record("x")) }, // NoSuchBucket
      { index: 3, id: "mk", cmd: bucket },
      { index: 4, id: "early", cmd: put("k", record("x")) },
    ]);
    assert.equal(out[0].kind, "refused");
    assert.equal(out[0].kind === "refused" && out[0].err.code, "NoSuchBucket");
    assert.equal(out[2].kind, "skipped");
    assert.equal(await kv.get(keys.object("b", "k")), null);
  });
});

Deno.test("applyEntries() prunes proposal ids by index, the same whatever the grouping", async () => {
  const entries: LogCommand[] = [{ index: 2, id: "i2", cmd: bucket }];
  for (let i = 3; i <= 12; i++) {
    entries.push({ index: i, id: `i${i}`, cmd: put(`k${i}`, record("e")) });
  }
  await withKv(async (one) => {
    await run(one, entries, 3);
    await withKv(async (many) => {
      for (const cut of [[0, 1], [1, 5], [5, 6], [6, 11]]) {
        await run(many, entries.slice(cut[0], cut[1]), 3);
      }
      assert.equal(await dump(many), await dump(one));
      const ids: unknown[] = [];
      for await (const e of one.list({ prefix: ["sys", "proposal"] })) ids.push(e.key[2]);
      assert.deepEqual(ids, ["i10", "i11", "i12"]);
      // Outside the window an id is no longer a duplicate.
      const out = await run(one, [{ index: 13, id: "i3", cmd: put("k3", record("again")) }], 3);
      assert.equal(out[0].kind, "applied");
    });
  });
});

Deno.test("apply() re-applying a PutObject, UploadPart or RelocateData releases nothing", async () => {
  await withKv(async (kv) => {
    await apply(bucket, kv, 1);
    const rec = record("a");
    assert.deepEqual((await apply(put("k", rec), kv, 2)).garbage, []);
    // A replay finds its own record: its live data must not become garbage.
    assert.deepEqual((await apply(put("k", rec), kv, 2)).garbage, []);
    assert.deepEqual((await apply(put("k", record("b")), kv, 3)).garbage, [rec.data]);

    await apply(
      {
        type: "CreateMultipartUpload",
        bucket: "b",
        key: "u",
        upload: { uploadId: "up", initiatedMs: 1, userMeta: {} },
      },
      kv,
      4,
    );
    const part: Command = {
      type: "UploadPart",
      bucket: "b",
      key: "u",
      uploadId: "up",
      part: { partNumber: 1, etag: "e", data: dataRef(), lastModifiedMs: 1 },
    };
    assert.deepEqual((await apply(part, kv, 5)).garbage, []);
    assert.deepEqual((await apply(part, kv, 5)).garbage, []);

    const from = (await kv.get<ObjectRecord>(keys.object("b", "k")))!.value.data!;
    const move: Command = { type: "RelocateData", bucket: "b", key: "k", from, to: dataRef() };
    assert.deepEqual((await apply(move, kv, 6)).garbage, [from]);
    assert.deepEqual((await apply(move, kv, 6)).garbage, []);
    assert.deepEqual(
      (await kv.get<ObjectRecord>(keys.object("b", "k")))!.value.data,
      (move as { to: DataRef }).to,
    );
  });
});

Deno.test("SweepOrphans deletes only keys still unreachable when it applies", async () => {
  await withKv(async (kv) => {
    const log = await LocalLog.open(kv);
    await log.propose(bucket);
    await log.propose({
      type: "CreateMultipartUpload",
      bucket: "b",
      key: "u",
      upload: { uploadId: "up", initiatedMs: 1, userMeta: {} },
    });
    const chunk = { parts: [{ partNumber: 1, data: dataRef(), etag: "x" }] };
    const part = { partNumber: 1, etag: "x", data: dataRef(), lastModifiedMs: 1 };
    await kv.atomic()
      .set(keys.manifest("m-orphan", 0), chunk)
      .set(keys.manifest("m-live", 0), chunk)
      .set(keys.object("b", "mp"), {
        ...record("m-1"),
        data: undefined,
        multipart: { manifestId: "m-live", partCount: 1, chunkCount: 1 },
      })
      .set(keys.part("gone", 1), part)
      .set(keys.part("up", 1), part)
      .set(["bucket", "b2"], { name: "b2", createdMs: 1, region: "r" })
      .commit();
    await log.propose({
      type: "SweepOrphans",
      keys: [
        keys.manifest("m-orphan", 0),
        keys.manifest("m-live", 0),
        keys.part("gone", 1),
        keys.part("up", 1),
        ["bucket", "b2"],
      ] as (string | number)[][],
    });
    assert.equal(await kv.get(keys.manifest("m-orphan", 0)), null);
    assert.equal(await kv.get(keys.part("gone", 1)), null);
    assert.notEqual(await kv.get(keys.manifest("m-live", 0)), null);
    assert.notEqual(await kv.get(keys.part("up", 1)), null);
    assert.notEqual(await kv.get(["bucket", "b2"]), null);
  });
});

Deno.test("BurnJoinToken burns a token exactly once, never expired, one token per node id", async () => {
  await withKv(async (kv) => {
    const log = await LocalLog.open(kv);
    const token = (tokenId: string) => ({
      tokenId,
      secretSha256: "0".repeat(64),
      createdAtMs: 1000,
      expiresAtMs: 2000,
      usedBy: null,
    });
    await log.propose({ type: "IssueJoinToken", record: token("t1") });
    await log.propose({ type: "IssueJoinToken", record: token("t2") });
    await log.propose({ type: "IssueJoinToken", record: token("t3") });
    const burn = (tokenId: string, nodeId: string, nowMs: number) =>
      log.propose({ type: "BurnJoinToken", tokenId, nodeId, nowMs }).then((r) => r.burned);
    assert.equal(await burn("t1", "n2", 2000), false, "expired at expiresAtMs");
    assert.equal(await burn("nope", "n2", 1500), false, "unknown");
    assert.equal(await burn("t1", "n2", 1999), true);
    assert.equal(await burn("t1", "n3", 1999), false, "already used");
    assert.equal(await burn("t2", "n2", 1500), false, "n2 already joined with another token");
    assert.equal(await burn("t2", "n3", 1500), true);
    // Issuing an existing id again leaves the burned record as it is.
    await log.propose({ type: "IssueJoinToken", record: token("t1") });
    assert.equal((await kv.get<{ usedBy: string }>(keys.token("t1")))?.value.usedBy, "n2");
  });
});

Deno.test("PutCredential adds an access key only if absent; members and CA records", async () => {
  await withKv(async (kv) => {
    const log = await LocalLog.open(kv);
    const cred = (secretAccessKey: string) =>
      log.propose({ type: "PutCredential", accessKeyId: "AK", secretAccessKey });
    assert.equal((await cred("s1")).added, true);
    assert.equal((await cred("s2")).added, false);
    assert.deepEqual((await kv.get(keys.credential("AK")))?.value, { secretAccessKey: "s1" });

    await log.propose({ type: "PutClusterCa", pem: "CA1" });
    await log.propose({ type: "PutClusterCa", pem: "CA2" });
    assert.equal((await kv.get(keys.ca()))?.value, "CA1");
    await log.propose({ type: "PutMember", member: { id: "n1", addr: "127.0.0.1:7946" } });
    await log.propose({ type: "RemoveMember", id: "n1" });
    assert.deepEqual((await kv.get(keys.member("n1")))?.value, {
      id: "n1",
      addr: "127.0.0.1:7946",
      removed: true,
    });
  });
});

Deno.test("LocalLog reports garbage through onGarbage once the commit is durable", async () => {
  await withKv(async (kv) => {
    const released: DataRef[] = [];
    const log = await LocalLog.open(kv, { onGarbage: (refs) => released.push(...refs) });
    await log.propose(bucket);
    const a = record("a");
    await log.propose(put("k", a));
    await log.propose(put("k", record("b")));
    await assert.rejects(log.propose(put("k", record("c"), { ifMatch: "zz" })));
    assert.deepEqual(released, [a.data]);
  });
});
