/**
 * The body of a hashing worker (see `hash_worker.ts`): sessions of MD5 plus
 * an optional checksum, fed block by block.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { type BodyHasher, inlineHashPool } from "../../s3/hashing.ts";
import type { ChecksumAlgorithm } from "../../meta/records.ts";

const sessions = new Map<number, Promise<BodyHasher>>();

type Message =
  | { t: "open"; id: number; algorithm?: ChecksumAlgorithm }
  | { t: "update"; id: number; bytes: Uint8Array }
  | { t: "digest"; id: number }
  | { t: "drop"; id: number };

self.onmessage = async (e: MessageEvent<Message>) => {
  const m = e.data;
  try {
    if (m.t === "drop") {
      sessions.delete(m.id);
    } else if (m.t === "open") {
      sessions.set(m.id, inlineHashPool.open(m.algorithm));
      await sessions.get(m.id);
      self.postMessage({ id: m.id, ok: true });
    } else if (m.t === "update") {
      await (await sessions.get(m.id)!).update(m.bytes);
      self.postMessage({ id: m.id, ok: true });
    } else {
      const digest = await (await sessions.get(m.id)!).digest();
      sessions.delete(m.id);
      self.postMessage({ id: m.id, ...digest });
    }
  } catch (err) {
    sessions.delete(m.id);
    self.postMessage({ id: m.id, error: String(err) });
  }
};
