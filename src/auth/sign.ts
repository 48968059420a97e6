/**
 * A small SigV4 signer for tests: signs requests by header or by presigned query, and
 * builds aws-chunked bodies (signed chunks, signed or unsigned trailers) the way the AWS
 * SDKs do. Not used on the server path.
 *
 * Pure: no clock, no I/O; the time is a parameter.
 *
 * @module
 */
import {
  ALGORITHM,
  canonicalHeaderValue,
  canonicalQuery,
  canonicalRequest,
  canonicalUri,
  chunkStringToSign,
  EMPTY_SHA256,
  formatAmzDate,
  hmacHex,
  scopeOf,
  sha256Hex,
  signingKey,
  stringToSign,
  trailerStringToSign,
  uriEncode,
} from "./_sigv4.ts";
import { createHmac } from "node:crypto";
import { SIGNED_SUBRESOURCES } from "./sigv2_query.ts";

export { formatAmzDate, sha256Hex };

/** An access key pair. */
export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

/** A request to sign. */
export interface SignInput {
  method: string;
  /** The path as it will be sent, percent-encoded. */
  rawPath: string;
  /** The query as it will be sent, without `?`. */
  rawQuery?: string;
  /** Headers to send; `host` is required. Every one given is signed. */
  headers: HeadersInit;
  credentials: Credentials;
  region: string;
  /** The signing time, `YYYYMMDDTHHMMSSZ` (see {@link formatAmzDate}). */
  amzDate: string;
}

/** The headers to send, with `x-amz-date`, `x-amz-content-sha256` and `authorization`. */
export interface SignedRequest {
  headers: Headers;
  /** The signature: the seed signature of an aws-chunked body. */
  signature: string;
}

function headerLines(headers: Headers): { lines: string[]; names: string } {
  const names = [...headers.keys()].filter((n) => n !== "authorization").sort();
  return {
    lines: names.map((n) => `${n}:${canonicalHeaderValue(headers.get(n)!)}`),
    names: names.join(";"),
  };
}

/**
 * Signs a request with the `Authorization` header.
 *
 * @param payloadHash hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`,
 *   `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`, `STREAMING-UNSIGNED-PAYLOAD-TRAILER`
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html
 */
export function signRequest(input: SignInput, payloadHash: string = EMPTY_SHA256): SignedRequest {
  const headers = new Headers(input.headers);
  headers.set("x-amz-date", input.amzDate);
  headers.set("x-amz-content-sha256", payloadHash);
  const { lines, names } = headerLines(headers);
  const date = input.amzDate.slice(0, 8);
  const canonical = canonicalRequest(
    input.method,
    canonicalUri(input.rawPath),
    canonicalQuery(input.rawQuery ?? "", null),
    lines,
    names,
    payloadHash,
  );
  const key = signingKey(input.credentials.secretAccessKey, date, input.region);
  const signature = hmacHex(
    key,
    stringToSign(input.amzDate, scopeOf(date, input.region), canonical),
  );
  headers.set(
    "authorization",
    `${ALGORITHM} Credential=${input.credentials.accessKeyId}/${scopeOf(date, input.region)}, ` +
      `SignedHeaders=${names}, Signature=${signature}`,
  );
  return { headers, signature };
}

/**
 * Presigns a request: returns the raw query string to send (the input's query followed
 * by `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`,
 * `X-Amz-SignedHeaders`, `X-Amz-Signature`). The headers given (at least `host`) are
 * signed and must be sent.
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html
 */
export function presignRequest(input: SignInput & { expiresSec: number }): string {
  const headers = new Headers(input.headers);
  const { lines, names } = headerLines(headers);
  const date = input.amzDate.slice(0, 8);
  const scope = scopeOf(date, input.region);
  const params = [
    ["X-Amz-Algorithm", ALGORITHM],
    ["X-Amz-Credential", `${input.credentials.accessKeyId}/${scope}`],
    ["X-Amz-Date", input.amzDate],
    ["X-Amz-Expires", String(input.expiresSec)],
    ["X-Amz-SignedHeaders", names],
  ].map(([n, v]) => `${uriEncode(n, false)}=${uriEncode(v, false)}`).join("&");
  const query = input.rawQuery ? `${input.rawQuery}&${params}` : params;
  const canonical = canonicalRequest(
    input.method,
    canonicalUri(input.rawPath),
    canonicalQuery(query, null),
    lines,
    names,
    "UNSIGNED-PAYLOAD",
  );
  const key = signingKey(input.credentials.secretAccessKey, date, input.region);
  const signature = hmacHex(key, stringToSign(input.amzDate, scope, canonical));
  return `${query}&X-Amz-Signature=${signature}`;
}

/** What signing the chunks of an aws-chunked body needs. */
export interface ChunkSigning {
  secretAccessKey: string;
  region: string;
  /** The request's `x-amz-date`. */
  amzDate: string;
  /** The request's own signature. */
  seedSignature: string;
}

const utf8 = new TextEncoder();
const CRLF = utf8.encode("\r\n");

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Builds a `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]` body: each chunk
 * `hex(size);chunk-signature=sig\r\n data \r\n`, the zero-length final chunk, then with
 * `trailers` the lines `name:value\r\n`, `x-amz-trailer-signature:sig\r\n`, and `\r\n`.
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html
 */
export function encodeSignedChunks(
  chunks: Uint8Array[],
  signing: ChunkSigning,
  trailers?: [string, string][],
): Uint8Array {
  return concat([...signedChunkFrames(chunks, signing, trailers)]);
}

/**
 * {@link encodeSignedChunks} piece by piece, for bodies too large to hold: yields each
 * chunk's size line, its data (the input array itself) and CRLF, then the end.
 */
export function* signedChunkFrames(
  chunks: Iterable<Uint8Array>,
  signing: ChunkSigning,
  trailers?: [string, string][],
): Generator<Uint8Array> {
  const date = signing.amzDate.slice(0, 8);
  const key = signingKey(signing.secretAccessKey, date, signing.region);
  const scope = scopeOf(date, signing.region);
  let previous = signing.seedSignature;
  const sign = (hash: string) =>
    previous = hmacHex(key, chunkStringToSign(signing.amzDate, scope, previous, hash));
  for (const data of chunks) {
    if (data.length === 0) continue;
    sign(sha256Hex(data));
    yield utf8.encode(`${data.length.toString(16)};chunk-signature=${previous}\r\n`);
    yield data;
    yield CRLF;
  }
  sign(EMPTY_SHA256);
  yield utf8.encode(`0;chunk-signature=${previous}\r\n`);
  if (trailers !== undefined) {
    const text = trailers.map(([n, v]) => `${n}:${v}\n`).join("");
    const signature = hmacHex(key, trailerStringToSign(signing.amzDate, scope, previous, text));
    yield utf8.encode(text.replaceAll("\n", "\r\n"));
    yield utf8.encode(`x-amz-trailer-signature:${signature}\r\n`);
  }
  yield CRLF;
}

/**
 * Builds a `STREAMING-UNSIGNED-PAYLOAD-TRAILER` body as the AWS SDKs send it:
 * `hex(size)\r\n data \r\n ... 0\r\n name:value\r\n ... \r\n`.
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html
 */
export function encodeUnsignedChunks(
  chunks: Uint8Array[],
  trailers: [string, string][] = [],
): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const data of chunks) {
    if (data.length === 0) continue;
    parts.push(utf8.encode(`${data.length.toString(16)}\r\n`), data, utf8.encode("\r\n"));
  }
  parts.push(utf8.encode("0\r\n"));
  for (const [n, v] of trailers) parts.push(utf8.encode(`${n}:${v}\r\n`));
  parts.push(utf8.encode("\r\n"));
  return concat(parts);
}

/**
 * Presigns a request with Signature Version 2 (`AWSAccessKeyId`, `Expires`, `Signature`),
 * as boto3's `generate_presigned_url` with signature version `s3` does: returns the raw
 * query to send (the input's query, then the three parameters). `resource` is the bucket
 * and path as signed, `/bucket/key` in either addressing style; the `content-md5`,
 * `content-type` and `x-amz-*` headers given are signed and must be sent.
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/RESTAuthentication.html#RESTAuthenticationQueryStringAuth
 */
export function presignRequestV2(input: {
  method: string;
  resource: string;
  rawQuery?: string;
  headers: HeadersInit;
  credentials: Credentials;
  /** When the URL expires, seconds since the Unix epoch. */
  expiresAtSec: number;
}): string {
  const headers = new Headers(input.headers);
  const amz = [...headers.keys()].filter((n) => n.startsWith("x-amz-")).sort()
    .map((n) => `${n}:${canonicalHeaderValue(headers.get(n)!)}\n`).join("");
  const sub = (input.rawQuery ?? "").split("&").filter((p) => p !== "")
    .map((p) => {
      const eq = p.indexOf("=");
      return eq < 0 ? [p, ""] : [p.slice(0, eq), decodeURIComponent(p.slice(eq + 1))];
    })
    .filter(([name]) => SIGNED_SUBRESOURCES.has(name))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, value]) => (value === "" ? name : `${name}=${value}`)).join("&");
  const toSign = `${input.method}\n${headers.get("content-md5") ?? ""}\n` +
    `${headers.get("content-type") ?? ""}\n${input.expiresAtSec}\n${amz}${input.resource}` +
    (sub ? `?${sub}` : "");
  const signature = createHmac("sha1", input.credentials.secretAccessKey).update(toSign, "utf8")
    .digest("base64");
  const params = `AWSAccessKeyId=${uriEncode(input.credentials.accessKeyId, false)}` +
    `&Expires=${input.expiresAtSec}&Signature=${uriEncode(signature, false)}`;
  return input.rawQuery ? `${input.rawQuery}&${params}` : params;
}
