/**
 * Multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy,
 * CompleteMultipartUpload, AbortMultipartUpload, ListParts and
 * ListMultipartUploads.
 *
 * ETag of the result: MD5 of the concatenated binary part MD5s, then `-N`.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import type { ChecksumValue, PartRecord, UploadRecord } from "../meta/mod.ts";
import { checksumHeader, compositeChecksum, parseChecksumAlgorithm } from "./checksums.ts";
import { newId, OWNER, type S3Context, xmlResponse } from "./context.ts";
import { S3Error } from "./errors.ts";
import { isoDate, readObjectHeaders, unquoteEtag, validateKey } from "./http.ts";
import { ingest, type Ingested, readXmlBody } from "./ingest.ts";
import { compareUtf8, encodingOf, listParam } from "./list.ts";
import {
  asReader,
  copyBytes,
  copySource,
  refuseUnsupportedWriteHeaders,
  releaseUnapplied,
  removeGarbage,
} from "./objects.ts";
import { taggingHeader } from "./tagging.ts";
import { requireBucket, requireUpload } from "./lookup.ts";
import { childElements, childText, renderXml } from "./xml.ts";

/** Upload ids Hamster issues: 48 lower-case hex digits. */
const UPLOAD_ID = /^[0-9a-f]{48}$/;

/** The request's `uploadId`; one Hamster could not have issued is `NoSuchUpload`. */
function uploadIdParam(ctx: S3Context): string {
  const id = ctx.query.get("uploadId") ?? "";
  if (!UPLOAD_ID.test(id)) {
    throw new S3Error("NoSuchUpload", "The specified multipart upload does not exist", {
      extra: { UploadId: id.slice(0, 100) },
    });
  }
  return id;
}

/** The highest part number. */
export const MAX_PART_NUMBER = 10000;

function parsePartNumber(v: string | null): number {
  const n = Number(v);
  if (v === null || !/^\d+$/.test(v) || n < 1 || n > MAX_PART_NUMBER) {
    throw new S3Error(
      "InvalidArgument",
      "Part number must be an integer between 1 and 10000, inclusive",
      {
        extra: { ArgumentName: "partNumber", ArgumentValue: v ?? "" },
      },
    );
  }
  return n;
}

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateMultipartUpload.html */
export async function CreateMultipartUpload(ctx: S3Context): Promise<Response> {
  validateKey(ctx.key);
  const headers = ctx.req.headers;
  refuseUnsupportedWriteHeaders(headers);
  const { stored, userMeta } = readObjectHeaders(headers);
  const tags = taggingHeader(headers);
  const algorithmName = headers.get("x-amz-checksum-algorithm");
  const uploadId = newId(ctx.deps.rng, 24);
  const upload: UploadRecord = JSON.parse(JSON.stringify({
    ...stored,
    uploadId,
    initiatedMs: ctx.deps.clock.nowMs(),
    userMeta,
    ...(tags && tags.length > 0 ? { tags } : {}),
    ...(algorithmName !== null ? { checksumAlgorithm: parseChecksumAlgorithm(algorithmName) } : {}),
  }));
  await ctx.deps.log.propose({
    type: "CreateMultipartUpload",
    bucket: ctx.bucket,
    key: ctx.key,
    upload,
  });
  return xmlResponse(
    renderXml("InitiateMultipartUploadResult", {
      Bucket: ctx.bucket,
      Key: ctx.key,
      UploadId: uploadId,
    }),
    200,
    upload.checksumAlgorithm ? { "x-amz-checksum-algorithm": upload.checksumAlgorithm } : {},
  );
}

/** Records stored bytes as part `partNumber`; releases them when the command did not apply. */
async function commitPart(
  ctx: S3Context,
  uploadId: string,
  partNumber: number,
  ingested: Ingested,
): Promise<PartRecord> {
  const part: PartRecord = {
    partNumber,
    etag: ingested.md5Hex,
    data: ingested.data,
    lastModifiedMs: ctx.deps.clock.nowMs(),
    ...(ingested.checksum ? { checksum: ingested.checksum } : {}),
  };
  try {
    const result = await ctx.deps.log.propose({
      type: "UploadPart",
      bucket: ctx.bucket,
      key: ctx.key,
      uploadId,
      part,
    });
    removeGarbage(ctx, result.garbage);
  } catch (err) {
    releaseUnapplied(ctx, err, [part.data]);
    throw err;
  }
  return part;
}

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPart.html */
export async function UploadPart(ctx: S3Context): Promise<Response> {
  validateKey(ctx.key);
  const partNumber = parsePartNumber(ctx.query.get("partNumber"));
  const uploadId = uploadIdParam(ctx);
  const upload = await requireUpload(ctx, uploadId);
  const ingested = await ingest(ctx, ctx.body(), { uploadAlgorithm: upload.checksumAlgorithm });
  const part = await commitPart(ctx, uploadId, partNumber, ingested);
  const headers: Record<string, string> = { etag: `"${part.etag}"` };
  if (part.checksum) headers[checksumHeader(part.checksum.algorithm)] = part.checksum.value;
  return new Response(null, { status: 200, headers });
}

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPartCopy.html */
export async function UploadPartCopy(ctx: S3Context): Promise<Response> {
  validateKey(ctx.key);
  const partNumber = parsePartNumber(ctx.query.get("partNumber"));
  const uploadId = uploadIdParam(ctx);
  const upload = await requireUpload(ctx, uploadId);
  const ingested = await asReader(ctx, async () => {
    const src = await copySource(ctx);
    let start = 0;
    let end = src.record.sizeBytes;
    const rangeHeader = ctx.req.headers.get("x-amz-copy-source-range");
    if (rangeHeader !== null) {
      const m = /^bytes=(\d+)-(\d+)$/.exec(rangeHeader.trim());
      if (!m || Number(m[2]) < Number(m[1]) || Number(m[2]) >= src.record.sizeBytes) {
        throw new S3Error(
          "InvalidArgument",
          "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy",
          {
            extra: { ArgumentName: "x-amz-copy-source-range", ArgumentValue: rangeHeader },
          },
        );
      }
      start = Number(m[1]);
      end = Number(m[2]) + 1;
    }
    return await copyBytes(ctx, src.layout, start, end, upload.checksumAlgorithm);
  });
  const part = await commitPart(ctx, uploadId, partNumber, ingested);
  return xmlResponse(renderXml("CopyPartResult", {
    ETag: `"${part.etag}"`,
    LastModified: isoDate(part.lastModifiedMs),
    ...(part.checksum ? { [`Checksum${part.checksum.algorithm}`]: part.checksum.value } : {}),
  }));
}

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html */
export async function CompleteMultipartUpload(ctx: S3Context): Promise<Response> {
  validateKey(ctx.key);
  const uploadId = uploadIdParam(ctx);
  const upload = await requireUpload(ctx, uploadId);
  const doc = await readXmlBody(ctx, "CompleteMultipartUpload");
  const requested = childElements(doc, "Part");
  if (requested.length === 0) {
    throw new S3Error("MalformedXML", "You must specify at least one part");
  }
  if (requested.length > MAX_PART_NUMBER) {
    throw new S3Error("MalformedXML", `A multipart upload has at most ${MAX_PART_NUMBER} parts`);
  }
  const parts = requested.map((p) => ({
    partNumber: parsePartNumber(childText(p, "PartNumber") ?? ""),
    etag: unquoteEtag(childText(p, "ETag") ?? ""),
    checksums: p,
  }));
  for (let i = 1; i < parts.length; i++) {
    if (parts[i].partNumber <= parts[i - 1].partNumber) {
      throw new S3Error(
        "InvalidPartOrder",
        "The list of parts was not in ascending order; parts must be ordered by part number",
      );
    }
  }
  const stored = new Map<number, PartRecord>();
  for await (const part of ctx.reads.parts(uploadId)) stored.set(part.partNumber, part);
  const md5 = createHash("md5");
  const partChecksums: string[] = [];
  for (const p of parts) {
    const part = stored.get(p.partNumber);
    if (!part || part.etag !== p.etag) {
      throw new S3Error(
        "InvalidPart",
        `Part ${p.partNumber} was not uploaded or its ETag does not match`,
        {
          extra: { UploadId: uploadId, PartNumber: String(p.partNumber), ETag: p.etag },
        },
      );
    }
    md5.update(Buffer.from(part.etag, "hex"));
    if (upload.checksumAlgorithm) {
      if (part.checksum?.algorithm !== upload.checksumAlgorithm) {
        throw new S3Error(
          "InvalidRequest",
          `Part ${p.partNumber} has no ${upload.checksumAlgorithm} checksum`,
        );
      }
      partChecksums.push(part.checksum.value);
    }
    const sent = part.checksum
      ? childText(p.checksums, `Checksum${part.checksum.algorithm}`)
      : undefined;
    if (part.checksum && sent !== undefined && sent !== part.checksum.value) {
      throw new S3Error("InvalidPart", `The checksum of part ${p.partNumber} does not match`);
    }
  }
  const etag = `${md5.digest("hex")}-${parts.length}`;
  let checksum: ChecksumValue | undefined;
  if (upload.checksumAlgorithm) {
    checksum = {
      algorithm: upload.checksumAlgorithm,
      value: await compositeChecksum(upload.checksumAlgorithm, partChecksums),
      type: "COMPOSITE",
    };
  }
  const ifNoneMatch = ctx.req.headers.get("if-none-match");
  const ifMatch = ctx.req.headers.get("if-match");
  const result = await ctx.deps.log.propose({
    type: "CompleteMultipartUpload",
    bucket: ctx.bucket,
    key: ctx.key,
    uploadId,
    parts: parts.map(({ partNumber, etag }) => ({ partNumber, etag })),
    manifestId: newId(ctx.deps.rng),
    nowMs: ctx.deps.clock.nowMs(),
    etag,
    ...(checksum ? { checksum } : {}),
    ...(ifNoneMatch !== null || ifMatch !== null
      ? {
        condition: {
          ...(ifNoneMatch?.trim() === "*" ? { ifNoneMatch: "*" as const } : {}),
          ...(ifMatch !== null ? { ifMatch: unquoteEtag(ifMatch) } : {}),
        },
      }
      : {}),
  });
  removeGarbage(ctx, result.garbage);
  const host = ctx.req.headers.get("host") ?? "localhost";
  return xmlResponse(renderXml("CompleteMultipartUploadResult", {
    Location: `${ctx.url.protocol}//${host}/${ctx.bucket}/${
      encodeURIComponent(ctx.key).replace(/%2F/g, "/")
    }`,
    Bucket: ctx.bucket,
    Key: ctx.key,
    ETag: `"${etag}"`,
    ...(checksum
      ? { [`Checksum${checksum.algorithm}`]: checksum.value, ChecksumType: checksum.type }
      : {}),
  }));
}

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_AbortMultipartUpload.html */
export async function AbortMultipartUpload(ctx: S3Context): Promise<Response> {
  validateKey(ctx.key);
  const uploadId = uploadIdParam(ctx);
  const result = await ctx.deps.log.propose({
    type: "AbortMultipartUpload",
    bucket: ctx.bucket,
    key: ctx.key,
    uploadId,
  });
  removeGarbage(ctx, result.garbage);
  return new Response(null, { status: 204 });
}

function parseMax(v: string | null, name: string, max: number): number {
  if (v === null) return max;
  if (!/^\d+$/.test(v)) {
    throw new S3Error(
      "InvalidArgument",
      `Provided ${name} not an integer or within integer range`,
      {
        extra: { ArgumentName: name, ArgumentValue: v },
      },
    );
  }
  return Math.min(Number(v), max);
}

/**
 * Lists an upload's parts; `encoding-type=url` encodes the Key (as the SDKs' ListPartsRequest offers).
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListParts.html
 */
export async function ListParts(ctx: S3Context): Promise<Response> {
  validateKey(ctx.key);
  const uploadId = uploadIdParam(ctx);
  const upload = await requireUpload(ctx, uploadId);
  const enc = encodingOf(ctx);
  const maxParts = parseMax(ctx.query.get("max-parts"), "max-parts", 1000);
  const marker = parseMax(
    ctx.query.get("part-number-marker"),
    "part-number-marker",
    MAX_PART_NUMBER,
  );
  const markerSet = ctx.query.has("part-number-marker");
  const parts: PartRecord[] = [];
  let isTruncated = false;
  for await (const part of ctx.reads.parts(uploadId, markerSet ? marker + 1 : 1)) {
    if (parts.length === maxParts) {
      isTruncated = true;
      break;
    }
    parts.push(part);
  }
  return xmlResponse(renderXml("ListPartsResult", {
    Bucket: ctx.bucket,
    ...(ctx.query.has("encoding-type") ? { EncodingType: "url" } : {}),
    Key: enc(ctx.key),
    UploadId: uploadId,
    PartNumberMarker: markerSet ? marker : 0,
    ...(parts.length > 0 ? { NextPartNumberMarker: parts[parts.length - 1].partNumber } : {}),
    MaxParts: maxParts,
    IsTruncated: isTruncated,
    ...(upload.checksumAlgorithm ? { ChecksumAlgorithm: upload.checksumAlgorithm } : {}),
    Part: parts.map((p) => ({
      PartNumber: p.partNumber,
      LastModified: isoDate(p.lastModifiedMs),
      ETag: `"${p.etag}"`,
      Size: p.data.sizeBytes,
      ...(p.checksum ? { [`Checksum${p.checksum.algorithm}`]: p.checksum.value } : {}),
    })),
    Initiator: { ...OWNER },
    Owner: { ...OWNER },
    StorageClass: "STANDARD",
  }));
}

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListMultipartUploads.html */
export async function ListMultipartUploads(ctx: S3Context): Promise<Response> {
  await requireBucket(ctx);
  const q = ctx.query;
  const enc = encodingOf(ctx);
  const prefix = listParam(q, "prefix");
  const delimiter = listParam(q, "delimiter");
  const keyMarker = listParam(q, "key-marker");
  const uploadIdMarker = q.get("upload-id-marker") ?? "";
  const maxUploads = parseMax(q.get("max-uploads"), "max-uploads", 1000);
  const uploads: { key: string; upload: UploadRecord }[] = [];
  const commonPrefixes: string[] = [];
  let isTruncated = false;
  for await (const { key, upload } of ctx.reads.uploads(ctx.bucket)) {
    if (!key.startsWith(prefix)) continue;
    const cmp = compareUtf8(key, keyMarker);
    if (
      keyMarker !== "" &&
      (cmp < 0 || (cmp === 0 && (uploadIdMarker === "" || upload.uploadId <= uploadIdMarker)))
    ) continue;
    if (delimiter !== "") {
      const i = key.indexOf(delimiter, prefix.length);
      if (i !== -1) {
        const common = key.slice(0, i + delimiter.length);
        if (commonPrefixes[commonPrefixes.length - 1] === common) continue;
        if (uploads.length + commonPrefixes.length === maxUploads) {
          isTruncated = true;
          break;
        }
        commonPrefixes.push(common);
        continue;
      }
    }
    if (uploads.length + commonPrefixes.length === maxUploads) {
      isTruncated = true;
      break;
    }
    uploads.push({ key, upload });
  }
  const last = uploads[uploads.length - 1];
  return xmlResponse(renderXml("ListMultipartUploadsResult", {
    Bucket: ctx.bucket,
    KeyMarker: enc(keyMarker),
    UploadIdMarker: uploadIdMarker,
    ...(isTruncated && last
      ? { NextKeyMarker: enc(last.key), NextUploadIdMarker: last.upload.uploadId }
      : {}),
    ...(q.has("encoding-type") ? { EncodingType: "url" } : {}),
    ...(delimiter !== "" ? { Delimiter: enc(delimiter) } : {}),
    Prefix: enc(prefix),
    MaxUploads: maxUploads,
    IsTruncated: isTruncated,
    Upload: uploads.map(({ key, upload }) => ({
      Key: enc(key),
      UploadId: upload.uploadId,
      Initiator: { ...OWNER },
      Owner: { ...OWNER },
      StorageClass: "STANDARD",
      Initiated: isoDate(upload.initiatedMs),
      ...(upload.checksumAlgorithm ? { ChecksumAlgorithm: upload.checksumAlgorithm } : {}),
    })),
    CommonPrefixes: commonPrefixes.map((p) => ({ Prefix: enc(p) })),
  }));
}
