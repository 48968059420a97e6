/**
 * Erasure coder throughput: our WebAssembly coder (src/ec/) against the native
 * `@ronomon/reed-solomon` 6.0.0 addon, on the same buffers in one process, single thread.
 *
 * - `deno task bench` (deno bench): one group per profile and operation, the addon as baseline.
 * - `deno run -A bench/ec_bench.ts [rounds] [shardSizeBytes]`: interleaved rounds (ours and the
 *   addon alternate every ~50 ms, so machine noise hits both alike), median GB/s per cell, printed
 *   as a Markdown table for docs/BENCHMARKS.md.
 *
 * Throughput counts data bytes (k shards) per second, for encode and for reconstruct.
 * The addon loads from `RS_ADDON` (default /tmp/rs/node_modules/@ronomon/reed-solomon, after
 * `cd /tmp/rs && npm install @ronomon/reed-solomon@6.0.0`); without it only ours runs.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createRequire } from "node:module";
import { ReedSolomon } from "../src/ec/mod.ts";
import { fillSeeded } from "../tests/ec/seeded_bytes.mjs";

interface Addon {
  create(k: number, m: number): Buffer;
  encode(
    context: Buffer,
    sources: number,
    targets: number,
    buffer: Buffer,
    bufferOffset: number,
    bufferSize: number,
    parity: Buffer,
    parityOffset: number,
    paritySize: number,
    end: (error?: Error) => void,
  ): void;
}

function loadAddon(): Addon | undefined {
  const path = Deno.env.get("RS_ADDON") ?? "/tmp/rs/node_modules/@ronomon/reed-solomon";
  try {
    return createRequire(import.meta.url)(path) as Addon;
  } catch (error) {
    console.error(`Native addon not loaded from "${path}": ${error}`);
    return undefined;
  }
}

/** Profiles benchmarked: the targets plus the design's 3+2. */
const PROFILES: readonly [number, number][] = [[2, 1], [3, 2], [4, 2], [8, 4], [10, 4]];

/** One profile's buffers and its runners, ours and the addon's, on the same bytes. */
interface Case {
  readonly name: string;
  readonly dataBytes: number;
  readonly runners: Map<string, () => Promise<void>>;
}

function makeCase(addon: Addon | undefined, k: number, m: number, shardSizeBytes: number): Case {
  const lost = Math.min(2, m);
  const present = Array.from({ length: k + m }, (_, i) => i >= lost);
  // The addon's layout: k data shards back to back, m parity shards back to back.
  const buffer = Buffer.from(fillSeeded(new Uint8Array(k * shardSizeBytes), k * 100 + m));
  const parity = Buffer.alloc(m * shardSizeBytes);
  const shards = [
    ...Array.from(
      { length: k },
      (_, i) => buffer.subarray(i * shardSizeBytes, (i + 1) * shardSizeBytes),
    ),
    ...Array.from(
      { length: m },
      (_, i) => parity.subarray(i * shardSizeBytes, (i + 1) * shardSizeBytes),
    ),
  ].map((shard) => new Uint8Array(shard.buffer, shard.byteOffset, shard.length));
  const coder = ReedSolomon.create(k, m);
  coder.encodeSync(shards);
  const inPlaceCoder = ReedSolomon.create(k, m);
  const views = inPlaceCoder.stripeShards(shardSizeBytes);
  shards.forEach((shard, i) => views[i].set(shard));
  const runners = new Map<string, () => Promise<void>>([
    ["ours in place", () => inPlaceCoder.encode(views)],
    ["ours copying", () => coder.encode(shards)],
    [`ours reconstruct ${lost} in place`, () => inPlaceCoder.reconstruct(views, present)],
    [`ours reconstruct ${lost} copying`, () => coder.reconstruct(shards, present)],
  ]);
  if (addon) {
    const context = addon.create(k, m);
    const run = (sources: number, targets: number) => () =>
      new Promise<void>((resolve, reject) =>
        addon.encode(
          context,
          sources,
          targets,
          buffer,
          0,
          buffer.length,
          parity,
          0,
          parity.length,
          (
            error,
          ) => error ? reject(error) : resolve(),
        )
      );
    const all = (1 << (k + m)) - 1;
    const lostMask = (1 << lost) - 1;
    runners.set("native", run((1 << k) - 1, ((1 << m) - 1) << k));
    runners.set(`native reconstruct ${lost}`, run(all & ~lostMask, lostMask));
  }
  return { name: `${k}+${m}`, dataBytes: k * shardSizeBytes, runners };
}

const SHARD_SIZE_BYTES = 262144;

if (import.meta.main) {
  const rounds = Number(Deno.args[0] ?? 7);
  const shardSizeBytes = Number(Deno.args[1] ?? SHARD_SIZE_BYTES);
  const addon = loadAddon();
  const cases = PROFILES.map(([k, m]) => makeCase(addon, k, m, shardSizeBytes));
  const samples = new Map<string, number[]>();
  for (let round = 0; round < rounds; round++) {
    for (const c of cases) {
      for (const [label, runner] of c.runners) {
        for (let i = 0; i < 3; i++) await runner(); // warm up
        let iterations = 0;
        const start = performance.now();
        let elapsedMs = 0;
        while (elapsedMs < 50) {
          await runner();
          iterations++;
          elapsedMs = performance.now() - start;
        }
        const gbPerSecond = (c.dataBytes * iterations) / (elapsedMs / 1000) / 1e9;
        const key = `${c.name}|${label}`;
        samples.set(key, [...(samples.get(key) ?? []), gbPerSecond]);
      }
    }
  }
  const median = (key: string) => {
    const values = (samples.get(key) ?? []).slice().sort((a, b) => a - b);
    return values.length ? values[Math.floor(values.length / 2)] : NaN;
  };
  const f = (x: number) => Number.isNaN(x) ? "n/a" : x.toFixed(2);
  console.log(
    `Shard ${shardSizeBytes} bytes, ${rounds} interleaved rounds, median GB/s of data (k shards)\n`,
  );
  console.log(
    "| profile | op | ours in place | ours copying | native | in place / native | copying / native |",
  );
  console.log("|---|---|---:|---:|---:|---:|---:|");
  for (const c of cases) {
    const lost = Math.min(2, Number(c.name.split("+")[1]));
    const rows: [string, string, string, string][] = [
      ["encode", "ours in place", "ours copying", "native"],
      [
        `reconstruct ${lost} data`,
        `ours reconstruct ${lost} in place`,
        `ours reconstruct ${lost} copying`,
        `native reconstruct ${lost}`,
      ],
    ];
    for (const [op, inPlace, copying, native] of rows) {
      const a = median(`${c.name}|${inPlace}`);
      const b = median(`${c.name}|${copying}`);
      const n = median(`${c.name}|${native}`);
      console.log(
        `| ${c.name} | ${op} | ${f(a)} | ${f(b)} | ${f(n)} | ${f(a / n)}x | ${f(b / n)}x |`,
      );
    }
  }
} else {
  const addon = loadAddon();
  for (const [k, m] of PROFILES) {
    const c = makeCase(addon, k, m, SHARD_SIZE_BYTES);
    for (const [label, runner] of c.runners) {
      const reconstruct = label.includes("reconstruct");
      Deno.bench({
        name: `${c.name} ${label}`,
        group: `${c.name} ${reconstruct ? "reconstruct" : "encode"}`,
        baseline: label.startsWith("native"),
        n: 200,
        warmup: 20,
        // An async function, so that deno bench awaits each call.
        fn: async () => await runner(),
      });
    }
  }
}
