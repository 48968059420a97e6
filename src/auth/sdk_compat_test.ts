/**
 * Requests signed by the real AWS SDK for JavaScript v3 verify, and the bodies it builds
 * decode: captured by a request handler that never sends them.
 */
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import {
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { crc32 } from "node:zlib";
import { decodeBody } from "./decode.ts";
import { splitRequestUrl, verifyRequest } from "./verify.ts";
import type { AuthRequest } from "./types.ts";
import { readAll, streamOf } from "./_test_util.ts";

const CREDS = { accessKeyId: "HAMSTERSDKKEY", secretAccessKey: "sdk/secret+key=" };
const lookup = (id: string) => id === CREDS.accessKeyId ? CREDS.secretAccessKey : undefined;
const REGION = "us-east-1";
const STOP = "captured";

interface Captured {
  req: AuthRequest;
  body: Uint8Array;
}

function escapeUri(s: string): string {
  return encodeURIComponent(s).replace(
    /[!'()*]/g,
    (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase(),
  );
}

async function bodyBytes(body: unknown): Promise<Uint8Array> {
  if (body === undefined || body === null) return new Uint8Array(0);
  if (typeof body === "string") return new TextEncoder().encode(body);
  if (body instanceof Uint8Array) return body;
  const parts: Uint8Array[] = [];
  for await (const part of body as AsyncIterable<Uint8Array | string>) {
    parts.push(typeof part === "string" ? new TextEncoder().encode(part) : part);
  }
  return await readAll(streamOf(concat(parts)));
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Sends `command` through an SDK client whose handler captures the signed request. */
async function capture(
  endpoint: string,
  // deno-lint-ignore no-explicit-any
  command: any,
): Promise<Captured> {
  let captured: Captured | null = null;
  const client = new S3Client({
    region: REGION,
    endpoint,
    forcePathStyle: true,
    credentials: CREDS,
    maxAttempts: 1,
    logger: { debug() {}, info() {}, warn() {}, error() {}, trace() {} },
    requestHandler: {
      // deno-lint-ignore no-explicit-any
      async handle(request: any) {
        const rawQuery = Object.entries(request.query ?? {})
          .map(([k, v]) =>
            v === null || v === undefined ? escapeUri(k) : `${escapeUri(k)}=${escapeUri(String(v))}`
          )
          .join("&");
        captured = {
          req: {
            method: request.method,
            rawPath: request.path,
            rawQuery,
            headers: new Headers(request.headers),
          },
          body: await bodyBytes(request.body),
        };
        throw new Error(STOP);
      },
    },
  });
  await assert.rejects(client.send(command), (err: Error) => err.message === STOP);
  client.destroy();
  return captured!;
}

function crc32Base64(data: Uint8Array): string {
  const value = crc32(data);
  return btoa(
    String.fromCharCode(value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255),
  );
}

Deno.test("verifyRequest() accepts an AWS SDK PutObject with a signed payload, odd key and metadata", async () => {
  const key = "dir/a b+c/é~!*'()&=.txt";
  const { req, body } = await capture(
    "http://127.0.0.1:9000",
    new PutObjectCommand({
      Bucket: "bucket",
      Key: key,
      Body: "hello world",
      Metadata: { note: "  spaced   out  " },
      ContentType: "text/plain",
    }),
  );
  const result = verifyRequest(req, lookup, Date.now(), REGION);
  assert.equal(result.payload.kind, "signed");
  const decoded = decodeBody(streamOf(body), result.payload, req.headers);
  assert.equal(new TextDecoder().decode(await readAll(decoded.stream)), "hello world");
});

Deno.test("verifyRequest() accepts an AWS SDK ListObjectsV2 with an encoded query", async () => {
  const { req } = await capture(
    "http://127.0.0.1:9000",
    new ListObjectsV2Command({
      Bucket: "bucket",
      Prefix: "a b/ü+&=",
      Delimiter: "/",
      StartAfter: "~x*",
      MaxKeys: 5,
    }),
  );
  assert.ok(req.rawQuery.includes("list-type=2"));
  verifyRequest(req, lookup, Date.now(), REGION);
});

Deno.test("decodeBody() decodes an AWS SDK streaming upload with an unsigned CRC32 trailer", async () => {
  const data = new Uint8Array(200_000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
  const { req, body } = await capture(
    "https://127.0.0.1:9000",
    new PutObjectCommand({
      Bucket: "bucket",
      Key: "stream",
      Body: Readable.from([data.subarray(0, 70_000), data.subarray(70_000)]),
      ContentLength: data.length,
    }),
  );
  assert.equal(req.headers.get("x-amz-content-sha256"), "STREAMING-UNSIGNED-PAYLOAD-TRAILER");
  const result = verifyRequest(req, lookup, Date.now(), REGION);
  assert.equal(result.payload.kind, "streaming-unsigned-trailer");
  const decoded = decodeBody(streamOf(body, [3, 5000, 65536]), result.payload, req.headers);
  assert.deepEqual(await readAll(decoded.stream), data);
  assert.equal((await decoded.trailers).get("x-amz-checksum-crc32"), crc32Base64(data));
});

Deno.test("verifyRequest() accepts AWS SDK presigned GET and PUT URLs", async () => {
  const client = new S3Client({
    region: REGION,
    endpoint: "http://127.0.0.1:9000",
    forcePathStyle: true,
    credentials: CREDS,
  });
  for (
    const command of [
      new GetObjectCommand({ Bucket: "bucket", Key: "k y/é+~" }),
      new PutObjectCommand({ Bucket: "bucket", Key: "k y/é+~", ContentType: "image/png" }),
    ]
  ) {
    const url = await getSignedUrl(client, command, { expiresIn: 600 });
    const { rawPath, rawQuery } = splitRequestUrl(url);
    const req: AuthRequest = {
      method: command instanceof GetObjectCommand ? "GET" : "PUT",
      rawPath,
      rawQuery,
      headers: new Headers({ host: "127.0.0.1:9000" }),
    };
    const result = verifyRequest(req, lookup, Date.now(), REGION);
    assert.equal(result.presigned, true);
    assert.deepEqual(result.payload, { kind: "unsigned" });
  }
  client.destroy();
});
