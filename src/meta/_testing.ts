/**
 * Test helpers for the metadata layer. Not part of the public surface.
 *
 * @module
 */
import type { MetaKv } from "../io/mod.ts";

/**
 * Every KV entry as one JSON string, in key order, leaving out the
 * group-commit sequence number `["sys","flush"]` (local bookkeeping of one
 * replica), so two replicas at the same applied index compare equal.
 */
export async function dumpReplicatedState(kv: MetaKv): Promise<string> {
  const out: unknown[] = [];
  for await (const e of kv.list({ prefix: [] })) {
    if (e.key[0] === "sys" && e.key[1] === "flush") continue;
    out.push([e.key, e.value]);
  }
  return JSON.stringify(out);
}
