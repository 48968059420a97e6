import assert from "node:assert/strict";
import { DenoDisk } from "../io/deno/disk.ts";
import { LocalDataPath, WRITE_BUFFER_BYTES } from "./local.ts";
import { decodeShardHeader, encodeShardHeader, SHARD_HEADER_SIZE_BYTES } from "./shard_file.ts";

async function withDataPath(
  fn: (data: LocalDataPath, root: string) => Promise<void>,
): Promise<void> {
  const root = await Deno.makeTempDir();
  const data = new LocalDataPath(new DenoDisk(root));
  await data.init();
  try {
    await fn(data, root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function filesUnder(root: string, dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(`${root}/${d}`)) {
      if (e.isDirectory) await walk(`${d}/${e.name}`);
      else out.push(`${d}/${e.name}`);
    }
  };
  await walk(dir);
  return out.sort();
}

const ID_A = "0a".repeat(16);
const ID_B = "0b".repeat(16);

Deno.test("encodeShardHeader() and decodeShardHeader() round-trip the 64-byte layout", () => {
  const h = {
    dataId: ID_A,
    shardIndex: 3,
    k: 4,
    m: 2,
    sliceSizeBytes: 262144,
    frameSizeBytes: 1048576,
  };
  const bytes = encodeShardHeader(h);
  assert.equal(bytes.length, SHARD_HEADER_SIZE_BYTES);
  assert.deepEqual([...bytes.subarray(0, 4)], [0x48, 0x4d, 0x53, 0x48]);
  assert.deepEqual(decodeShardHeader(bytes), h);
  const bad = bytes.slice();
  bad[0] = 0;
  assert.throws(() => decodeShardHeader(bad), /bad magic/);
  assert.throws(() => decodeShardHeader(bytes.subarray(0, 12)), /exceeds 12 bytes/);
  assert.throws(() => encodeShardHeader({ ...h, dataId: "xyz" }), RangeError);
});

Deno.test("LocalDataPath writes across buffer boundaries and reads any range back", async () => {
  await withDataPath(async (data, root) => {
    const body = new Uint8Array(WRITE_BUFFER_BYTES * 2 + 12345);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7 + (i >> 9)) & 0xff;
    const w = await data.create(ID_A);
    for (let off = 0; off < body.length; off += 100_003) {
      await w.write(body.subarray(off, off + 100_003));
    }
    const ref = await w.commit();
    assert.deepEqual(ref, { dataId: ID_A, k: 1, m: 0, sizeBytes: body.length });
    assert.deepEqual(await readAll(data.read(ref, 0, body.length)), body);
    assert.deepEqual(
      await readAll(data.read(ref, 1_000_000, 1_600_001)),
      body.subarray(1_000_000, 1_600_001),
    );
    assert.deepEqual(await readAll(data.read(ref, 5, 5)), new Uint8Array(0));
    const file = await Deno.readFile(`${root}/${LocalDataPath.shardPath(ID_A)}`);
    assert.deepEqual(decodeShardHeader(file).dataId, ID_A);
    assert.equal(file.length, SHARD_HEADER_SIZE_BYTES + body.length);
    assert.deepEqual(await filesUnder(root, "tmp"), []);
  });
});

Deno.test("LocalDataPath abort() leaves no file behind, before or after commit", async () => {
  await withDataPath(async (data, root) => {
    const w = await data.create(ID_A);
    await w.write(new Uint8Array(10));
    await w.abort();
    await w.abort();
    const w2 = await data.create(ID_B);
    await w2.write(new Uint8Array(10));
    await w2.commit();
    await w2.abort();
    assert.deepEqual(await filesUnder(root, "tmp"), []);
    assert.deepEqual(await filesUnder(root, "shards"), []);
  });
});

Deno.test("LocalDataPath sweep() removes temp files and shards that are not live", async () => {
  await withDataPath(async (data, root) => {
    const refs = [];
    for (const id of [ID_A, ID_B]) {
      const w = await data.create(id);
      await w.write(new Uint8Array([1, 2, 3]));
      refs.push(await w.commit());
    }
    const crashed = await data.create("0c".repeat(16));
    await crashed.write(new Uint8Array(5));
    const removed = await data.sweep(new Map([[ID_A, refs[0]]]));
    assert.equal(removed, 2);
    assert.deepEqual(await filesUnder(root, "shards"), [`shards/0a/${ID_A}.0`]);
    assert.deepEqual(await filesUnder(root, "tmp"), []);
  });
});

Deno.test("LocalDataPath concurrent commits all become durable and readable", async () => {
  await withDataPath(async (data) => {
    const ids = Array.from(
      { length: 40 },
      (_, i) => (i + 16).toString(16).padStart(2, "0").repeat(16),
    );
    const refs = await Promise.all(ids.map(async (id, i) => {
      const w = await data.create(id);
      await w.write(new Uint8Array([i]));
      return await w.commit();
    }));
    for (let i = 0; i < refs.length; i++) {
      assert.deepEqual(await readAll(data.read(refs[i], 0, 1)), new Uint8Array([i]));
    }
  });
});
