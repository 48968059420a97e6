/**
 * Memory of XML parsing under hostile load: 8 concurrent DeleteObjects bodies of 2 MiB,
 * each packed with character references, must not grow the server's peak resident
 * memory (VmHWM from /proc/<pid>/status) by more than {@link MAX_GROWTH_BYTES}. Before
 * the fix (fast-xml-parser) each such body cost 35 to 50 MiB and 8 of them 300 to 430 MiB;
 * with saxes about 140 MiB, a good part of it the answers (each echoes its 1.4 MiB key, escaped).
 *
 * Linux only (reads /proc); measured numbers are in docs/BENCHMARKS.md.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createBucket, md5Base64, s3, type ServerProcess, startServer, utf8 } from "./_support.ts";

const MiB = 1024 * 1024;
/** How much the peak resident set may grow while the bodies are parsed. */
const MAX_GROWTH_BYTES = 200 * MiB;
/** Bodies sent at once. */
const CONCURRENT = 8;

/** The server's peak resident set size (VmHWM), in bytes. */
export async function peakRssBytes(server: ServerProcess): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${server.child.pid}/status`);
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(status);
  assert.ok(m, "no VmHWM in /proc/<pid>/status");
  return Number(m[1]) * 1024;
}

/** A DeleteObjects body of exactly `sizeBytes`, nearly all of it character references. */
export function entityHeavyDelete(sizeBytes: number): string {
  const open = "<Delete><Object><Key>";
  const close = "</Key></Object></Delete>";
  const unit = "&amp;&#x41;&lt;";
  const room = sizeBytes - utf8.encode(open + close).length;
  const body = unit.repeat(Math.floor(room / unit.length));
  return open + body + "a".repeat(room - body.length) + close;
}

Deno.test({
  name: "XML parsing: 8 concurrent 2 MiB entity-heavy bodies grow peak memory by < 200 MiB",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const server = await startServer();
    try {
      await createBucket(server, "mem");
      // Warm up: one small DeleteObjects, so the parser and its code are loaded.
      const small = "<Delete><Object><Key>x</Key></Object></Delete>";
      await s3(server, {
        method: "POST",
        path: "/mem",
        query: "delete=",
        body: small,
        headers: { "content-md5": md5Base64(small) },
      });
      const before = await peakRssBytes(server);
      const body = entityHeavyDelete(2 * MiB);
      const replies = await Promise.all(
        Array.from({ length: CONCURRENT }, () =>
          s3(server, {
            method: "POST",
            path: "/mem",
            query: "delete=",
            body,
            headers: { "content-md5": md5Base64(body) },
          })),
      );
      const after = await peakRssBytes(server);
      const statuses = replies.map((r) => r.status);
      console.log(
        `    VmHWM ${(before / MiB).toFixed(0)} MiB -> ${(after / MiB).toFixed(0)} MiB; ` +
          `statuses ${statuses.join(",")}`,
      );
      for (const r of replies) {
        assert.ok([200, 400, 503].includes(r.status), `want 200, 400 or 503, got ${r.status}`);
      }
      assert.ok(
        after - before < MAX_GROWTH_BYTES,
        `peak memory grew by ${((after - before) / MiB).toFixed(0)} MiB`,
      );
    } finally {
      await server.stop();
    }
  },
});
