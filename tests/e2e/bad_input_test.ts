/**
 * Bad input against the real server: every auth mode with a wrong signature, tampered
 * and truncated bodies, bad digests, bad keys, malformed and oversized XML. After each
 * rejected write, nothing is stored: HEAD answers 404 and the data dir holds no temp
 * file and no shard beyond what committed objects need.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { crc32 } from "node:zlib";
import {
  encodeSignedChunks,
  encodeUnsignedChunks,
  presignRequest,
  sha256Hex,
} from "../../src/auth/sign.ts";
import { type Credentials, type ServerProcess, startServer } from "./_server.ts";
import {
  amzDateNow,
  assertStoreClean,
  expectError,
  headStatus,
  md5Base64,
  md5Hex,
  randomBytes,
  REGION,
  signedFetch,
  signRaw,
  xmlText,
} from "./_client.ts";

const BUCKET = "bad-input";

function crc32Base64(bytes: Uint8Array): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(crc32(bytes) >>> 0);
  return b.toString("base64");
}

/** A request ready for fetch: path, query, headers and body. */
interface Built {
  path: string;
  query?: string;
  headers: Headers;
  body: Uint8Array;
}

/** One way to authenticate a PUT of `data`, signed with `creds`. */
type AuthMode = (server: ServerProcess, key: string, data: Uint8Array, creds: Credentials) => Built;

function split(data: Uint8Array, sizeBytes: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < data.length; i += sizeBytes) out.push(data.subarray(i, i + sizeBytes));
  return out;
}

const CHUNK_BYTES = 64 * 1024;

const AUTH_MODES: Record<string, AuthMode> = {
  "header auth with a signed payload": (server, key, data, creds) => {
    const path = `/${BUCKET}/${key}`;
    const { headers } = signRaw(server, { method: "PUT", path, body: data, credentials: creds });
    return { path, headers, body: data };
  },
  "UNSIGNED-PAYLOAD": (server, key, data, creds) => {
    const path = `/${BUCKET}/${key}`;
    const { headers } = signRaw(server, {
      method: "PUT",
      path,
      body: data,
      payloadHash: "UNSIGNED-PAYLOAD",
      credentials: creds,
    });
    return { path, headers, body: data };
  },
  "STREAMING-AWS4-HMAC-SHA256-PAYLOAD": (server, key, data, creds) => {
    const path = `/${BUCKET}/${key}`;
    const amzDate = amzDateNow();
    const { headers, signature } = signRaw(server, {
      method: "PUT",
      path,
      amzDate,
      payloadHash: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
      headers: {
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": String(data.length),
      },
      credentials: creds,
    });
    const body = encodeSignedChunks(split(data, CHUNK_BYTES), {
      secretAccessKey: creds.secretAccessKey,
      region: REGION,
      amzDate,
      seedSignature: signature,
    });
    return { path, headers, body };
  },
  "STREAMING-UNSIGNED-PAYLOAD-TRAILER": (server, key, data, creds) => {
    const path = `/${BUCKET}/${key}`;
    const { headers } = signRaw(server, {
      method: "PUT",
      path,
      payloadHash: "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
      headers: {
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": String(data.length),
        "x-amz-trailer": "x-amz-checksum-crc32",
      },
      credentials: creds,
    });
    const body = encodeUnsignedChunks(split(data, CHUNK_BYTES), [[
      "x-amz-checksum-crc32",
      crc32Base64(data),
    ]]);
    return { path, headers, body };
  },
  "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER": (server, key, data, creds) => {
    const path = `/${BUCKET}/${key}`;
    const amzDate = amzDateNow();
    const { headers, signature } = signRaw(server, {
      method: "PUT",
      path,
      amzDate,
      payloadHash: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
      headers: {
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": String(data.length),
        "x-amz-trailer": "x-amz-checksum-crc32",
      },
      credentials: creds,
    });
    const body = encodeSignedChunks(
      split(data, CHUNK_BYTES),
      { secretAccessKey: creds.secretAccessKey, region: REGION, amzDate, seedSignature: signature },
      [["x-amz-checksum-crc32", crc32Base64(data)]],
    );
    return { path, headers, body };
  },
  "a presigned URL": (server, key, data, creds) => {
    const path = `/${BUCKET}/${key}`;
    const query = presignRequest({
      method: "PUT",
      rawPath: path,
      headers: { host: server.host },
      credentials: creds,
      region: REGION,
      amzDate: amzDateNow(),
      expiresSec: 300,
    });
    return { path, query, headers: new Headers(), body: data };
  },
};

async function send(server: ServerProcess, method: string, b: Built): Promise<Response> {
  const headers = new Headers(b.headers);
  headers.delete("host");
  return await fetch(`${server.url}${b.path}${b.query ? `?${b.query}` : ""}`, {
    method,
    headers,
    body: b.body as BodyInit,
  });
}

async function getText(
  server: ServerProcess,
  key: string,
): Promise<{ status: number; body: Uint8Array }> {
  const res = await signedFetch(server, { method: "GET", path: `/${BUCKET}/${key}` });
  return { status: res.status, body: new Uint8Array(await res.arrayBuffer()) };
}

/** Asserts the key does not exist and the data dir holds nothing but committed data. */
async function assertNothingStored(server: ServerProcess, key: string): Promise<void> {
  assert.equal(await headStatus(server, `/${BUCKET}/${key}`), 404, `"${key}" must not exist`);
  await assertStoreClean(server);
}

/** Writes raw bytes on a new TCP connection, then reads whatever comes back until EOF or `limit`. */
async function rawExchange(
  server: ServerProcess,
  request: Uint8Array,
  opts: { closeWrite?: boolean; readLimitBytes?: number } = {},
): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  try {
    let off = 0;
    while (off < request.length) off += await conn.write(request.subarray(off));
    if (opts.closeWrite) await conn.closeWrite();
    const buf = new Uint8Array(64 * 1024);
    let text = "";
    while (text.length < (opts.readLimitBytes ?? 1 << 20)) {
      let n: number | null;
      try {
        n = await conn.read(buf);
      } catch {
        break;
      }
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
      if (/\r\n\r\n/.test(text) && !opts.closeWrite) {
        const m = /content-length: *(\d+)/i.exec(text);
        const headerEnd = text.indexOf("\r\n\r\n") + 4;
        if (m && text.length - headerEnd >= Number(m[1])) break;
      }
    }
    return text;
  } finally {
    conn.close();
  }
}

Deno.test("hamster serve rejects bad input and stores nothing", async (t) => {
  const server = await startServer();
  const wrongSecret = { ...server.credentials, secretAccessKey: "not-the-secret" };
  try {
    const created = await signedFetch(server, { method: "PUT", path: `/${BUCKET}` });
    assert.equal(created.status, 200, await created.text());

    for (const [mode, build] of Object.entries(AUTH_MODES)) {
      const key = `auth/${mode.replace(/[^A-Za-z0-9]+/g, "-")}`;
      const data = randomBytes(150_000);
      await t.step(
        `PutObject by ${mode} with a wrong signature answers 403 SignatureDoesNotMatch and stores nothing`,
        async () => {
          await expectError(
            await send(server, "PUT", build(server, key, data, wrongSecret)),
            403,
            "SignatureDoesNotMatch",
          );
          await assertNothingStored(server, key);
        },
      );
      await t.step(`PutObject by ${mode} with the right signature stores the bytes`, async () => {
        const res = await send(server, "PUT", build(server, key, data, server.credentials));
        assert.equal(res.status, 200, await res.text());
        assert.equal(res.headers.get("etag"), `"${md5Hex(data)}"`);
        const got = await getText(server, key);
        assert.equal(got.status, 200);
        assert.deepEqual(got.body, data);
      });
    }

    await t.step(
      "PutObject by STREAMING-AWS4-HMAC-SHA256-PAYLOAD with a tampered chunk answers 403 and stores nothing",
      async () => {
        const key = "tamper/chunk";
        const data = randomBytes(200_000);
        const built = AUTH_MODES["STREAMING-AWS4-HMAC-SHA256-PAYLOAD"](
          server,
          key,
          data,
          server.credentials,
        );
        // Flip one byte inside the second chunk's data, past its size line.
        const at = built.body.indexOf(0x0a, CHUNK_BYTES + 100) + 1 + 1000;
        built.body[at] ^= 0xff;
        await expectError(await send(server, "PUT", built), 403, "SignatureDoesNotMatch");
        await assertNothingStored(server, key);
      },
    );

    await t.step(
      "PutObject by STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER with a tampered trailer answers 403 and stores nothing",
      async () => {
        const key = "tamper/trailer";
        const data = randomBytes(100_000);
        const built = AUTH_MODES["STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"](
          server,
          key,
          data,
          server.credentials,
        );
        const text = new TextDecoder("latin1").decode(built.body.subarray(built.body.length - 300));
        const real = crc32Base64(data);
        const fake = crc32Base64(randomBytes(8));
        assert.ok(text.includes(real));
        const tail = new TextEncoder().encode(text.replace(real, fake));
        built.body = new Uint8Array([...built.body.subarray(0, built.body.length - 300), ...tail]);
        const res = await send(server, "PUT", built);
        const body = await res.text();
        assert.equal(res.status, 403, body);
        assert.equal(xmlText(body, "Code"), "SignatureDoesNotMatch");
        await assertNothingStored(server, key);
      },
    );

    await t.step(
      "PutObject by STREAMING-UNSIGNED-PAYLOAD-TRAILER with a wrong CRC32 trailer answers 400 BadDigest and stores nothing",
      async () => {
        const key = "tamper/unsigned-trailer";
        const data = randomBytes(100_000);
        const path = `/${BUCKET}/${key}`;
        const { headers } = signRaw(server, {
          method: "PUT",
          path,
          payloadHash: "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
          headers: {
            "content-encoding": "aws-chunked",
            "x-amz-decoded-content-length": String(data.length),
            "x-amz-trailer": "x-amz-checksum-crc32",
          },
        });
        const body = encodeUnsignedChunks(split(data, CHUNK_BYTES), [[
          "x-amz-checksum-crc32",
          crc32Base64(randomBytes(9)),
        ]]);
        await expectError(await send(server, "PUT", { path, headers, body }), 400, "BadDigest");
        await assertNothingStored(server, key);
      },
    );

    await t.step(
      "A request with an unknown access key answers 403 InvalidAccessKeyId and stores nothing",
      async () => {
        const res = await signedFetch(server, {
          method: "PUT",
          path: `/${BUCKET}/auth/unknown-key`,
          body: "x",
          credentials: { accessKeyId: "NOSUCHKEY", secretAccessKey: "whatever" },
        });
        await expectError(res, 403, "InvalidAccessKeyId");
        await assertNothingStored(server, "auth/unknown-key");
      },
    );

    await t.step(
      "A request without authentication answers 403 AccessDenied and stores nothing",
      async () => {
        const res = await fetch(`${server.url}/${BUCKET}/auth/anonymous`, {
          method: "PUT",
          body: "x",
        });
        await expectError(res, 403, "AccessDenied");
        const list = await fetch(`${server.url}/${BUCKET}`);
        await expectError(list, 403, "AccessDenied");
        await assertNothingStored(server, "auth/anonymous");
      },
    );

    await t.step(
      "A request dated 20 minutes off answers 403 RequestTimeTooSkewed and stores nothing",
      async () => {
        for (const offsetMs of [-20 * 60_000, 20 * 60_000]) {
          const res = await signedFetch(server, {
            method: "PUT",
            path: `/${BUCKET}/auth/skewed`,
            body: "x",
            amzDate: amzDateNow(offsetMs),
          });
          await expectError(res, 403, "RequestTimeTooSkewed");
        }
        await assertNothingStored(server, "auth/skewed");
      },
    );

    await t.step(
      "PutObject whose signed x-amz-content-sha256 differs from the body answers 400 XAmzContentSHA256Mismatch and stores nothing",
      async () => {
        const data = randomBytes(10_000);
        const res = await signedFetch(server, {
          method: "PUT",
          path: `/${BUCKET}/auth/sha-mismatch`,
          body: data,
          payloadHash: sha256Hex(new TextEncoder().encode("something else")),
        });
        await expectError(res, 400, "XAmzContentSHA256Mismatch");
        await assertNothingStored(server, "auth/sha-mismatch");
      },
    );

    await t.step(
      "PutObject with a wrong Content-MD5 answers 400 BadDigest and stores nothing",
      async () => {
        const res = await signedFetch(server, {
          method: "PUT",
          path: `/${BUCKET}/digest/wrong-md5`,
          body: "the body",
          headers: { "content-md5": md5Base64("another body") },
        });
        await expectError(res, 400, "BadDigest");
        await assertNothingStored(server, "digest/wrong-md5");
      },
    );

    await t.step(
      "PutObject with a malformed Content-MD5 answers 400 InvalidDigest and stores nothing",
      async () => {
        for (const bad of ["not base64!", "AAAA", md5Hex("x")]) {
          const res = await signedFetch(server, {
            method: "PUT",
            path: `/${BUCKET}/digest/bad-md5`,
            body: "the body",
            headers: { "content-md5": bad },
          });
          await expectError(res, 400, "InvalidDigest");
        }
        await assertNothingStored(server, "digest/bad-md5");
      },
    );

    await t.step(
      "PutObject with a right Content-MD5 and x-amz-checksum-crc32 stores the object",
      async () => {
        const res = await signedFetch(server, {
          method: "PUT",
          path: `/${BUCKET}/digest/right`,
          body: "the body",
          headers: {
            "content-md5": md5Base64("the body"),
            "x-amz-checksum-crc32": crc32Base64(new TextEncoder().encode("the body")),
          },
        });
        assert.equal(res.status, 200, await res.text());
        assert.equal(
          res.headers.get("x-amz-checksum-crc32"),
          crc32Base64(new TextEncoder().encode("the body")),
        );
      },
    );

    await t.step(
      "PutObject with a wrong x-amz-checksum-crc32 answers 400 BadDigest and stores nothing",
      async () => {
        const res = await signedFetch(server, {
          method: "PUT",
          path: `/${BUCKET}/digest/wrong-crc32`,
          body: "the body",
          headers: { "x-amz-checksum-crc32": crc32Base64(new TextEncoder().encode("other")) },
        });
        await expectError(res, 400, "BadDigest");
        await assertNothingStored(server, "digest/wrong-crc32");
      },
    );

    await t.step(
      "PutObject with a 1025-byte key answers 400 KeyTooLongError; 1024 bytes is accepted",
      async () => {
        // "é" is two UTF-8 bytes: the limit counts bytes, not characters.
        const long = `key/${"é".repeat(510)}x`; // 4 + 1020 + 1 = 1025 bytes
        const ok = `key/${"é".repeat(510)}`; // 1024 bytes
        assert.equal(new TextEncoder().encode(long).length, 1025);
        assert.equal(new TextEncoder().encode(ok).length, 1024);
        const path = (k: string) => `/${BUCKET}/${encodeURIComponent(k).replace(/%2F/g, "/")}`;
        await expectError(
          await signedFetch(server, { method: "PUT", path: path(long), body: "x" }),
          400,
          "KeyTooLongError",
        );
        const res = await signedFetch(server, { method: "PUT", path: path(ok), body: "x" });
        assert.equal(res.status, 200, await res.text());
        assert.equal(await headStatus(server, path(ok)), 200);
        await assertStoreClean(server);
      },
    );

    await t.step(
      "PutObject into a bad or missing bucket answers InvalidBucketName or NoSuchBucket and stores nothing",
      async () => {
        await expectError(
          await signedFetch(server, { method: "PUT", path: "/Bad_Bucket" }),
          400,
          "InvalidBucketName",
        );
        await expectError(
          await signedFetch(server, { method: "PUT", path: "/no-such-bucket/k", body: "x" }),
          404,
          "NoSuchBucket",
        );
        await assertStoreClean(server);
      },
    );

    const uploadKey = "xml/upload";
    let uploadId = "";
    await t.step(
      "CompleteMultipartUpload with malformed XML answers 400 MalformedXML and stores nothing",
      async () => {
        const created = await signedFetch(server, {
          method: "POST",
          path: `/${BUCKET}/${uploadKey}`,
          query: "uploads=",
        });
        const xml = await created.text();
        assert.equal(created.status, 200, xml);
        uploadId = xmlText(xml, "UploadId")!;
        const part = await signedFetch(server, {
          method: "PUT",
          path: `/${BUCKET}/${uploadKey}`,
          query: `partNumber=1&uploadId=${uploadId}`,
          body: "part one",
        });
        assert.equal(part.status, 200, await part.text());
        const bodies = [
          "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>",
          "not xml at all",
          "<CompleteMultipartUpload><Part></CompleteMultipartUpload>",
          "<Wrong><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></Wrong>",
          "",
        ];
        for (const body of bodies) {
          const res = await signedFetch(server, {
            method: "POST",
            path: `/${BUCKET}/${uploadKey}`,
            query: `uploadId=${uploadId}`,
            body,
          });
          await expectError(res, 400, "MalformedXML");
        }
        assert.equal(await headStatus(server, `/${BUCKET}/${uploadKey}`), 404);
        await assertStoreClean(server);
      },
    );

    await t.step(
      "DeleteObjects with malformed XML answers 400 MalformedXML and deletes nothing",
      async () => {
        for (
          const body of [
            "<Delete><Object><Key>digest/right</Key></Object>",
            "<Delete></Delete>",
            "garbage",
          ]
        ) {
          const res = await signedFetch(server, {
            method: "POST",
            path: `/${BUCKET}`,
            query: "delete=",
            body,
            headers: { "content-md5": md5Base64(body) },
          });
          await expectError(res, 400, "MalformedXML");
        }
        assert.equal(await headStatus(server, `/${BUCKET}/digest/right`), 200);
      },
    );

    await t.step("XML with a DOCTYPE or entity declaration answers 400 MalformedXML", async () => {
      const laughs =
        `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>` +
        `<Delete><Object><Key>&lol2;</Key></Object></Delete>`;
      const res = await signedFetch(server, {
        method: "POST",
        path: `/${BUCKET}`,
        query: "delete=",
        body: laughs,
        headers: { "content-md5": md5Base64(laughs) },
      });
      await expectError(res, 400, "MalformedXML");
      const external =
        `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>` +
        `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&e;</ETag></Part></CompleteMultipartUpload>`;
      const res2 = await signedFetch(server, {
        method: "POST",
        path: `/${BUCKET}/${uploadKey}`,
        query: `uploadId=${uploadId}`,
        body: external,
      });
      const err = await expectError(res2, 400, "MalformedXML");
      assert.doesNotMatch(err.raw, /root:/);
      assert.equal(await headStatus(server, `/${BUCKET}/${uploadKey}`), 404);
    });

    await t.step(
      "An XML body over the 2 MiB cap answers 400 MaxMessageLengthExceeded (or a closed connection) and the server still serves",
      async () => {
        const filler = `<Part><PartNumber>1</PartNumber><ETag>"${"0".repeat(32)}"</ETag></Part>`;
        const big = `<CompleteMultipartUpload>${
          filler.repeat(Math.ceil((2 * 1024 * 1024 + 10) / filler.length))
        }</CompleteMultipartUpload>`;
        assert.ok(big.length > 2 * 1024 * 1024);
        let res: Response | undefined;
        try {
          res = await signedFetch(server, {
            method: "POST",
            path: `/${BUCKET}/${uploadKey}`,
            query: `uploadId=${uploadId}`,
            body: big,
            payloadHash: "UNSIGNED-PAYLOAD",
          });
        } catch (err) {
          console.log(
            `  the server closed the connection on a 2 MiB+ body: ${(err as Error).message}`,
          );
        }
        if (res) {
          await expectError(res, 400, "MaxMessageLengthExceeded");
          console.log("  the server answered 400 MaxMessageLengthExceeded");
        }
        assert.equal(await headStatus(server, `/${BUCKET}/${uploadKey}`), 404);
        assert.equal(await headStatus(server, `/${BUCKET}/digest/right`), 200);
        await assertStoreClean(server);
      },
    );

    await t.step(
      "A body truncated by a closed connection stores nothing and the server serves the next request",
      async () => {
        const key = "truncated/object";
        const path = `/${BUCKET}/${key}`;
        for (const payloadHash of ["UNSIGNED-PAYLOAD", sha256Hex(new Uint8Array(1000))]) {
          const { headers } = signRaw(server, {
            method: "PUT",
            path,
            payloadHash,
            headers: { "content-length": "1000" },
          });
          let head = `PUT ${path} HTTP/1.1\r\n`;
          headers.forEach((v, k) => head += `${k}: ${v}\r\n`);
          head += "\r\n";
          const request = new Uint8Array([
            ...new TextEncoder().encode(head),
            ...new Uint8Array(500),
          ]);
          const reply = await rawExchange(server, request, {
            closeWrite: true,
            readLimitBytes: 4096,
          });
          console.log(
            `  truncated ${payloadHash.slice(0, 16)}: ${
              JSON.stringify(reply.split("\r\n")[0] ?? "")
            }`,
          );
          assert.doesNotMatch(reply, /^HTTP\/1\.1 2/, "a truncated body must not succeed");
        }
        await assertNothingStored(server, key);
        assert.equal(await headStatus(server, `/${BUCKET}/digest/right`), 200);
      },
    );

    await t.step(
      "A body cut short by the client (Content-Length 1000, 500 sent, write side closed) answers 400 IncompleteBody (or closes), not 500",
      async () => {
        const path = `/${BUCKET}/truncated/incomplete`;
        const { headers } = signRaw(server, {
          method: "PUT",
          path,
          payloadHash: "UNSIGNED-PAYLOAD",
          headers: { "content-length": "1000" },
        });
        let head = `PUT ${path} HTTP/1.1\r\n`;
        headers.forEach((v, k) => head += `${k}: ${v}\r\n`);
        head += "\r\n";
        const request = new Uint8Array([...new TextEncoder().encode(head), ...new Uint8Array(500)]);
        const reply = await rawExchange(server, request, {
          closeWrite: true,
          readLimitBytes: 4096,
        });
        // The server may also just close the connection; if it answers, it must be a 400.
        if (reply !== "") {
          assert.match(
            reply.split("\r\n")[0],
            /^HTTP\/1\.1 400/,
            `want 400 IncompleteBody, got:\n${reply}`,
          );
          assert.equal(xmlText(reply, "Code"), "IncompleteBody");
        }
        await assertNothingStored(server, "truncated/incomplete");
      },
    );

    await t.step("An aws-chunked body cut off mid-chunk stores nothing", async () => {
      const key = "truncated/chunked";
      const data = randomBytes(200_000);
      const built = AUTH_MODES["STREAMING-AWS4-HMAC-SHA256-PAYLOAD"](
        server,
        key,
        data,
        server.credentials,
      );
      let head = `PUT ${built.path} HTTP/1.1\r\n`;
      built.headers.set("content-length", String(built.body.length));
      built.headers.forEach((v, k) => head += `${k}: ${v}\r\n`);
      head += "\r\n";
      const request = new Uint8Array([
        ...new TextEncoder().encode(head),
        ...built.body.subarray(0, Math.floor(built.body.length / 2)),
      ]);
      const reply = await rawExchange(server, request, { closeWrite: true, readLimitBytes: 4096 });
      assert.doesNotMatch(reply, /^HTTP\/1\.1 2/, "a truncated body must not succeed");
      await assertNothingStored(server, key);
    });

    await t.step(
      "A sub-resource Hamster lacks, like ?lifecycle or ?torrent, answers 501 NotImplemented and changes nothing",
      async () => {
        const cases: [string, string, string][] = [
          ["GET", `/${BUCKET}`, "lifecycle="],
          ["PUT", `/${BUCKET}`, "lifecycle="],
          ["PUT", `/${BUCKET}`, "policy="],
          ["GET", `/${BUCKET}`, "replication="],
          ["GET", `/${BUCKET}/digest/right`, "torrent="],
          ["PUT", `/${BUCKET}/digest/right`, "retention="],
          ["POST", `/${BUCKET}/digest/right`, "restore="],
        ];
        for (const [method, path, query] of cases) {
          const body = method === "GET" ? undefined : "<Configuration/>";
          const res = await signedFetch(server, { method, path, query, body });
          await expectError(res, 501, "NotImplemented");
        }
        const got = await getText(server, "digest/right");
        assert.equal(new TextDecoder().decode(got.body), "the body");
      },
    );

    await t.step("HeadObject on a missing key answers 404 with an empty body", async () => {
      const res = await signedFetch(server, { method: "HEAD", path: `/${BUCKET}/no/such/key` });
      assert.equal(res.status, 404);
      assert.equal((await res.arrayBuffer()).byteLength, 0);
      assert.ok(res.headers.get("x-amz-request-id"));
      const bucketRes = await signedFetch(server, { method: "HEAD", path: "/no-such-bucket" });
      assert.equal(bucketRes.status, 404);
      assert.equal((await bucketRes.arrayBuffer()).byteLength, 0);
    });

    await t.step(
      "After all the bad input the server still answers and the store is consistent",
      async () => {
        await signedFetch(server, {
          method: "DELETE",
          path: `/${BUCKET}/${uploadKey}`,
          query: `uploadId=${uploadId}`,
        })
          .then((r) => r.body?.cancel());
        const got = await getText(server, "digest/right");
        assert.equal(got.status, 200);
        assert.equal(new TextDecoder().decode(got.body), "the body");
        await assertStoreClean(server);
      },
    );
  } finally {
    await server.stop();
    if (Deno.env.get("HAMSTER_E2E_VERBOSE")) console.log(server.output);
  }
});
