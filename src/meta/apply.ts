/**
 * `apply(command, kv, index)`: the deterministic state machine over Deno KV.
 *
 * No clock, no randomness: every input is in the command or in the KV state.
 * Most commands are one atomic commit. The few that may exceed Deno KV's
 * commit limits (a 10,000-part CompleteMultipartUpload, a 1000-key
 * DeleteObjects) are split so that every intermediate state is either
 * invisible (manifest chunks not yet referenced) or a complete per-key step;
 * a crash between their commits leaves only orphans for the startup sweep.
 *
 * @module
 */
import { KV_LIMITS, type KvKey, type MetaKv } from "../io/mod.ts";
import { type ApplyResult, type Command, MetaError, type WriteCondition } from "./commands.ts";
import { checkWrite } from "./limits.ts";
import {
  type BucketRecord,
  type DataRef,
  keys,
  MANIFEST_CHUNK_PARTS,
  type ManifestChunk,
  type ManifestPart,
  type ObjectRecord,
  type PartRecord,
  sameData,
  type UploadRecord,
} from "./records.ts";

/**
 * The keys `apply(cmd)` is about to read, so a group of commands can fetch
 * them in one go (`GroupKv.prefetch`). A hint only: a key missing here is
 * read when needed.
 */
export function readKeys(cmd: Command): KvKey[] {
  switch (cmd.type) {
    case "PutObject":
    case "DeleteObject":
    case "PutObjectTagging":
      return [keys.bucket(cmd.bucket), keys.object(cmd.bucket, cmd.key)];
    case "DeleteObjects":
      return [keys.bucket(cmd.bucket), ...cmd.keys.map((k) => keys.object(cmd.bucket, k))];
    case "UploadPart":
      return [
        keys.upload(cmd.bucket, cmd.key, cmd.uploadId),
        keys.part(cmd.uploadId, cmd.part.partNumber),
      ];
    case "RelocateData":
      return [keys.object(cmd.bucket, cmd.key)];
    default:
      return [];
  }
}

/** The smallest part (bytes) allowed anywhere but last in a multipart upload. */
export const MIN_PART_SIZE_BYTES = 5 * 1024 * 1024;

/**
 * Applies `cmd` as the command at log position `index`.
 *
 * Every write is checked against Deno KV's key and value limits before it is
 * queued (`limits.ts`), so a record too large fails this command alone, with
 * the S3 error of its request, deterministically on every replica.
 *
 * @throws {MetaError} with the S3 error code when the command cannot apply
 * (`MetadataTooLarge`, `MaxMessageLengthExceeded` for a record over 64 KiB).
 * Over a plain MetaKv a throw after a first commit of a split command leaves
 * only what the startup sweep removes; over a `GroupKv` the caller
 * rolls back everything the command wrote (`LocalLog` does).
 */
export async function apply(cmd: Command, kv: MetaKv, index: number): Promise<ApplyResult> {
  const batch = new Batch(kv, index, cmd);
  switch (cmd.type) {
    case "CreateBucket": {
      const existing = await kv.get<BucketRecord>(keys.bucket(cmd.bucket.name));
      if (existing) {
        throw new MetaError(
          "BucketAlreadyOwnedByYou",
          `Bucket "${cmd.bucket.name}" already exists`,
        );
      }
      batch.set(keys.bucket(cmd.bucket.name), cmd.bucket);
      await batch.commit();
      return { garbage: [] };
    }
    case "DeleteBucket": {
      await requireBucket(kv, cmd.bucket);
      for await (const _ of kv.list({ prefix: keys.objects(cmd.bucket) }, { limit: 1 })) {
        throw new MetaError("BucketNotEmpty", `Bucket "${cmd.bucket}" is not empty`);
      }
      for await (const _ of kv.list({ prefix: keys.uploads(cmd.bucket) }, { limit: 1 })) {
        throw new MetaError(
          "BucketNotEmpty",
          `Bucket "${cmd.bucket}" has multipart uploads in progress`,
        );
      }
      batch.delete(keys.bucket(cmd.bucket));
      await batch.commit();
      return { garbage: [] };
    }
    case "PutObject": {
      await requireBucket(kv, cmd.bucket);
      const current = await kv.get<ObjectRecord>(keys.object(cmd.bucket, cmd.key));
      checkCondition(cmd.condition, current?.value, cmd.key);
      const garbage = current ? await dropObject(kv, batch, current.value) : [];
      batch.set(keys.object(cmd.bucket, cmd.key), cmd.record);
      await batch.commit();
      return { garbage, record: cmd.record };
    }
    case "DeleteObject": {
      await requireBucket(kv, cmd.bucket);
      const current = await kv.get<ObjectRecord>(keys.object(cmd.bucket, cmd.key));
      if (cmd.condition?.ifMatch !== undefined) {
        checkCondition(cmd.condition, current?.value, cmd.key);
      }
      if (!current) return { garbage: [], existed: false };
      const garbage = await dropObject(kv, batch, current.value);
      batch.delete(keys.object(cmd.bucket, cmd.key));
      await batch.commit();
      return { garbage, existed: true };
    }
    case "DeleteObjects": {
      await requireBucket(kv, cmd.bucket);
      const garbage: DataRef[] = [];
      const deleted: ApplyResult["deleted"] = [];
      for (const key of cmd.keys) {
        const current = await kv.get<ObjectRecord>(keys.object(cmd.bucket, key));
        if (current) {
          garbage.push(...await dropObject(kv, batch, current.value));
          batch.delete(keys.object(cmd.bucket, key));
          await batch.endUnit();
        }
        deleted.push(null);
      }
      await batch.commit();
      return { garbage, deleted };
    }
    case "CreateMultipartUpload": {
      await requireBucket(kv, cmd.bucket);
      batch.set(keys.upload(cmd.bucket, cmd.key, cmd.upload.uploadId), cmd.upload);
      await batch.commit();
      return { garbage: [] };
    }
    case "UploadPart": {
      await requireUpload(kv, cmd.bucket, cmd.key, cmd.uploadId);
      const old = await kv.get<PartRecord>(keys.part(cmd.uploadId, cmd.part.partNumber));
      batch.set(keys.part(cmd.uploadId, cmd.part.partNumber), cmd.part);
      await batch.commit();
      return { garbage: old ? [old.value.data] : [] };
    }
    case "CompleteMultipartUpload":
      return await completeMultipartUpload(cmd, kv, batch);
    case "RelocateData": {
      const current = await kv.get<ObjectRecord>(keys.object(cmd.bucket, cmd.key));
      if (!current?.value.data || !sameData(current.value.data, cmd.from)) {
        return { garbage: [cmd.to] };
      }
      batch.set(keys.object(cmd.bucket, cmd.key), { ...current.value, data: cmd.to });
      await batch.commit();
      return { garbage: [cmd.from] };
    }
    case "PutObjectTagging": {
      const current = await kv.get<ObjectRecord>(keys.object(cmd.bucket, cmd.key));
      if (!current) {
        await requireBucket(kv, cmd.bucket);
        throw new MetaError("NoSuchKey", `Key "${cmd.key}" does not exist`);
      }
      const record = { ...current.value };
      if (cmd.tags && cmd.tags.length > 0) record.tags = cmd.tags;
      else delete record.tags;
      batch.set(keys.object(cmd.bucket, cmd.key), record);
      await batch.commit();
      return { garbage: [], record };
    }
    case "PutBucketCors": {
      const bucket = { ...await requireBucket(kv, cmd.bucket) };
      if (cmd.rules) bucket.cors = cmd.rules;
      else delete bucket.cors;
      batch.set(keys.bucket(cmd.bucket), bucket);
      await batch.commit();
      return { garbage: [] };
    }
    case "AbortMultipartUpload": {
      await requireUpload(kv, cmd.bucket, cmd.key, cmd.uploadId);
      batch.delete(keys.upload(cmd.bucket, cmd.key, cmd.uploadId));
      await batch.commit();
      const garbage: DataRef[] = [];
      const cleanup = new Batch(kv, null, cmd);
      for await (const e of kv.list<PartRecord>({ prefix: keys.parts(cmd.uploadId) })) {
        garbage.push(e.value.data);
        cleanup.delete(e.key);
        await cleanup.endUnit();
      }
      await cleanup.commit();
      return { garbage };
    }
  }
}

async function completeMultipartUpload(
  cmd: Extract<Command, { type: "CompleteMultipartUpload" }>,
  kv: MetaKv,
  batch: Batch,
): Promise<ApplyResult> {
  const upload = await requireUpload(kv, cmd.bucket, cmd.key, cmd.uploadId);
  const stored = new Map<number, PartRecord>();
  for await (const e of kv.list<PartRecord>({ prefix: keys.parts(cmd.uploadId) })) {
    stored.set(e.value.partNumber, e.value);
  }
  const chosen: ManifestPart[] = [];
  let sizeBytes = 0;
  for (const want of cmd.parts) {
    const part = stored.get(want.partNumber);
    if (!part || part.etag !== want.etag) {
      throw new MetaError(
        "InvalidPart",
        `Part ${want.partNumber} was not uploaded or its ETag does not match "${want.etag}"`,
      );
    }
    chosen.push({ partNumber: part.partNumber, data: part.data, etag: part.etag });
    sizeBytes += part.data.sizeBytes;
  }
  for (const part of chosen.slice(0, -1)) {
    if (part.data.sizeBytes < MIN_PART_SIZE_BYTES) {
      throw new MetaError(
        "EntityTooSmall",
        `Part ${part.partNumber} is ${part.data.sizeBytes} bytes; every part but the last must be at least ${MIN_PART_SIZE_BYTES}`,
      );
    }
  }
  const current = await kv.get<ObjectRecord>(keys.object(cmd.bucket, cmd.key));
  checkCondition(cmd.condition, current?.value, cmd.key);

  // 1. Manifest chunks: invisible until the object record names them.
  const chunkCount = Math.ceil(chosen.length / MANIFEST_CHUNK_PARTS);
  const chunks = new Batch(kv, null, cmd);
  for (let c = 0; c < chunkCount; c++) {
    const chunk: ManifestChunk = {
      parts: chosen.slice(c * MANIFEST_CHUNK_PARTS, (c + 1) * MANIFEST_CHUNK_PARTS),
    };
    chunks.set(keys.manifest(cmd.manifestId, c), chunk);
    await chunks.endUnit();
  }
  await chunks.commit();

  // 2. The linearization point: the object appears and the upload disappears in one commit.
  const garbage = current ? await dropObject(kv, batch, current.value) : [];
  const record: ObjectRecord = {
    sizeBytes,
    etag: cmd.etag,
    lastModifiedMs: cmd.nowMs,
    userMeta: upload.userMeta,
    contentType: upload.contentType,
    cacheControl: upload.cacheControl,
    contentDisposition: upload.contentDisposition,
    contentEncoding: upload.contentEncoding,
    contentLanguage: upload.contentLanguage,
    expires: upload.expires,
    checksum: cmd.checksum,
    tags: upload.tags,
    multipart: { manifestId: cmd.manifestId, partCount: chosen.length, chunkCount },
  };
  batch.set(keys.object(cmd.bucket, cmd.key), stripUndefined(record));
  batch.delete(keys.upload(cmd.bucket, cmd.key, cmd.uploadId));
  await batch.commit();

  // 3. Part records are no longer reachable; remove them, collecting parts left out of the object.
  const used = new Set(chosen.map((p) => p.partNumber));
  const cleanup = new Batch(kv, null, cmd);
  for (const part of stored.values()) {
    if (!used.has(part.partNumber)) garbage.push(part.data);
    cleanup.delete(keys.part(cmd.uploadId, part.partNumber));
    await cleanup.endUnit();
  }
  await cleanup.commit();
  return { garbage, record };
}

/** Reads every part of a multipart object's manifest, in part order. */
export async function readManifest(
  kv: MetaKv,
  multipart: NonNullable<ObjectRecord["multipart"]>,
): Promise<ManifestPart[]> {
  const parts: ManifestPart[] = [];
  for await (const e of kv.list<ManifestChunk>({ prefix: ["manifest", multipart.manifestId] })) {
    parts.push(...e.value.parts);
  }
  return parts;
}

/** Queues the removal of an object's manifest and returns the data it referenced. */
async function dropObject(kv: MetaKv, batch: Batch, record: ObjectRecord): Promise<DataRef[]> {
  if (record.data) return [record.data];
  if (!record.multipart) return [];
  const parts = await readManifest(kv, record.multipart);
  for (let c = 0; c < record.multipart.chunkCount; c++) {
    batch.delete(keys.manifest(record.multipart.manifestId, c));
  }
  return parts.map((p) => p.data);
}

function checkCondition(
  cond: WriteCondition | undefined,
  current: ObjectRecord | undefined,
  key: string,
): void {
  if (!cond) return;
  if (cond.ifNoneMatch === "*" && current) {
    throw new MetaError("PreconditionFailed", `Key "${key}" already exists (If-None-Match: *)`);
  }
  if (cond.ifMatch !== undefined) {
    if (!current) throw new MetaError("NoSuchKey", `Key "${key}" does not exist (If-Match)`);
    if (cond.ifMatch !== "*" && cond.ifMatch !== current.etag) {
      throw new MetaError("PreconditionFailed", `ETag of "${key}" does not match If-Match`);
    }
  }
}

async function requireBucket(kv: MetaKv, bucket: string): Promise<BucketRecord> {
  const e = await kv.get<BucketRecord>(keys.bucket(bucket));
  if (!e) throw new MetaError("NoSuchBucket", `Bucket "${bucket}" does not exist`);
  return e.value;
}

async function requireUpload(
  kv: MetaKv,
  bucket: string,
  key: string,
  uploadId: string,
): Promise<UploadRecord> {
  const e = await kv.get<UploadRecord>(keys.upload(bucket, key, uploadId));
  if (!e) {
    await requireBucket(kv, bucket);
    throw new MetaError("NoSuchUpload", `Upload "${uploadId}" does not exist`);
  }
  return e.value;
}

function stripUndefined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}

/**
 * Accumulates mutations and commits them in as few atomic commits as Deno
 * KV's limits allow. A unit (the mutations between `endUnit()` calls) never
 * straddles two commits. When `index` is given, the last commit also records
 * it as the applied index. Every write is checked against Deno KV's limits
 * for `cmd` ({@link checkWrite}) when it is queued.
 */
class Batch {
  #ops: { key: KvKey; value?: unknown }[] = [];
  #unitStart = 0;
  #sizeBytes = 0;
  #unitSizeBytes = 0;

  constructor(readonly kv: MetaKv, readonly index: number | null, readonly cmd: Command) {}

  set(key: KvKey, value: unknown): void {
    checkWrite(this.cmd, key, value);
    this.#ops.push({ key, value });
    this.#unitSizeBytes += approxSize(key) + JSON.stringify(value).length;
  }

  delete(key: KvKey): void {
    checkWrite(this.cmd, key);
    this.#ops.push({ key });
    this.#unitSizeBytes += approxSize(key);
  }

  /** Closes a unit; commits what came before it if adding it would cross a limit. */
  async endUnit(): Promise<void> {
    const overCount = this.#ops.length + 1 > KV_LIMITS.mutationsPerCommit;
    const overSize = this.#sizeBytes + this.#unitSizeBytes > KV_LIMITS.commitSizeBytes * 0.75;
    if ((overCount || overSize) && this.#unitStart > 0) {
      const unit = this.#ops.splice(this.#unitStart);
      await this.#commitOps(this.#ops, false);
      this.#ops = unit;
      this.#sizeBytes = 0;
    }
    this.#sizeBytes += this.#unitSizeBytes;
    this.#unitSizeBytes = 0;
    this.#unitStart = this.#ops.length;
  }

  async commit(): Promise<void> {
    await this.endUnit();
    await this.#commitOps(this.#ops, true);
    this.#ops = [];
    this.#unitStart = 0;
    this.#sizeBytes = 0;
  }

  async #commitOps(ops: { key: KvKey; value?: unknown }[], last: boolean): Promise<void> {
    if (ops.length === 0 && !(last && this.index !== null)) return;
    const atomic = this.kv.atomic();
    for (const op of ops) {
      if ("value" in op) atomic.set(op.key, op.value);
      else atomic.delete(op.key);
    }
    if (last && this.index !== null) atomic.set(keys.applied(), this.index);
    if (!await atomic.commit()) throw new Error("Metadata commit failed a check");
  }
}

function approxSize(key: KvKey): number {
  let n = 0;
  for (const part of key) n += typeof part === "string" ? part.length * 3 + 2 : 10;
  return n;
}
