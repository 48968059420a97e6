/**
 * Worker side of bench/ec/event_loop.ts: encodes the stripes it is sent and posts the parity
 * back (the data shards arrive by structured clone, the parity leaves by transfer).
 *
 * @module
 */
import { ReedSolomon } from "../../src/ec/mod.ts";

interface Job {
  k: number;
  m: number;
  shards: Uint8Array[];
}

/** The worker global scope, typed without the deno.worker lib (bench/ is checked as window). */
const scope = self as unknown as {
  onmessage: ((event: MessageEvent<Job>) => void) | null;
  postMessage(message: unknown, transfer: ArrayBuffer[]): void;
};
const coders = new Map<string, ReedSolomon>();

scope.onmessage = (event: MessageEvent<Job>) => {
  const { k, m, shards } = event.data;
  let coder = coders.get(`${k}+${m}`);
  if (!coder) coders.set(`${k}+${m}`, coder = ReedSolomon.create(k, m));
  coder.encodeSync(shards);
  const parity = shards.slice(k);
  scope.postMessage(parity, parity.map((shard) => shard.buffer as ArrayBuffer));
};
