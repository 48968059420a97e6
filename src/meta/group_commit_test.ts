/**
 * Failure semantics of the group commit (ADR 0009) over real Deno KV: one
 * command that cannot apply fails alone; a KV commit that fails part-way
 * through a group answers every command by what reached KV.
 */
import assert from "node:assert/strict";
import { serialize } from "node:v8";
import { openDenoKv } from "../io/deno/kv.ts";
import type { KvAtomic, KvKey, MetaKv } from "../io/mod.ts";
import {
  type Command,
  CommitOutcomeUnknown,
  type CorsRule,
  GroupKv,
  keys,
  LocalLog,
  MetaError,
  type ObjectRecord,
  type UploadRecord,
  valueSizeBytes,
} from "./mod.ts";

async function withKv<T extends MetaKv>(
  wrap: (kv: MetaKv) => T,
  fn: (kv: T, log: LocalLog) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  const kv = wrap(await openDenoKv(`${dir}/kv.sqlite3`));
  try {
    const log = await LocalLog.open(kv);
    await log.propose({ type: "CreateBucket", bucket: { name: "b", createdMs: 1, region: "r" } });
    await fn(kv, log);
  } finally {
    kv.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function record(i: number, metaBytes = 0): ObjectRecord {
  return {
    sizeBytes: 1,
    etag: `e${i}`,
    lastModifiedMs: 1,
    userMeta: metaBytes > 0 ? { pad: "p".repeat(metaBytes) } : {},
    data: { dataId: i.toString(16).padStart(32, "0"), k: 1, m: 0, sizeBytes: 1 },
  };
}

function put(i: number, metaBytes = 0): Command {
  return { type: "PutObject", bucket: "b", key: `k${i}`, record: record(i, metaBytes) };
}

async function visible(kv: MetaKv, i: number): Promise<boolean> {
  return (await kv.get<ObjectRecord>(keys.object("b", `k${i}`)))?.value.etag === `e${i}`;
}

/** Proposes `first` alone, then `rest` together, so `rest` forms one group behind it. */
function proposeGroup(log: LocalLog, first: Command, rest: Command[]) {
  const head = log.propose(first);
  const settled = Promise.allSettled(rest.map((c) => log.propose(c)));
  return head.then(() => settled);
}

Deno.test("LocalLog refuses an oversized PutBucketCors alone; the PutObjects of its group apply", async () => {
  await withKv((kv) => kv, async (kv, log) => {
    const rules: CorsRule[] = [{
      allowedOrigins: Array.from(
        { length: 900 },
        (_, i) => `https://${"o".repeat(80)}${i}.example`,
      ),
      allowedMethods: ["GET"],
      allowedHeaders: [],
      exposeHeaders: [],
    }];
    const cors: Command = { type: "PutBucketCors", bucket: "b", rules };
    const cmds = [
      ...Array.from({ length: 20 }, (_, i) => put(i)),
      cors,
      ...Array.from({ length: 20 }, (_, i) => put(20 + i)),
    ];
    const results = await proposeGroup(log, put(100), cmds);
    results.forEach((r, i) => {
      if (cmds[i] === cors) {
        assert.equal(r.status, "rejected");
        const err = (r as PromiseRejectedResult).reason;
        assert.ok(err instanceof MetaError && err.code === "MaxMessageLengthExceeded", String(err));
      } else {
        assert.equal(r.status, "fulfilled", String((r as PromiseRejectedResult).reason));
      }
    });
    for (let i = 0; i < 40; i++) assert.ok(await visible(kv, i), `k${i} must be readable`);
    assert.equal((await kv.get<{ cors?: unknown }>(keys.bucket("b")))?.value.cors, undefined);
  });
});

Deno.test("LocalLog rolls back a command that fails inside apply() after writing, and only it", async () => {
  await withKv((kv) => kv, async (kv, log) => {
    // An upload record just under 64 KiB: the object record completing it is over.
    const upload: UploadRecord = { uploadId: "up", initiatedMs: 1, userMeta: { pad: "" } };
    upload.userMeta.pad = "u".repeat(65536 - 40 - serialize(upload).byteLength);
    assert.ok(valueSizeBytes(upload) <= 65536);
    await log.propose({ type: "CreateMultipartUpload", bucket: "b", key: "big", upload });
    const part = { partNumber: 1, etag: "p1", lastModifiedMs: 1, data: record(999).data! };
    await log.propose({ type: "UploadPart", bucket: "b", key: "big", uploadId: "up", part });
    const complete: Command = {
      type: "CompleteMultipartUpload",
      bucket: "b",
      key: "big",
      uploadId: "up",
      parts: [{ partNumber: 1, etag: "p1" }],
      manifestId: "f".repeat(32),
      nowMs: 2,
      etag: "x-1",
    };
    const cmds = [put(0), put(1), complete, put(2), put(3)];
    const results = await proposeGroup(log, put(100), cmds);
    const err = (results[2] as PromiseRejectedResult).reason;
    assert.ok(err instanceof MetaError && err.code === "MetadataTooLarge", String(err));
    for (const i of [0, 1, 3, 4]) assert.equal(results[i].status, "fulfilled");
    for (const i of [0, 1, 2, 3]) assert.ok(await visible(kv, i));
    // Nothing of the failed command: no manifest chunk, no object, the upload still open.
    for await (const e of kv.list({ prefix: ["manifest"] })) assert.fail(`left ${e.key}`);
    assert.equal(await kv.get(keys.object("b", "big")), null);
    assert.ok(await kv.get(keys.upload("b", "big", "up")));
  });
});

Deno.test("GroupKv.rollback() drops only the units after the mark", async () => {
  await withKv((kv) => kv, async (kv) => {
    const group = new GroupKv(kv);
    await group.atomic().set(["t", 1], "keep").commit();
    const mark = group.mark();
    await group.atomic().set(["t", 1], "drop").set(["t", 2], "drop").commit();
    group.rollback(mark);
    assert.equal((await group.get(["t", 1]))?.value, "keep");
    assert.equal(await group.get(["t", 2]), null);
    await group.flush();
    assert.equal((await kv.get(["t", 1]))?.value, "keep");
    assert.equal(await kv.get(["t", 2]), null);
  });
});

/**
 * Real Deno KV whose `failAt`-th commit fails, before or after it is written;
 * with `blind`, every read after that failure fails too.
 */
class FaultyKv implements MetaKv {
  commits = 0;
  failAt = Infinity;
  written = false;
  blind = false;
  #failed = false;
  constructor(readonly base: MetaKv) {}
  get<T>(key: KvKey) {
    if (this.blind && this.#failed) return Promise.reject(new Error("Injected read failure"));
    return this.base.get<T>(key);
  }
  getMany<T>(keys: KvKey[]) {
    return this.base.getMany<T>(keys);
  }
  list<T>(...args: Parameters<MetaKv["list"]>) {
    return this.base.list<T>(...args);
  }
  atomic(): KvAtomic {
    const inner = this.base.atomic();
    const outer: KvAtomic = {
      check: (k, v) => (inner.check(k, v), outer),
      set: (k, v) => (inner.set(k, v), outer),
      delete: (k) => (inner.delete(k), outer),
      commit: async () => {
        if (++this.commits !== this.failAt) return await inner.commit();
        if (this.written) await inner.commit();
        this.#failed = true;
        throw new Error("Injected commit failure");
      },
    };
    return outer;
  }
  close() {
    this.base.close();
  }
}

const CASES = [
  { written: false, blind: false, name: "before writing; the flush number tells" },
  { written: true, blind: false, name: "after writing; the flush number tells" },
  { written: true, blind: true, name: "after writing; KV cannot be read back" },
];
for (const c of CASES) {
  Deno.test(`LocalLog answers a group whose second KV commit fails (${c.name}) by what reached KV`, async () => {
    await withKv((kv) => new FaultyKv(kv), async (kv, log) => {
      // ~12 KiB records: about 50 fit in one KV commit, so 200 take four.
      const cmds = Array.from({ length: 200 }, (_, i) => put(i, 12_000));
      kv.written = c.written;
      kv.blind = c.blind;
      kv.failAt = kv.commits + 3; // the first group's commit, then the second's of this group
      const results = await proposeGroup(log, put(1000), cmds);
      kv.blind = false;
      const answered = { ok: 0, notApplied: 0, unknown: 0 };
      for (let i = 0; i < cmds.length; i++) {
        const r = results[i];
        const seen = await visible(kv, i);
        if (seen && !c.blind) assert.equal(r.status, "fulfilled", `k${i} is in KV`);
        if (r.status === "fulfilled") {
          answered.ok++;
          assert.ok(seen, `k${i} was acknowledged but is not in KV`);
        } else if (r.reason instanceof MetaError) {
          answered.notApplied++;
          assert.equal(r.reason.code, "ServiceUnavailable");
          assert.ok(!seen, `k${i} was answered ${r.reason.code} but is in KV`);
        } else {
          assert.ok(r.reason instanceof CommitOutcomeUnknown, String(r.reason));
          answered.unknown++;
        }
      }
      // Known durable: the first commit's commands (and the second's if it was written and can
      // be read back); known unwritten: the last commits'; unknown only when KV cannot tell.
      assert.ok(answered.ok > 0 && answered.notApplied > 0, JSON.stringify(answered));
      assert.equal(answered.unknown > 0, c.blind, JSON.stringify(answered));
      // The log goes on after the failure.
      await log.propose(put(2000));
      assert.ok(await visible(kv, 2000));
    });
  });
}

Deno.test("valueSizeBytes() is never below what Deno KV counts, and exact over the limit", () => {
  const strings = ["", "a", "\u00e9t\u00e9", "\u4e00\u4e8c", "\u{1F600}", "x".repeat(300)];
  let x = 7;
  const next = () => (x = (x * 1103515245 + 12345) >>> 0);
  for (let i = 0; i < 300; i++) {
    const s = () => strings[next() % strings.length].repeat(1 + (next() % 40));
    const value = {
      ...record(next()),
      contentType: s(),
      userMeta: Object.fromEntries(Array.from({ length: next() % 5 }, () => [s(), s()])),
      tags: Array.from({ length: next() % 4 }, () => [s(), s()]),
      n: [0, -1, 2 ** 31, 1.5, 1733300000000][next() % 5],
    };
    assert.ok(valueSizeBytes(value) >= serialize(value).byteLength);
  }
  const big = { s: "\u4e00".repeat(40_000) };
  assert.equal(valueSizeBytes(big), serialize(big).byteLength);
});
