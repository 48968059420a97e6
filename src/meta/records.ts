/**
 * Metadata records and their Deno KV key tuples.
 *
 * Pure: no clock, no I/O.
 *
 * Keyspace (strings in keys sort by UTF-8 bytes, which is S3 listing order):
 *
 * | key | value |
 * |---|---|
 * | `["bucket", bucket]` | {@link BucketRecord} |
 * | `["cur", bucket, key]` | {@link ObjectRecord}: the current version; listings scan this |
 * | `["manifest", dataId, chunkIndex]` | {@link ManifestChunk}: a multipart object's parts, 250 a chunk |
 * | `["upload", bucket, key, uploadId]` | {@link UploadRecord}: an in-progress multipart upload |
 * | `["part", uploadId, partNumber]` | {@link PartRecord}: an uploaded part |
 * | `["sys", "applied"]` | the index of the last applied command |
 * | `["sys", "flush"]` | the sequence number of the last group-commit KV commit (`GroupKv`) |
 * | `["sys", "proposal", id]` | {@link ProposalRecord}: an applied proposal id, for dropping retries |
 * | `["sys", "pidx", index]` | the proposal id applied at `index` (pruning order) |
 * | `["sys", "member", nodeId]` | {@link MemberRecord}: a cluster member's address |
 * | `["sys", "ca"]` | the cluster CA certificate, PEM (never its key) |
 * | `["sys", "token", tokenId]` | {@link JoinTokenRecord}: a join token (hash of its secret) |
 * | `["sys", "cred", accessKeyId]` | {@link CredentialRecord}: an S3 access key |
 *
 * @module
 */
import type { KvKey } from "../io/mod.ts";

/** A bucket's configuration. */
export interface BucketRecord {
  name: string;
  createdMs: number;
  region: string;
  /** CORS rules, in the order given; absent when the bucket has no CORS configuration. */
  cors?: CorsRule[];
}

/**
 * One CORS rule of a bucket.
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_CORSRule.html
 */
export interface CorsRule {
  id?: string;
  /** Origins; each may hold one `*` wildcard. */
  allowedOrigins: string[];
  /** Upper-case methods among GET, PUT, POST, DELETE, HEAD. */
  allowedMethods: string[];
  /** Request headers allowed in a preflight, lower-case; each may hold one `*` wildcard. */
  allowedHeaders: string[];
  exposeHeaders: string[];
  maxAgeSeconds?: number;
}

/** An object's tags: key-value pairs in the order given, at most 10. */
export type TagSet = [key: string, value: string][];

/**
 * Where an object's bytes live: one data id, its storage profile, and its size.
 * A shard file is named by `dataId` and shard index; a small object's bytes
 * are instead a record in a segment file, at `segment` (see `src/data/`).
 */
export interface DataRef {
  /** 32 lower-case hex digits (128 random bits), chosen by the proposer. */
  dataId: string;
  /** Data shards. */
  k: number;
  /** Parity shards. */
  m: number;
  sizeBytes: number;
  /** Set when the bytes are packed into a segment file: which one, and where the record starts. */
  segment?: SegmentLocation;
  /** On a cluster: the member holding the bytes. Absent: the founding node (or `serve`'s own). */
  node?: string;
}

/** A record's place in a segment file. */
export interface SegmentLocation {
  /** The segment's 16 hex digit sequence number. */
  id: string;
  offsetBytes: number;
}

/** Whether two refs name the same bytes in the same place. */
export function sameData(a: DataRef, b: DataRef): boolean {
  return a.dataId === b.dataId && a.segment?.id === b.segment?.id &&
    a.segment?.offsetBytes === b.segment?.offsetBytes && (a.node ?? "") === (b.node ?? "");
}

/** An `x-amz-checksum-*` value stored with an object or part. */
export interface ChecksumValue {
  algorithm: ChecksumAlgorithm;
  /** Base64 of the big-endian checksum bytes, as the header carries it. */
  value: string;
  type: "FULL_OBJECT" | "COMPOSITE";
}

/** The checksum algorithms S3 defines. */
export type ChecksumAlgorithm = "CRC32" | "CRC32C" | "SHA1" | "SHA256" | "CRC64NVME";

/** Standard headers stored with an object and returned on GET and HEAD. */
export interface ObjectHeaders {
  contentType?: string;
  cacheControl?: string;
  contentDisposition?: string;
  contentEncoding?: string;
  contentLanguage?: string;
  expires?: string;
}

/** The current version of an object. */
export interface ObjectRecord extends ObjectHeaders {
  sizeBytes: number;
  /** The ETag without quotes: 32 hex digits, or `hex-N` for a multipart object. */
  etag: string;
  lastModifiedMs: number;
  /** `x-amz-meta-*` values by lower-case name without the prefix. */
  userMeta: Record<string, string>;
  checksum?: ChecksumValue;
  /** Object tags, when set. */
  tags?: TagSet;
  /** A simple object's bytes; absent for a multipart object. */
  data?: DataRef;
  /** A multipart object: its manifest id, part count and chunk count. */
  multipart?: { manifestId: string; partCount: number; chunkCount: number };
}

/** One part of a completed multipart object, in part order. */
export interface ManifestPart {
  partNumber: number;
  data: DataRef;
  etag: string;
}

/** A slice of a multipart object's manifest: at most {@link MANIFEST_CHUNK_PARTS} parts. */
export interface ManifestChunk {
  parts: ManifestPart[];
}

/** Parts per manifest chunk: 250 parts of about 150 bytes stay well under the 64 KiB value limit. */
export const MANIFEST_CHUNK_PARTS = 250;

/** An in-progress multipart upload. */
export interface UploadRecord extends ObjectHeaders {
  uploadId: string;
  initiatedMs: number;
  userMeta: Record<string, string>;
  checksumAlgorithm?: ChecksumAlgorithm;
  /** Tags the completed object gets. */
  tags?: TagSet;
}

/** An uploaded part. */
export interface PartRecord {
  partNumber: number;
  etag: string;
  data: DataRef;
  lastModifiedMs: number;
  checksum?: ChecksumValue;
}

/**
 * An applied proposal: the entry index it applied at and, when `apply()`
 * refused it, the error it answered (a retry of the id gets no second try).
 */
export interface ProposalRecord {
  index: number;
  /** The `MetaError` code when the command did not apply. */
  code?: string;
  message?: string;
}

/** A cluster member: its id and cluster address. Voters and learners are Raft's membership. */
export interface MemberRecord {
  id: string;
  /** `host:port` of its cluster port. */
  addr: string;
  /** Set once the member was removed: its identity is never admitted again. */
  removed?: boolean;
}

/**
 * What replicated metadata keeps of a join token, under
 * `["sys", "token", tokenId]`: a hash of the secret, never the secret.
 */
export interface JoinTokenRecord {
  /** 32 lowercase hex digits. */
  tokenId: string;
  /** SHA-256 of the secret, 64 lowercase hex digits. */
  secretSha256: string;
  /** When `token` minted it, ms since the epoch. */
  createdAtMs: number;
  /** The first instant it is refused, ms since the epoch. */
  expiresAtMs: number;
  /** The node id that burned it; `null` while unused. */
  usedBy: string | null;
}

/** An S3 access key's secret, under `["sys", "cred", accessKeyId]`. */
export interface CredentialRecord {
  secretAccessKey: string;
}

/** KV key tuples, one function per record kind. */
export const keys = {
  bucket: (bucket: string): KvKey => ["bucket", bucket],
  buckets: (): KvKey => ["bucket"],
  object: (bucket: string, key: string): KvKey => ["cur", bucket, key],
  objects: (bucket: string): KvKey => ["cur", bucket],
  manifest: (manifestId: string, chunk: number): KvKey => ["manifest", manifestId, chunk],
  upload: (
    bucket: string,
    key: string,
    uploadId: string,
  ): KvKey => ["upload", bucket, key, uploadId],
  uploads: (bucket: string): KvKey => ["upload", bucket],
  part: (uploadId: string, partNumber: number): KvKey => ["part", uploadId, partNumber],
  parts: (uploadId: string): KvKey => ["part", uploadId],
  applied: (): KvKey => ["sys", "applied"],
  /** Set by every KV commit of a group flush, so a failed commit's outcome can be read back. */
  flush: (): KvKey => ["sys", "flush"],
  proposal: (id: string): KvKey => ["sys", "proposal", id],
  proposalAt: (index: number): KvKey => ["sys", "pidx", index],
  proposalsAt: (): KvKey => ["sys", "pidx"],
  member: (id: string): KvKey => ["sys", "member", id],
  members: (): KvKey => ["sys", "member"],
  ca: (): KvKey => ["sys", "ca"],
  token: (tokenId: string): KvKey => ["sys", "token", tokenId],
  tokens: (): KvKey => ["sys", "token"],
  credential: (accessKeyId: string): KvKey => ["sys", "cred", accessKeyId],
  credentials: (): KvKey => ["sys", "cred"],
} as const;
