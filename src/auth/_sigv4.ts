/**
 * SigV4 building blocks shared by the verifier, the body decoder and the test signer:
 * hashing, the signing key, the canonical URI / query / headers, the strings to sign.
 *
 * Pure: no clock, no I/O. The one piece of state is a bounded cache of signing keys.
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html
 * @module
 */
import { Buffer } from "node:buffer";
import { createHash, createHmac, type Hash, timingSafeEqual } from "node:crypto";

/** The only signing algorithm Hamster accepts. */
export const ALGORITHM = "AWS4-HMAC-SHA256";
/** The service name in every credential scope. */
export const SERVICE = "s3";
/** The last element of every credential scope. */
export const TERMINATOR = "aws4_request";
/** Lower-case hex SHA-256 of zero bytes. */
export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/** `x-amz-content-sha256` values naming a payload mode instead of a digest. */
export const UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD";
export const STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
export const STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
export const STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
export const STREAMING_ECDSA = "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD";
export const STREAMING_ECDSA_TRAILER = "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER";
/** Largest difference between a request's time and the server's, as AWS: 15 minutes. */
export const MAX_SKEW_MS = 15 * 60 * 1000;

/** Longest validity of a presigned URL, as AWS: 7 days in seconds. */
export const MAX_PRESIGNED_EXPIRES_SEC = 604800;

/** Lower-case hex SHA-256 of `data` (strings are hashed as UTF-8). */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** HMAC-SHA256 of `data` (UTF-8) under `key`. */
export function hmac(key: Uint8Array | string, data: string): Uint8Array {
  return createHmac("sha256", key).update(data).digest();
}

/** Lower-case hex HMAC-SHA256 of `data` (UTF-8) under `key`. */
export function hmacHex(key: Uint8Array, data: string): string {
  return createHmac("sha256", key).update(data).digest("hex");
}

const scratchA = new Uint8Array(128);
const scratchB = new Uint8Array(128);

/**
 * Compares two signatures (ASCII strings) with `timingSafeEqual`, in time that depends
 * only on their length. Strings of different lengths are unequal.
 */
export function signaturesEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  if (a.length > scratchA.length) {
    return timingSafeEqual(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
  }
  let wide = 0;
  for (let i = 0; i < a.length; i++) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(i);
    wide |= (ca | cb) >> 8;
    scratchA[i] = ca;
    scratchB[i] = cb;
  }
  const equal = timingSafeEqual(scratchA.subarray(0, a.length), scratchB.subarray(0, b.length));
  return equal && wide === 0;
}

/**
 * HMAC-SHA256 under one fixed key (at most 64 bytes, e.g. a signing key), with the padded
 * key blocks hashed once: each MAC then costs two hash-state copies instead of a new HMAC.
 * Signing every aws-chunked chunk goes through this.
 */
export class HmacSha256 {
  private readonly inner: Hash;
  private readonly outer: Hash;

  constructor(key: Uint8Array) {
    if (key.length > 64) throw new RangeError(`HMAC key of ${key.length} bytes exceeds 64`);
    const ipad = new Uint8Array(64).fill(0x36);
    const opad = new Uint8Array(64).fill(0x5c);
    for (let i = 0; i < key.length; i++) {
      ipad[i] ^= key[i];
      opad[i] ^= key[i];
    }
    this.inner = createHash("sha256").update(ipad);
    this.outer = createHash("sha256").update(opad);
  }

  /** Lower-case hex HMAC of `data` (UTF-8). */
  hex(data: string): string {
    return this.outer.copy().update(this.inner.copy().update(data).digest()).digest("hex");
  }
}

const KEY_CACHE_MAX = 1024;
const keyCache = new Map<string, Uint8Array>();

/**
 * The SigV4 signing key `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service),
 * "aws4_request")`, cached per (secret, date, region, service): it changes once a day.
 *
 * @param date the scope date, `YYYYMMDD`
 */
export function signingKey(
  secret: string,
  date: string,
  region: string,
  service: string = SERVICE,
): Uint8Array {
  const id = `${date}\n${region}\n${service}\n${secret}`;
  const hit = keyCache.get(id);
  if (hit !== undefined) return hit;
  const kDate = hmac("AWS4" + secret, date);
  const kRegion = hmac(kDate, region);
  const kService = hmac(kRegion, service);
  const key = hmac(kService, TERMINATOR);
  if (keyCache.size >= KEY_CACHE_MAX) keyCache.clear();
  keyCache.set(id, key);
  return key;
}

const HEX = "0123456789ABCDEF";
/** unreserved[b] is 1 for the RFC 3986 unreserved bytes A-Z a-z 0-9 - . _ ~ */
const UNRESERVED = new Uint8Array(256);
for (let b = 0; b < 256; b++) {
  const c = String.fromCharCode(b);
  if (/[A-Za-z0-9\-._~]/.test(c)) UNRESERVED[b] = 1;
}
const SLASH = 0x2f;
const PERCENT = 0x25;
const utf8 = new TextEncoder();

function hexValue(b: number): number {
  if (b >= 0x30 && b <= 0x39) return b - 0x30;
  if (b >= 0x41 && b <= 0x46) return b - 0x37;
  if (b >= 0x61 && b <= 0x66) return b - 0x57;
  return -1;
}

/**
 * Percent-decodes `s` to bytes: `%XX` becomes the byte XX, every other character its
 * UTF-8 bytes. A `%` not followed by two hex digits stays a literal `%`. `+` stays `+`
 * unless `plusIsSpace`.
 */
export function percentDecode(s: string, plusIsSpace = false): Uint8Array {
  const raw = utf8.encode(s);
  const out = new Uint8Array(raw.length);
  let n = 0;
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i];
    if (b === PERCENT && i + 2 < raw.length) {
      const hi = hexValue(raw[i + 1]);
      const lo = hexValue(raw[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out[n++] = (hi << 4) | lo;
        i += 2;
        continue;
      }
    }
    out[n++] = plusIsSpace && b === 0x2b ? 0x20 : b;
  }
  return out.subarray(0, n);
}

/**
 * SigV4 URI-encoding of bytes: unreserved bytes as themselves, `/` as itself when
 * `keepSlash`, every other byte `%XX` with upper-case hex.
 */
export function uriEncodeBytes(bytes: Uint8Array, keepSlash: boolean): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (UNRESERVED[b] === 1 || (keepSlash && b === SLASH)) out += String.fromCharCode(b);
    else out += "%" + HEX[b >> 4] + HEX[b & 15];
  }
  return out;
}

/** SigV4 URI-encoding of a string's UTF-8 bytes (`/` kept when `keepSlash`). */
export function uriEncode(s: string, keepSlash: boolean): string {
  return uriEncodeBytes(utf8.encode(s), keepSlash);
}

const PLAIN_PATH = /^[A-Za-z0-9\-._~/]*$/;

/**
 * The canonical URI for S3: the path percent-decoded once and encoded again, so
 * `/a%20b`, `/a b` and `/a%2fb`... each get one spelling. S3 neither collapses `//` nor
 * resolves `.` / `..`, and does not encode twice. An empty path is `/`.
 */
export function canonicalUri(rawPath: string): string {
  if (rawPath === "") return "/";
  if (PLAIN_PATH.test(rawPath)) return rawPath;
  return uriEncodeBytes(percentDecode(rawPath), true);
}

/** One query parameter, decoded. */
export interface QueryParam {
  name: string;
  value: string;
}

const latin1 = new TextDecoder("latin1");
const utf8Decoder = new TextDecoder();

/**
 * Splits a raw query string (without `?`) into decoded parameters, in order. Names and
 * values are percent-decoded as UTF-8 (invalid sequences become U+FFFD); `+` is a space,
 * as `URLSearchParams` (and so the S3 layer) reads it.
 */
export function parseQuery(rawQuery: string): QueryParam[] {
  const out: QueryParam[] = [];
  if (rawQuery === "") return out;
  for (const part of rawQuery.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const name = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? "" : part.slice(eq + 1);
    out.push({
      name: utf8Decoder.decode(percentDecode(name, true)),
      value: utf8Decoder.decode(percentDecode(value, true)),
    });
  }
  return out;
}

/**
 * The canonical query string: every parameter's name and value decoded and encoded
 * again, sorted by encoded name then value, `name=value` joined by `&` (`=` always
 * present). Parameters named in `exclude` (decoded, case-sensitive) are left out. A raw
 * `+` is a space (`%20`), as `URLSearchParams` reads it, so what is verified is what the
 * S3 layer will read; signers encode a literal plus as `%2B`.
 */
export function canonicalQuery(rawQuery: string, exclude: string | null): string {
  const plusIsSpace = true;
  if (rawQuery === "") return "";
  const pairs: [string, string][] = [];
  for (const part of rawQuery.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const nameBytes = percentDecode(eq < 0 ? part : part.slice(0, eq), plusIsSpace);
    if (exclude !== null && latin1.decode(nameBytes) === exclude) continue;
    const valueBytes = percentDecode(eq < 0 ? "" : part.slice(eq + 1), plusIsSpace);
    pairs.push([uriEncodeBytes(nameBytes, false), uriEncodeBytes(valueBytes, false)]);
  }
  pairs.sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0);
  return pairs.map(([n, v]) => `${n}=${v}`).join("&");
}

/** A header value as SigV4 canonicalizes it: trimmed, inner runs of whitespace as one space. */
export function canonicalHeaderValue(value: string): string {
  return value.trim().replace(/\s+/g, " ");
}

/**
 * The canonical request:
 * `method \n uri \n query \n name:value\n... \n signedHeaders \n payloadHash`.
 *
 * @param headerLines the canonical header lines, each `name:value`, in signed order
 */
export function canonicalRequest(
  method: string,
  uri: string,
  query: string,
  headerLines: string[],
  signedHeaders: string,
  payloadHash: string,
): string {
  return `${method}\n${uri}\n${query}\n${
    headerLines.join("\n")
  }\n\n${signedHeaders}\n${payloadHash}`;
}

/** The credential scope `date/region/s3/aws4_request`. */
export function scopeOf(date: string, region: string, service: string = SERVICE): string {
  return `${date}/${region}/${service}/${TERMINATOR}`;
}

/** The request string to sign: `AWS4-HMAC-SHA256 \n amzDate \n scope \n sha256(canonical)`. */
export function stringToSign(amzDate: string, scope: string, canonical: string): string {
  return `${ALGORITHM}\n${amzDate}\n${scope}\n${sha256Hex(canonical)}`;
}

/**
 * A chunk's string to sign: `AWS4-HMAC-SHA256-PAYLOAD \n amzDate \n scope \n
 * previousSignature \n sha256("") \n sha256(chunkData)`.
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html
 */
export function chunkStringToSign(
  amzDate: string,
  scope: string,
  previousSignature: string,
  chunkSha256Hex: string,
): string {
  return `AWS4-HMAC-SHA256-PAYLOAD\n${amzDate}\n${scope}\n${previousSignature}\n${EMPTY_SHA256}\n${chunkSha256Hex}`;
}

/**
 * The trailer's string to sign: `AWS4-HMAC-SHA256-TRAILER \n amzDate \n scope \n
 * previousSignature \n sha256(trailer lines, each "name:value\n")`.
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html
 */
export function trailerStringToSign(
  amzDate: string,
  scope: string,
  previousSignature: string,
  trailerText: string,
): string {
  return `AWS4-HMAC-SHA256-TRAILER\n${amzDate}\n${scope}\n${previousSignature}\n${
    sha256Hex(trailerText)
  }`;
}

const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

/** Milliseconds since the epoch of an ISO 8601 basic time `YYYYMMDDTHHMMSSZ`, or NaN. */
export function parseAmzDate(s: string): number {
  const m = AMZ_DATE.exec(s);
  if (m === null) return NaN;
  const [y, mo, d, h, mi, se] = m.slice(1).map(Number);
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return NaN;
  const ms = Date.UTC(y, mo - 1, d, h, mi, se);
  return new Date(ms).getUTCDate() === d ? ms : NaN;
}

/** `YYYYMMDDTHHMMSSZ` of a time in milliseconds since the epoch. */
export function formatAmzDate(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

/** Milliseconds since the epoch of an HTTP `Date` header (RFC 9110 IMF-fixdate), or NaN. */
export function parseHttpDate(s: string): number {
  if (!/^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(s.trim())) return NaN;
  return Date.parse(s);
}
