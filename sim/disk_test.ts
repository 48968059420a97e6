import assert from "node:assert/strict";
import { AlreadyExistsError, type Disk, NotFoundError } from "../src/io/mod.ts";
import { DenoDisk } from "../src/io/deno/disk.ts";
import { SimDisk } from "./disk.ts";
import { SimRng } from "./rng.ts";

async function readAll(disk: Disk, path: string): Promise<string> {
  const h = await disk.open(path);
  const buf = new Uint8Array(h.sizeBytes);
  let off = 0;
  while (off < buf.length) {
    const n = await h.read(buf.subarray(off), off);
    if (n === 0) break;
    off += n;
  }
  h.close();
  return new TextDecoder().decode(buf.subarray(0, off));
}

const enc = (s: string) => new TextEncoder().encode(s);

/** A script of Disk calls whose observable results must match between adapters. */
async function script(disk: Disk): Promise<unknown[]> {
  const out: unknown[] = [];
  const attempt = async (f: () => Promise<unknown>) => {
    try {
      out.push(await f());
    } catch (err) {
      out.push(
        err instanceof NotFoundError
          ? "NotFound"
          : err instanceof AlreadyExistsError
          ? "Exists"
          : String(err),
      );
    }
  };
  await disk.mkdirp("a/b");
  const h = await disk.create("a/b/f");
  await h.write(enc("hello "));
  await h.write(enc("world"));
  await h.sync();
  h.close();
  await attempt(() => disk.create("a/b/f"));
  await attempt(() => disk.open("a/b/missing"));
  await attempt(() => readAll(disk, "a/b/f"));
  await attempt(async () => (await disk.stat("a/b/f"))?.sizeBytes);
  await attempt(() => disk.stat("a/b/missing"));
  await disk.rename("a/b/f", "a/g");
  await disk.syncDir("a");
  const names: string[] = [];
  for await (const e of disk.list("a")) names.push(`${e.name}:${e.isFile ? "f" : "d"}`);
  out.push(names.sort());
  const none: string[] = [];
  for await (const e of disk.list("nope")) none.push(e.name);
  out.push(none);
  await disk.remove("a/g");
  await disk.remove("a/g");
  await attempt(() => disk.stat("a/g"));
  await attempt(() => disk.create("/abs"));
  await attempt(() => disk.create("a/../../x"));
  return out;
}

Deno.test("SimDisk answers like DenoDisk on the happy path and on errors (differential)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const real = await script(new DenoDisk(dir));
    const sim = await script(new SimDisk({ rng: new SimRng(1) }));
    assert.deepEqual(sim, real);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SimDisk crash() keeps synced bytes and loses or tears unsynced ones", async (t) => {
  for (let seed = 1; seed <= 30; seed++) {
    await t.step(`seed=${seed}`, async () => {
      const disk = new SimDisk({ rng: new SimRng(seed) });
      await disk.mkdirp("d");
      const h = await disk.create("d/f");
      await disk.syncDir("d");
      await h.write(enc("synced|"));
      await h.sync();
      await h.write(enc("unsynced-tail"));
      disk.crash();
      const text = await readAll(disk, "d/f");
      assert.ok(text.startsWith("synced|"), `seed=${seed}: lost synced data: "${text}"`);
      assert.ok("synced|unsynced-tail".startsWith(text), `seed=${seed}: not a prefix: "${text}"`);
    });
  }
});

Deno.test("SimDisk crash() may lose a create or rename not followed by syncDir()", async () => {
  const outcomes = new Set<string>();
  for (let seed = 1; seed <= 40; seed++) {
    const disk = new SimDisk({ rng: new SimRng(seed) });
    await disk.mkdirp("d");
    const h = await disk.create("d/tmp");
    await h.write(enc("x"));
    await h.sync();
    await disk.rename("d/tmp", "d/final");
    disk.crash();
    const names = (await Array.fromAsync(disk.list("d"))).map((e) => e.name).join(",");
    outcomes.add(names);
    assert.ok(["", "tmp", "final"].includes(names), `seed=${seed}: ${names}`);
  }
  assert.deepEqual([...outcomes].sort(), ["", "final", "tmp"]);
  const disk = new SimDisk({ rng: new SimRng(7) });
  await disk.mkdirp("d");
  const h = await disk.create("d/tmp");
  await h.sync();
  await disk.rename("d/tmp", "d/final");
  await disk.syncDir("d");
  disk.crash();
  assert.deepEqual(disk.paths(), ["d/final"], "syncDir() makes the rename durable");
});

Deno.test("SimDisk calls of a crashed process never settle", async () => {
  const pending: (() => void)[] = [];
  const disk = new SimDisk({ rng: new SimRng(1), schedule: (_ms, fn) => pending.push(fn) });
  const mk = disk.mkdirp("d");
  pending.shift()!();
  await mk;
  const c = disk.create("d/f");
  pending.shift()!();
  const h = await c;
  let settled = false;
  void h.sync().then(() => (settled = true));
  disk.crash();
  for (const fn of pending.splice(0)) fn();
  await Promise.resolve();
  assert.equal(settled, false);
});
