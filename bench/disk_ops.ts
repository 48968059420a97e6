/**
 * The cost of the disk and Deno KV primitives the write path is built from,
 * one at a time, so the load benchmark's numbers can be read against them.
 *
 * Usage: deno run -A --unstable-kv bench/disk_ops.ts [DIR] [--ops N]
 *
 * DIR (default: a new directory under the current one, removed afterwards)
 * must be on the disk being measured; `/tmp` may be memory.
 *
 * @module
 */
import { parseArgs } from "node:util";

const args = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: { ops: { type: "string", default: "300" } },
});
const OPS = Number(args.values.ops);
const dir = args.positionals[0] ?? await Deno.makeTempDir({ dir: ".", prefix: "disk-ops-" });
await Deno.mkdir(dir, { recursive: true });
const block = new Uint8Array(4096).fill(1);

async function time(name: string, fn: (i: number) => Promise<void>): Promise<void> {
  const t0 = performance.now();
  for (let i = 0; i < OPS; i++) await fn(i);
  console.log(`${name}: ${((performance.now() - t0) / OPS).toFixed(3)} ms per op`);
}

async function writeAll(f: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await f.write(bytes.subarray(off));
}

try {
  await time("create + write 4 KiB + fsync + close", async (i) => {
    const f = await Deno.open(`${dir}/f${i}`, { write: true, createNew: true });
    await writeAll(f, block);
    await f.sync();
    f.close();
  });
  const d = await Deno.open(dir);
  await time("directory fsync", () => d.sync());
  d.close();
  const seg = await Deno.open(`${dir}/segment`, { write: true, create: true, append: true });
  await time("append 4 KiB + fdatasync", async () => {
    await writeAll(seg, block);
    await seg.syncData();
  });
  await time("append 4 KiB + fsync", async () => {
    await writeAll(seg, block);
    await seg.sync();
  });
  seg.close();
  const kv = await Deno.openKv(`${dir}/kv.sqlite3`);
  await time("Deno KV commit of one 4 KiB value", async (i) => {
    await kv.atomic().set(["k", i], block).commit();
  });
  await time("Deno KV get", async (i) => {
    await kv.get(["k", i]);
  });
  kv.close();
  const big = new Uint8Array(1 << 20).map((_, i) => i);
  for (let round = 0; round < 3; round++) {
    const f = await Deno.open(`${dir}/big`, { write: true, create: true, truncate: true });
    const t0 = performance.now();
    for (let i = 0; i < 64; i++) await writeAll(f, big);
    const t1 = performance.now();
    await f.sync();
    const t2 = performance.now();
    f.close();
    console.log(
      `64 MiB in 1 MiB writes: ${(t1 - t0).toFixed(0)} ms, then fsync ${(t2 - t1).toFixed(0)} ms`,
    );
  }
} finally {
  if (args.positionals[0] === undefined) await Deno.remove(dir, { recursive: true });
}
