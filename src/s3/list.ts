/**
 * ListObjects (V1) and ListObjectsV2 over the `["cur", bucket, key]` range.
 *
 * Keys come back in UTF-8 byte order (Deno KV's string order). With a
 * delimiter, every key under a common prefix is skipped by restarting the
 * range scan just past that prefix, so a page costs one KV batch per common
 * prefix plus one per 1000 keys.
 *
 * @module
 */
import type { ObjectRecord } from "../meta/mod.ts";
import { OWNER, type S3Context, xmlResponse } from "./context.ts";
import { S3Error } from "./errors.ts";
import { isoDate } from "./http.ts";
import { renderXml, type XmlElement } from "./xml.ts";
import { type Reads, requireBucket } from "./lookup.ts";

/** The most keys a page returns, and the default. */
export const MAX_KEYS = 1000;

/** The largest UTF-8 key (1024 bytes) followed by this sorts after every key with the same prefix. */
const AFTER_ALL = "\u{10FFFF}";

/** One listing page: objects and common prefixes in key order. */
export interface ListPage {
  contents: { key: string; record: ObjectRecord }[];
  commonPrefixes: string[];
  isTruncated: boolean;
  /** The last key or common prefix returned: where the next page starts after. */
  last?: string;
}

/**
 * Lists keys of `bucket` with `prefix`, strictly after `after`, grouping by
 * `delimiter`, at most `maxKeys` entries (objects plus common prefixes).
 */
export async function listPage(
  reads: Reads,
  bucket: string,
  opts: { prefix: string; delimiter: string; after: string; maxKeys: number },
): Promise<ListPage> {
  const page: ListPage = { contents: [], commonPrefixes: [], isTruncated: false };
  const { prefix, delimiter, maxKeys } = opts;
  const afterWins = compareUtf8(opts.after, prefix) > 0;
  let from = afterWins ? opts.after : prefix;
  let fromInclusive = !afterWins;
  // A marker inside a common prefix continues after that prefix.
  if (delimiter !== "" && opts.after.startsWith(prefix)) {
    const i = opts.after.indexOf(delimiter, prefix.length);
    if (i !== -1) {
      from = skipPast(opts.after.slice(0, i + delimiter.length));
      fromInclusive = true;
    }
  }
  if (maxKeys === 0) {
    return page;
  }
  let count = 0;
  scan: while (true) {
    let restarted = false;
    for await (const { key, record } of reads.objects(bucket, from)) {
      if (!fromInclusive && key === from) continue;
      // Keys sharing a prefix are contiguous in UTF-8 order, and the scan starts inside them.
      if (!key.startsWith(prefix)) break scan;
      if (count === maxKeys) {
        page.isTruncated = true;
        break scan;
      }
      if (delimiter !== "") {
        const i = key.indexOf(delimiter, prefix.length);
        if (i !== -1) {
          const common = key.slice(0, i + delimiter.length);
          page.commonPrefixes.push(common);
          page.last = common;
          count++;
          from = skipPast(common);
          fromInclusive = true;
          restarted = true;
          break;
        }
      }
      page.contents.push({ key, record });
      page.last = key;
      count++;
    }
    if (!restarted) break;
  }
  return page;
}

/** A string after every key that starts with `prefix` (keys are at most 1024 UTF-8 bytes). */
function skipPast(prefix: string): string {
  const prefixBytes = new TextEncoder().encode(prefix).length;
  return prefix + AFTER_ALL.repeat(Math.max(1, Math.ceil((1025 - prefixBytes) / 4)));
}

/** Compares strings by their UTF-8 bytes (code point order), as Deno KV orders keys. */
export function compareUtf8(a: string, b: string): number {
  const ea = new TextEncoder().encode(a);
  const eb = new TextEncoder().encode(b);
  const n = Math.min(ea.length, eb.length);
  for (let i = 0; i < n; i++) if (ea[i] !== eb[i]) return ea[i] - eb[i];
  return ea.length - eb.length;
}

/**
 * A listing parameter (prefix, delimiter, marker, start-after): at most 1024
 * bytes of UTF-8, the longest a key can be.
 *
 * @throws {S3Error} `InvalidArgument` when longer
 */
export function listParam(q: URLSearchParams, name: string): string {
  const v = q.get(name) ?? "";
  if (v.length > 341 && new TextEncoder().encode(v).length > 1024) {
    throw new S3Error("InvalidArgument", `The ${name} parameter is longer than 1024 bytes`, {
      extra: { ArgumentName: name },
    });
  }
  return v;
}

function parseMaxKeys(v: string | null): number {
  if (v === null) return MAX_KEYS;
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n)) {
    throw new S3Error(
      "InvalidArgument",
      "Provided max-keys not an integer or within integer range",
      {
        extra: { ArgumentName: "max-keys", ArgumentValue: v },
      },
    );
  }
  return Math.min(n, MAX_KEYS);
}

/**
 * The `encoding-type` of a listing: with `url`, key-valued fields are
 * percent-encoded (UTF-8; `/` kept), so any key reads back exactly.
 *
 * @throws {S3Error} `InvalidArgument` for any other value
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html#API_ListObjectsV2_RequestSyntax
 */
export function encodingOf(ctx: S3Context): (s: string) => string {
  const enc = ctx.query.get("encoding-type");
  if (enc === null) return (s) => s;
  if (enc !== "url") {
    throw new S3Error("InvalidArgument", "Invalid Encoding Method specified in Request", {
      extra: { ArgumentName: "encoding-type", ArgumentValue: enc },
    });
  }
  return (s) =>
    encodeURIComponent(s).replace(/%2F/g, "/").replace(
      /[!'()*]/g,
      (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
    );
}

function contentsXml(page: ListPage, enc: (s: string) => string, withOwner: boolean): XmlElement[] {
  return page.contents.map(({ key, record }) => ({
    Key: enc(key),
    LastModified: isoDate(record.lastModifiedMs),
    ETag: `"${record.etag}"`,
    ...(record.checksum
      ? { ChecksumAlgorithm: record.checksum.algorithm, ChecksumType: record.checksum.type }
      : {}),
    Size: record.sizeBytes,
    ...(withOwner ? { Owner: { ...OWNER } } : {}),
    StorageClass: "STANDARD",
  }));
}

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjects.html */
export async function ListObjects(ctx: S3Context): Promise<Response> {
  await requireBucket(ctx);
  const q = ctx.query;
  const enc = encodingOf(ctx);
  const prefix = listParam(q, "prefix");
  const delimiter = listParam(q, "delimiter");
  const marker = listParam(q, "marker");
  const maxKeys = parseMaxKeys(q.get("max-keys"));
  const page = await listPage(ctx.reads, ctx.bucket, {
    prefix,
    delimiter,
    after: marker,
    maxKeys,
  });
  return xmlResponse(renderXml("ListBucketResult", {
    Name: ctx.bucket,
    Prefix: enc(prefix),
    Marker: enc(marker),
    ...(page.isTruncated && delimiter !== "" && page.last ? { NextMarker: enc(page.last) } : {}),
    MaxKeys: maxKeys,
    ...(delimiter !== "" ? { Delimiter: enc(delimiter) } : {}),
    IsTruncated: page.isTruncated,
    ...(q.has("encoding-type") ? { EncodingType: "url" } : {}),
    Contents: contentsXml(page, enc, true),
    CommonPrefixes: page.commonPrefixes.map((p) => ({ Prefix: enc(p) })),
  }));
}

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html */
export async function ListObjectsV2(ctx: S3Context): Promise<Response> {
  await requireBucket(ctx);
  const q = ctx.query;
  const enc = encodingOf(ctx);
  const prefix = listParam(q, "prefix");
  const delimiter = listParam(q, "delimiter");
  const startAfter = listParam(q, "start-after");
  const token = q.get("continuation-token");
  let after = startAfter;
  if (token !== null) {
    try {
      after = new TextDecoder("utf-8", { fatal: true }).decode(
        Uint8Array.from(atob(token), (c) => c.charCodeAt(0)),
      );
    } catch {
      throw new S3Error("InvalidArgument", "The continuation token provided is incorrect", {
        extra: { ArgumentName: "continuation-token" },
      });
    }
  }
  const maxKeys = parseMaxKeys(q.get("max-keys"));
  const page = await listPage(ctx.reads, ctx.bucket, { prefix, delimiter, after, maxKeys });
  const next = page.isTruncated && page.last !== undefined
    ? btoa(String.fromCharCode(...new TextEncoder().encode(page.last)))
    : undefined;
  return xmlResponse(renderXml("ListBucketResult", {
    Name: ctx.bucket,
    Prefix: enc(prefix),
    ...(delimiter !== "" ? { Delimiter: enc(delimiter) } : {}),
    MaxKeys: maxKeys,
    ...(q.has("encoding-type") ? { EncodingType: "url" } : {}),
    KeyCount: page.contents.length + page.commonPrefixes.length,
    IsTruncated: page.isTruncated,
    ...(token !== null ? { ContinuationToken: token } : {}),
    ...(next !== undefined ? { NextContinuationToken: next } : {}),
    ...(startAfter !== "" ? { StartAfter: enc(startAfter) } : {}),
    Contents: contentsXml(page, enc, q.get("fetch-owner") === "true"),
    CommonPrefixes: page.commonPrefixes.map((p) => ({ Prefix: enc(p) })),
  }));
}
