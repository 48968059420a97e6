/**
 * HTTP details of the S3 API: names, ranges, conditional requests, dates and
 * the object headers stored and returned.
 *
 * Pure: no clock, no I/O.
 *
 * @module
 */
import type { ObjectHeaders, ObjectRecord } from "../meta/records.ts";
import { S3Error } from "./errors.ts";

/** The largest object a single PUT (or one part) may carry: 5 GiB. */
export const MAX_PUT_SIZE_BYTES = 5 * 1024 ** 3;
/** The largest key, in UTF-8 bytes. */
export const MAX_KEY_SIZE_BYTES = 1024;
/** The largest total of user metadata (names and values), in bytes. */
export const MAX_USER_META_BYTES = 2048;

const encoder = new TextEncoder();

/**
 * Checks a bucket name against the AWS naming rules for new buckets.
 *
 * @throws {S3Error} `InvalidBucketName`
 * @see https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
 */
export function validateBucketName(name: string): void {
  const bad = (why: string) => new S3Error("InvalidBucketName", `Bucket name "${name}" ${why}`);
  if (name.length < 3 || name.length > 63) throw bad("must be 3 to 63 characters long");
  if (!/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/.test(name)) {
    throw bad(
      "may hold only lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit",
    );
  }
  if (name.includes("..")) throw bad("must not hold two adjacent dots");
  if (name.includes(".-") || name.includes("-.")) throw bad("must not hold a dot next to a hyphen");
  if (/^\d+\.\d+\.\d+\.\d+$/.test(name)) throw bad("must not be formatted as an IP address");
  for (const p of ["xn--", "sthree-", "amzn-s3-demo-"]) {
    if (name.startsWith(p)) throw bad(`must not start with "${p}"`);
  }
  for (const s of ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"]) {
    if (name.endsWith(s)) throw bad(`must not end with "${s}"`);
  }
}

/**
 * Checks an object key: 1 to 1024 bytes of UTF-8.
 *
 * @throws {S3Error} `KeyTooLongError`, or `InvalidArgument` for an empty key
 */
export function validateKey(key: string): void {
  if (key.length === 0) throw new S3Error("InvalidArgument", "Object key must not be empty");
  // XML 1.0 cannot carry U+0000, so such a key could never be listed.
  if (key.includes("\u0000")) {
    throw new S3Error("InvalidArgument", "Object key must not contain the NUL character");
  }
  if (key.length > MAX_KEY_SIZE_BYTES / 3 && encoder.encode(key).length > MAX_KEY_SIZE_BYTES) {
    throw new S3Error(
      "KeyTooLongError",
      `Key is ${encoder.encode(key).length} bytes; the limit is 1024`,
    );
  }
}

/** An HTTP date (RFC 7231 IMF-fixdate), as in Last-Modified. */
export function httpDate(ms: number): string {
  return new Date(ms).toUTCString();
}

/** An ISO 8601 timestamp with milliseconds, as in XML `LastModified`. */
export function isoDate(ms: number): string {
  return new Date(ms).toISOString();
}

/** A byte range `[start, end)` of an object. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Parses a `Range` header against an object of `sizeBytes` bytes.
 *
 * `bytes=a-b`, `bytes=a-` and `bytes=-n` are honoured; a header that is not a
 * single byte range is ignored (RFC 9110 allows it), so the whole object is sent.
 *
 * @returns the range, or `null` to send the whole object
 * @throws {S3Error} `InvalidRange` when the range cannot be satisfied
 * @see https://www.rfc-editor.org/rfc/rfc9110#section-14.2
 */
export function parseRange(header: string | null, sizeBytes: number): ByteRange | null {
  if (header === null) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === "" && m[2] === "")) return null;
  let start: number;
  let end: number;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0) throw invalidRange(sizeBytes);
    start = Math.max(0, sizeBytes - suffix);
    end = sizeBytes;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? sizeBytes : Math.min(Number(m[2]) + 1, sizeBytes);
    if (m[2] !== "" && Number(m[2]) < start) return null;
  }
  if (start >= sizeBytes) throw invalidRange(sizeBytes);
  return { start, end };
}

function invalidRange(sizeBytes: number): S3Error {
  return new S3Error("InvalidRange", "The requested range is not satisfiable", {
    extra: { ActualObjectSize: String(sizeBytes) },
    headers: { "content-range": `bytes */${sizeBytes}` },
  });
}

/** Strips the quotes (and a weak `W/` prefix) from an ETag as sent in a header or XML. */
export function unquoteEtag(etag: string): string {
  let e = etag.trim();
  if (e.startsWith("W/")) e = e.slice(2);
  if (e.length >= 2 && e.startsWith('"') && e.endsWith('"')) e = e.slice(1, -1);
  return e;
}

function etagListMatches(header: string, etag: string): boolean {
  return header.split(",").some((t) => {
    const v = t.trim();
    return v === "*" || unquoteEtag(v) === etag;
  });
}

function parseHttpDate(v: string | null): number | null {
  if (v === null) return null;
  const ms = Date.parse(v);
  return Number.isNaN(ms) ? null : ms;
}

/** Which conditional headers to read: a GET's own, or a copy source's (`x-amz-copy-source-if-*`). */
export type ConditionPrefix = "" | "x-amz-copy-source-";

/**
 * Evaluates If-Match, If-Unmodified-Since, If-None-Match and If-Modified-Since
 * in the order RFC 9110 section 13.2.2 gives.
 *
 * @throws {S3Error} `PreconditionFailed` (412), or `NotModified` (304) for GET and HEAD
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html
 */
export function checkPreconditions(
  headers: Headers,
  record: Pick<ObjectRecord, "etag" | "lastModifiedMs">,
  prefix: ConditionPrefix = "",
): void {
  const lastModifiedS = Math.floor(record.lastModifiedMs / 1000);
  const ifMatch = headers.get(`${prefix}if-match`);
  const ifNoneMatch = headers.get(`${prefix}if-none-match`);
  if (ifMatch !== null) {
    if (!etagListMatches(ifMatch, record.etag)) throw new S3Error("PreconditionFailed");
  } else {
    const since = parseHttpDate(headers.get(`${prefix}if-unmodified-since`));
    if (since !== null && lastModifiedS > Math.floor(since / 1000)) {
      throw new S3Error("PreconditionFailed");
    }
  }
  const failed = prefix === "" ? new S3Error("NotModified") : new S3Error("PreconditionFailed");
  if (ifNoneMatch !== null) {
    if (etagListMatches(ifNoneMatch, record.etag)) throw failed;
  } else {
    const since = parseHttpDate(headers.get(`${prefix}if-modified-since`));
    if (since !== null && lastModifiedS <= Math.floor(since / 1000)) throw failed;
  }
}

/** The standard headers an object stores, by header name. */
export const OBJECT_HEADER_NAMES: Record<keyof ObjectHeaders, string> = {
  contentType: "content-type",
  cacheControl: "cache-control",
  contentDisposition: "content-disposition",
  contentEncoding: "content-encoding",
  contentLanguage: "content-language",
  expires: "expires",
};

/**
 * Reads the stored headers and `x-amz-meta-*` from a PUT, copy or
 * CreateMultipartUpload request.
 *
 * @throws {S3Error} `MetadataTooLarge` over 2 KiB of user metadata
 */
export function readObjectHeaders(headers: Headers): {
  stored: ObjectHeaders;
  userMeta: Record<string, string>;
} {
  const stored: ObjectHeaders = {};
  for (
    const [field, name] of Object.entries(OBJECT_HEADER_NAMES) as [keyof ObjectHeaders, string][]
  ) {
    const v = headers.get(name);
    if (v !== null) stored[field] = v;
  }
  // aws-chunked is a transfer detail of the request, not the object's encoding.
  if (stored.contentEncoding !== undefined) {
    const kept = stored.contentEncoding.split(",").map((s) => s.trim()).filter((s) =>
      s !== "" && s !== "aws-chunked"
    );
    if (kept.length === 0) delete stored.contentEncoding;
    else stored.contentEncoding = kept.join(",");
  }
  const userMeta: Record<string, string> = {};
  let metaBytes = 0;
  for (const [name, value] of headers) {
    if (name.startsWith("x-amz-meta-")) {
      const short = name.slice("x-amz-meta-".length);
      userMeta[short] = value;
      metaBytes += short.length + value.length;
    }
  }
  if (metaBytes > MAX_USER_META_BYTES) {
    throw new S3Error("MetadataTooLarge", `User metadata is ${metaBytes} bytes; the limit is 2048`);
  }
  return { stored, userMeta };
}

/** The `response-*` query parameters a GET may use to override response headers. */
const RESPONSE_OVERRIDES: Record<string, string> = {
  "response-content-type": "content-type",
  "response-content-language": "content-language",
  "response-expires": "expires",
  "response-cache-control": "cache-control",
  "response-content-disposition": "content-disposition",
  "response-content-encoding": "content-encoding",
};

/** Sets an object's stored headers, user metadata and `response-*` overrides on `out`. */
export function writeObjectHeaders(
  out: Headers,
  record: ObjectRecord,
  query?: URLSearchParams,
): void {
  out.set("etag", `"${record.etag}"`);
  out.set("last-modified", httpDate(record.lastModifiedMs));
  out.set("accept-ranges", "bytes");
  out.set("content-type", record.contentType ?? "binary/octet-stream");
  for (
    const [field, name] of Object.entries(OBJECT_HEADER_NAMES) as [keyof ObjectHeaders, string][]
  ) {
    const v = record[field];
    if (v !== undefined && field !== "contentType") out.set(name, v);
  }
  for (const [k, v] of Object.entries(record.userMeta)) out.set(`x-amz-meta-${k}`, v);
  if (record.multipart) out.set("x-amz-mp-parts-count", String(record.multipart.partCount));
  if (record.tags) out.set("x-amz-tagging-count", String(record.tags.length));
  if (query) {
    for (const [param, name] of Object.entries(RESPONSE_OVERRIDES)) {
      const v = query.get(param);
      if (v === null) continue;
      // A header value is Latin-1 without CR, LF or NUL; anything else cannot be sent.
      if (!/^[\t\x20-\x7e\x80-\xff]*$/.test(v)) {
        throw new S3Error("InvalidArgument", `The value of ${param} cannot be sent as a header`, {
          extra: { ArgumentName: param },
        });
      }
      out.set(name, v);
    }
  }
}
