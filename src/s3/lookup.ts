/**
 * The one place S3 requests read metadata: buckets, objects with their
 * manifests, multipart uploads and their parts, and the key ranges listings
 * scan. No other file under `src/s3/` reads the metadata replica
 * (`lookup_test.ts` checks that).
 *
 * A {@link Reads} belongs to one request. Before its first read it waits on
 * the log's read barrier ({@link MetaLog.readBarrier}), once, so everything
 * the request reads includes every write acknowledged before the request
 * arrived, even when this node's replica lags the leader. A request that looks
 * up several records waits once.
 *
 * Reads the local replica and waits on the log; no clock, no randomness.
 *
 * @see Ongaro 2014, "Consensus: Bridging Theory and Practice", §6.4 (ReadIndex)
 * @module
 */
import type { KvEntry, KvKey, KvSelector, MetaKv } from "../io/mod.ts";
import {
  type BucketRecord,
  keys,
  type ManifestPart,
  type MetaLog,
  type ObjectRecord,
  type PartRecord,
  readManifest,
  type UploadRecord,
} from "../meta/mod.ts";
import { S3Error } from "./errors.ts";

/** Entries one batch of an object listing reads from Deno KV: a full page of keys. */
const OBJECTS_BATCH = 1000;

/** An object's record with, for a multipart object, its whole manifest. */
export interface ObjectLayout {
  record: ObjectRecord;
  parts?: ManifestPart[];
}

/** The metadata reads of one request, each after the log's read barrier. */
export class Reads {
  readonly #kv: MetaKv;
  readonly #log: Pick<MetaLog, "readBarrier">;
  #barrier?: Promise<void>;

  /** Reads over `source.kv` (the local replica) behind `source.log`'s barrier. */
  constructor(source: { kv: MetaKv; log: Pick<MetaLog, "readBarrier"> }) {
    this.#kv = source.kv;
    this.#log = source.log;
  }

  /** The read barrier, taken at the first read and shared by the later ones. */
  #ready(): Promise<void> {
    return this.#barrier ??= this.#log.readBarrier();
  }

  async #get<T>(key: KvKey): Promise<T | undefined> {
    await this.#ready();
    return (await this.#kv.get<T>(key))?.value;
  }

  async *#list<T>(selector: KvSelector, batchSize?: number): AsyncIterable<KvEntry<T>> {
    await this.#ready();
    yield* this.#kv.list<T>(selector, batchSize === undefined ? undefined : { batchSize });
  }

  /** A bucket's record (`["bucket", name]`), or undefined when there is none. */
  bucket(name: string): Promise<BucketRecord | undefined> {
    return this.#get<BucketRecord>(keys.bucket(name));
  }

  /** A bucket's record. @throws {S3Error} `NoSuchBucket` */
  async requireBucket(name: string): Promise<BucketRecord> {
    const record = await this.bucket(name);
    if (!record) {
      throw new S3Error("NoSuchBucket", `Bucket "${name}" does not exist`, {
        extra: { BucketName: name },
      });
    }
    return record;
  }

  /** Every bucket's record, in name order. */
  async *buckets(): AsyncIterable<BucketRecord> {
    for await (const e of this.#list<BucketRecord>({ prefix: keys.buckets() })) yield e.value;
  }

  /** An object's current record (`["cur", bucket, key]`), or undefined when there is none. */
  object(bucket: string, key: string): Promise<ObjectRecord | undefined> {
    return this.#get<ObjectRecord>(keys.object(bucket, key));
  }

  /** An object's record. @throws {S3Error} `NoSuchBucket`, `NoSuchKey` */
  async requireObject(bucket: string, key: string): Promise<ObjectRecord> {
    const record = await this.object(bucket, key);
    if (!record) {
      await this.requireBucket(bucket);
      throw new S3Error("NoSuchKey", `Key "${key}" does not exist`, { extra: { Key: key } });
    }
    return record;
  }

  /**
   * An object's record and manifest as one consistent pair: a concurrent
   * overwrite or delete may remove the manifest between the two reads, so a
   * manifest that does not add up to its record is read again with a fresh record.
   *
   * @throws {S3Error} `NoSuchBucket`, `NoSuchKey`; `SlowDown` if it keeps changing
   */
  async requireObjectLayout(bucket: string, key: string): Promise<ObjectLayout> {
    for (let attempt = 0; attempt < 8; attempt++) {
      const record = await this.requireObject(bucket, key);
      if (!record.multipart) return { record };
      const parts = await readManifest(this.#kv, record.multipart);
      const sizeBytes = parts.reduce((n, p) => n + p.data.sizeBytes, 0);
      if (parts.length === record.multipart.partCount && sizeBytes === record.sizeBytes) {
        return { record, parts };
      }
    }
    throw new S3Error("SlowDown", `Key "${key}" is changing too fast to be read; retry`, {
      headers: { "retry-after": "1" },
    });
  }

  /** A multipart upload's record. @throws {S3Error} `NoSuchBucket`, `NoSuchUpload` */
  async requireUpload(bucket: string, key: string, uploadId: string): Promise<UploadRecord> {
    const record = await this.#get<UploadRecord>(keys.upload(bucket, key, uploadId));
    if (!record) {
      await this.requireBucket(bucket);
      throw new S3Error("NoSuchUpload", `Upload "${uploadId}" does not exist`, {
        extra: { UploadId: uploadId },
      });
    }
    return record;
  }

  /** The parts of an upload numbered `fromPartNumber` or higher, in part order. */
  async *parts(uploadId: string, fromPartNumber = 1): AsyncIterable<PartRecord> {
    for await (
      const e of this.#list<PartRecord>({
        prefix: keys.parts(uploadId),
        start: keys.part(uploadId, fromPartNumber),
      })
    ) yield e.value;
  }

  /** The multipart uploads in progress in `bucket`, in key order. */
  async *uploads(bucket: string): AsyncIterable<{ key: string; upload: UploadRecord }> {
    for await (const e of this.#list<UploadRecord>({ prefix: keys.uploads(bucket) })) {
      yield { key: e.key[2] as string, upload: e.value };
    }
  }

  /** The objects of `bucket` whose key is `from` or after it, in key (UTF-8 byte) order. */
  async *objects(
    bucket: string,
    from: string,
  ): AsyncIterable<{ key: string; record: ObjectRecord }> {
    for await (
      const e of this.#list<ObjectRecord>({
        prefix: keys.objects(bucket),
        start: [...keys.objects(bucket), from],
      }, OBJECTS_BATCH)
    ) yield { key: e.key[2] as string, record: e.value };
  }
}

/** What the request-level shorthands below need of a request. */
export interface Reading {
  reads: Reads;
  /** The bucket the request names. */
  bucket: string;
  /** The object key the request names. */
  key: string;
}

/** The request's bucket (or `bucket`). @throws {S3Error} `NoSuchBucket` */
export function requireBucket(ctx: Reading, bucket = ctx.bucket): Promise<BucketRecord> {
  return ctx.reads.requireBucket(bucket);
}

/** An object's record. @throws {S3Error} `NoSuchBucket`, `NoSuchKey` */
export function requireObject(ctx: Reading, bucket: string, key: string): Promise<ObjectRecord> {
  return ctx.reads.requireObject(bucket, key);
}

/** See {@link Reads.requireObjectLayout}. @throws {S3Error} `NoSuchBucket`, `NoSuchKey`, `SlowDown` */
export function requireObjectLayout(
  ctx: Reading,
  bucket: string,
  key: string,
): Promise<ObjectLayout> {
  return ctx.reads.requireObjectLayout(bucket, key);
}

/** An upload of the request's object. @throws {S3Error} `NoSuchBucket`, `NoSuchUpload` */
export function requireUpload(ctx: Reading, uploadId: string): Promise<UploadRecord> {
  return ctx.reads.requireUpload(ctx.bucket, ctx.key, uploadId);
}
