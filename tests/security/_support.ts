/**
 * Support for the hostile-input tests: a raw HTTP/1.1 client over `Deno.connect` (so a
 * path reaches the server byte for byte, `..` and all, and bodies can be cut short, run
 * long or be dropped), the six SigV4 ways to authenticate a request, S3 error checks,
 * and a snapshot of everything a write could change, to prove that a refused write
 * changed nothing.
 *
 * Only loopback: every connection goes to the test server's 127.0.0.1 port.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { XMLValidator } from "fast-xml-parser";
import {
  encodeSignedChunks,
  encodeUnsignedChunks,
  formatAmzDate,
  presignRequest,
  presignRequestV2,
  sha256Hex,
  signRequest,
} from "../../src/auth/sign.ts";
import {
  type Credentials,
  dataFiles,
  type ServerProcess,
  startServer,
  TEST_CREDENTIALS,
} from "../e2e/_server.ts";
import { shardFilesOf } from "../e2e/_client.ts";

export { dataFiles, type ServerProcess, startServer, TEST_CREDENTIALS };
export type { Credentials };

export const REGION = "us-east-1";
/** SHA-256 of the empty string. */
export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/** A secret that is not the server's. */
export const WRONG_SECRET = "definitely-not-the-secret";

export const utf8 = new TextEncoder();
const latin1 = new TextDecoder("latin1");
const utf8Decoder = new TextDecoder();

/** Concatenates byte arrays. */
export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Bytes of a string (UTF-8) or the bytes themselves. */
export function bytesOf(body: Uint8Array | string | undefined): Uint8Array {
  if (body === undefined) return new Uint8Array(0);
  return typeof body === "string" ? utf8.encode(body) : body;
}

/** Hex SHA-256. */
export function sha256(bytes: Uint8Array | string): string {
  return sha256Hex(bytesOf(bytes));
}

/** Base64 MD5, as in Content-MD5. */
export function md5Base64(bytes: Uint8Array | string): string {
  return createHash("md5").update(bytesOf(bytes)).digest("base64");
}

/** Hex MD5, as in an ETag. */
export function md5Hex(bytes: Uint8Array | string): string {
  return createHash("md5").update(bytesOf(bytes)).digest("hex");
}

/** Base64 big-endian CRC32, as in x-amz-checksum-crc32. */
export function crc32Base64(bytes: Uint8Array): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(crc32(bytes) >>> 0);
  return b.toString("base64");
}

/** `n` bytes from a seeded generator (reproducible, unlike crypto randomness). */
export function seededBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** S3-style path encoding of a key: every byte but unreserved characters and `/`. */
export function encodeKey(key: string): string {
  return encodeURIComponent(key)
    .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%2F/g, "/");
}

/** The raw path of `bucket/key`. */
export function objectPath(bucket: string, key: string): string {
  return `/${bucket}/${encodeKey(key)}`;
}

// ---------------------------------------------------------------------------------------
// Raw HTTP/1.1
// ---------------------------------------------------------------------------------------

/** One HTTP response as parsed off the wire. */
export interface HttpReply {
  status: number;
  headers: Headers;
  body: Uint8Array;
  /** The body as UTF-8 text. */
  text: string;
}

/** What a raw exchange saw. */
export interface Exchange {
  /** The first complete final response, or null when the server sent none. */
  reply: HttpReply | null;
  /** Every byte read. */
  raw: Uint8Array;
  /** true when nothing more came for `timeoutMs` and the client gave up. */
  timedOut: boolean;
  /** true when the server closed (or reset) the connection. */
  closed: boolean;
}

/** How to run a raw exchange. */
export interface ExchangeOptions {
  /** The request was HEAD: the response has no body. */
  head?: boolean;
  /** Half-close the write side after sending (the server sees EOF). */
  closeWrite?: boolean;
  /** Give up after this long without a complete response (default 15 s): a hang. */
  timeoutMs?: number;
  /** Close the connection right after the last byte is written, without reading. */
  dropAfterWrite?: boolean;
}

function findCrlfCrlf(buf: Uint8Array, from = 0): number {
  for (let i = from; i + 3 < buf.length; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
  }
  return -1;
}

/**
 * Parses the first final response in `buf`: null while incomplete. With `eof`, a body
 * without a length ends at the end of the bytes.
 */
export function parseResponse(buf: Uint8Array, head: boolean, eof: boolean): HttpReply | null {
  let start = 0;
  for (;;) {
    const end = findCrlfCrlf(buf, start);
    if (end < 0) return null;
    const lines = latin1.decode(buf.subarray(start, end)).split("\r\n");
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
    if (!m) throw new Error(`Not an HTTP response: ${JSON.stringify(lines[0])}`);
    const status = Number(m[1]);
    const headers = new Headers();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    }
    const bodyStart = end + 4;
    if (status >= 100 && status < 200) {
      start = bodyStart;
      continue;
    }
    const done = (body: Uint8Array): HttpReply => ({
      status,
      headers,
      body,
      text: utf8Decoder.decode(body),
    });
    if (head || status === 204 || status === 304) return done(new Uint8Array(0));
    const te = headers.get("transfer-encoding");
    if (te !== null && /chunked/i.test(te)) {
      const parts: Uint8Array[] = [];
      let at = bodyStart;
      for (;;) {
        let lineEnd = -1;
        for (let i = at; i + 1 < buf.length; i++) {
          if (buf[i] === 13 && buf[i + 1] === 10) {
            lineEnd = i;
            break;
          }
        }
        if (lineEnd < 0) return eof ? done(concat(parts)) : null;
        const size = parseInt(latin1.decode(buf.subarray(at, lineEnd)).split(";")[0], 16);
        if (!Number.isFinite(size)) throw new Error("Bad chunk size in a response");
        if (size === 0) return done(concat(parts));
        if (lineEnd + 2 + size + 2 > buf.length) return eof ? done(concat(parts)) : null;
        parts.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size));
        at = lineEnd + 2 + size + 2;
      }
    }
    const cl = headers.get("content-length");
    if (cl !== null) {
      const n = Number(cl);
      if (buf.length - bodyStart < n) return eof ? done(buf.subarray(bodyStart)) : null;
      return done(buf.subarray(bodyStart, bodyStart + n));
    }
    return eof ? done(buf.subarray(bodyStart)) : null;
  }
}

/**
 * Sends `pieces` on a new loopback connection while reading the reply, and returns the
 * first complete response (or what came before the server closed, or a timeout). The
 * writer stops as soon as a response is in: a server that answers early never blocks it.
 */
export async function exchange(
  server: ServerProcess,
  pieces: Uint8Array[],
  opts: ExchangeOptions = {},
): Promise<Exchange> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  let stop = false;
  let closed = false;
  const writing = (async () => {
    try {
      for (const piece of pieces) {
        let off = 0;
        while (off < piece.length && !stop) off += await conn.write(piece.subarray(off));
        if (stop) return;
      }
      if (opts.closeWrite) await conn.closeWrite();
    } catch {
      // the server closed or reset the connection: the reader sees it too
    }
  })();
  if (opts.dropAfterWrite) {
    await writing;
    conn.close();
    return { reply: null, raw: new Uint8Array(0), timedOut: false, closed: true };
  }
  const chunks: Uint8Array[] = [];
  let raw: Uint8Array = new Uint8Array(0);
  let reply: HttpReply | null = null;
  let timedOut = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), opts.timeoutMs ?? 15_000);
  });
  const buf = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const read = conn.read(buf).catch(() => null);
      const r = await Promise.race([read, timeout]);
      if (r === "timeout") {
        timedOut = true;
        break;
      }
      if (r === null) {
        closed = true;
        raw = concat(chunks);
        reply = raw.length > 0 ? parseResponse(raw, opts.head ?? false, true) : null;
        break;
      }
      chunks.push(buf.slice(0, r));
      raw = concat(chunks);
      reply = parseResponse(raw, opts.head ?? false, false);
      if (reply) break;
    }
  } finally {
    clearTimeout(timer);
    stop = true;
    try {
      conn.close();
    } catch {
      // already closed
    }
    await writing;
  }
  return { reply, raw, timedOut, closed };
}

/** A request as it goes on the wire. */
export interface WireRequest {
  method: string;
  /** The raw path, sent as is. */
  path: string;
  /** The raw query, without `?`. */
  query?: string;
  /** Header lines in order; duplicates allowed. `host` and `connection: close` are added when absent. */
  headers?: Headers | [string, string][];
  body?: Uint8Array | string;
  /** Content-Length to announce; default the body's length. null sends none. */
  contentLength?: number | null;
}

/** The request head (and body) bytes of `req`. */
export function encodeRequest(server: ServerProcess, req: WireRequest): {
  head: Uint8Array;
  body: Uint8Array;
} {
  const lines: [string, string][] = req.headers instanceof Headers
    ? [...req.headers]
    : [...(req.headers ?? [])];
  const has = (n: string) => lines.some(([k]) => k.toLowerCase() === n);
  const body = bytesOf(req.body);
  if (!has("host")) lines.unshift(["host", server.host]);
  if (!has("connection")) lines.push(["connection", "close"]);
  const chunked = lines.some(([k, v]) =>
    k.toLowerCase() === "transfer-encoding" && /chunked/i.test(v)
  );
  if (!has("content-length") && !chunked && req.contentLength !== null) {
    const n = req.contentLength ?? body.length;
    if (n > 0 || !["GET", "HEAD", "DELETE", "OPTIONS"].includes(req.method)) {
      lines.push(["content-length", String(n)]);
    }
  }
  const target = `${req.path}${req.query ? `?${req.query}` : ""}`;
  let text = `${req.method} ${target} HTTP/1.1\r\n`;
  for (const [k, v] of lines) text += `${k}: ${v}\r\n`;
  text += "\r\n";
  return { head: Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff), body };
}

/**
 * Sends one request on its own connection and returns the response.
 *
 * @throws {AssertionError} when the server hangs or closes without answering
 */
export async function send(
  server: ServerProcess,
  req: WireRequest,
  opts: ExchangeOptions = {},
): Promise<HttpReply> {
  const { head, body } = encodeRequest(server, req);
  const ex = await exchange(server, [head, body], { head: req.method === "HEAD", ...opts });
  assert.ok(!ex.timedOut, `${req.method} ${req.path}?${req.query ?? ""}: no answer (a hang)`);
  assert.ok(
    ex.reply,
    `${req.method} ${req.path}?${req.query ?? ""}: the connection closed without an answer`,
  );
  return ex.reply;
}

// ---------------------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------------------

/** A request to sign: raw path and query as they will be sent. */
export interface S3Request {
  method: string;
  path: string;
  query?: string;
  headers?: Record<string, string>;
  body?: Uint8Array | string;
}

/** Header auth for `req` with `payloadHash` (default the body's SHA-256). */
export function signHeaders(
  server: ServerProcess,
  req: S3Request,
  opts: { payloadHash?: string; credentials?: Credentials; amzDate?: string } = {},
): { headers: Headers; signature: string; amzDate: string } {
  const amzDate = opts.amzDate ?? formatAmzDate(Date.now());
  const { headers, signature } = signRequest({
    method: req.method,
    rawPath: req.path,
    rawQuery: req.query ?? "",
    headers: { host: server.host, ...req.headers },
    credentials: opts.credentials ?? server.credentials,
    region: REGION,
    amzDate,
  }, opts.payloadHash ?? sha256(bytesOf(req.body)));
  return { headers, signature, amzDate };
}

/** Signs `req` (payload hash of its body) and sends it. */
export function s3(
  server: ServerProcess,
  req: S3Request,
  opts: { payloadHash?: string; credentials?: Credentials } = {},
): Promise<HttpReply> {
  const { headers } = signHeaders(server, req, opts);
  return send(server, {
    method: req.method,
    path: req.path,
    query: req.query,
    headers,
    body: req.body,
  });
}

/** The seven ways a request can authenticate. */
export const AUTH_MODES = [
  "signed-payload",
  "unsigned-payload",
  "streaming-signed",
  "streaming-unsigned-trailer",
  "streaming-signed-trailer",
  "presigned",
  "presigned-v2",
] as const;
/** One way to authenticate. */
export type AuthMode = typeof AUTH_MODES[number];

/** The `x-amz-content-sha256` (or, presigned, the scheme) each mode uses. */
export const AUTH_MODE_NAMES: Record<AuthMode, string> = {
  "signed-payload": "header auth, signed payload",
  "unsigned-payload": "UNSIGNED-PAYLOAD",
  "streaming-signed": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
  "streaming-unsigned-trailer": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
  "streaming-signed-trailer": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
  "presigned": "presigned URL",
  "presigned-v2": "SigV2 presigned URL",
};

/** How to break an authenticated request. */
export interface Breakage {
  /** Sign the request (and its chunks) with this secret instead of the server's. */
  secret?: string;
  /** Sign only the chunks and trailer with this secret (the seed signature stays right). */
  chunkSecret?: string;
  /** Change the sent headers after signing. */
  tamper?: (headers: Headers) => void;
}

function split(data: Uint8Array, sizeBytes: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < data.length; i += sizeBytes) out.push(data.subarray(i, i + sizeBytes));
  return out;
}

/** Chunk size of the aws-chunked bodies built here: small, so even XML bodies have several. */
export const CHUNK_BYTES = 8 * 1024;

/**
 * Authenticates `req` by `mode` and returns the request to put on the wire. Every header
 * of `req` is signed. `breakage` signs with a wrong secret or tampers after signing.
 */
export function authenticate(
  server: ServerProcess,
  mode: AuthMode,
  req: S3Request,
  breakage: Breakage = {},
): WireRequest {
  const data = bytesOf(req.body);
  const creds = { ...server.credentials };
  if (breakage.secret !== undefined) creds.secretAccessKey = breakage.secret;
  const amzDate = formatAmzDate(Date.now());
  let headers: Headers;
  let body: Uint8Array = data;
  let query = req.query;
  const streamingHeaders = (trailer: boolean): Record<string, string> => ({
    ...req.headers,
    "content-encoding": "aws-chunked",
    "x-amz-decoded-content-length": String(data.length),
    ...(trailer ? { "x-amz-trailer": "x-amz-checksum-crc32" } : {}),
  });
  const chunkSigning = (seedSignature: string) => ({
    secretAccessKey: breakage.chunkSecret ?? creds.secretAccessKey,
    region: REGION,
    amzDate,
    seedSignature,
  });
  switch (mode) {
    case "signed-payload":
    case "unsigned-payload": {
      const payloadHash = mode === "signed-payload" ? sha256(data) : "UNSIGNED-PAYLOAD";
      headers = signHeaders(server, req, { payloadHash, credentials: creds, amzDate }).headers;
      break;
    }
    case "streaming-signed":
    case "streaming-signed-trailer": {
      const trailer = mode === "streaming-signed-trailer";
      const signed = signHeaders(
        server,
        { ...req, headers: streamingHeaders(trailer) },
        {
          payloadHash: trailer
            ? "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
            : "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
          credentials: creds,
          amzDate,
        },
      );
      headers = signed.headers;
      body = encodeSignedChunks(
        split(data, CHUNK_BYTES),
        chunkSigning(signed.signature),
        trailer ? [["x-amz-checksum-crc32", crc32Base64(data)]] : undefined,
      );
      break;
    }
    case "streaming-unsigned-trailer": {
      headers = signHeaders(
        server,
        { ...req, headers: streamingHeaders(true) },
        { payloadHash: "STREAMING-UNSIGNED-PAYLOAD-TRAILER", credentials: creds, amzDate },
      ).headers;
      body = encodeUnsignedChunks(split(data, CHUNK_BYTES), [
        ["x-amz-checksum-crc32", crc32Base64(data)],
      ]);
      break;
    }
    case "presigned": {
      const toSign = { host: server.host, ...req.headers };
      query = presignRequest({
        method: req.method,
        rawPath: req.path,
        rawQuery: req.query ?? "",
        headers: toSign,
        credentials: creds,
        region: REGION,
        amzDate,
        expiresSec: 300,
      });
      headers = new Headers(toSign);
      break;
    }
    case "presigned-v2": {
      const toSign = { host: server.host, ...req.headers };
      query = presignRequestV2({
        method: req.method,
        resource: req.path,
        rawQuery: req.query ?? "",
        headers: toSign,
        credentials: creds,
        expiresAtSec: Math.floor(Date.now() / 1000) + 300,
      });
      headers = new Headers(toSign);
      break;
    }
  }
  breakage.tamper?.(headers);
  return { method: req.method, path: req.path, query, headers, body };
}

// ---------------------------------------------------------------------------------------
// S3 answers
// ---------------------------------------------------------------------------------------

/**
 * Why `text` is not a well-formed XML 1.0 document, or null when it is: fast-xml-parser's
 * validator, plus what it lets through and strict parsers (Python's expat, so boto3) refuse:
 * a raw code point XML 1.0 forbids, or a character reference to one (`&#x1;`).
 */
export function xmlProblem(text: string): string | null {
  const valid = XMLValidator.validate(text);
  if (valid !== true) return `not well-formed: ${JSON.stringify(valid.err)}`;
  // deno-lint-ignore no-control-regex
  const raw = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/.exec(text);
  if (raw) return `raw U+${raw[0].charCodeAt(0).toString(16).padStart(4, "0")} at ${raw.index}`;
  for (const m of text.matchAll(/&#(x[0-9a-fA-F]+|[0-9]+);/g)) {
    const cp = m[1][0] === "x" ? parseInt(m[1].slice(1), 16) : parseInt(m[1], 10);
    const ok = cp === 0x9 || cp === 0xa || cp === 0xd || (cp >= 0x20 && cp <= 0xd7ff) ||
      (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
    if (!ok) return `a reference to a forbidden character ${m[0]} at ${m.index}`;
  }
  return null;
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

/** Undoes the five XML entities the server's escaping produces. */
export function unescapeXml(s: string): string {
  return s.replace(
    /&(lt|gt|quot|apos|amp);/g,
    (_, e) => ({ lt: "<", gt: ">", quot: '"', apos: "'", amp: "&" })[e as string]!,
  );
}

/**
 * Checks that `reply` carries a well-formed S3 error document (`<Error>` with Code,
 * Message, Resource and RequestId, the RequestId also in `x-amz-request-id`) and
 * returns its Code. HEAD answers have no body: the code is then "".
 */
export function errorCodeOf(reply: HttpReply, head = false): string {
  if (head || reply.status === 304) {
    assert.equal(reply.body.length, 0, "an error to HEAD has no body");
    return "";
  }
  const text = reply.text;
  const where = `status ${reply.status}, body ${JSON.stringify(text.slice(0, 400))}`;
  assert.match(
    text,
    /^<\?xml version="1\.0" encoding="UTF-8"\?>\s*<Error>/,
    `not S3 error XML: ${where}`,
  );
  assert.equal(xmlProblem(text), null, `error XML is not well-formed XML 1.0: ${where}`);
  for (const field of ["Code", "Message", "Resource", "RequestId"]) {
    assert.ok(xmlText(text, field) !== undefined, `error XML lacks <${field}>: ${where}`);
  }
  const code = xmlText(text, "Code")!;
  assert.match(code, /^[A-Za-z0-9]+$/, `odd error code: ${where}`);
  assert.equal(
    reply.headers.get("x-amz-request-id"),
    xmlText(text, "RequestId"),
    `x-amz-request-id differs from the XML RequestId: ${where}`,
  );
  return code;
}

/** Asserts `reply` is the S3 error `status` `code`. */
export function expectError(reply: HttpReply, status: number, code: string | string[]): string {
  const codes = Array.isArray(code) ? code : [code];
  assert.equal(
    reply.status,
    status,
    `want ${status} ${codes.join("|")}, got ${reply.status}: ${reply.text.slice(0, 600)}`,
  );
  const got = errorCodeOf(reply);
  assert.ok(
    codes.includes(got),
    `want ${codes.join("|")}, got ${got}: ${reply.text.slice(0, 600)}`,
  );
  return got;
}

/** Asserts a 2xx answer. */
export function expectOk(reply: HttpReply, what: string): HttpReply {
  assert.ok(
    reply.status >= 200 && reply.status < 300,
    `${what}: want 2xx, got ${reply.status}: ${reply.text.slice(0, 600)}`,
  );
  return reply;
}

// ---------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------

/** Everything observable about one bucket. */
export interface BucketState {
  exists: boolean;
  /** key -> etag, size, SHA-256 of the bytes, content-type, user metadata, tagging XML. */
  objects: Record<string, string>;
  /** GetBucketCors: the XML, or the error code. */
  cors: string;
  /** key/uploadId -> ListParts' parts (number, etag, size). */
  uploads: Record<string, string>;
}

/** Everything a write could change in the named buckets, plus the bucket list and data files. */
export interface StoreState {
  buckets: string[];
  detail: Record<string, BucketState>;
  shards: string[];
  tmp: string[];
}

async function okText(server: ServerProcess, req: S3Request): Promise<string> {
  const r = await s3(server, req);
  expectOk(r, `${req.method} ${req.path}?${req.query ?? ""}`);
  return r.text;
}

/** Every key of `bucket` (ListObjectsV2, url-encoded, all pages) with its listed ETag. */
export async function listKeys(
  server: ServerProcess,
  bucket: string,
): Promise<[key: string, etag: string, sizeBytes: number][]> {
  const out: [string, string, number][] = [];
  let token: string | undefined;
  do {
    const query = `encoding-type=url&list-type=2` +
      (token ? `&continuation-token=${encodeURIComponent(token)}` : "");
    const page = await okText(server, { method: "GET", path: `/${bucket}`, query });
    for (const c of xmlTexts(page, "Contents")) {
      out.push([
        decodeURIComponent(xmlText(c, "Key")!),
        unescapeXml(xmlText(c, "ETag")!),
        Number(xmlText(c, "Size")),
      ]);
    }
    token = xmlText(page, "NextContinuationToken");
    if (token) token = unescapeXml(token);
  } while (token);
  return out;
}

/** In-progress uploads of `bucket`: [key, uploadId]. */
export async function listUploads(
  server: ServerProcess,
  bucket: string,
): Promise<[string, string][]> {
  const xml = await okText(server, { method: "GET", path: `/${bucket}`, query: "uploads=" });
  return xml.split("<Upload>").slice(1).map((
    u,
  ) => [unescapeXml(xmlText(u, "Key")!), xmlText(u, "UploadId")!]);
}

async function bucketState(server: ServerProcess, bucket: string): Promise<BucketState> {
  const head = await s3(server, { method: "HEAD", path: `/${bucket}` });
  if (head.status === 404) return { exists: false, objects: {}, cors: "", uploads: {} };
  expectOk(head, `HEAD /${bucket}`);
  const objects: Record<string, string> = {};
  for (const [key] of await listKeys(server, bucket)) {
    const path = objectPath(bucket, key);
    const got = await s3(server, { method: "GET", path });
    expectOk(got, `GET ${path}`);
    const meta = [...got.headers].filter(([k]) => k.startsWith("x-amz-meta-")).map(([k, v]) =>
      `${k}=${v}`
    );
    const tagging = await okText(server, { method: "GET", path, query: "tagging=" });
    objects[key] = [
      got.headers.get("etag"),
      got.body.length,
      sha256(got.body),
      got.headers.get("content-type"),
      meta.join(","),
      xmlTexts(tagging, "Tag").join(""),
    ].join(" | ");
  }
  const corsReply = await s3(server, { method: "GET", path: `/${bucket}`, query: "cors=" });
  const cors = corsReply.status === 200 ? corsReply.text : errorCodeOf(corsReply);
  const uploads: Record<string, string> = {};
  for (const [key, id] of await listUploads(server, bucket)) {
    const parts = await okText(server, {
      method: "GET",
      path: objectPath(bucket, key),
      query: `uploadId=${id}`,
    });
    uploads[`${key}/${id}`] = xmlTexts(parts, "Part")
      .map((p) => `${xmlText(p, "PartNumber")}:${xmlText(p, "ETag")}:${xmlText(p, "Size")}`)
      .join(",");
  }
  return { exists: true, objects, cors, uploads };
}

/** The bucket names ListBuckets reports. */
export async function listBuckets(server: ServerProcess): Promise<string[]> {
  return xmlTexts(await okText(server, { method: "GET", path: "/" }), "Name").sort();
}

/** A snapshot of the bucket list, the named buckets in full, and the data files. */
export async function snapshot(server: ServerProcess, buckets: string[]): Promise<StoreState> {
  const detail: Record<string, BucketState> = {};
  for (const b of buckets) detail[b] = await bucketState(server, b);
  const files = await dataFiles(server.dataDir);
  return { buckets: await listBuckets(server), detail, ...files };
}

/** What `after` shows that `before` did not: the state, and any new shard or temp file. */
function changes(before: StoreState, after: StoreState): Record<string, unknown> | null {
  const newShards = after.shards.filter((f) => !before.shards.includes(f));
  const newTmp = after.tmp.filter((f) => !before.tmp.includes(f));
  const same = JSON.stringify([before.buckets, before.detail]) ===
    JSON.stringify([after.buckets, after.detail]);
  if (same && newShards.length === 0 && newTmp.length === 0) return null;
  return { buckets: after.buckets, detail: after.detail, newShards, newTmp };
}

/**
 * Asserts the store is as `before`: bucket list, the buckets' objects (bytes, metadata,
 * tags), CORS, uploads and parts, and no shard or temp file that was not there before
 * (files may go: garbage of an earlier commit is removed in the background). Temp files
 * of a refused write may take a moment to go: this polls for up to 10 s.
 */
export async function assertUnchanged(
  server: ServerProcess,
  before: StoreState,
  what: string,
): Promise<void> {
  let changed: Record<string, unknown> | null = null;
  for (let i = 0; i < 100; i++) {
    changed = changes(before, await snapshot(server, Object.keys(before.detail)));
    if (changed === null) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(
    changed,
    { buckets: before.buckets, detail: before.detail, newShards: [], newTmp: [] },
    `${what}: the store changed`,
  );
}

/**
 * How many shard files the committed state needs: see {@link shardFilesOf}, plus one per
 * part of an in-progress upload.
 */
export async function expectedShardCount(server: ServerProcess): Promise<number> {
  let count = 0;
  for (const b of await listBuckets(server)) {
    for (const [, etag, sizeBytes] of await listKeys(server, b)) {
      count += shardFilesOf(etag, sizeBytes);
    }
    for (const [key, id] of await listUploads(server, b)) {
      const parts = await okText(server, {
        method: "GET",
        path: objectPath(b, key),
        query: `uploadId=${id}`,
      });
      count += xmlTexts(parts, "PartNumber").length;
    }
  }
  return count;
}

/**
 * Asserts the data dir holds just what the committed state needs: no file under `tmp/`
 * and exactly as many shard files as {@link expectedShardCount}. Polls up to 10 s, as
 * garbage goes just after a commit and a cut connection is noticed a little later.
 */
export async function assertStoreClean(server: ServerProcess, what = ""): Promise<void> {
  let last = "";
  for (let i = 0; i < 100; i++) {
    const expected = await expectedShardCount(server);
    const files = await dataFiles(server.dataDir);
    if (files.tmp.length === 0 && files.shards.length === expected) return;
    last = `want ${expected} shard files and no temp files; found ${files.shards.length} shard ` +
      `files and temp files ${JSON.stringify(files.tmp)}`;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`${what ? `${what}: ` : ""}${last}`);
}

/** Asserts the server process is still running and answers a signed ListBuckets. */
export async function assertServing(server: ServerProcess): Promise<void> {
  const status = await Promise.race([
    server.child.status.then((s) => `exited with ${s.code} (signal ${s.signal})`),
    new Promise<null>((r) => setTimeout(() => r(null), 0)),
  ]);
  assert.equal(status, null, `the server process ${status}:\n${server.output.slice(-4000)}`);
  const r = await s3(server, { method: "GET", path: "/" });
  expectOk(r, "ListBuckets after the hostile input");
}

/** Creates `bucket`, asserting 200. */
export async function createBucket(server: ServerProcess, bucket: string): Promise<void> {
  expectOk(await s3(server, { method: "PUT", path: `/${bucket}` }), `CreateBucket ${bucket}`);
}

/** Puts an object, asserting 200; returns its ETag (quoted). */
export async function putObject(
  server: ServerProcess,
  bucket: string,
  key: string,
  body: Uint8Array | string,
  headers: Record<string, string> = {},
): Promise<string> {
  const r = await s3(server, { method: "PUT", path: objectPath(bucket, key), headers, body });
  expectOk(r, `PutObject ${bucket}/${key}`);
  return r.headers.get("etag")!;
}

/** GET of an object: status and bytes. */
export async function getObject(
  server: ServerProcess,
  bucket: string,
  key: string,
): Promise<{ status: number; body: Uint8Array }> {
  const r = await s3(server, { method: "GET", path: objectPath(bucket, key) });
  return { status: r.status, body: r.body };
}

/** Lines the server logged as internal or unhandled errors. */
export function internalErrors(server: ServerProcess): string[] {
  return server.output.split("\n").filter((l) => /^(request \S+:|unhandled:)/.test(l));
}

/** What a slow connection saw: see {@link slowConnection}. */
export interface SlowConnection {
  /** The first complete final response, or null when the server sent none. */
  reply: HttpReply | null;
  /** Bytes written before the last piece went out or the server closed. */
  sentBytes: number;
  /** true when the server closed (EOF) or reset the connection. */
  closed: boolean;
  /** true when the server neither closed nor finished within `timeoutMs`: a hang. */
  timedOut: boolean;
}

/**
 * Opens a loopback connection and writes `pieces` one at a time with `gapMs` between them
 * (none at all for an idle connection), reading all the while, until the server closes or
 * resets the connection or `timeoutMs` passes. Unlike {@link exchange}, a response does not end
 * it: the caller learns whether the server also closed the connection afterwards (a kept-alive
 * connection with nothing more to say must be closed by the idle timeout).
 */
export async function slowConnection(
  server: ServerProcess,
  pieces: Uint8Array[],
  opts: { gapMs: number; timeoutMs: number; head?: boolean },
): Promise<SlowConnection> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  let done = false;
  let sentBytes = 0;
  const writing = (async () => {
    try {
      for (const piece of pieces) {
        await new Promise((r) => setTimeout(r, opts.gapMs));
        if (done) return;
        let off = 0;
        while (off < piece.length) off += await conn.write(piece.subarray(off));
        sentBytes += piece.length;
      }
    } catch {
      // the server closed or reset the connection: the reader sees it too
    }
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), opts.timeoutMs);
  });
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(64 * 1024);
  let closed = false;
  let timedOut = false;
  try {
    for (;;) {
      const r = await Promise.race([conn.read(buf).catch(() => null), timeout]);
      if (r === "timeout") {
        timedOut = true;
        break;
      }
      if (r === null) {
        closed = true;
        break;
      }
      chunks.push(buf.slice(0, r));
    }
  } finally {
    clearTimeout(timer);
    done = true;
    try {
      conn.close();
    } catch {
      // already closed
    }
    await writing;
  }
  const raw = concat(chunks);
  let reply: HttpReply | null = null;
  try {
    reply = raw.length > 0 ? parseResponse(raw, opts.head ?? false, true) : null;
  } catch {
    reply = null;
  }
  return { reply, sentBytes, closed, timedOut };
}
