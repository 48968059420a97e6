/**
 * End to end with `@aws-sdk/client-s3` at its default settings (CRC32 checksums,
 * aws-chunked bodies with a checksum trailer for streams) against the real server.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { crc32 } from "node:zlib";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetBucketLocationCommand,
  GetObjectCommand,
  type GetObjectCommandInput,
  HeadBucketCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListObjectsCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  ListPartsCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { startServer } from "./_server.ts";
import {
  assertStoreClean,
  concatBytes,
  expectError,
  expectSdkError,
  md5Hex,
  pool,
  randomBytes,
  readAll,
  sdkClient,
  type SentLog,
  signedFetch,
  xmlText,
  xmlTexts,
} from "./_client.ts";

const MIB = 1024 * 1024;

function crc32Base64(bytes: Uint8Array): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(crc32(bytes) >>> 0);
  return b.toString("base64");
}

/** The ETag S3 gives a multipart object: MD5 of the parts' binary MD5s, then `-N`. */
function multipartEtag(parts: Uint8Array[]): string {
  const h = createHash("md5");
  for (const p of parts) h.update(createHash("md5").update(p).digest());
  return `"${h.digest("hex")}-${parts.length}"`;
}

async function getBytes(client: S3Client, input: GetObjectCommandInput): Promise<Uint8Array> {
  const out = await client.send(new GetObjectCommand(input));
  return await readAll(out.Body);
}

async function keysOf(client: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page: ListObjectsV2CommandOutput = await client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    keys.push(...(page.Contents ?? []).map((c) => c.Key!));
    token = page.NextContinuationToken;
  } while (token);
  return keys;
}

Deno.test("@aws-sdk/client-s3 with default settings against hamster serve", async (t) => {
  const server = await startServer();
  const sent: SentLog = [];
  const client = sdkClient(server, sent);
  const bucket = "sdk-bucket";
  try {
    await t.step(
      "CreateBucket, HeadBucket, ListBuckets and GetBucketLocation see a new bucket",
      async () => {
        const created = await client.send(new CreateBucketCommand({ Bucket: bucket }));
        assert.equal(created.$metadata.httpStatusCode, 200);
        const head = await client.send(new HeadBucketCommand({ Bucket: bucket }));
        assert.equal(head.$metadata.httpStatusCode, 200);
        assert.equal(head.BucketRegion, "us-east-1");
        const list = await client.send(new ListBucketsCommand({}));
        assert.deepEqual(list.Buckets?.map((b) => b.Name), [bucket]);
        assert.ok(list.Buckets![0].CreationDate instanceof Date);
        const loc = await client.send(new GetBucketLocationCommand({ Bucket: bucket }));
        assert.equal(String(loc.LocationConstraint ?? ""), "", "us-east-1 is the empty constraint");
      },
    );

    await t.step("CreateBucket twice answers 409 BucketAlreadyOwnedByYou", async () => {
      await expectSdkError(
        client.send(new CreateBucketCommand({ Bucket: bucket })),
        409,
        "BucketAlreadyOwnedByYou",
      );
    });

    await t.step(
      "CreateBucket with a bad name answers 400 InvalidBucketName and creates nothing",
      async () => {
        for (const name of ["ab", "Upper-Case", "a..b", "192.168.1.1", "-leading"]) {
          await expectSdkError(
            client.send(new CreateBucketCommand({ Bucket: name })),
            400,
            "InvalidBucketName",
          );
        }
        const list = await client.send(new ListBucketsCommand({}));
        assert.deepEqual(list.Buckets?.map((b) => b.Name), [bucket]);
      },
    );

    await t.step(
      "PutObject of a string, a Uint8Array and a stream stores the bytes GetObject returns",
      async () => {
        sent.length = 0;
        const text = "hello, hamster \u{1F439}";
        const r1 = await client.send(
          new PutObjectCommand({ Bucket: bucket, Key: "body/string", Body: text }),
        );
        assert.equal(r1.ETag, `"${md5Hex(text)}"`);
        assert.equal(r1.ChecksumCRC32, crc32Base64(new TextEncoder().encode(text)));
        const bytes = randomBytes(300_000);
        const r2 = await client.send(
          new PutObjectCommand({ Bucket: bucket, Key: "body/bytes", Body: bytes }),
        );
        assert.equal(r2.ETag, `"${md5Hex(bytes)}"`);
        const chunks = Array.from({ length: 5 }, (_, i) => randomBytes(200_000 + i * 77_777));
        const streamed = concatBytes(chunks);
        const r3 = await client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: "body/stream",
            Body: Readable.from(chunks),
            ContentLength: streamed.length,
          }),
        );
        assert.equal(r3.ETag, `"${md5Hex(streamed)}"`);
        assert.equal(r3.ChecksumCRC32, crc32Base64(streamed));
        // The stream went as aws-chunked with a CRC32 trailer: the SDK's default path.
        const streamHeaders = sent[sent.length - 1];
        assert.equal(streamHeaders["x-amz-content-sha256"], "STREAMING-UNSIGNED-PAYLOAD-TRAILER");
        assert.equal(streamHeaders["x-amz-trailer"], "x-amz-checksum-crc32");
        assert.match(streamHeaders["content-encoding"], /aws-chunked/);
        assert.equal(
          new TextDecoder().decode(await getBytes(client, { Bucket: bucket, Key: "body/string" })),
          text,
        );
        assert.deepEqual(await getBytes(client, { Bucket: bucket, Key: "body/bytes" }), bytes);
        assert.deepEqual(await getBytes(client, { Bucket: bucket, Key: "body/stream" }), streamed);
        const head = await client.send(
          new HeadObjectCommand({ Bucket: bucket, Key: "body/stream" }),
        );
        assert.equal(head.ContentLength, streamed.length);
        assert.equal(
          head.ContentEncoding,
          undefined,
          "aws-chunked must not be stored as the object's encoding",
        );
      },
    );

    await t.step(
      "GetObject with ChecksumMode ENABLED returns the stored CRC32 and the SDK validates it",
      async () => {
        const out = await client.send(
          new GetObjectCommand({ Bucket: bucket, Key: "body/bytes", ChecksumMode: "ENABLED" }),
        );
        const body = await readAll(out.Body);
        assert.equal(out.ChecksumCRC32, crc32Base64(body));
        const streamOut = await client.send(
          new GetObjectCommand({ Bucket: bucket, Key: "body/stream", ChecksumMode: "ENABLED" }),
        );
        assert.ok(streamOut.ChecksumCRC32, "a trailer checksum is returned on GET");
        assert.equal(streamOut.ChecksumCRC32, crc32Base64(await readAll(streamOut.Body)));
      },
    );

    await t.step("HeadObject returns the stored standard headers and metadata", async () => {
      const expires = new Date("2031-02-03T04:05:06Z");
      await client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: "meta/object",
          Body: "with headers",
          ContentType: "text/x-hamster; charset=utf-8",
          CacheControl: "max-age=3600, public",
          ContentDisposition: 'attachment; filename="h.txt"',
          ContentEncoding: "identity",
          ContentLanguage: "de-CH",
          Expires: expires,
          Metadata: { color: "brown", "multi-word": "a b c" },
        }),
      );
      const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: "meta/object" }));
      assert.equal(head.ContentType, "text/x-hamster; charset=utf-8");
      assert.equal(head.CacheControl, "max-age=3600, public");
      assert.equal(head.ContentDisposition, 'attachment; filename="h.txt"');
      assert.equal(head.ContentEncoding, "identity");
      assert.equal(head.ContentLanguage, "de-CH");
      assert.equal(head.Expires?.getTime(), expires.getTime());
      assert.deepEqual(head.Metadata, { color: "brown", "multi-word": "a b c" });
      assert.equal(head.ContentLength, "with headers".length);
      assert.equal(head.ETag, `"${md5Hex("with headers")}"`);
      assert.equal(head.AcceptRanges, "bytes");
      assert.ok(head.LastModified instanceof Date);
      const get = await client.send(new GetObjectCommand({ Bucket: bucket, Key: "meta/object" }));
      assert.equal(get.ContentType, "text/x-hamster; charset=utf-8");
      assert.deepEqual(get.Metadata, { color: "brown", "multi-word": "a b c" });
      await get.Body?.transformToByteArray();
    });

    const rangeBody = new TextEncoder().encode("0123456789abcdefghijklmnopqrstuvwxyz");
    await t.step(
      "GetObject with Range bytes=0-9, bytes=10- and bytes=-5 answers 206 with the slices",
      async () => {
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: "range", Body: rangeBody }));
        const cases: [string, number, number][] = [["bytes=0-9", 0, 10], ["bytes=10-", 10, 36], [
          "bytes=-5",
          31,
          36,
        ]];
        for (const [range, start, end] of cases) {
          const out = await client.send(
            new GetObjectCommand({ Bucket: bucket, Key: "range", Range: range }),
          );
          assert.equal(out.$metadata.httpStatusCode, 206, range);
          assert.equal(out.ContentRange, `bytes ${start}-${end - 1}/36`, range);
          assert.equal(out.ContentLength, end - start, range);
          assert.deepEqual(await readAll(out.Body), rangeBody.slice(start, end), range);
        }
      },
    );

    await t.step("GetObject with an unsatisfiable Range answers 416 InvalidRange", async () => {
      await expectSdkError(
        client.send(new GetObjectCommand({ Bucket: bucket, Key: "range", Range: "bytes=36-40" })),
        416,
        "InvalidRange",
      );
    });

    await t.step(
      "GetObject with If-Match/If-None-Match/If-Modified-Since/If-Unmodified-Since answers 200, 304 or 412",
      async () => {
        const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: "range" }));
        const etag = head.ETag!;
        const past = new Date(head.LastModified!.getTime() - 3600_000);
        const future = new Date(Date.now() + 3600_000);
        const ok = async (input: Partial<GetObjectCommandInput>) => {
          const out = await client.send(
            new GetObjectCommand({ Bucket: bucket, Key: "range", ...input }),
          );
          assert.equal(out.$metadata.httpStatusCode, 200, JSON.stringify(input));
          assert.deepEqual(await readAll(out.Body), rangeBody);
        };
        const fails = (
          input: Partial<GetObjectCommandInput>,
          status: number,
          code: string | null,
        ) =>
          expectSdkError(
            client.send(new GetObjectCommand({ Bucket: bucket, Key: "range", ...input })),
            status,
            code,
          );
        await ok({ IfMatch: etag });
        await fails({ IfMatch: '"00000000000000000000000000000000"' }, 412, "PreconditionFailed");
        await ok({ IfNoneMatch: '"00000000000000000000000000000000"' });
        // A 304 has no body, so the SDK knows only the status.
        await fails({ IfNoneMatch: etag }, 304, null);
        await ok({ IfModifiedSince: past });
        await fails({ IfModifiedSince: future }, 304, null);
        await ok({ IfUnmodifiedSince: future });
        await fails({ IfUnmodifiedSince: past }, 412, "PreconditionFailed");
        // RFC 9110 order: If-Match that holds wins over a failing If-Unmodified-Since.
        await ok({ IfMatch: etag, IfUnmodifiedSince: past });
        // HeadObject follows the same rules.
        await expectSdkError(
          client.send(new HeadObjectCommand({ Bucket: bucket, Key: "range", IfNoneMatch: etag })),
          304,
          null,
        );
      },
    );

    await t.step(
      "PutObject with If-None-Match * on an existing key or a wrong If-Match answers 412 and keeps the object",
      async () => {
        await expectSdkError(
          client.send(
            new PutObjectCommand({ Bucket: bucket, Key: "range", Body: "new", IfNoneMatch: "*" }),
          ),
          412,
          "PreconditionFailed",
        );
        await expectSdkError(
          client.send(
            new PutObjectCommand({
              Bucket: bucket,
              Key: "range",
              Body: "new",
              IfMatch: '"00000000000000000000000000000000"',
            }),
          ),
          412,
          "PreconditionFailed",
        );
        assert.deepEqual(await getBytes(client, { Bucket: bucket, Key: "range" }), rangeBody);
        const created = await client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: "cond/new",
            Body: "fresh",
            IfNoneMatch: "*",
          }),
        );
        assert.equal(created.ETag, `"${md5Hex("fresh")}"`);
        const replaced = await client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: "cond/new",
            Body: "fresher",
            IfMatch: created.ETag,
          }),
        );
        assert.equal(replaced.ETag, `"${md5Hex("fresher")}"`);
        await assertStoreClean(server);
      },
    );

    await t.step(
      "GetObject with ResponseContentType and other response-* overrides sets those headers",
      async () => {
        const out = await client.send(
          new GetObjectCommand({
            Bucket: bucket,
            Key: "meta/object",
            ResponseContentType: "application/x-override",
            ResponseContentDisposition: "inline",
            ResponseCacheControl: "no-cache",
          }),
        );
        assert.equal(out.ContentType, "application/x-override");
        assert.equal(out.ContentDisposition, "inline");
        assert.equal(out.CacheControl, "no-cache");
        assert.equal(new TextDecoder().decode(await readAll(out.Body)), "with headers");
      },
    );

    const pageKeys = Array.from({ length: 2500 }, (_, i) => `page/k${String(i).padStart(4, "0")}`);
    await t.step(
      "ListObjectsV2 pages 2500 keys with MaxKeys and ContinuationToken in key order",
      async () => {
        await pool(pageKeys, 24, async (key) => {
          await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: key }));
        });
        const first = await client.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: "page/" }),
        );
        assert.equal(first.KeyCount, 1000);
        assert.equal(first.MaxKeys, 1000);
        assert.equal(first.IsTruncated, true);
        const all = await keysOf(client, bucket, "page/");
        assert.deepEqual(all, pageKeys);
        // Small pages: 2500 / 7 rounds up to 358 pages.
        let token: string | undefined;
        const small: string[] = [];
        let pages = 0;
        do {
          const page: ListObjectsV2CommandOutput = await client.send(
            new ListObjectsV2Command({
              Bucket: bucket,
              Prefix: "page/k1",
              MaxKeys: 7,
              ContinuationToken: token,
            }),
          );
          assert.ok((page.KeyCount ?? 0) <= 7);
          small.push(...(page.Contents ?? []).map((c) => c.Key!));
          token = page.NextContinuationToken;
          assert.equal(page.IsTruncated, token !== undefined);
          pages++;
        } while (token);
        assert.deepEqual(small, pageKeys.slice(1000, 2000));
        assert.equal(pages, Math.ceil(1000 / 7));
        const over = await client.send(new ListObjectsV2Command({ Bucket: bucket, MaxKeys: 5000 }));
        assert.equal(over.KeyCount, 1000, "max-keys is capped at 1000");
      },
    );

    await t.step(
      "ListObjectsV2 with Delimiter returns CommonPrefixes, and StartAfter skips keys",
      async () => {
        for (const key of ["tree/a/1", "tree/a/2", "tree/b/x/1", "tree/c", "tree/d"]) {
          await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: key }));
        }
        const out = await client.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: "tree/", Delimiter: "/" }),
        );
        assert.deepEqual(out.CommonPrefixes?.map((p) => p.Prefix), ["tree/a/", "tree/b/"]);
        assert.deepEqual(out.Contents?.map((c) => c.Key), ["tree/c", "tree/d"]);
        assert.equal(out.KeyCount, 4);
        const paged = await client.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: "tree/", Delimiter: "/", MaxKeys: 1 }),
        );
        assert.deepEqual(paged.CommonPrefixes?.map((p) => p.Prefix), ["tree/a/"]);
        assert.equal(paged.IsTruncated, true);
        const next = await client.send(
          new ListObjectsV2Command({
            Bucket: bucket,
            Prefix: "tree/",
            Delimiter: "/",
            MaxKeys: 2,
            ContinuationToken: paged.NextContinuationToken,
          }),
        );
        assert.deepEqual(next.CommonPrefixes?.map((p) => p.Prefix), ["tree/b/"]);
        assert.deepEqual(next.Contents?.map((c) => c.Key), ["tree/c"]);
        const after = await client.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: "page/", StartAfter: "page/k2490" }),
        );
        assert.deepEqual(after.Contents?.map((c) => c.Key), pageKeys.slice(2491));
        assert.equal(after.StartAfter, "page/k2490");
      },
    );

    const oddKeys = [
      "odd/with space",
      "odd/\u00fcn\u00efc\u00f8d\u00e9/\u{1F439}",
      "odd/a+b",
      "odd/100%",
      "odd/q?x=1&y",
      "odd/tilde~*'()",
    ];
    await t.step(
      "ListObjectsV2 with EncodingType url encodes odd keys, and GetObject finds each",
      async () => {
        for (const key of oddKeys) {
          await client.send(
            new PutObjectCommand({ Bucket: bucket, Key: key, Body: `body of ${key}` }),
          );
          const text = new TextDecoder().decode(
            await getBytes(client, { Bucket: bucket, Key: key }),
          );
          assert.equal(text, `body of ${key}`);
        }
        const plain = await client.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: "odd/" }),
        );
        const byUtf8 = [...oddKeys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
        assert.deepEqual(plain.Contents?.map((c) => c.Key), byUtf8);
        const res = await signedFetch(server, {
          method: "GET",
          path: `/${bucket}`,
          query: "encoding-type=url&list-type=2&prefix=odd%2F",
        });
        const xml = await res.text();
        assert.equal(res.status, 200, xml);
        assert.equal(xmlText(xml, "EncodingType"), "url");
        const encoded = xmlTexts(xml, "Key");
        for (const k of encoded) {
          assert.doesNotMatch(k, / |\+|%(?![0-9A-F]{2})/, `key not URL-encoded: ${k}`);
        }
        assert.deepEqual(encoded.map(decodeURIComponent), byUtf8);
        assert.equal(xmlText(xml, "Prefix"), "odd/");
      },
    );

    await t.step(
      "ListObjects (V1) pages with Marker, and with a Delimiter gives NextMarker",
      async () => {
        const keys: string[] = [];
        let marker: string | undefined;
        let truncated = true;
        while (truncated) {
          const page = await client.send(
            new ListObjectsCommand({
              Bucket: bucket,
              Prefix: "page/",
              Marker: marker,
              MaxKeys: 900,
            }),
          );
          const got = (page.Contents ?? []).map((c) => c.Key!);
          keys.push(...got);
          truncated = page.IsTruncated === true;
          assert.equal(page.NextMarker, undefined, "NextMarker is sent only with a delimiter");
          marker = got[got.length - 1];
        }
        assert.deepEqual(keys, pageKeys);
        const withDelimiter = await client.send(
          new ListObjectsCommand({ Bucket: bucket, Prefix: "tree/", Delimiter: "/", MaxKeys: 3 }),
        );
        assert.equal(withDelimiter.IsTruncated, true);
        assert.equal(withDelimiter.NextMarker, "tree/c");
        const rest = await client.send(
          new ListObjectsCommand({
            Bucket: bucket,
            Prefix: "tree/",
            Delimiter: "/",
            Marker: withDelimiter.NextMarker,
          }),
        );
        assert.deepEqual(
          rest.Contents?.map((c) => c.Key),
          ["tree/d"],
        );
        assert.equal(rest.IsTruncated, false);
        assert.equal(rest.Marker, "tree/c");
      },
    );

    await t.step("DeleteObject removes a key and answers 204 for a missing key too", async () => {
      const out = await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: "tree/d" }));
      assert.equal(out.$metadata.httpStatusCode, 204);
      await expectSdkError(
        client.send(new HeadObjectCommand({ Bucket: bucket, Key: "tree/d" })),
        404,
        "NotFound",
      );
      await expectSdkError(
        client.send(new GetObjectCommand({ Bucket: bucket, Key: "tree/d" })),
        404,
        "NoSuchKey",
      );
      const again = await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: "tree/d" }));
      assert.equal(again.$metadata.httpStatusCode, 204);
    });

    await t.step(
      "DeleteObjects reports Deleted keys unless Quiet, and removes them all",
      async () => {
        const loud = await client.send(
          new DeleteObjectsCommand({
            Bucket: bucket,
            Delete: { Objects: pageKeys.slice(0, 1000).map((Key) => ({ Key })) },
          }),
        );
        assert.equal(loud.Deleted?.length, 1000);
        assert.deepEqual(loud.Deleted?.map((d) => d.Key).sort(), pageKeys.slice(0, 1000));
        assert.equal(loud.Errors, undefined);
        for (const slice of [pageKeys.slice(1000, 2000), pageKeys.slice(2000)]) {
          const quiet = await client.send(
            new DeleteObjectsCommand({
              Bucket: bucket,
              Delete: { Objects: slice.map((Key) => ({ Key })), Quiet: true },
            }),
          );
          assert.equal(quiet.Deleted, undefined);
          assert.equal(quiet.Errors, undefined);
        }
        assert.deepEqual(await keysOf(client, bucket, "page/"), []);
        await assertStoreClean(server);
      },
    );

    await t.step(
      "DeleteObjects decodes XML entities in keys: it deletes a key holding & < > ' \" and nothing else",
      async () => {
        const special = `xml/a&b<c>'"`;
        const decoy = "xml/a&amp;b&lt;c&gt;&apos;&quot;";
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: special, Body: "special" }));
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: decoy, Body: "decoy" }));
        const out = await client.send(
          new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: special }] } }),
        );
        assert.deepEqual(out.Deleted?.map((d) => d.Key), [special]);
        assert.deepEqual(
          await keysOf(client, bucket, "xml/"),
          [decoy],
          "the special key is gone and the decoy is kept",
        );
        // Clean up one key at a time, whatever DeleteObjects did.
        for (const key of [special, decoy]) {
          await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
        }
      },
    );

    await t.step(
      "CopyObject with COPY keeps metadata, with REPLACE replaces it, onto itself needs REPLACE",
      async () => {
        const copied = await client.send(
          new CopyObjectCommand({
            Bucket: bucket,
            Key: "copy/kept",
            CopySource: `${bucket}/meta/object`,
          }),
        );
        assert.equal(copied.CopyObjectResult?.ETag, `"${md5Hex("with headers")}"`);
        const kept = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: "copy/kept" }));
        assert.equal(kept.ContentType, "text/x-hamster; charset=utf-8");
        assert.deepEqual(kept.Metadata, { color: "brown", "multi-word": "a b c" });
        assert.equal(kept.CacheControl, "max-age=3600, public");
        await client.send(
          new CopyObjectCommand({
            Bucket: bucket,
            Key: "copy/replaced",
            CopySource: `${bucket}/meta/object`,
            MetadataDirective: "REPLACE",
            ContentType: "text/plain",
            Metadata: { fresh: "yes" },
          }),
        );
        const replaced = await client.send(
          new HeadObjectCommand({ Bucket: bucket, Key: "copy/replaced" }),
        );
        assert.equal(replaced.ContentType, "text/plain");
        assert.deepEqual(replaced.Metadata, { fresh: "yes" });
        assert.equal(replaced.CacheControl, undefined);
        assert.equal(
          new TextDecoder().decode(
            await getBytes(client, { Bucket: bucket, Key: "copy/replaced" }),
          ),
          "with headers",
        );
        // Odd keys need the copy source URL-encoded.
        await client.send(
          new CopyObjectCommand({
            Bucket: bucket,
            Key: "copy/odd",
            CopySource: `${bucket}/${encodeURIComponent("odd/with space")}`,
          }),
        );
        assert.equal(
          new TextDecoder().decode(await getBytes(client, { Bucket: bucket, Key: "copy/odd" })),
          "body of odd/with space",
        );
        await expectSdkError(
          client.send(
            new CopyObjectCommand({
              Bucket: bucket,
              Key: "copy/kept",
              CopySource: `${bucket}/copy/kept`,
            }),
          ),
          400,
          "InvalidRequest",
        );
        await client.send(
          new CopyObjectCommand({
            Bucket: bucket,
            Key: "copy/kept",
            CopySource: `${bucket}/copy/kept`,
            MetadataDirective: "REPLACE",
            Metadata: { again: "1" },
          }),
        );
        const self = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: "copy/kept" }));
        assert.deepEqual(self.Metadata, { again: "1" });
        await expectSdkError(
          client.send(
            new CopyObjectCommand({
              Bucket: bucket,
              Key: "copy/x",
              CopySource: `${bucket}/no/such/key`,
            }),
          ),
          404,
          "NoSuchKey",
        );
        await assertStoreClean(server);
      },
    );

    const partBodies = [randomBytes(5 * MIB), randomBytes(5 * MIB), randomBytes(1024)];
    await t.step(
      "CreateMultipartUpload, UploadPart x3, ListParts and CompleteMultipartUpload give the S3 multipart ETag",
      async () => {
        const key = "multi/object";
        const created = await client.send(
          new CreateMultipartUploadCommand({
            Bucket: bucket,
            Key: key,
            ContentType: "application/x-multi",
            Metadata: { m: "1" },
          }),
        );
        const uploadId = created.UploadId!;
        assert.ok(uploadId);
        const etags: string[] = [];
        for (const [i, body] of partBodies.entries()) {
          const out = await client.send(
            new UploadPartCommand({
              Bucket: bucket,
              Key: key,
              UploadId: uploadId,
              PartNumber: i + 1,
              Body: body,
            }),
          );
          assert.equal(out.ETag, `"${md5Hex(body)}"`);
          etags.push(out.ETag!);
        }
        const listed = await client.send(
          new ListPartsCommand({ Bucket: bucket, Key: key, UploadId: uploadId }),
        );
        assert.deepEqual(listed.Parts?.map((p) => p.PartNumber), [1, 2, 3]);
        assert.deepEqual(listed.Parts?.map((p) => p.ETag), etags);
        assert.deepEqual(listed.Parts?.map((p) => p.Size), partBodies.map((b) => b.length));
        assert.equal(listed.IsTruncated, false);
        const done = await client.send(
          new CompleteMultipartUploadCommand({
            Bucket: bucket,
            Key: key,
            UploadId: uploadId,
            MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
          }),
        ).catch(async (err) => {
          // Leave no upload behind for the later DeleteBucket step.
          await client.send(
            new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }),
          );
          throw err;
        });
        assert.equal(done.ETag, multipartEtag(partBodies));
        assert.equal(done.Key, key);
        const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        assert.equal(head.ETag, multipartEtag(partBodies));
        assert.equal(head.ContentLength, 10 * MIB + 1024);
        assert.equal(head.ContentType, "application/x-multi");
        assert.deepEqual(head.Metadata, { m: "1" });
        assert.deepEqual(
          await getBytes(client, { Bucket: bucket, Key: key }),
          concatBytes(partBodies),
        );
        // A range across the part boundary.
        const across = await getBytes(client, {
          Bucket: bucket,
          Key: key,
          Range: `bytes=${5 * MIB - 3}-${5 * MIB + 2}`,
        });
        assert.deepEqual(across, concatBytes(partBodies).slice(5 * MIB - 3, 5 * MIB + 3));
        await expectSdkError(
          client.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId: uploadId })),
          404,
          "NoSuchUpload",
        );
        await assertStoreClean(server);
      },
    );

    await t.step(
      "AbortMultipartUpload removes the upload: ListParts and UploadPart then answer NoSuchUpload",
      async () => {
        const key = "multi/aborted";
        const { UploadId } = await client.send(
          new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }),
        );
        await client.send(
          new UploadPartCommand({
            Bucket: bucket,
            Key: key,
            UploadId,
            PartNumber: 1,
            Body: partBodies[2],
          }),
        );
        const aborted = await client.send(
          new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId }),
        );
        assert.equal(aborted.$metadata.httpStatusCode, 204);
        await expectSdkError(
          client.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId })),
          404,
          "NoSuchUpload",
        );
        await expectSdkError(
          client.send(
            new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: 2, Body: "x" }),
          ),
          404,
          "NoSuchUpload",
        );
        await expectSdkError(
          client.send(new HeadObjectCommand({ Bucket: bucket, Key: key })),
          404,
          "NotFound",
        );
        await assertStoreClean(server);
      },
    );

    await t.step(
      "CompleteMultipartUpload answers EntityTooSmall, InvalidPart and InvalidPartOrder and stores nothing",
      async () => {
        const key = "multi/bad";
        const { UploadId } = await client.send(
          new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }),
        );
        const small1 = await client.send(
          new UploadPartCommand({
            Bucket: bucket,
            Key: key,
            UploadId,
            PartNumber: 1,
            Body: partBodies[2],
          }),
        );
        const small2 = await client.send(
          new UploadPartCommand({
            Bucket: bucket,
            Key: key,
            UploadId,
            PartNumber: 2,
            Body: partBodies[2],
          }),
        );
        // ETags go unquoted here (S3 accepts both) so that these checks do not depend on
        // the server decoding &quot; in the XML, which the SDK-default step above covers.
        const complete = (parts: { ETag: string; PartNumber: number }[]) =>
          client.send(
            new CompleteMultipartUploadCommand({
              Bucket: bucket,
              Key: key,
              UploadId,
              MultipartUpload: {
                Parts: parts.map((p) => ({ ...p, ETag: p.ETag.replaceAll('"', "") })),
              },
            }),
          );
        await expectSdkError(
          complete([{ ETag: small1.ETag!, PartNumber: 1 }, { ETag: small2.ETag!, PartNumber: 2 }]),
          400,
          "EntityTooSmall",
        );
        await expectSdkError(
          complete([{ ETag: '"0123456789abcdef0123456789abcdef"', PartNumber: 1 }]),
          400,
          "InvalidPart",
        );
        await expectSdkError(complete([{ ETag: small1.ETag!, PartNumber: 3 }]), 400, "InvalidPart");
        await expectSdkError(
          complete([{ ETag: small2.ETag!, PartNumber: 2 }, { ETag: small1.ETag!, PartNumber: 1 }]),
          400,
          "InvalidPartOrder",
        );
        await expectSdkError(
          client.send(new HeadObjectCommand({ Bucket: bucket, Key: key })),
          404,
          "NotFound",
        );
        // The failed completes leave the upload in place, as in S3.
        const parts = await client.send(
          new ListPartsCommand({ Bucket: bucket, Key: key, UploadId }),
        );
        assert.deepEqual(parts.Parts?.map((p) => p.PartNumber), [1, 2]);
        // A single small part is a valid (last) part.
        const one = await complete([{ ETag: small1.ETag!, PartNumber: 1 }]);
        assert.equal(one.ETag, multipartEtag([partBodies[2]]));
        await assertStoreClean(server);
      },
    );

    await t.step("UploadPart with part number 0 or 10001 answers 400 InvalidArgument", async () => {
      const key = "multi/numbers";
      const { UploadId } = await client.send(
        new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }),
      );
      for (const n of [0, 10001]) {
        const res = await signedFetch(server, {
          method: "PUT",
          path: `/${bucket}/multi/numbers`,
          query: `partNumber=${n}&uploadId=${UploadId}`,
          body: "part",
        });
        const err = await expectError(res, 400, "InvalidArgument");
        assert.equal(xmlText(err.raw, "ArgumentName"), "partNumber");
      }
      const ok = await client.send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: key,
          UploadId,
          PartNumber: 10000,
          Body: "last",
        }),
      );
      assert.equal(ok.ETag, `"${md5Hex("last")}"`);
      const parts = await client.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId }));
      assert.deepEqual(parts.Parts?.map((p) => p.PartNumber), [10000]);
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId }));
      await assertStoreClean(server);
    });

    await t.step(
      "NoSuchBucket and NoSuchKey answer 404 with Code, Message, Resource and RequestId",
      async () => {
        const noBucket = await expectError(
          await signedFetch(server, { method: "GET", path: "/no-such-bucket/some/key" }),
          404,
          "NoSuchBucket",
        );
        assert.equal(noBucket.Resource, "/no-such-bucket/some/key");
        assert.ok(noBucket.Message.length > 0);
        assert.match(noBucket.RequestId, /^[0-9A-F]{16}$/);
        const noKey = await expectError(
          await signedFetch(server, { method: "GET", path: `/${bucket}/no/such%20key` }),
          404,
          "NoSuchKey",
        );
        assert.equal(noKey.Resource, `/${bucket}/no/such key`);
        assert.equal(xmlText(noKey.raw, "Key"), "no/such key");
        await expectSdkError(
          client.send(new GetObjectCommand({ Bucket: "no-such-bucket", Key: "k" })),
          404,
          "NoSuchBucket",
        );
        await expectSdkError(
          client.send(new ListObjectsV2Command({ Bucket: "no-such-bucket" })),
          404,
          "NoSuchBucket",
        );
        await expectSdkError(
          client.send(new PutObjectCommand({ Bucket: "no-such-bucket", Key: "k", Body: "x" })),
          404,
          "NoSuchBucket",
        );
        await assertStoreClean(server);
      },
    );

    await t.step(
      "DeleteBucket answers 409 BucketNotEmpty with objects or an in-progress upload, then 204 when empty",
      async () => {
        await expectSdkError(
          client.send(new DeleteBucketCommand({ Bucket: bucket })),
          409,
          "BucketNotEmpty",
        );
        const other = "sdk-uploads-only";
        await client.send(new CreateBucketCommand({ Bucket: other }));
        const { UploadId } = await client.send(
          new CreateMultipartUploadCommand({ Bucket: other, Key: "pending" }),
        );
        await expectSdkError(
          client.send(new DeleteBucketCommand({ Bucket: other })),
          409,
          "BucketNotEmpty",
        );
        await client.send(
          new AbortMultipartUploadCommand({ Bucket: other, Key: "pending", UploadId }),
        );
        const deleted = await client.send(new DeleteBucketCommand({ Bucket: other }));
        assert.equal(deleted.$metadata.httpStatusCode, 204);
        await expectSdkError(
          client.send(new HeadBucketCommand({ Bucket: other })),
          404,
          "NotFound",
        );
        // Empty the main bucket, then it deletes too.
        // One DeleteObject per key: odd keys must not depend on DeleteObjects' XML decoding.
        const keys = await keysOf(client, bucket, "");
        await pool(keys, 8, async (Key) => {
          await client.send(new DeleteObjectCommand({ Bucket: bucket, Key }));
        });
        await client.send(new DeleteBucketCommand({ Bucket: bucket }));
        await expectSdkError(
          client.send(new DeleteBucketCommand({ Bucket: bucket })),
          404,
          "NoSuchBucket",
        );
        const list = await client.send(new ListBucketsCommand({}));
        assert.deepEqual(list.Buckets ?? [], []);
        await assertStoreClean(server);
      },
    );
  } finally {
    client.destroy();
    await server.stop();
  }
});
