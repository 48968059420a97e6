/**
 * Deno KV's per-entry limits applied to metadata before it is written: a
 * record too large for one KV value would make the whole commit that carries
 * it throw, so every record is measured first and refused with the S3 error
 * AWS gives for that request (ADR 0009).
 *
 * Pure: no clock, no I/O (`node:v8` serialization is a pure function).
 *
 * @module
 */
import { serialize } from "node:v8";
import { KV_LIMITS, type KvKey } from "../io/mod.ts";
import { type Command, MetaError } from "./commands.ts";
import { type BucketRecord, keys } from "./records.ts";

const encoder = new TextEncoder();

/**
 * A cheap upper bound of the V8 serialization of `value` (what Deno KV stores
 * and counts): two bytes a code unit for every string, as if none were
 * one-byte, 9 bytes a number, 5 bytes a length. `Infinity` for anything but
 * plain objects, arrays, strings, numbers, booleans, null and undefined.
 */
function serializedBoundBytes(value: unknown): number {
  switch (typeof value) {
    case "string":
      return 2 * value.length + 7; // tag, length varint, alignment padding, UTF-16
    case "number":
      return 9;
    case "boolean":
    case "undefined":
      return 1;
    case "object": {
      if (value === null) return 1;
      let n = 16; // tag, length varints, end tag
      if (Array.isArray(value)) {
        for (const e of value) n += serializedBoundBytes(e);
        return n;
      }
      if (Object.getPrototypeOf(value) !== Object.prototype) return Infinity;
      for (const [k, v] of Object.entries(value)) {
        n += serializedBoundBytes(k) + serializedBoundBytes(v);
      }
      return n;
    }
    default:
      return Infinity;
  }
}

/**
 * The size in bytes Deno KV counts for `value`, its V8 serialization
 * (measured equal on Deno 2.9: a value is refused exactly when this exceeds
 * 65,536), or an upper bound of it when even the bound is within that limit.
 * Serializing costs about 40 microseconds a record with `node:v8`, so the
 * exact size is computed only for values near or over the limit.
 * `Uint8Array` values are stored raw.
 */
export function valueSizeBytes(value: unknown): number {
  if (value instanceof Uint8Array) return value.byteLength;
  const bound = 2 + serializedBoundBytes(value);
  if (bound <= KV_LIMITS.valueSizeBytes) return bound;
  return serialize(value).byteLength;
}

/**
 * An upper bound of the encoded size of `key` (Deno KV's tuple encoding: a tag
 * and a terminator around each string's UTF-8 bytes, at most 9 bytes a number).
 */
export function keySizeBytes(key: KvKey): number {
  let n = 0;
  for (const part of key) {
    if (typeof part === "string") n += encoder.encode(part).byteLength + 2;
    else if (part instanceof Uint8Array) n += part.byteLength + 2;
    else n += 10;
  }
  return n;
}

/**
 * The S3 error a command gets when a record it writes is too large for Deno
 * KV: `MaxMessageLengthExceeded` for a CORS configuration (AWS limits the
 * document to 64 KB), `MetadataTooLarge` for object and upload records (their
 * only unbounded parts are headers the client chose).
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutBucketCors.html
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
 */
export function tooLargeCode(cmd: Command): "MaxMessageLengthExceeded" | "MetadataTooLarge" {
  return cmd.type === "PutBucketCors" ? "MaxMessageLengthExceeded" : "MetadataTooLarge";
}

/**
 * Checks one write of `cmd` against Deno KV's key and value limits.
 *
 * @throws {MetaError} `MaxMessageLengthExceeded` or `MetadataTooLarge` (see {@link tooLargeCode})
 */
export function checkWrite(cmd: Command, key: KvKey, value?: unknown): void {
  const keyBytes = keySizeBytes(key);
  if (keyBytes > KV_LIMITS.keySizeBytes) {
    throw new MetaError(
      "KeyTooLongError",
      `A metadata key of ${cmd.type} is ${keyBytes} bytes; the limit is ${KV_LIMITS.keySizeBytes}`,
    );
  }
  if (value === undefined) return;
  const sizeBytes = valueSizeBytes(value);
  if (sizeBytes > KV_LIMITS.valueSizeBytes) {
    throw new MetaError(
      tooLargeCode(cmd),
      `The record ${cmd.type} would write is ${sizeBytes} bytes; the limit is ${KV_LIMITS.valueSizeBytes}`,
    );
  }
}

/**
 * Checks, before `cmd` is proposed, every record it carries against Deno KV's
 * limits, so that a command too large for the metadata store is refused alone
 * and never joins a group commit. `apply()` checks what it derives from the
 * state (a bucket with its new CORS rules, a completed multipart object) again.
 *
 * @throws {MetaError} `MaxMessageLengthExceeded`, `MetadataTooLarge` or `KeyTooLongError`
 */
export function checkCommandLimits(cmd: Command): void {
  switch (cmd.type) {
    case "CreateBucket":
      return checkWrite(cmd, keys.bucket(cmd.bucket.name), cmd.bucket);
    case "PutObject":
      return checkWrite(cmd, keys.object(cmd.bucket, cmd.key), cmd.record);
    case "CreateMultipartUpload":
      return checkWrite(cmd, keys.upload(cmd.bucket, cmd.key, cmd.upload.uploadId), cmd.upload);
    case "UploadPart":
      return checkWrite(cmd, keys.part(cmd.uploadId, cmd.part.partNumber), cmd.part);
    case "PutBucketCors": {
      // The bucket record is small and bounded; the rules are what the client chose.
      const bucket: BucketRecord = { name: cmd.bucket, createdMs: 0, region: "", cors: [] };
      if (cmd.rules) bucket.cors = cmd.rules;
      return checkWrite(cmd, keys.bucket(cmd.bucket), bucket);
    }
    case "PutObjectTagging":
    case "DeleteObject":
    case "RelocateData":
    case "CompleteMultipartUpload":
    case "AbortMultipartUpload":
      return checkWrite(cmd, keys.object(cmd.bucket, cmd.key));
    case "DeleteObjects":
      for (const key of cmd.keys) checkWrite(cmd, keys.object(cmd.bucket, key));
      return;
    case "DeleteBucket":
      return checkWrite(cmd, keys.bucket(cmd.bucket));
  }
}
