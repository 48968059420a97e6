/**
 * One hostile command must not take other clients' writes with it: a
 * PutBucketCors whose record would not fit one Deno KV value, sent while
 * other clients overwrite objects, is refused alone with a 4xx (ADR 0009).
 * Before the fix it failed its whole group commit: unrelated PUTs answered
 * 500 and, where part of the group had been committed, their handlers
 * removed the bytes a committed record named (GET then sent 0 bytes).
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  assertServing,
  createBucket,
  expectError,
  getObject,
  internalErrors,
  objectPath,
  putObject,
  s3,
  seededBytes,
  startServer,
} from "./_support.ts";

const B = "groups";
const OBJECTS = 72;
/** Over the 128 KiB segment limit, so each object is its own shard file. */
const OBJECT_BYTES = 130 * 1024;

/** A CORS configuration of `sizeBytes` or a little more: one rule with many origins. */
function corsOf(sizeBytes: number): string {
  const origins: string[] = [];
  let n = 0;
  for (let i = 0; n < sizeBytes; i++) {
    const o = `<AllowedOrigin>https://${"o".repeat(60)}-${i}.example</AllowedOrigin>`;
    origins.push(o);
    n += o.length;
  }
  return `<CORSConfiguration><CORSRule>${origins.join("")}` +
    `<AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>`;
}

Deno.test("group commit: an oversized PutBucketCors among concurrent PUTs is refused alone; every PUT stays readable, after a restart too", async (t) => {
  const server = await startServer();
  let restarted: Awaited<ReturnType<typeof startServer>> | null = null;
  try {
    await createBucket(server, B);
    const first = (i: number) => seededBytes(OBJECT_BYTES, 1000 + i);
    const second = (i: number) => seededBytes(OBJECT_BYTES, 2000 + i);
    for (let i = 0; i < OBJECTS; i++) await putObject(server, B, `k${i}`, first(i));

    for (const sizeBytes of [100 * 1024, 200 * 1024]) {
      await t.step(
        `a ${sizeBytes}-byte CORS configuration amid ${OBJECTS} overwrites`,
        async () => {
          const cors = s3(server, {
            method: "PUT",
            path: `/${B}`,
            query: "cors=",
            body: corsOf(sizeBytes),
          });
          const puts = Array.from(
            { length: OBJECTS },
            (_, i) => s3(server, { method: "PUT", path: objectPath(B, `k${i}`), body: second(i) }),
          );
          const statuses = (await Promise.all(puts)).map((r) => r.status);
          assert.deepEqual(statuses.filter((s) => s !== 200), [], "every PUT answers 200");
          for (let i = 0; i < OBJECTS; i++) {
            const got = await getObject(server, B, `k${i}`);
            assert.equal(got.status, 200);
            assert.deepEqual(got.body, second(i), `k${i} is the bytes its PUT sent`);
          }
          const corsReply = await cors;
          expectError(corsReply, 400, "MaxMessageLengthExceeded");
          const getCors = await s3(server, { method: "GET", path: `/${B}`, query: "cors=" });
          expectError(getCors, 404, "NoSuchCORSConfiguration");
        },
      );
    }

    await t.step(
      "no internal error was logged; after a restart every object reads back",
      async () => {
        assert.deepEqual(internalErrors(server), []);
        const status = await server.signal("SIGTERM");
        assert.equal(status.code, 0);
        restarted = await startServer({ dataDir: server.dataDir });
        for (let i = 0; i < OBJECTS; i++) {
          const got = await getObject(restarted, B, `k${i}`);
          assert.equal(got.status, 200);
          assert.deepEqual(got.body, second(i), `k${i} after the restart`);
        }
        await assertServing(restarted);
      },
    );
  } finally {
    if (restarted) await (restarted as Awaited<ReturnType<typeof startServer>>).signal("SIGTERM");
    await server.stop().catch(() => {});
    await server.cleanup();
  }
});
