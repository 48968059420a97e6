/**
 * The auth table: every way to authenticate (header auth with a signed payload,
 * UNSIGNED-PAYLOAD, signed aws-chunked, unsigned aws-chunked with a trailer, signed
 * aws-chunked with a signed trailer, a presigned URL, a SigV2 presigned URL) times every write operation
 * (PutObject, UploadPart, CompleteMultipartUpload, CopyObject, DeleteObjects,
 * PutObjectTagging, PutBucketCors, DeleteBucket), each
 *
 * - signed with a wrong secret: 403 SignatureDoesNotMatch and nothing changed;
 * - with a signed header changed after signing: 403 SignatureDoesNotMatch and nothing changed;
 * - with a query parameter added after signing: 403 SignatureDoesNotMatch and nothing changed;
 * - for the signed aws-chunked modes, with the chunk signatures (or the trailer
 *   signature) wrong under a right seed signature: 403 and nothing changed;
 * - signed right: the write happens (so the refusals above are the signature's doing,
 *   not a broken request).
 *
 * Then, on a server with `-domain`: every mode x every write operation signed path style
 * and replayed with the Host of another bucket's virtual host (which routes the same path
 * into that bucket): 403 SignatureDoesNotMatch and neither bucket changed.
 *
 * Each case gets a fresh bucket with what its operation needs, and "nothing changed"
 * means: the bucket list, the bucket's objects (bytes, metadata, tags), CORS, uploads
 * and parts, and the data dir's shard and temp files are all as before.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  assertServing,
  assertStoreClean,
  assertUnchanged,
  AUTH_MODE_NAMES,
  AUTH_MODES,
  authenticate,
  type AuthMode,
  type Breakage,
  crc32Base64,
  createBucket,
  expectError,
  expectOk,
  internalErrors,
  md5Base64,
  objectPath,
  putObject,
  s3,
  type S3Request,
  seededBytes,
  send,
  type ServerProcess,
  snapshot,
  startServer,
  type StoreState,
  utf8,
  WRONG_SECRET,
  xmlText,
} from "./_support.ts";

/** A bucket no case writes to: the target of a tampered copy source. */
const SECRET_BUCKET = "auth-secret";
const SECRET_KEY = "secret.bin";
const VICTIM = "victim.bin";
const UPLOAD_KEY = "upload.bin";

const CORS_BEFORE =
  `<CORSConfiguration><CORSRule><AllowedOrigin>https://before.example</AllowedOrigin>` +
  `<AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>`;
const CORS_AFTER =
  `<CORSConfiguration><CORSRule><AllowedOrigin>https://after.example</AllowedOrigin>` +
  `<AllowedMethod>PUT</AllowedMethod><AllowedHeader>*</AllowedHeader></CORSRule></CORSConfiguration>`;
const TAGS_AFTER =
  `<Tagging><TagSet><Tag><Key>state</Key><Value>after</Value></Tag></TagSet></Tagging>`;

/** What a case's fixture left in its bucket. */
interface Fixture {
  bucket: string;
  uploadId?: string;
  partEtag?: string;
}

/** One write operation of the table. */
interface WriteOp {
  name: string;
  /** Whether the operation reads a body (so chunk signatures are checked). */
  readsBody: boolean;
  /** Fills a fresh bucket with what the operation acts on. */
  setup(server: ServerProcess, bucket: string): Promise<Fixture>;
  /** The request; every header in it is signed. */
  request(f: Fixture): S3Request;
  /** A signed header the tampered case changes, and its new value. */
  tamper: [string, string];
  /** After the right-signed request: asserts the write happened. */
  check(server: ServerProcess, f: Fixture): Promise<void>;
}

const NEW_BYTES = seededBytes(20_000, 7);

async function withVictim(server: ServerProcess, bucket: string): Promise<Fixture> {
  await createBucket(server, bucket);
  await putObject(server, bucket, VICTIM, seededBytes(30_000, 3), {
    "x-amz-tagging": "state=before",
    "x-amz-meta-owner": "table",
    "content-type": "application/x-before",
  });
  return { bucket };
}

async function withUpload(server: ServerProcess, bucket: string): Promise<Fixture> {
  await createBucket(server, bucket);
  const created = await s3(server, {
    method: "POST",
    path: objectPath(bucket, UPLOAD_KEY),
    query: "uploads=",
  });
  expectOk(created, "CreateMultipartUpload");
  const uploadId = xmlText(created.text, "UploadId")!;
  const part = await s3(server, {
    method: "PUT",
    path: objectPath(bucket, UPLOAD_KEY),
    query: `partNumber=1&uploadId=${uploadId}`,
    body: seededBytes(10_000, 5),
  });
  expectOk(part, "UploadPart");
  return { bucket, uploadId, partEtag: part.headers.get("etag")! };
}

async function objectStatus(server: ServerProcess, bucket: string, key: string): Promise<number> {
  return (await s3(server, { method: "HEAD", path: objectPath(bucket, key) })).status;
}

const OPS: WriteOp[] = [
  {
    name: "PutObject",
    readsBody: true,
    setup: withVictim,
    request: (f) => ({
      method: "PUT",
      path: objectPath(f.bucket, VICTIM),
      headers: { "content-type": "application/x-after" },
      body: NEW_BYTES,
    }),
    tamper: ["content-type", "text/html"],
    async check(server, f) {
      const got = await s3(server, { method: "GET", path: objectPath(f.bucket, VICTIM) });
      expectOk(got, "GET after PutObject");
      assert.deepEqual(got.body, NEW_BYTES);
    },
  },
  {
    name: "UploadPart",
    readsBody: true,
    setup: withUpload,
    request: (f) => ({
      method: "PUT",
      path: objectPath(f.bucket, UPLOAD_KEY),
      query: `partNumber=1&uploadId=${f.uploadId}`,
      headers: { "content-md5": md5Base64(NEW_BYTES) },
      body: NEW_BYTES,
    }),
    tamper: ["content-md5", md5Base64("something else")],
    async check(server, f) {
      const parts = await s3(server, {
        method: "GET",
        path: objectPath(f.bucket, UPLOAD_KEY),
        query: `uploadId=${f.uploadId}`,
      });
      expectOk(parts, "ListParts after UploadPart");
      assert.equal(xmlText(parts.text, "Size"), String(NEW_BYTES.length));
    },
  },
  {
    name: "CompleteMultipartUpload",
    readsBody: true,
    setup: withUpload,
    request: (f) => ({
      method: "POST",
      path: objectPath(f.bucket, UPLOAD_KEY),
      query: `uploadId=${f.uploadId}`,
      headers: { "x-amz-meta-note": "signed" },
      body: `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>${f.partEtag}</ETag>` +
        `</Part></CompleteMultipartUpload>`,
    }),
    tamper: ["x-amz-meta-note", "tampered"],
    async check(server, f) {
      assert.equal(await objectStatus(server, f.bucket, UPLOAD_KEY), 200);
    },
  },
  {
    name: "CopyObject",
    readsBody: false,
    setup: withVictim,
    request: (f) => ({
      method: "PUT",
      path: objectPath(f.bucket, "copy.bin"),
      headers: { "x-amz-copy-source": `/${f.bucket}/${VICTIM}` },
    }),
    tamper: ["x-amz-copy-source", `/${SECRET_BUCKET}/${SECRET_KEY}`],
    async check(server, f) {
      assert.equal(await objectStatus(server, f.bucket, "copy.bin"), 200);
    },
  },
  {
    name: "DeleteObjects",
    readsBody: true,
    setup: withVictim,
    request: (f) => {
      const body = `<Delete><Object><Key>${VICTIM}</Key></Object></Delete>`;
      return {
        method: "POST",
        path: `/${f.bucket}`,
        query: "delete=",
        headers: { "content-md5": md5Base64(body) },
        body,
      };
    },
    tamper: ["content-md5", md5Base64("<Delete/>")],
    async check(server, f) {
      assert.equal(await objectStatus(server, f.bucket, VICTIM), 404);
    },
  },
  {
    name: "PutObjectTagging",
    readsBody: true,
    setup: withVictim,
    request: (f) => ({
      method: "PUT",
      path: objectPath(f.bucket, VICTIM),
      query: "tagging=",
      headers: { "content-md5": md5Base64(TAGS_AFTER) },
      body: TAGS_AFTER,
    }),
    tamper: ["content-md5", md5Base64("<Tagging/>")],
    async check(server, f) {
      const got = await s3(server, {
        method: "GET",
        path: objectPath(f.bucket, VICTIM),
        query: "tagging=",
      });
      expectOk(got, "GetObjectTagging");
      assert.match(got.text, /<Value>after<\/Value>/);
    },
  },
  {
    name: "PutBucketCors",
    readsBody: true,
    async setup(server, bucket) {
      await createBucket(server, bucket);
      expectOk(
        await s3(server, { method: "PUT", path: `/${bucket}`, query: "cors=", body: CORS_BEFORE }),
        "PutBucketCors",
      );
      return { bucket };
    },
    request: (f) => ({
      method: "PUT",
      path: `/${f.bucket}`,
      query: "cors=",
      headers: { "content-md5": md5Base64(CORS_AFTER) },
      body: CORS_AFTER,
    }),
    tamper: ["content-md5", md5Base64(CORS_BEFORE)],
    async check(server, f) {
      const got = await s3(server, { method: "GET", path: `/${f.bucket}`, query: "cors=" });
      expectOk(got, "GetBucketCors");
      assert.match(got.text, /after\.example/);
    },
  },
  {
    name: "DeleteBucket",
    readsBody: false,
    async setup(server, bucket) {
      await createBucket(server, bucket);
      return { bucket };
    },
    request: (f) => ({
      method: "DELETE",
      path: `/${f.bucket}`,
      headers: { "x-amz-expected-bucket-owner": "123456789012" },
    }),
    tamper: ["x-amz-expected-bucket-owner", "210987654321"],
    async check(server, f) {
      assert.equal((await s3(server, { method: "HEAD", path: `/${f.bucket}` })).status, 404);
    },
  },
];

/** A way to break a request, and whether it applies to a mode and an operation. */
interface Variant {
  name: string;
  applies(mode: AuthMode, op: WriteOp): boolean;
  breakage(op: WriteOp): Breakage & { tamperTrailer?: boolean; tamperQuery?: boolean };
}

const SIGNED_CHUNKS = new Set<AuthMode>(["streaming-signed", "streaming-signed-trailer"]);

const VARIANTS: Variant[] = [
  {
    name: "a wrong signature",
    applies: () => true,
    breakage: () => ({ secret: WRONG_SECRET }),
  },
  {
    name: "a tampered signed header",
    applies: () => true,
    breakage: (op) => ({ tamper: (h) => h.set(op.tamper[0], op.tamper[1]) }),
  },
  {
    name: "a query parameter added after signing",
    applies: () => true,
    breakage: () => ({ tamperQuery: true }),
  },
  {
    name: "wrong chunk signatures under a right seed",
    applies: (mode, op) => SIGNED_CHUNKS.has(mode) && op.readsBody,
    breakage: () => ({ chunkSecret: WRONG_SECRET }),
  },
  {
    name: "a trailer changed after signing",
    applies: (mode, op) => mode === "streaming-signed-trailer" && op.readsBody,
    breakage: () => ({ tamperTrailer: true }),
  },
];

/** Replaces the signed trailer's CRC32 value with another one (the trailer signature no longer holds). */
function tamperTrailer(body: Uint8Array): Uint8Array {
  const text = new TextDecoder("latin1").decode(body);
  const m = /x-amz-checksum-crc32:([A-Za-z0-9+/=]{8})\r\n/.exec(text);
  assert.ok(m, "the body has a CRC32 trailer");
  const other = crc32Base64(utf8.encode("not the body"));
  assert.notEqual(other, m[1]);
  return Uint8Array.from(
    text.replace(m[0], `x-amz-checksum-crc32:${other}\r\n`),
    (c) => c.charCodeAt(0),
  );
}

Deno.test("auth table: every auth mode x every write operation refuses bad signatures and changes nothing", async (t) => {
  const server = await startServer();
  try {
    await createBucket(server, SECRET_BUCKET);
    await putObject(server, SECRET_BUCKET, SECRET_KEY, "the secret bytes");
    let n = 0;
    for (const [mi, mode] of AUTH_MODES.entries()) {
      for (const [oi, op] of OPS.entries()) {
        for (const [vi, variant] of VARIANTS.entries()) {
          if (!variant.applies(mode, op)) continue;
          const bucket = `auth-${mi}-${oi}-${vi}`;
          await t.step(
            `${op.name} by ${
              AUTH_MODE_NAMES[mode]
            } with ${variant.name}: 403 SignatureDoesNotMatch, nothing changed`,
            async () => {
              const fixture = await op.setup(server, bucket);
              const before: StoreState = await snapshot(server, [bucket, SECRET_BUCKET]);
              const { tamperTrailer: trailer, tamperQuery, ...breakage } = variant.breakage(op);
              const wire = authenticate(server, mode, op.request(fixture), breakage);
              if (trailer) wire.body = tamperTrailer(wire.body as Uint8Array);
              if (tamperQuery) {
                // SigV2 signs only the sub-resources S3 lists: add one of those.
                const extra = mode === "presigned-v2" ? "versionId=Tampered" : "x-id=Tampered";
                wire.query = wire.query ? `${wire.query}&${extra}` : extra;
              }
              const reply = await send(server, wire);
              expectError(reply, 403, "SignatureDoesNotMatch");
              await assertUnchanged(server, before, `${op.name} by ${mode} with ${variant.name}`);
            },
          );
          n++;
        }
        await t.step(
          `${op.name} by ${AUTH_MODE_NAMES[mode]} signed right: the write happens`,
          async () => {
            const fixture = await op.setup(server, `auth-${mi}-${oi}-ok`);
            const reply = await send(server, authenticate(server, mode, op.request(fixture)));
            expectOk(reply, `${op.name} by ${mode}`);
            await op.check(server, fixture);
          },
        );
      }
    }
    assert.ok(n >= AUTH_MODES.length * OPS.length * 3);
    await t.step(
      "the secret object is untouched, the store is clean, the server still serves",
      async () => {
        const got = await s3(server, {
          method: "GET",
          path: objectPath(SECRET_BUCKET, SECRET_KEY),
        });
        expectOk(got, "GET the secret");
        assert.equal(got.text, "the secret bytes");
        await assertStoreClean(server);
        await assertServing(server);
        assert.deepEqual(internalErrors(server), []);
      },
    );
  } finally {
    await server.stop();
  }
});

Deno.test("auth table: every auth mode x every write operation replayed on another bucket's virtual host is refused", async (t) => {
  const domain = "s3.localhost";
  const server = await startServer({ args: ["-domain", domain] });
  const victim = "replay-victim";
  try {
    await createBucket(server, victim);
    await putObject(server, victim, VICTIM, "the victim's bytes");
    for (const [mi, mode] of AUTH_MODES.entries()) {
      for (const [oi, op] of OPS.entries()) {
        const bucket = `replay-${mi}-${oi}`;
        await t.step(
          `${op.name} by ${
            AUTH_MODE_NAMES[mode]
          } for ${bucket}, sent with Host ${victim}.${domain}: 403, nothing changed`,
          async () => {
            const fixture = await op.setup(server, bucket);
            const before: StoreState = await snapshot(server, [bucket, victim]);
            // Path style /<bucket>/... with the victim's virtual Host routes into the victim.
            const wire = authenticate(server, mode, op.request(fixture), {
              tamper: (h) => h.set("host", `${victim}.${domain}:${server.port}`),
            });
            const reply = await send(server, wire);
            expectError(reply, 403, "SignatureDoesNotMatch");
            await assertUnchanged(server, before, `${op.name} by ${mode} replayed on ${victim}`);
          },
        );
      }
    }
    await t.step("the store is clean, the server still serves", async () => {
      await assertStoreClean(server);
      await assertServing(server);
      assert.deepEqual(internalErrors(server), []);
    });
  } finally {
    await server.stop();
  }
});
