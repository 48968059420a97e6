/**
 * Clients for end-to-end tests: raw requests signed with the test signer in
 * src/auth/sign.ts, an `@aws-sdk/client-s3` client with default settings that
 * records the headers it sends, and small byte and XML helpers.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createHash, randomBytes as nodeRandomBytes } from "node:crypto";
import { S3Client } from "@aws-sdk/client-s3";
import { formatAmzDate, sha256Hex, signRequest } from "../../src/auth/sign.ts";
import { type Credentials, dataFiles, type ServerProcess } from "./_server.ts";
import { SMALL_OBJECT_MAX_BYTES } from "../../src/data/local.ts";

export const REGION = "us-east-1";
/** SHA-256 of the empty string. */
export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** `n` random bytes. */
export function randomBytes(n: number): Uint8Array {
  return new Uint8Array(nodeRandomBytes(n));
}

/** Hex MD5 of `bytes`. */
export function md5Hex(bytes: Uint8Array | string): string {
  return createHash("md5").update(bytes).digest("hex");
}

/** Base64 MD5 of `bytes`, as in Content-MD5. */
export function md5Base64(bytes: Uint8Array | string): string {
  return createHash("md5").update(bytes).digest("base64");
}

/** Concatenates byte arrays. */
export function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The current time as `x-amz-date`, shifted by `offsetMs`. */
export function amzDateNow(offsetMs = 0): string {
  return formatAmzDate(Date.now() + offsetMs);
}

/** A raw request to sign and send. */
export interface RawRequest {
  method: string;
  /** The path as sent, percent-encoded, e.g. `/bucket/key`. */
  path: string;
  /** The query as sent, without `?`. */
  query?: string;
  headers?: Record<string, string>;
  body?: Uint8Array | string;
  /** The `x-amz-content-sha256` to sign; default the body's SHA-256. */
  payloadHash?: string;
  amzDate?: string;
  credentials?: Credentials;
  /** Overrides applied to the headers after signing (to tamper with them). */
  after?: (headers: Headers) => void;
}

/** Signs `req` with the `Authorization` header; returns the headers and seed signature. */
export function signRaw(
  server: ServerProcess,
  req: RawRequest,
): { headers: Headers; signature: string } {
  const body = typeof req.body === "string" ? new TextEncoder().encode(req.body) : req.body;
  const payloadHash = req.payloadHash ?? (body ? sha256Hex(body) : EMPTY_SHA256);
  const signed = signRequest({
    method: req.method,
    rawPath: req.path,
    rawQuery: req.query ?? "",
    headers: { host: server.host, ...req.headers },
    credentials: req.credentials ?? server.credentials,
    region: REGION,
    amzDate: req.amzDate ?? amzDateNow(),
  }, payloadHash);
  req.after?.(signed.headers);
  return signed;
}

/** The URL of a raw request. */
export function rawUrl(server: ServerProcess, path: string, query?: string): string {
  return `${server.url}${path}${query ? `?${query}` : ""}`;
}

/** Signs and sends `req` with fetch. */
export async function signedFetch(server: ServerProcess, req: RawRequest): Promise<Response> {
  const { headers } = signRaw(server, req);
  headers.delete("host");
  const body = typeof req.body === "string" ? new TextEncoder().encode(req.body) : req.body;
  return await fetch(rawUrl(server, req.path, req.query), {
    method: req.method,
    headers,
    body: body as BodyInit | undefined,
  });
}

/** A parsed S3 error document. */
export interface ErrorXml {
  Code: string;
  Message: string;
  Resource: string;
  RequestId: string;
  raw: string;
}

/** The text of the first `<name>` element, or undefined. */
export function xmlText(xml: string, name: string): string | undefined {
  const m = new RegExp(`<${name}>([\\s\\S]*?)</${name}>`).exec(xml);
  return m ? m[1] : undefined;
}

/** The texts of every `<name>` element. */
export function xmlTexts(xml: string, name: string): string[] {
  return [...xml.matchAll(new RegExp(`<${name}>([\\s\\S]*?)</${name}>`, "g"))].map((m) => m[1]);
}

/** Parses an S3 error body; asserts it has Code, Message, Resource and RequestId. */
export function parseErrorXml(xml: string): ErrorXml {
  assert.match(xml, /^<\?xml/, `not an XML error document: ${xml.slice(0, 200)}`);
  const field = (n: string) => {
    const v = xmlText(xml, n);
    assert.ok(v !== undefined, `error XML lacks <${n}>: ${xml}`);
    return v;
  };
  return {
    Code: field("Code"),
    Message: field("Message"),
    Resource: field("Resource"),
    RequestId: field("RequestId"),
    raw: xml,
  };
}

/**
 * Asserts `res` is an S3 error with `status` and `code` (consuming its body) and returns it.
 */
export async function expectError(res: Response, status: number, code: string): Promise<ErrorXml> {
  const text = await res.text();
  assert.equal(res.status, status, `want ${status} ${code}, got ${res.status}: ${text}`);
  const err = parseErrorXml(text);
  assert.equal(err.Code, code, `want ${code}, got ${err.Code}: ${text}`);
  assert.equal(res.headers.get("x-amz-request-id"), err.RequestId);
  return err;
}

/** Status of a signed HEAD of `path`, its body consumed. */
export async function headStatus(server: ServerProcess, path: string): Promise<number> {
  const res = await signedFetch(server, { method: "HEAD", path });
  await res.body?.cancel();
  return res.status;
}

/** The request headers an SDK client sent, newest last. */
export type SentLog = Record<string, string>[];

/**
 * An `@aws-sdk/client-s3` client for `server` with default settings (path-style only,
 * which a loopback endpoint needs), recording every request's headers into `sent`.
 */
export function sdkClient(server: ServerProcess, sent: SentLog = []): S3Client {
  const client = new S3Client({
    endpoint: server.url,
    region: REGION,
    credentials: { ...server.credentials },
    forcePathStyle: true,
  });
  client.middlewareStack.add(
    (next) => (args) => {
      const request = args.request as { headers?: Record<string, string> };
      if (request.headers) sent.push({ ...request.headers });
      return next(args);
    },
    { step: "deserialize", name: "hamsterRecordHeaders", priority: "low" },
  );
  return client;
}

/** Reads a web or Node stream, or an SDK body, into bytes. */
export async function readAll(
  body: { transformToByteArray(): Promise<Uint8Array> } | undefined,
): Promise<Uint8Array> {
  assert.ok(body, "no body");
  return await body.transformToByteArray();
}

/** Runs `fn` over `items` with at most `limit` calls in flight. */
export async function pool<T>(
  items: T[],
  limit: number,
  fn: (item: T, i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * Asserts `promise` rejects with an SDK service error of `status` and `code`; `code` null
 * for answers without a body (304, and errors to HEAD), where only the status is known.
 */
export async function expectSdkError(
  promise: Promise<unknown>,
  status: number,
  code: string | null,
): Promise<void> {
  let err: { name?: string; Code?: string; $metadata?: { httpStatusCode?: number } } | undefined;
  try {
    await promise;
  } catch (e) {
    err = e as typeof err;
  }
  assert.ok(err, `want ${status} ${code}, but the request succeeded`);
  assert.equal(err.$metadata?.httpStatusCode, status, `want ${status} ${code}, got ${String(err)}`);
  if (code !== null) assert.equal(err.Code ?? err.name, code, `want ${code}, got ${String(err)}`);
}

async function signedText(server: ServerProcess, path: string, query = ""): Promise<string> {
  const res = await signedFetch(server, { method: "GET", path, query });
  const text = await res.text();
  assert.equal(res.status, 200, `GET ${path}?${query}: ${text}`);
  return text;
}

/**
 * How many shard files the committed state needs: one per plain object, one per part of
 * a multipart object (from its `-N` ETag), one per part of an in-progress upload.
 */
/**
 * Shard files one object needs: one per part of a multipart object (its
 * `-N` ETag), one for a plain object, none for one packed into a segment
 * (at most {@link SMALL_OBJECT_MAX_BYTES}, ADR 0008).
 */
export function shardFilesOf(etag: string, sizeBytes: number): number {
  const m = /-(\d+)(&quot;|")?$/.exec(etag);
  if (m) return Number(m[1]);
  return sizeBytes > SMALL_OBJECT_MAX_BYTES ? 1 : 0;
}

export async function expectedShardCount(server: ServerProcess): Promise<number> {
  let count = 0;
  const buckets = xmlTexts(await signedText(server, "/"), "Name");
  for (const b of buckets) {
    let token: string | undefined;
    do {
      const q = `list-type=2${token ? `&continuation-token=${encodeURIComponent(token)}` : ""}`;
      const page = await signedText(server, `/${b}`, q);
      for (const c of xmlTexts(page, "Contents")) {
        count += shardFilesOf(xmlText(c, "ETag")!, Number(xmlText(c, "Size")));
      }
      token = xmlText(page, "NextContinuationToken");
    } while (token);
    const uploads = await signedText(server, `/${b}`, "uploads=");
    for (const u of uploads.split("<Upload>").slice(1)) {
      const key = xmlText(u, "Key")!;
      const id = xmlText(u, "UploadId")!;
      const path = `/${b}/${key.split("/").map(encodeURIComponent).join("/")}`;
      const parts = await signedText(server, path, `uploadId=${id}`);
      count += xmlTexts(parts, "PartNumber").length;
    }
  }
  return count;
}

/**
 * Asserts the data dir holds exactly what the committed state needs: no file under `tmp/`
 * and as many shard files as {@link expectedShardCount}. Garbage is removed just after a
 * commit, so this waits up to 10 s for the counts to settle.
 */
export async function assertStoreClean(server: ServerProcess): Promise<void> {
  let last = "";
  for (let i = 0; i < 100; i++) {
    const expected = await expectedShardCount(server);
    const files = await dataFiles(server.dataDir);
    if (files.tmp.length === 0 && files.shards.length === expected) return;
    last =
      `want ${expected} shard files and no temp files; found ${files.shards.length} shard files and temp files ${
        JSON.stringify(files.tmp)
      }`;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(last);
}
