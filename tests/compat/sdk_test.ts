/**
 * Compatibility with `@aws-sdk/client-s3` and `@aws-sdk/s3-request-presigner` with
 * their current defaults (CRC32 on every upload, an aws-chunked trailer for streams,
 * checksum validation on GET with ChecksumMode ENABLED): put, get, multipart, and
 * presigned GET, PUT, HEAD and DELETE URLs fetched with plain HTTP.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Readable } from "node:stream";
import { crc32 } from "node:zlib";
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { startServer } from "../e2e/_server.ts";
import { readAll, sdkClient, type SentLog } from "../e2e/_client.ts";
import { formatAmzDate, presignRequest } from "../../src/auth/sign.ts";
import { equalBytes, md5Hex, MIB, randomBytes, REGION } from "./_support.ts";

/** Base64 of the big-endian CRC32 of `bytes`, as in `x-amz-checksum-crc32`. */
function crc32Base64(bytes: Uint8Array): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(crc32(bytes) >>> 0);
  return b.toString("base64");
}

/** Reads an S3 error body and returns its Code. */
async function errorCode(res: Response): Promise<string> {
  const text = await res.text();
  return /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ??
    `(no code in ${JSON.stringify(text.slice(0, 200))})`;
}

Deno.test("@aws-sdk/client-s3 defaults: CRC32 on upload, checksum validation on GET, multipart", async (t) => {
  const server = await startServer();
  const sent: SentLog = [];
  const client = sdkClient(server, sent);
  const Bucket = "sdk-compat";
  try {
    await client.send(new CreateBucketCommand({ Bucket }));

    await t.step(
      "PutObject of bytes sends a CRC32 header; of a stream, an aws-chunked CRC32 trailer",
      async () => {
        const bytes = randomBytes(256 * 1024 + 3);
        sent.length = 0;
        const r1 = await client.send(new PutObjectCommand({ Bucket, Key: "bytes", Body: bytes }));
        assert.equal(sent.at(-1)!["x-amz-checksum-crc32"], crc32Base64(bytes));
        assert.equal(r1.ETag, `"${md5Hex(bytes)}"`);
        assert.equal(r1.ChecksumCRC32, crc32Base64(bytes));

        const chunks = [randomBytes(100_000), randomBytes(70_001), randomBytes(3)];
        const all = new Uint8Array(Buffer.concat(chunks));
        sent.length = 0;
        const r2 = await client.send(
          new PutObjectCommand({
            Bucket,
            Key: "stream",
            Body: Readable.from(chunks),
            ContentLength: all.length,
          }),
        );
        const h = sent.at(-1)!;
        assert.equal(h["x-amz-trailer"], "x-amz-checksum-crc32");
        assert.match(h["content-encoding"] ?? "", /aws-chunked/);
        assert.equal(r2.ETag, `"${md5Hex(all)}"`);
        assert.equal(r2.ChecksumCRC32, crc32Base64(all));
      },
    );

    await t.step(
      "GetObject with ChecksumMode ENABLED returns the CRC32 the SDK validates, and the bytes",
      async () => {
        for (const Key of ["bytes", "stream"]) {
          const got = await client.send(
            new GetObjectCommand({ Bucket, Key, ChecksumMode: "ENABLED" }),
          );
          const body = await readAll(got.Body);
          assert.ok(got.ChecksumCRC32, `${Key}: no x-amz-checksum-crc32 in the GET answer`);
          assert.equal(got.ChecksumCRC32, crc32Base64(body), Key);
          assert.equal(`"${md5Hex(body)}"`, got.ETag, Key);
        }
      },
    );

    await t.step(
      "multipart with ChecksumAlgorithm CRC32: 3 parts, a -3 ETag, the same bytes back",
      async () => {
        const parts = [randomBytes(5 * MIB), randomBytes(5 * MIB), randomBytes(MIB + 1)];
        const Key = "multi/part.bin";
        const created = await client.send(
          new CreateMultipartUploadCommand({ Bucket, Key, ChecksumAlgorithm: "CRC32" }),
        );
        const done = [];
        for (const [i, Body] of parts.entries()) {
          const up = await client.send(
            new UploadPartCommand({
              Bucket,
              Key,
              UploadId: created.UploadId,
              PartNumber: i + 1,
              Body,
              ChecksumAlgorithm: "CRC32",
            }),
          );
          assert.equal(up.ChecksumCRC32, crc32Base64(Body));
          done.push({ PartNumber: i + 1, ETag: up.ETag, ChecksumCRC32: up.ChecksumCRC32 });
        }
        const complete = await client.send(
          new CompleteMultipartUploadCommand({
            Bucket,
            Key,
            UploadId: created.UploadId,
            MultipartUpload: { Parts: done },
          }),
        );
        assert.match(complete.ETag ?? "", /^"[0-9a-f]{32}-3"$/);
        const got = await client.send(
          new GetObjectCommand({ Bucket, Key, ChecksumMode: "ENABLED" }),
        );
        const body = await readAll(got.Body);
        assert.equal(body.length, 11 * MIB + 1);
        assert.ok(equalBytes(body, new Uint8Array(Buffer.concat(parts))));
        const list = await client.send(new ListObjectsV2Command({ Bucket }));
        assert.deepEqual(
          list.Contents?.map((o) => [o.Key, o.Size]),
          [["bytes", 256 * 1024 + 3], ["multi/part.bin", 11 * MIB + 1], ["stream", 170_004]],
        );
      },
    );
  } finally {
    client.destroy();
    await server.stop();
  }
});

Deno.test("@aws-sdk/s3-request-presigner: GET, PUT, HEAD, DELETE URLs work with plain fetch, bound to method, host and expiry", async (t) => {
  const server = await startServer();
  const client = sdkClient(server);
  const Bucket = "presign-sdk";
  const Key = "dir/a key+with=odd&chars.bin";
  const bytes = randomBytes(40_000);
  try {
    await client.send(new CreateBucketCommand({ Bucket }));

    await t.step("a presigned PUT stores the bytes fetch sends", async () => {
      const url = await getSignedUrl(client, new PutObjectCommand({ Bucket, Key }), {
        expiresIn: 300,
      });
      assert.match(url, /X-Amz-Algorithm=AWS4-HMAC-SHA256/);
      const res = await fetch(url, { method: "PUT", body: bytes });
      assert.equal(res.status, 200, await res.text());
      assert.equal(res.headers.get("etag"), `"${md5Hex(bytes)}"`);
    });

    await t.step(
      "a presigned GET returns the bytes; a presigned HEAD the length and ETag",
      async () => {
        const get = await getSignedUrl(client, new GetObjectCommand({ Bucket, Key }), {
          expiresIn: 300,
        });
        const res = await fetch(get);
        const body = new Uint8Array(await res.arrayBuffer());
        assert.equal(res.status, 200);
        assert.ok(equalBytes(body, bytes));
        const head = await getSignedUrl(client, new HeadObjectCommand({ Bucket, Key }), {
          expiresIn: 300,
        });
        const h = await fetch(head, { method: "HEAD" });
        assert.equal(h.status, 200);
        assert.equal(h.headers.get("content-length"), String(bytes.length));
        assert.equal(h.headers.get("etag"), `"${md5Hex(bytes)}"`);
        await h.body?.cancel();
      },
    );

    await t.step(
      "a presigned URL is bound to its method: a GET URL used for PUT or DELETE answers 403",
      async () => {
        const get = await getSignedUrl(client, new GetObjectCommand({ Bucket, Key }), {
          expiresIn: 300,
        });
        const put = await fetch(get, { method: "PUT", body: randomBytes(10) });
        assert.equal(put.status, 403);
        assert.equal(await errorCode(put), "SignatureDoesNotMatch");
        const del = await fetch(get, { method: "DELETE" });
        assert.equal(del.status, 403);
        assert.equal(await errorCode(del), "SignatureDoesNotMatch");
        const head = await getSignedUrl(client, new HeadObjectCommand({ Bucket, Key }), {
          expiresIn: 300,
        });
        const asGet = await fetch(head);
        assert.equal(asGet.status, 403);
        await asGet.body?.cancel();
        const still = await fetch(get);
        assert.ok(
          equalBytes(new Uint8Array(await still.arrayBuffer()), bytes),
          "the object changed",
        );
      },
    );

    await t.step(
      "a presigned URL is bound to its host: the same URL through localhost answers 403",
      async () => {
        const get = await getSignedUrl(client, new GetObjectCommand({ Bucket, Key }), {
          expiresIn: 300,
        });
        const res = await fetch(get.replace("127.0.0.1", "localhost"));
        assert.equal(res.status, 403);
        assert.equal(await errorCode(res), "SignatureDoesNotMatch");
      },
    );

    await t.step(
      "a presigned URL is bound to its signed headers: another Content-Type answers 403",
      async () => {
        const url = await getSignedUrl(
          client,
          new PutObjectCommand({ Bucket, Key: "typed", ContentType: "text/plain" }),
          { expiresIn: 300, signableHeaders: new Set(["content-type"]) },
        );
        assert.match(new URL(url).searchParams.get("X-Amz-SignedHeaders") ?? "", /content-type/);
        const wrong = await fetch(url, {
          method: "PUT",
          body: "x",
          headers: { "content-type": "text/html" },
        });
        assert.equal(wrong.status, 403);
        assert.equal(await errorCode(wrong), "SignatureDoesNotMatch");
        const right = await fetch(url, {
          method: "PUT",
          body: "x",
          headers: { "content-type": "text/plain" },
        });
        assert.equal(right.status, 200, await right.text());
        const head = await client.send(new HeadObjectCommand({ Bucket, Key: "typed" }));
        assert.equal(head.ContentType, "text/plain");
        await client.send(new DeleteObjectCommand({ Bucket, Key: "typed" }));
      },
    );

    await t.step(
      "X-Amz-Expires must be 1 to 604800: 604800 works, 604801 and 0 answer 400",
      async () => {
        const sign = (expiresSec: number) =>
          presignRequest({
            method: "GET",
            rawPath: `/${Bucket}/${encodeURIComponent(Key).replaceAll("%2F", "/")}`,
            headers: { host: server.host },
            credentials: server.credentials,
            region: REGION,
            amzDate: formatAmzDate(Date.now()),
            expiresSec,
          });
        const url = (q: string) =>
          `${server.url}/${Bucket}/${encodeURIComponent(Key).replaceAll("%2F", "/")}?${q}`;
        const week = await fetch(url(sign(604800)));
        assert.equal(week.status, 200, await week.text());
        for (const bad of [604801, 0]) {
          const res = await fetch(url(sign(bad)));
          assert.equal(res.status, 400, `X-Amz-Expires=${bad}`);
          assert.equal(await errorCode(res), "AuthorizationQueryParametersError");
        }
      },
    );

    await t.step(
      "presigned GET with response-content-disposition/-type overrides sets those headers",
      async () => {
        const url = await getSignedUrl(
          client,
          new GetObjectCommand({
            Bucket,
            Key,
            ResponseContentDisposition: 'attachment; filename="résumé 1.bin"',
            ResponseContentType: "application/x-test",
          }),
          { expiresIn: 300 },
        );
        const res = await fetch(url);
        assert.equal(res.status, 200);
        assert.equal(res.headers.get("content-disposition"), 'attachment; filename="résumé 1.bin"');
        assert.equal(res.headers.get("content-type"), "application/x-test");
        assert.ok(equalBytes(new Uint8Array(await res.arrayBuffer()), bytes));
      },
    );

    await t.step(
      "presigned PUT and GET of a key with non-ASCII characters and spaces",
      async () => {
        const odd = "ключ/ü € %41+.bin";
        const data = randomBytes(999);
        const put = await getSignedUrl(client, new PutObjectCommand({ Bucket, Key: odd }), {
          expiresIn: 300,
        });
        const res = await fetch(put, { method: "PUT", body: data });
        assert.equal(res.status, 200, await res.text());
        const list = await client.send(new ListObjectsV2Command({ Bucket, Prefix: "к" }));
        assert.deepEqual(list.Contents?.map((o) => o.Key), [odd]);
        const get = await getSignedUrl(client, new GetObjectCommand({ Bucket, Key: odd }), {
          expiresIn: 300,
        });
        const back = await fetch(get);
        assert.equal(back.status, 200);
        assert.ok(equalBytes(new Uint8Array(await back.arrayBuffer()), data));
        await client.send(new DeleteObjectCommand({ Bucket, Key: odd }));
      },
    );

    await t.step(
      "browser-style multipart: parts PUT through presigned UploadPart URLs, then completed",
      async () => {
        const MpKey = "browser/upload.bin";
        const parts = [randomBytes(5 * MIB), randomBytes(2 * MIB + 9)];
        const { UploadId } = await client.send(
          new CreateMultipartUploadCommand({ Bucket, Key: MpKey }),
        );
        const done = [];
        for (const [i, body] of parts.entries()) {
          const url = await getSignedUrl(
            client,
            new UploadPartCommand({ Bucket, Key: MpKey, UploadId, PartNumber: i + 1 }),
            { expiresIn: 300 },
          );
          const res = await fetch(url, { method: "PUT", body });
          assert.equal(res.status, 200, await res.text());
          assert.equal(res.headers.get("etag"), `"${md5Hex(body)}"`);
          done.push({ PartNumber: i + 1, ETag: res.headers.get("etag")! });
        }
        const complete = await client.send(
          new CompleteMultipartUploadCommand({
            Bucket,
            Key: MpKey,
            UploadId,
            MultipartUpload: { Parts: done },
          }),
        );
        assert.match(complete.ETag ?? "", /^"[0-9a-f]{32}-2"$/);
        const got = await client.send(new GetObjectCommand({ Bucket, Key: MpKey }));
        assert.ok(equalBytes(await readAll(got.Body), new Uint8Array(Buffer.concat(parts))));
        await client.send(new DeleteObjectCommand({ Bucket, Key: MpKey }));
      },
    );

    await t.step("an expired presigned URL answers 403 AccessDenied", async () => {
      const get = await getSignedUrl(client, new GetObjectCommand({ Bucket, Key }), {
        expiresIn: 1,
      });
      await new Promise((r) => setTimeout(r, 2500));
      const res = await fetch(get);
      const text = await res.text();
      assert.equal(res.status, 403, text);
      assert.match(text, /<Code>AccessDenied<\/Code>/);
      assert.match(text, /Request has expired/);
    });

    await t.step("a presigned DELETE removes the object", async () => {
      const del = await getSignedUrl(client, new DeleteObjectCommand({ Bucket, Key }), {
        expiresIn: 300,
      });
      const res = await fetch(del, { method: "DELETE" });
      assert.equal(res.status, 204, await res.text());
      const list = await client.send(new ListObjectsV2Command({ Bucket }));
      assert.equal(list.KeyCount, 0);
    });
  } finally {
    client.destroy();
    await server.stop();
  }
});
