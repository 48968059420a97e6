/**
 * Metadata commands: the only way metadata changes. A command carries every
 * input its effect depends on (times are stamped in when it is proposed), so
 * applying the same commands in the same order gives the same state on every
 * replica.
 *
 * Pure: no clock, no I/O.
 *
 * @module
 */
import type {
  BucketRecord,
  ChecksumValue,
  CorsRule,
  DataRef,
  ObjectRecord,
  PartRecord,
  TagSet,
  UploadRecord,
} from "./records.ts";

/** A precondition checked atomically with a write (conditional PUT / DELETE). */
export interface WriteCondition {
  /** `*`: the key must not exist (If-None-Match). */
  ifNoneMatch?: "*";
  /** The current ETag (unquoted) must equal this (If-Match); `*` means it must exist. */
  ifMatch?: string;
}

/** A part as named in a CompleteMultipartUpload request. */
export interface CompletePart {
  partNumber: number;
  /** Unquoted ETag. */
  etag: string;
}

/** Every metadata command, tagged by the S3 operation it serves. */
export type Command =
  | { type: "CreateBucket"; bucket: BucketRecord }
  | { type: "DeleteBucket"; bucket: string }
  | {
    type: "PutObject";
    bucket: string;
    key: string;
    record: ObjectRecord;
    condition?: WriteCondition;
  }
  | { type: "DeleteObject"; bucket: string; key: string; condition?: WriteCondition }
  | { type: "DeleteObjects"; bucket: string; keys: string[] }
  | { type: "CreateMultipartUpload"; bucket: string; key: string; upload: UploadRecord }
  | { type: "UploadPart"; bucket: string; key: string; uploadId: string; part: PartRecord }
  | {
    type: "CompleteMultipartUpload";
    bucket: string;
    key: string;
    uploadId: string;
    parts: CompletePart[];
    /** The manifest id (32 hex digits) chosen by the proposer. */
    manifestId: string;
    nowMs: number;
    /** The final ETag (`hex-N`) computed by the proposer from the requested parts. */
    etag: string;
    checksum?: ChecksumValue;
    condition?: WriteCondition;
  }
  | { type: "AbortMultipartUpload"; bucket: string; key: string; uploadId: string }
  /** Sets (or with `tags: null`, removes) an object's tags; its data and time are unchanged. */
  | { type: "PutObjectTagging"; bucket: string; key: string; tags: TagSet | null }
  /** Sets (or with `rules: null`, removes) a bucket's CORS configuration. */
  | { type: "PutBucketCors"; bucket: string; rules: CorsRule[] | null }
  /**
   * Moves an object's data to a new place (segment compaction): applies only
   * while the object's data is still `from`; otherwise `to` is garbage.
   */
  | { type: "RelocateData"; bucket: string; key: string; from: DataRef; to: DataRef };

/** What applying a command produced: a value for the caller and data no longer referenced. */
export interface ApplyResult {
  /** Data whose last reference this command removed: the caller deletes it after the commit. */
  garbage: DataRef[];
  /** Per-key outcome of DeleteObjects: `null` for success, else an error code and message. */
  deleted?: ({ code: string; message: string } | null)[];
  /** Whether DeleteObject removed something. */
  existed?: boolean;
  /** The record a PutObject or CompleteMultipartUpload made current. */
  record?: ObjectRecord;
}

/**
 * A command that cannot apply: its `code` is the S3 error code the client
 * gets (`NoSuchBucket`, `BucketNotEmpty`, `PreconditionFailed`, ...).
 */
export class MetaError extends Error {
  override name = "MetaError";
  constructor(readonly code: string, message: string, options?: ErrorOptions) {
    super(message, options);
  }
}
