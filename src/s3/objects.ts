/**
 * Object operations: PutObject, GetObject, HeadObject, DeleteObject,
 * CopyObject and DeleteObjects.
 *
 * Every write stores the bytes first and proposes one metadata command
 * after; the commit is the linearization point. Data a commit replaced, and
 * data of a write whose commit failed, is removed afterwards.
 *
 * @module
 */
import {
  type ChecksumAlgorithm,
  type DataRef,
  notApplied,
  type ObjectRecord,
  type WriteCondition,
} from "../meta/mod.ts";
import { checksumHeader, parseChecksumAlgorithm } from "./checksums.ts";
import { type S3Context, xmlResponse } from "./context.ts";
import { S3Error } from "./errors.ts";
import {
  checkPreconditions,
  httpDate,
  isoDate,
  MAX_PUT_SIZE_BYTES,
  parseRange,
  readObjectHeaders,
  unquoteEtag,
  validateKey,
  writeObjectHeaders,
} from "./http.ts";
import {
  announcedSizeBytes,
  ingest,
  type Ingested,
  isSmallBody,
  readXmlBody,
  storeStream,
} from "./ingest.ts";
import type { RecordOwner } from "../data/segment_record.ts";
import { childElements, childText, renderXml } from "./xml.ts";
import { type ObjectLayout, requireBucket, requireObjectLayout } from "./lookup.ts";
import { refuseNonPrivateAcl } from "./acl.ts";
import { taggingHeader } from "./tagging.ts";

/**
 * Hands data no record references any more to the reclaimer, which removes
 * it once the reads that may still use it are done. A crash before that
 * leaves orphans for the startup sweep.
 */
export function removeGarbage(ctx: S3Context, garbage: DataRef[]): void {
  ctx.deps.reclaimer.retire(garbage);
}

/**
 * After `propose()` rejected the command that would have referenced `refs`:
 * hands them to the reclaimer only when the log promises the command is not
 * visible (a `MetaError`, see `notApplied`). Any other failure may have left
 * a committed record naming them, so they are kept; if none does, the startup
 * sweep removes them (ADR 0009).
 */
export function releaseUnapplied(ctx: S3Context, err: unknown, refs: DataRef[]): void {
  if (notApplied(err)) ctx.deps.reclaimer.retire(refs);
}

/** Wraps `stream` so that `release` runs once it ends, fails or is cancelled. */
function releasing(
  stream: ReadableStream<Uint8Array>,
  release: () => void,
): ReadableStream<Uint8Array> {
  const reader = stream.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          release();
          controller.close();
        } else {
          controller.enqueue(value);
        }
      } catch (err) {
        release();
        controller.error(err);
      }
    },
    cancel(reason) {
      release();
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/** Reads the conditional-write headers of a PUT or DELETE. */
function writeCondition(headers: Headers): WriteCondition | undefined {
  const ifNoneMatch = headers.get("if-none-match");
  const ifMatch = headers.get("if-match");
  if (ifNoneMatch === null && ifMatch === null) return undefined;
  const cond: WriteCondition = {};
  if (ifNoneMatch !== null) {
    if (ifNoneMatch.trim() !== "*") {
      throw new S3Error("NotImplemented", 'If-None-Match on a write supports only "*"');
    }
    cond.ifNoneMatch = "*";
  }
  if (ifMatch !== null) cond.ifMatch = ifMatch.trim() === "*" ? "*" : unquoteEtag(ifMatch);
  return cond;
}

/** Checks the request's storage class: STANDARD only (any other changes durability promises). */
function checkStorageClass(headers: Headers): void {
  const sc = headers.get("x-amz-storage-class");
  if (sc !== null && sc !== "STANDARD") {
    throw new S3Error(
      "InvalidStorageClass",
      `Storage class "${sc}" is not supported; only STANDARD is`,
    );
  }
}

/** Refuses headers that ask for features Hamster does not have, rather than ignoring them. */
export function refuseUnsupportedWriteHeaders(headers: Headers): void {
  for (
    const h of [
      "x-amz-server-side-encryption",
      "x-amz-server-side-encryption-customer-algorithm",
      "x-amz-object-lock-mode",
      "x-amz-object-lock-legal-hold",
      "x-amz-website-redirect-location",
    ]
  ) {
    if (headers.has(h)) throw new S3Error("NotImplemented", `The "${h}" header is not implemented`);
  }
  refuseNonPrivateAcl(headers);
  checkStorageClass(headers);
}

/** Response headers naming a stored checksum. */
function checksumHeaders(record: { checksum?: ObjectRecord["checksum"] }): Record<string, string> {
  if (!record.checksum) return {};
  return {
    [checksumHeader(record.checksum.algorithm)]: record.checksum.value,
    "x-amz-checksum-type": record.checksum.type,
  };
}

/** Proposes a PutObject for stored bytes; releases them when the command did not apply. */
async function commitObject(
  ctx: S3Context,
  ingested: Ingested,
  record: ObjectRecord,
  condition?: WriteCondition,
): Promise<void> {
  try {
    const result = await ctx.deps.log.propose({
      type: "PutObject",
      bucket: ctx.bucket,
      key: ctx.key,
      record,
      condition,
    });
    removeGarbage(ctx, result.garbage);
  } catch (err) {
    releaseUnapplied(ctx, err, [ingested.data]);
    throw err;
  } finally {
    ctx.deps.data.settle(ingested.data);
  }
}

/**
 * Stores a request body once its bucket is known to exist. A small body
 * ({@link isSmallBody}) is stored while the bucket is looked up and released
 * if the bucket is missing; a larger one is not read before the lookup succeeds.
 *
 * @throws {S3Error} `NoSuchBucket`, or what `store` throws
 */
async function storeInBucket(ctx: S3Context, store: () => Promise<Ingested>): Promise<Ingested> {
  if (!isSmallBody(announcedSizeBytes(ctx.req.headers))) {
    await requireBucket(ctx);
    return await store();
  }
  const [bucket, stored] = await Promise.allSettled([requireBucket(ctx), store()]);
  if (bucket.status === "rejected") {
    if (stored.status === "fulfilled") {
      removeGarbage(ctx, [stored.value.data]);
      ctx.deps.data.settle(stored.value.data);
    }
    throw bucket.reason;
  }
  if (stored.status === "rejected") throw stored.reason;
  return stored.value;
}

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html */
export async function PutObject(ctx: S3Context): Promise<Response> {
  const headers = ctx.req.headers;
  validateKey(ctx.key);
  refuseUnsupportedWriteHeaders(headers);
  const condition = writeCondition(headers);
  const { stored, userMeta } = readObjectHeaders(headers);
  const tags = taggingHeader(headers);
  const ingested = await storeInBucket(
    ctx,
    () => ingest(ctx, ctx.body(), { owner: { bucket: ctx.bucket, key: ctx.key } }),
  );
  const record: ObjectRecord = {
    ...stored,
    ...(tags && tags.length > 0 ? { tags } : {}),
    sizeBytes: ingested.data.sizeBytes,
    etag: ingested.md5Hex,
    lastModifiedMs: ctx.deps.clock.nowMs(),
    userMeta,
    data: ingested.data,
    ...(ingested.checksum ? { checksum: ingested.checksum } : {}),
  };
  await commitObject(ctx, ingested, record, condition);
  return new Response(null, {
    status: 200,
    headers: { etag: `"${record.etag}"`, ...checksumHeaders(record) },
  });
}

/**
 * The bytes `[start, end)` of an object, streamed part by part for a
 * multipart object, reading only the parts the range covers.
 */
export function objectStream(
  ctx: S3Context,
  layout: ObjectLayout,
  start: number,
  end: number,
): ReadableStream<Uint8Array> {
  const record = layout.record;
  if (record.data) return ctx.deps.data.read(record.data, start, end);
  const parts = layout.parts ?? [];
  const pieces: { ref: DataRef; start: number; end: number }[] = [];
  let offset = 0;
  for (const p of parts) {
    const pStart = offset;
    const pEnd = offset + p.data.sizeBytes;
    offset = pEnd;
    if (pEnd <= start || pStart >= end) continue;
    pieces.push({
      ref: p.data,
      start: Math.max(start, pStart) - pStart,
      end: Math.min(end, pEnd) - pStart,
    });
  }
  const data = ctx.deps.data;
  let i = 0;
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      while (i < pieces.length) {
        reader ??= data.read(pieces[i].ref, pieces[i].start, pieces[i].end).getReader();
        const { done, value } = await reader.read();
        if (!done) {
          controller.enqueue(value);
          return;
        }
        reader = undefined;
        i++;
      }
      controller.close();
    },
    async cancel(reason) {
      await reader?.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

async function getOrHead(ctx: S3Context, withBody: boolean): Promise<Response> {
  validateKey(ctx.key);
  const versionId = ctx.query.get("versionId");
  if (versionId !== null && versionId !== "null") {
    throw new S3Error("InvalidArgument", "Invalid version id specified", {
      extra: { ArgumentName: "versionId", ArgumentValue: versionId },
    });
  }
  if (ctx.query.has("partNumber")) {
    throw new S3Error("NotImplemented", "GetObject with partNumber is not implemented");
  }
  // Registered as a reader before the record is read, so its data outlives any overwrite.
  const release = ctx.deps.reclaimer.enter();
  try {
    const layout = await requireObjectLayout(ctx, ctx.bucket, ctx.key);
    const response = respondWithObject(ctx, layout, withBody);
    if (response.body === null) {
      release();
      return response;
    }
    return new Response(releasing(response.body, release), {
      status: response.status,
      headers: response.headers,
    });
  } catch (err) {
    release();
    throw err;
  }
}

function respondWithObject(ctx: S3Context, layout: ObjectLayout, withBody: boolean): Response {
  const record = layout.record;
  const headers = new Headers();
  try {
    checkPreconditions(ctx.req.headers, record);
  } catch (err) {
    if (err instanceof S3Error && err.code === "NotModified") {
      headers.set("etag", `"${record.etag}"`);
      headers.set("last-modified", httpDate(record.lastModifiedMs));
      return new Response(null, { status: 304, headers });
    }
    throw err;
  }
  const range = parseRange(ctx.req.headers.get("range"), record.sizeBytes);
  writeObjectHeaders(headers, record, withBody ? ctx.query : undefined);
  if (ctx.req.headers.get("x-amz-checksum-mode")?.toUpperCase() === "ENABLED" && !range) {
    for (const [k, v] of Object.entries(checksumHeaders(record))) headers.set(k, v);
  }
  const start = range?.start ?? 0;
  const end = range?.end ?? record.sizeBytes;
  headers.set("content-length", String(end - start));
  if (range) headers.set("content-range", `bytes ${start}-${end - 1}/${record.sizeBytes}`);
  const status = range ? 206 : 200;
  if (!withBody) return new Response(null, { status, headers });
  return new Response(objectStream(ctx, layout, start, end), { status, headers });
}

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html */
export function GetObject(ctx: S3Context): Promise<Response> {
  return getOrHead(ctx, true);
}

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html */
export function HeadObject(ctx: S3Context): Promise<Response> {
  return getOrHead(ctx, false);
}

/** Deleting a missing key succeeds, as in S3. @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObject.html */
export async function DeleteObject(ctx: S3Context): Promise<Response> {
  validateKey(ctx.key);
  const ifMatch = ctx.req.headers.get("if-match");
  const result = await ctx.deps.log.propose({
    type: "DeleteObject",
    bucket: ctx.bucket,
    key: ctx.key,
    ...(ifMatch !== null
      ? { condition: { ifMatch: ifMatch.trim() === "*" ? "*" : unquoteEtag(ifMatch) } }
      : {}),
  });
  removeGarbage(ctx, result.garbage);
  return new Response(null, { status: 204 });
}

/** The most keys one DeleteObjects request may name. */
export const MAX_DELETE_KEYS = 1000;

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html */
export async function DeleteObjects(ctx: S3Context): Promise<Response> {
  await requireBucket(ctx);
  const doc = await readXmlBody(ctx, "Delete");
  const objects = childElements(doc, "Object");
  if (objects.length === 0 || objects.length > MAX_DELETE_KEYS) {
    throw new S3Error(
      "MalformedXML",
      `A Delete request must name 1 to ${MAX_DELETE_KEYS} keys; it named ${objects.length}`,
    );
  }
  const quiet = (childText(doc, "Quiet") ?? "false").toLowerCase() === "true";
  // Every Object is read before any key is deleted: one malformed entry refuses the request.
  const named = objects.map((o) => {
    const key = childText(o, "Key");
    if (key === undefined) throw new S3Error("MalformedXML", "Every Object needs a Key");
    return { key, versionId: childText(o, "VersionId") };
  });
  const valid: string[] = [];
  const errors: { Key: string; Code: string; Message: string }[] = [];
  for (const { key, versionId } of named) {
    try {
      validateKey(key);
      if (versionId !== undefined && versionId !== "null") {
        throw new S3Error("NoSuchVersion", "The specified version does not exist");
      }
      valid.push(key);
    } catch (err) {
      errors.push({
        Key: key,
        Code: err instanceof S3Error ? err.code : "InternalError",
        Message: err instanceof Error ? err.message : "Internal error",
      });
    }
  }
  const result = valid.length > 0
    ? await ctx.deps.log.propose({ type: "DeleteObjects", bucket: ctx.bucket, keys: valid })
    : { garbage: [] };
  removeGarbage(ctx, result.garbage);
  return xmlResponse(renderXml("DeleteResult", {
    Deleted: quiet ? [] : valid.map((Key) => ({ Key })),
    Error: errors,
  }));
}

/** Parses `x-amz-copy-source`: `[/]bucket/key[?versionId=...]`, URL-encoded. */
export function parseCopySource(value: string): { bucket: string; key: string } {
  let v = value;
  const q = v.indexOf("?");
  if (q !== -1) {
    const params = new URLSearchParams(v.slice(q + 1));
    const versionId = params.get("versionId");
    if (versionId !== null && versionId !== "null") {
      throw new S3Error("InvalidArgument", "Invalid version id specified in x-amz-copy-source");
    }
    v = v.slice(0, q);
  }
  let decoded: string;
  try {
    decoded = decodeURIComponent(v);
  } catch {
    throw new S3Error("InvalidArgument", "Copy source is not valid percent-encoded UTF-8");
  }
  if (decoded.startsWith("/")) decoded = decoded.slice(1);
  const slash = decoded.indexOf("/");
  if (slash <= 0 || slash === decoded.length - 1) {
    throw new S3Error("InvalidArgument", "Copy source must be of the form bucket/key", {
      extra: { ArgumentName: "x-amz-copy-source", ArgumentValue: value },
    });
  }
  const bucket = decoded.slice(0, slash);
  const key = decoded.slice(slash + 1);
  if (bucket.length > 63) {
    throw new S3Error("NoSuchBucket", "The copy source bucket does not exist");
  }
  validateKey(key);
  return { bucket, key };
}

/**
 * Reads the copy source named by the request, checks the copy-source
 * preconditions, and returns its record.
 *
 * @throws {S3Error} `NoSuchBucket`, `NoSuchKey`, `PreconditionFailed`
 */
export async function copySource(
  ctx: S3Context,
): Promise<{ bucket: string; key: string; record: ObjectRecord; layout: ObjectLayout }> {
  const src = parseCopySource(ctx.req.headers.get("x-amz-copy-source") ?? "");
  const layout = await requireObjectLayout(ctx, src.bucket, src.key);
  checkPreconditions(ctx.req.headers, layout.record, "x-amz-copy-source-");
  return { ...src, record: layout.record, layout };
}

/**
 * Copies bytes `[start, end)` of a source object into new data, recomputing
 * MD5 and checksum; with `owner`, the copy is that object's whole data.
 */
export async function copyBytes(
  ctx: S3Context,
  layout: ObjectLayout,
  start: number,
  end: number,
  algorithm?: ChecksumAlgorithm,
  owner?: RecordOwner,
): Promise<Ingested> {
  return await storeStream(
    ctx,
    {
      stream: objectStream(ctx, layout, start, end),
      trailers: Promise.resolve(new Headers()),
    },
    {
      maxSizeBytes: MAX_PUT_SIZE_BYTES,
      announcedSizeBytes: end - start,
      fromClient: false,
      ...(owner ? { owner } : {}),
      ...(algorithm ? { checksum: { algorithm, fromTrailer: false } } : {}),
    },
  );
}

/**
 * Runs `fn` as a registered reader, so the data of the copy source it reads
 * is not removed by a concurrent overwrite or delete until it is done.
 */
export async function asReader<T>(ctx: S3Context, fn: () => Promise<T>): Promise<T> {
  const release = ctx.deps.reclaimer.enter();
  try {
    return await fn();
  } finally {
    release();
  }
}

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html */
export async function CopyObject(ctx: S3Context): Promise<Response> {
  const headers = ctx.req.headers;
  validateKey(ctx.key);
  refuseUnsupportedWriteHeaders(headers);
  const directive = (headers.get("x-amz-metadata-directive") ?? "COPY").toUpperCase();
  if (directive !== "COPY" && directive !== "REPLACE") {
    throw new S3Error("InvalidArgument", `Unknown metadata directive "${directive}"`, {
      extra: { ArgumentName: "x-amz-metadata-directive", ArgumentValue: directive },
    });
  }
  const taggingDirective = (headers.get("x-amz-tagging-directive") ?? "COPY").toUpperCase();
  if (taggingDirective !== "COPY" && taggingDirective !== "REPLACE") {
    throw new S3Error("InvalidArgument", `Unknown tagging directive "${taggingDirective}"`, {
      extra: { ArgumentName: "x-amz-tagging-directive", ArgumentValue: taggingDirective },
    });
  }
  // Every check on the request runs before any byte is copied.
  const requestTags = taggingDirective === "REPLACE" ? taggingHeader(headers) : undefined;
  const fromRequest = directive === "REPLACE" ? readObjectHeaders(headers) : undefined;
  const condition = writeCondition(headers);
  const asked = headers.get("x-amz-checksum-algorithm");
  const askedAlgorithm = asked !== null ? parseChecksumAlgorithm(asked) : undefined;
  const { src, ingested } = await asReader(ctx, async () => {
    const src = await copySource(ctx);
    await requireBucket(ctx);
    if (src.bucket === ctx.bucket && src.key === ctx.key && directive !== "REPLACE") {
      throw new S3Error(
        "InvalidRequest",
        "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata",
      );
    }
    if (src.record.sizeBytes > MAX_PUT_SIZE_BYTES) {
      throw new S3Error(
        "InvalidRequest",
        "The specified copy source is larger than the maximum allowable size for a copy source: 5368709120",
      );
    }
    const algorithm = askedAlgorithm ?? src.record.checksum?.algorithm;
    const ingested = await copyBytes(ctx, src.layout, 0, src.record.sizeBytes, algorithm, {
      bucket: ctx.bucket,
      key: ctx.key,
    });
    return { src, ingested };
  });
  const base = fromRequest ? { ...fromRequest.stored, userMeta: fromRequest.userMeta } : {
    contentType: src.record.contentType,
    cacheControl: src.record.cacheControl,
    contentDisposition: src.record.contentDisposition,
    contentEncoding: src.record.contentEncoding,
    contentLanguage: src.record.contentLanguage,
    expires: src.record.expires,
    userMeta: src.record.userMeta,
  };
  const tags = taggingDirective === "REPLACE" ? requestTags : src.record.tags;
  const record: ObjectRecord = JSON.parse(JSON.stringify({
    ...base,
    ...(tags && tags.length > 0 ? { tags } : {}),
    sizeBytes: ingested.data.sizeBytes,
    etag: ingested.md5Hex,
    lastModifiedMs: ctx.deps.clock.nowMs(),
    data: ingested.data,
    ...(ingested.checksum ? { checksum: ingested.checksum } : {}),
  }));
  await commitObject(ctx, ingested, record, condition);
  return xmlResponse(
    renderXml("CopyObjectResult", {
      ETag: `"${record.etag}"`,
      LastModified: isoDate(record.lastModifiedMs),
      ...(record.checksum
        ? { [`Checksum${record.checksum.algorithm}`]: record.checksum.value }
        : {}),
    }),
    200,
    checksumHeaders(record),
  );
}
