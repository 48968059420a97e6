/**
 * Keeping the event loop responsive during long encodes: bounded slices per turn on the main
 * thread against a worker. Prints, per strategy, the time to encode a stripe and the longest gap
 * a concurrent task waited for a turn (event-loop lag), both the median of 9 interleaved rounds.
 * Not a test; numbers for ADR 0021.
 *
 * Run: `deno run -A bench/ec/event_loop.ts`
 *
 * @module
 */
import { ReedSolomon } from "../../src/ec/mod.ts";
import { fillSeeded } from "../../tests/ec/seeded_bytes.mjs";

/** A concurrent task that takes one turn at a time and records the longest wait. */
function lagProbe(): { stop: () => number } {
  const channel = new MessageChannel();
  let last = performance.now();
  let worst = 0;
  let running = true;
  channel.port1.onmessage = () => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
    if (running) channel.port2.postMessage(0);
  };
  channel.port2.postMessage(0);
  return {
    stop: () => {
      running = false;
      channel.port1.close();
      channel.port2.close();
      return worst;
    },
  };
}

function makeStripe(k: number, m: number, shardSizeBytes: number): Uint8Array[] {
  return Array.from(
    { length: k + m },
    (_, i) =>
      i < k ? fillSeeded(new Uint8Array(shardSizeBytes), i + 1) : new Uint8Array(shardSizeBytes),
  );
}

const worker = new Worker(new URL("./encode_worker.ts", import.meta.url), { type: "module" });
function encodeInWorker(k: number, m: number, shards: Uint8Array[]): Promise<void> {
  return new Promise((resolve) => {
    worker.onmessage = (event: MessageEvent<Uint8Array[]>) => {
      event.data.forEach((parity, r) => shards[k + r].set(parity));
      resolve();
    };
    worker.postMessage({ k, m, shards });
  });
}

const cases: [number, number, number][] = [[4, 2, 262144], [4, 2, 1048576], [10, 4, 1048576], [
  24,
  6,
  1048576,
]];
console.log("| stripe | strategy | encode ms | event-loop lag ms |");
console.log("|---|---|---:|---:|");
for (const [k, m, size] of cases) {
  const shards = makeStripe(k, m, size);
  const whole = ReedSolomon.create(k, m);
  const sliced = ReedSolomon.create(k, m);
  const small = ReedSolomon.create(k, m, { maxBytesPerTurn: 524288 });
  const strategies: [string, () => Promise<void>][] = [
    ["main thread, one turn (encodeSync)", () => Promise.resolve(whole.encodeSync(shards))],
    ["main thread, slices of 2 MiB (default)", () => sliced.encode(shards)],
    ["main thread, slices of 512 KiB", () => small.encode(shards)],
    ["worker (copy in, transfer out)", () => encodeInWorker(k, m, shards)],
  ];
  // Warm up every strategy (compiles, worker start), then interleave 9 rounds.
  for (const [, run] of strategies) await run();
  const times = new Map<string, number[]>();
  const lags = new Map<string, number[]>();
  for (let round = 0; round < 9; round++) {
    for (const [name, run] of strategies) {
      const probe = lagProbe();
      await new Promise((resolve) => setTimeout(resolve, 5));
      const start = performance.now();
      await run();
      const elapsed = performance.now() - start;
      await new Promise((resolve) => setTimeout(resolve, 5));
      lags.set(name, [...(lags.get(name) ?? []), probe.stop()]);
      times.set(name, [...(times.get(name) ?? []), elapsed]);
    }
  }
  const median = (values: number[]) => values.slice().sort((a, b) => a - b)[values.length >> 1];
  for (const [name] of strategies) {
    const time = median(times.get(name)!).toFixed(2);
    const lag = median(lags.get(name)!).toFixed(2);
    console.log(`| ${k}+${m} x ${size / 1024} KiB | ${name} | ${time} | ${lag} |`);
  }
}
worker.terminate();
