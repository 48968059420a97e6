/**
 * Hostile keys and paths, sent byte for byte over raw TCP (fetch would resolve `..` and
 * `%2e%2e` before sending): dot segments, encoded slashes, empty segments, a copy source
 * that climbs out of its bucket, NUL and control characters, invalid percent-encoding,
 * and the 1024-byte key limit. Each either stays inside the bucket its first path
 * segment names, under exactly the key the rest of the path decodes to (as AWS S3 does:
 * no normalization), or is refused with the right error and changes nothing.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  assertServing,
  assertStoreClean,
  assertUnchanged,
  createBucket,
  encodeKey,
  encodeRequest,
  errorCodeOf,
  exchange,
  expectError,
  expectOk,
  getObject,
  internalErrors,
  listBuckets,
  listKeys,
  md5Base64,
  objectPath,
  putObject,
  s3,
  type ServerProcess,
  snapshot,
  startServer,
  utf8,
  xmlText,
  xmlTexts,
} from "./_support.ts";

const ONE = "kp-one";
const TWO = "kp-two";
const VICTIM_BYTES = "bytes of kp-two/x, which no path through kp-one may reach";

/**
 * PUTs `body` at `rawPath` (whose first segment is `ONE`) and checks the write stayed in
 * `ONE` under the decoded rest of the path, or was refused without changing anything.
 */
async function putContained(server: ServerProcess, rawPath: string, body: string): Promise<string> {
  const before = await snapshot(server, [ONE, TWO]);
  const reply = await s3(server, { method: "PUT", path: rawPath, body });
  if (reply.status !== 200) {
    assert.ok(
      reply.status >= 400 && reply.status < 500,
      `PUT ${rawPath}: ${reply.status} ${reply.text}`,
    );
    errorCodeOf(reply);
    await assertUnchanged(server, before, `refused PUT ${rawPath}`);
    return `refused ${reply.status} ${xmlText(reply.text, "Code")}`;
  }
  const key = decodeURIComponent(rawPath).slice(`/${ONE}/`.length);
  const keys = (await listKeys(server, ONE)).map(([k]) => k);
  assert.ok(
    keys.includes(key),
    `PUT ${rawPath} stored under ${JSON.stringify(key)}; ${ONE} holds ${JSON.stringify(keys)}`,
  );
  assert.deepEqual(
    (await snapshot(server, [TWO])).detail[TWO],
    before.detail[TWO],
    `${TWO} changed`,
  );
  assert.deepEqual(await listBuckets(server), before.buckets, "no bucket appeared");
  // The same raw path and the canonical path of the decoded key read the same bytes.
  const same = await s3(server, { method: "GET", path: rawPath });
  expectOk(same, `GET ${rawPath}`);
  assert.equal(same.text, body);
  const canonical = await getObject(server, ONE, key);
  assert.equal(canonical.status, 200);
  assert.equal(new TextDecoder().decode(canonical.body), body);
  return `stored in ${ONE} as ${JSON.stringify(key)}`;
}

Deno.test("keys and paths: hostile keys stay inside their bucket or are refused", async (t) => {
  const server = await startServer();
  try {
    await createBucket(server, ONE);
    await createBucket(server, TWO);
    await putObject(server, TWO, "x", VICTIM_BYTES);
    await putObject(server, TWO, "etc/passwd", VICTIM_BYTES);

    const climbing = [
      `/${ONE}/../${TWO}/x`,
      `/${ONE}/%2e%2e/${TWO}/x`,
      `/${ONE}/%2E%2E%2F${TWO}%2Fx`,
      `/${ONE}/..%2f${TWO}/x`,
      `/${ONE}/./../${TWO}/x`,
      `/${ONE}%2F..%2F${TWO}/x`,
      `/${ONE}/../../${TWO}/etc/passwd`,
      `/${ONE}/..\\${TWO}\\x`.replaceAll("\\", "%5C"),
      `/${ONE}/x/..`,
      `/${ONE}/.`,
      `/${ONE}/..`,
    ];
    for (const [i, path] of climbing.entries()) {
      await t.step(
        `PUT ${path} stays in ${ONE} under the literal key, ${TWO}/x untouched`,
        async () => {
          const outcome = await putContained(server, path, `climb ${i}`);
          console.log(`    ${path}: ${outcome}`);
          const victim = await getObject(server, TWO, "x");
          assert.equal(new TextDecoder().decode(victim.body), VICTIM_BYTES);
        },
      );
    }

    await t.step(
      `GET, HEAD, DELETE and tagging through /${ONE}/../${TWO}/x never reach ${TWO}/x`,
      async () => {
        const before = await snapshot(server, [TWO]);
        for (
          const path of [
            `/${ONE}/../${TWO}/x`,
            `/${ONE}/%2e%2e/${TWO}/x`,
            `/${ONE}/%2E%2E%2F${TWO}%2Fx`,
          ]
        ) {
          const got = await s3(server, { method: "GET", path });
          assert.notEqual(got.text, VICTIM_BYTES, `GET ${path} read ${TWO}/x`);
          const del = await s3(server, { method: "DELETE", path });
          assert.equal(del.status, 204, del.text);
          const tags =
            `<Tagging><TagSet><Tag><Key>pwned</Key><Value>yes</Value></Tag></TagSet></Tagging>`;
          const tag = await s3(server, { method: "PUT", path, query: "tagging=", body: tags });
          assert.ok(tag.status === 404 || tag.status === 200, `${tag.status} ${tag.text}`);
          if (tag.status === 404) assert.equal(errorCodeOf(tag), "NoSuchKey");
          const deleteXml = `<Delete><Object><Key>../${TWO}/x</Key></Object></Delete>`;
          expectOk(
            await s3(server, {
              method: "POST",
              path: `/${ONE}`,
              query: "delete=",
              headers: { "content-md5": md5Base64(deleteXml) },
              body: deleteXml,
            }),
            "DeleteObjects ../kp-two/x in kp-one",
          );
        }
        // Deleting the literal keys in kp-one removes shard files: compare kp-two alone.
        assert.deepEqual((await snapshot(server, [TWO])).detail, before.detail, `${TWO} changed`);
      },
    );

    await t.step(
      "a bucket segment that climbs (/.., /%2e%2e, /..%2F) names no bucket: 4xx, nothing stored",
      async () => {
        const before = await snapshot(server, [ONE, TWO]);
        for (
          const path of [
            `/../${TWO}/y`,
            `/%2e%2e/${TWO}/y`,
            `/..%2F${TWO}/y`,
            `/.%2F${TWO}/y`,
            `/%2F${TWO}/y`,
          ]
        ) {
          const reply = await s3(server, { method: "PUT", path, body: "nope" });
          assert.ok(
            reply.status >= 400 && reply.status < 500,
            `PUT ${path}: ${reply.status} ${reply.text}`,
          );
          const code = errorCodeOf(reply);
          assert.ok(
            ["NoSuchBucket", "InvalidBucketName", "MethodNotAllowed", "InvalidURI"].includes(code),
            `PUT ${path}: ${code}`,
          );
        }
        await assertUnchanged(server, before, "PUTs with a climbing bucket segment");
      },
    );

    await t.step(
      "a%2Fb is the key a/b, as in AWS: written by one spelling, read by the other",
      async () => {
        await putObject(server, ONE, "enc/slash", "x");
        expectOk(
          await s3(server, { method: "PUT", path: `/${ONE}/a%2Fb`, body: "encoded slash" }),
          "PUT a%2Fb",
        );
        const plain = await s3(server, { method: "GET", path: `/${ONE}/a/b` });
        expectOk(plain, "GET a/b");
        assert.equal(plain.text, "encoded slash");
        const keys = (await listKeys(server, ONE)).map(([k]) => k);
        assert.ok(keys.includes("a/b") && !keys.includes("a%2Fb"), JSON.stringify(keys));
      },
    );

    await t.step(
      "// keeps its empty segment: /kp-one//d is the key /d, not d; //kp-one/d is refused",
      async () => {
        expectOk(
          await s3(server, { method: "PUT", path: `/${ONE}//d`, body: "double" }),
          "PUT //d",
        );
        const keys = (await listKeys(server, ONE)).map(([k]) => k);
        assert.ok(keys.includes("/d") && !keys.includes("d"), JSON.stringify(keys));
        assert.equal((await s3(server, { method: "GET", path: `/${ONE}/d` })).status, 404);
        const before = await snapshot(server, [ONE, TWO]);
        const reply = await s3(server, { method: "PUT", path: `//${ONE}/d2`, body: "nope" });
        assert.ok(reply.status >= 400 && reply.status < 500, `${reply.status} ${reply.text}`);
        errorCodeOf(reply);
        await assertUnchanged(server, before, "PUT //kp-one/d2");
      },
    );

    await t.step(
      "invalid percent-encoding in the path answers 400 InvalidURI and stores nothing",
      async () => {
        const before = await snapshot(server, [ONE, TWO]);
        for (
          const path of [
            `/${ONE}/bad%ZZ`,
            `/${ONE}/bad%C3%28`,
            `/${ONE}/bad%`,
            `/${ONE}/bad%E2%82`,
            `/${ONE}/bad%FF`,
          ]
        ) {
          expectError(await s3(server, { method: "PUT", path, body: "x" }), 400, [
            "InvalidURI",
            "InvalidArgument",
          ]);
        }
        await assertUnchanged(server, before, "PUTs with bad percent-encoding");
      },
    );

    await assertStoreClean(server);
    assert.deepEqual(internalErrors(server), []);
  } finally {
    await server.stop();
  }
});

Deno.test("keys and paths: a copy source cannot climb out of its bucket", async (t) => {
  const server = await startServer();
  const SRC = "cs-src";
  const SECRET = "cs-secret";
  try {
    await createBucket(server, SRC);
    await createBucket(server, SECRET);
    await putObject(server, SECRET, "x", "the secret");
    await putObject(server, SRC, "plain", "plain source");
    const sources = [
      `${SRC}/../${SECRET}/x`,
      `/${SRC}/../${SECRET}/x`,
      `${SRC}/%2e%2e/${SECRET}/x`,
      `${SRC}%2F..%2F${SECRET}%2Fx`,
      `${SRC}/..%2F${SECRET}/x`,
      `/${SRC}/%2E%2E%2F${SECRET}%2Fx`,
    ];
    for (const source of sources) {
      await t.step(`CopyObject from ${source}: 404 NoSuchKey, never ${SECRET}/x`, async () => {
        const before = await snapshot(server, [SRC, SECRET]);
        const reply = await s3(server, {
          method: "PUT",
          path: objectPath(SRC, "dest"),
          headers: { "x-amz-copy-source": source },
        });
        expectError(reply, 404, "NoSuchKey");
        await assertUnchanged(server, before, `CopyObject from ${source}`);
      });
    }

    await t.step(`UploadPartCopy from ${SRC}/../${SECRET}/x: 404 NoSuchKey, no part`, async () => {
      const created = await s3(server, {
        method: "POST",
        path: objectPath(SRC, "mpu"),
        query: "uploads=",
      });
      expectOk(created, "CreateMultipartUpload");
      const uploadId = xmlText(created.text, "UploadId")!;
      const before = await snapshot(server, [SRC, SECRET]);
      for (const source of sources) {
        const reply = await s3(server, {
          method: "PUT",
          path: objectPath(SRC, "mpu"),
          query: `partNumber=1&uploadId=${uploadId}`,
          headers: { "x-amz-copy-source": source },
        });
        expectError(reply, 404, "NoSuchKey");
      }
      await assertUnchanged(server, before, "UploadPartCopy with climbing sources");
      expectOk(
        await s3(server, {
          method: "DELETE",
          path: objectPath(SRC, "mpu"),
          query: `uploadId=${uploadId}`,
        }),
        "AbortMultipartUpload",
      );
    });

    await t.step(
      `with a literal key "../${SECRET}/x" in ${SRC}, the copy takes that key's bytes`,
      async () => {
        await putObject(server, SRC, `../${SECRET}/x`, "the literal dot-dot key");
        for (const source of sources) {
          const reply = await s3(server, {
            method: "PUT",
            path: objectPath(SRC, "dest"),
            headers: { "x-amz-copy-source": source },
          });
          expectOk(reply, `CopyObject from ${source}`);
          const got = await getObject(server, SRC, "dest");
          assert.equal(
            new TextDecoder().decode(got.body),
            "the literal dot-dot key",
            `copy from ${source}`,
          );
        }
      },
    );

    await t.step(
      "a copy source whose bucket segment climbs names no bucket: 4xx, nothing stored",
      async () => {
        const before = await snapshot(server, [SRC, SECRET]);
        for (
          const source of [
            `../${SECRET}/x`,
            `/../${SECRET}/x`,
            `%2e%2e/${SECRET}/x`,
            `/${SECRET}`,
            `${SECRET}/`,
            "",
            "/",
            "//x",
          ]
        ) {
          const reply = await s3(server, {
            method: "PUT",
            path: objectPath(SRC, "dest2"),
            headers: { "x-amz-copy-source": source },
          });
          assert.ok(
            reply.status >= 400 && reply.status < 500,
            `copy from ${JSON.stringify(source)}: ${reply.status} ${reply.text}`,
          );
          const code = errorCodeOf(reply);
          assert.ok(
            ["NoSuchBucket", "InvalidArgument", "InvalidBucketName", "NoSuchKey"].includes(code),
            `${source}: ${code}`,
          );
        }
        await assertUnchanged(server, before, "copies from climbing bucket segments");
      },
    );

    const secret = await getObject(server, SECRET, "x");
    assert.equal(new TextDecoder().decode(secret.body), "the secret");
    await assertStoreClean(server);
    assert.deepEqual(internalErrors(server), []);
  } finally {
    await server.stop();
  }
});

Deno.test("keys and paths: NUL and control characters, and the 1024-byte key limit", async (t) => {
  const server = await startServer();
  const B = "kp-ctl";
  try {
    await createBucket(server, B);
    await createBucket(server, "kp-other");

    const odd = [
      "nul\u0000key",
      "ctl\u0001\u0002\u001f\u007fkey",
      "crlf\r\nx-amz-meta-injected: 1",
      "tab\tkey",
      "bell\u0007 and \u0085 and \u2028",
      "lone-cr\r",
      "<Key>&amp;</Key>",
    ];
    for (const key of odd) {
      await t.step(
        `key ${JSON.stringify(key)}: stored and read back exactly, or refused; nothing leaks`,
        async () => {
          const before = await snapshot(server, [B, "kp-other"]);
          const path = objectPath(B, key);
          const reply = await s3(server, {
            method: "PUT",
            path,
            body: `body of ${JSON.stringify(key)}`,
          });
          if (reply.status !== 200) {
            expectError(reply, 400, ["InvalidArgument", "InvalidURI", "InvalidObjectName"]);
            await assertUnchanged(server, before, `refused PUT of ${JSON.stringify(key)}`);
            console.log(`    ${JSON.stringify(key)}: refused with ${xmlText(reply.text, "Code")}`);
            return;
          }
          const got = await s3(server, { method: "GET", path });
          expectOk(got, `GET ${JSON.stringify(key)}`);
          assert.equal(got.text, `body of ${JSON.stringify(key)}`);
          assert.equal(
            got.headers.get("x-amz-meta-injected"),
            null,
            "a key must not inject a header",
          );
          const keys = (await listKeys(server, B)).map(([k]) => k);
          assert.ok(
            keys.includes(key),
            `listing (encoding-type=url) lacks ${JSON.stringify(key)}: ${JSON.stringify(keys)}`,
          );
          assert.deepEqual(await listKeys(server, "kp-other"), []);
          // An error about the key (tagging a missing version) still renders as S3 XML.
          const missing = await s3(server, {
            method: "GET",
            path: objectPath(B, `${key}-missing`),
          });
          expectError(missing, 404, "NoSuchKey");
          expectOk(await s3(server, { method: "DELETE", path }), `DELETE ${JSON.stringify(key)}`);
          assert.equal((await s3(server, { method: "HEAD", path })).status, 404);
          console.log(`    ${JSON.stringify(key)}: stored and read back`);
        },
      );
    }

    await t.step(
      "raw control bytes in the request line: 4xx or a closed connection, nothing stored",
      async () => {
        const before = await snapshot(server, [B, "kp-other"]);
        for (const raw of ["\u0000", "\u0001", "\u007f", " ", "\t", "\r", "\u00ff"]) {
          const { head, body } = encodeRequest(server, {
            method: "PUT",
            path: `/${B}/raw${raw}byte`,
            body: "x",
          });
          const ex = await exchange(server, [head, body]);
          assert.ok(!ex.timedOut, `raw ${JSON.stringify(raw)}: the server hung`);
          if (ex.reply) {
            assert.ok(
              ex.reply.status >= 400 && ex.reply.status < 500,
              `raw ${JSON.stringify(raw)}: ${ex.reply.status} ${ex.reply.text}`,
            );
          }
        }
        await assertUnchanged(server, before, "requests with raw control bytes");
      },
    );

    await t.step(
      "1024-byte keys are accepted and 1025-byte keys refused with KeyTooLongError, by every operation",
      async () => {
        const cases: [string, string][] = [
          ["ascii", "k".repeat(1024)],
          ["two-byte", `k${"é".repeat(511)}x`],
          ["four-byte", "😀".repeat(256)],
        ];
        for (const [name, ok] of cases) {
          const tooLong = ok + "z";
          assert.equal(utf8.encode(ok).length, 1024, name);
          assert.equal(utf8.encode(tooLong).length, 1025, name);
          await putObject(server, B, ok, `${name} 1024`);
          const got = await getObject(server, B, ok);
          assert.equal(new TextDecoder().decode(got.body), `${name} 1024`);
          const before = await snapshot(server, [B, "kp-other"]);
          const long = objectPath(B, tooLong);
          const tags =
            "<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></Tag></TagSet></Tagging>";
          const requests = [
            { what: "PutObject", method: "PUT", path: long, body: "x" },
            { what: "CreateMultipartUpload", method: "POST", path: long, query: "uploads=" },
            {
              what: "CopyObject (dest)",
              method: "PUT",
              path: long,
              headers: { "x-amz-copy-source": `/${B}/${encodeKey(ok)}` },
            },
            { what: "PutObjectTagging", method: "PUT", path: long, query: "tagging=", body: tags },
            { what: "GetObject", method: "GET", path: long },
            { what: "DeleteObject", method: "DELETE", path: long },
          ];
          for (const r of requests) {
            expectError(await s3(server, r), 400, "KeyTooLongError");
          }
          // Copying from a 1025-byte source can find nothing to copy.
          const fromLong = await s3(server, {
            method: "PUT",
            path: objectPath(B, `copy-of-${name}`),
            headers: { "x-amz-copy-source": `/${B}/${encodeKey(tooLong)}` },
          });
          expectError(
            fromLong,
            fromLong.status === 400 ? 400 : 404,
            fromLong.status === 400 ? "KeyTooLongError" : "NoSuchKey",
          );
          // DeleteObjects reports the long key as an error and deletes nothing else.
          const xml = `<Delete><Object><Key>${tooLong}</Key></Object></Delete>`;
          const del = await s3(server, {
            method: "POST",
            path: `/${B}`,
            query: "delete=",
            headers: { "content-md5": md5Base64(xml) },
            body: xml,
          });
          expectOk(del, "DeleteObjects with a 1025-byte key");
          assert.deepEqual(xmlTexts(del.text, "Deleted"), []);
          assert.equal(xmlText(xmlText(del.text, "Error") ?? "", "Code"), "KeyTooLongError");
          await assertUnchanged(server, before, `1025-byte ${name} key`);
        }
      },
    );

    await t.step(
      "keys that differ only in Unicode normalization, case, or a trailing dot or space are distinct objects",
      async () => {
        const keys = [
          "caf\u00e9",
          "cafe\u0301",
          "Cafe",
          "cafe",
          "cafe.",
          "cafe ",
          "cafe/",
          "cafe//",
        ];
        for (const [i, key] of keys.entries()) {
          await putObject(server, B, `same/${key}`, `body ${i}`);
        }
        for (const [i, key] of keys.entries()) {
          const got = await getObject(server, B, `same/${key}`);
          assert.equal(new TextDecoder().decode(got.body), `body ${i}`, JSON.stringify(key));
        }
        const listed = (await listKeys(server, B)).map(([k]) => k).filter((k) =>
          k.startsWith("same/")
        );
        assert.deepEqual(listed.sort(), keys.map((k) => `same/${k}`).sort());
        for (const key of keys) {
          expectOk(
            await s3(server, { method: "DELETE", path: objectPath(B, `same/${key}`) }),
            "DELETE",
          );
        }
      },
    );

    await t.step(
      "bucket names of 63 characters are accepted, 64 refused with InvalidBucketName",
      async () => {
        await createBucket(server, "b".repeat(63));
        const before = await snapshot(server, []);
        expectError(
          await s3(server, { method: "PUT", path: `/${"b".repeat(64)}` }),
          400,
          "InvalidBucketName",
        );
        await assertUnchanged(server, before, "a 64-character bucket name");
      },
    );

    await t.step(
      "a 16 KiB key path is refused (KeyTooLongError, 414 or 431), nothing stored",
      async () => {
        const before = await snapshot(server, [B]);
        const reply = await s3(server, {
          method: "PUT",
          path: objectPath(B, "k".repeat(16 * 1024)),
          body: "x",
        });
        assert.ok(
          [400, 414, 431].includes(reply.status),
          `${reply.status} ${reply.text.slice(0, 300)}`,
        );
        if (reply.status === 400) errorCodeOf(reply);
        await assertUnchanged(server, before, "a 16 KiB key");
      },
    );

    await assertStoreClean(server);
    await assertServing(server);
    assert.deepEqual(internalErrors(server), []);
  } finally {
    await server.stop();
  }
});

Deno.test("keys and paths: names past the metadata store's key size, and non-Latin-1 response overrides, answer 4xx, never 500", async (t) => {
  const server = await startServer();
  const B = "kp-limits";
  const LONG = "a".repeat(3000);
  try {
    await createBucket(server, B);
    await putObject(server, B, "k", "k bytes");
    const created = await s3(server, {
      method: "POST",
      path: objectPath(B, "up"),
      query: "uploads=",
    });
    expectOk(created, "CreateMultipartUpload");
    const cases: {
      what: string;
      req: {
        method: string;
        path: string;
        query?: string;
        headers?: Record<string, string>;
        body?: string;
      };
      want: [number, string[]][];
    }[] = [
      // A bucket name of 3000 characters names no bucket (AWS: 400 InvalidBucketName or 404 NoSuchBucket).
      ...["GET", "HEAD", "DELETE"].map((method) => ({
        what: `${method} /<3000-character bucket>`,
        req: { method, path: `/${LONG}` },
        want: [[400, ["InvalidBucketName"]], [404, ["NoSuchBucket"]]] as [number, string[]][],
      })),
      ...[["GET", ""], ["PUT", ""], ["DELETE", ""], ["POST", "uploads="], ["GET", "tagging="]].map((
        [method, query],
      ) => ({
        what: `${method} /<3000-character bucket>/k${query ? `?${query}` : ""}`,
        req: { method, path: `/${LONG}/k`, query, body: method === "PUT" ? "x" : undefined },
        want: [[400, ["InvalidBucketName"]], [404, ["NoSuchBucket"]]] as [number, string[]][],
      })),
      {
        what: "GET /<3000-character bucket>?cors",
        req: { method: "GET", path: `/${LONG}`, query: "cors=" },
        want: [[400, ["InvalidBucketName"]], [404, ["NoSuchBucket"]]],
      },
      {
        what: "OPTIONS preflight on a 3000-character bucket",
        req: {
          method: "OPTIONS",
          path: `/${LONG}/k`,
          headers: { origin: "https://a.example", "access-control-request-method": "GET" },
        },
        want: [[403, ["AccessForbidden"]], [400, ["InvalidBucketName"]], [404, ["NoSuchBucket"]]],
      },
      {
        what: "CopyObject from a 3000-character bucket",
        req: {
          method: "PUT",
          path: objectPath(B, "copy"),
          headers: { "x-amz-copy-source": `/${LONG}/k` },
        },
        want: [[404, ["NoSuchBucket"]], [400, ["InvalidBucketName", "InvalidArgument"]]],
      },
      // Listing after a 3000-character marker or under a 3000-character prefix finds nothing (AWS: 200).
      {
        what: "ListObjects with a 3000-character marker",
        req: { method: "GET", path: `/${B}`, query: `marker=${LONG}` },
        want: [[200, []], [400, ["InvalidArgument"]]],
      },
      {
        what: "ListObjectsV2 with a 3000-character start-after",
        req: { method: "GET", path: `/${B}`, query: `list-type=2&start-after=${LONG}` },
        want: [[200, []], [400, ["InvalidArgument"]]],
      },
      {
        what: "ListObjectsV2 with a 3000-character prefix",
        req: { method: "GET", path: `/${B}`, query: `list-type=2&prefix=${LONG}` },
        want: [[200, []], [400, ["InvalidArgument"]]],
      },
      {
        what: "ListObjects with a 3000-character prefix",
        req: { method: "GET", path: `/${B}`, query: `prefix=${LONG}` },
        want: [[200, []], [400, ["InvalidArgument"]]],
      },
      {
        what: "ListMultipartUploads with a 3000-character key-marker",
        req: { method: "GET", path: `/${B}`, query: `uploads=&key-marker=${LONG}` },
        want: [[200, []], [400, ["InvalidArgument"]]],
      },
      // An upload id of 3000 characters names no upload (AWS: 404 NoSuchUpload).
      ...[["DELETE", ""], ["GET", ""], ["PUT", "partNumber=1&"], ["POST", ""]].map((
        [method, q],
      ) => ({
        what: `${method} with a 3000-character uploadId`,
        req: {
          method,
          path: objectPath(B, "up"),
          query: `${q}uploadId=${LONG}`,
          body: method === "POST"
            ? "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>"
            : method === "PUT"
            ? "part"
            : undefined,
        },
        want: [[404, ["NoSuchUpload"]]] as [number, string[]][],
      })),
      {
        what: "UploadPartCopy with a 3000-character uploadId",
        req: {
          method: "PUT",
          path: objectPath(B, "up"),
          query: `partNumber=1&uploadId=${LONG}`,
          headers: { "x-amz-copy-source": `/${B}/k` },
        },
        want: [[404, ["NoSuchUpload"]]],
      },
      // A 1024-byte key of NULs is within the limit; the store must hold it or refuse it cleanly.
      {
        what: "PutObject of a key of 1024 NUL bytes",
        req: { method: "PUT", path: `/${B}/${"%00".repeat(1024)}`, body: "nul" },
        want: [[200, []], [400, ["InvalidArgument", "KeyTooLongError"]]],
      },
      {
        what: "CreateMultipartUpload of a key of 1024 NUL bytes",
        req: { method: "POST", path: `/${B}/${"%00".repeat(1024)}`, query: "uploads=" },
        want: [[200, []], [400, ["InvalidArgument", "KeyTooLongError"]]],
      },
      // response-* overrides are echoed as headers: a value that cannot be a header is refused.
      {
        what: "GetObject with a non-Latin-1 response-content-disposition",
        req: {
          method: "GET",
          path: objectPath(B, "k"),
          query: `response-content-disposition=${
            encodeURIComponent('attachment; filename="é😀.txt"')
          }`,
        },
        want: [[200, []], [400, ["InvalidArgument"]]],
      },
      {
        what: "GetObject with a response-content-type holding CR LF",
        req: {
          method: "GET",
          path: objectPath(B, "k"),
          query: `response-content-type=${encodeURIComponent("text/plain\r\nx-injected: 1")}`,
        },
        want: [[200, []], [400, ["InvalidArgument"]]],
      },
    ];
    for (const c of cases) {
      await t.step(
        `${c.what}: ${
          c.want.map(([s, codes]) => `${s}${codes.length ? ` ${codes.join("|")}` : ""}`).join(
            " or ",
          )
        }`,
        async () => {
          const reply = await s3(server, c.req);
          const head = c.req.method === "HEAD";
          const match = c.want.find(([status]) => status === reply.status);
          assert.ok(match, `${c.what}: got ${reply.status} ${reply.text.slice(0, 300)}`);
          if (reply.status >= 300 && !head) {
            const code = errorCodeOf(reply);
            assert.ok(match[1].includes(code), `${c.what}: got ${reply.status} ${code}`);
          }
          assert.equal(
            reply.headers.get("x-injected"),
            null,
            "a query value must not inject a header",
          );
          if (reply.status === 200 && c.req.method === "PUT") {
            expectOk(await s3(server, { method: "DELETE", path: c.req.path }), "DELETE");
          }
        },
      );
    }
    await assertServing(server);
  } finally {
    await server.stop();
  }
});

Deno.test("keys and paths: a Host that is no valid URL authority (bucket.127.0.0.1, a bad port) still reaches its path-style bucket", async (t) => {
  const server = await startServer();
  const B = "kp-host";
  try {
    await createBucket(server, B);
    await putObject(server, B, "k", "host bytes");
    // A virtual-host client pointed at 127.0.0.1 sends "bucket.127.0.0.1:PORT"; without
    // -domain any Host falls back to path style.
    const hosts = [
      `${B}.127.0.0.1:${server.port}`,
      `${B}.127.0.0.1`,
      "a.1",
      "256.256.256.256",
      `127.0.0.1:99999`,
      "evil.example",
      `[::1]:${server.port}`,
      "localhost",
    ];
    for (const host of hosts) {
      await t.step(
        `Host: ${host}: GET /${B}/k answers 200 with the object (or 400), never 500`,
        async () => {
          const reply = await s3(server, {
            method: "GET",
            path: objectPath(B, "k"),
            headers: { host },
          });
          assert.ok(
            reply.status === 200 || reply.status === 400,
            `Host ${host}: ${reply.status} ${reply.text.slice(0, 300)}`,
          );
          if (reply.status === 200) assert.equal(reply.text, "host bytes");
          else errorCodeOf(reply);
          const put = await s3(server, {
            method: "PUT",
            path: objectPath(B, `via-${host}`),
            headers: { host },
            body: "x",
          });
          assert.ok(
            put.status === 200 || put.status === 400,
            `PUT with Host ${host}: ${put.status} ${put.text.slice(0, 300)}`,
          );
        },
      );
    }
    await assertStoreClean(server);
    await assertServing(server);
  } finally {
    await server.stop();
  }
});
