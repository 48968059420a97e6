/**
 * The local data path: an object's bytes as one 1+0 shard file on this node's
 * disk, written crash-safely through the Disk port.
 *
 * Files: `shards/<first two hex digits>/<dataId>.<shardIndex>`; in-flight
 * writes under `tmp/`. A write is durable and visible to readers only after
 * `commit()`: temp file written, fsynced, renamed into place, directory
 * fsynced. Directory fsyncs are grouped: every rename that happened before a
 * directory sync started is covered by it, so concurrent PUTs share one.
 *
 * Small objects (at most {@link SMALL_OBJECT_MAX_BYTES}) whose writer names
 * an owner are packed into segment files instead (`segments.ts`, ADR 0008):
 * their bytes are buffered in memory and appended with one fsync per group.
 *
 * @module
 */
import type { DataRef } from "../meta/records.ts";
import type { Disk, WriteHandle } from "../io/mod.ts";
import { encodeShardHeader, SHARD_HEADER_SIZE_BYTES } from "./shard_file.ts";
import type { RecordOwner } from "./segment_record.ts";
import { readUpTo, SegmentStore, SMALL_OBJECT_MAX_BYTES } from "./segments.ts";

export { SMALL_OBJECT_MAX_BYTES };

/** Bytes buffered before a disk write; two such buffers are in flight at most. */
export const WRITE_BUFFER_BYTES = 1 << 20;
/** Bytes per chunk of a read stream. */
export const READ_CHUNK_BYTES = 512 << 10;

/** An in-progress write of one object's bytes. */
export interface DataWriter {
  /** Appends bytes; resolves once they are buffered (the buffer is bounded). */
  write(bytes: Uint8Array): Promise<void>;
  /** Bytes written so far. */
  readonly sizeBytes: number;
  /** Flushes buffered bytes (through `onBlock`) to the file; no more writes after it. */
  end(): Promise<void>;
  /** Makes the bytes durable and returns where they live (ending first if needed). */
  commit(): Promise<DataRef>;
  /** Discards everything written; safe to call more than once and after a failure. */
  abort(): Promise<void>;
}

/** Options of {@link DataPath.create}. */
export interface CreateOptions {
  /**
   * Sees every payload byte once, in order, in blocks of up to
   * {@link WRITE_BUFFER_BYTES}, before they go to disk; the block may be
   * reused once its promise resolves.
   */
  onBlock?: (block: Uint8Array) => Promise<void>;
  /**
   * The object these bytes are written for. Given only for a body known to
   * be at most {@link SMALL_OBJECT_MAX_BYTES}: the data path may then pack
   * it into a segment (it buffers the body in memory).
   */
  packFor?: RecordOwner;
}

/** Where object bytes are stored and read: the seam the erasure-coded path replaces. */
export interface DataPath {
  /** Starts writing a new object's bytes under `dataId` (32 hex digits). */
  create(dataId: string, opts?: CreateOptions): Promise<DataWriter>;
  /** The bytes `[startByte, endByte)` of `ref`, streamed in bounded chunks. */
  read(ref: DataRef, startByte: number, endByte: number): ReadableStream<Uint8Array>;
  /**
   * Releases data no metadata references any more: removes its files
   * (missing files are not an error), or leaves a packed record to compaction.
   */
  remove(ref: DataRef): Promise<void>;
  /**
   * Reports that the metadata commit meant to reference a committed
   * writer's `ref` has finished, whether it applied or not.
   */
  settle(ref: DataRef): void;
  /**
   * Removes every shard file and segment that `live` (every data ref
   * metadata holds, by data id) does not reference, and every temp file.
   * Run only while no write is in flight (at startup).
   * @returns how many files were removed
   */
  sweep(live: ReadonlyMap<string, DataRef>): Promise<number>;
}

/**
 * A DataPath on one local disk: every object is one 1+0 shard file, or a
 * record in a segment file when its writer asked for packing.
 */
export class LocalDataPath implements DataPath {
  readonly #disk: Disk;
  readonly #dirSyncs = new Map<string, DirSync>();
  /** Where small objects are packed. */
  readonly segments: SegmentStore;

  constructor(disk: Disk, opts: { segmentRollBytes?: number } = {}) {
    this.#disk = disk;
    this.segments = new SegmentStore(disk, opts.segmentRollBytes);
  }

  /**
   * Creates the folders this data path uses, all 256 shard directories
   * included, and makes their entries durable. Writes then never create a
   * directory, so a file's own fsync plus its directory's is all a write needs.
   */
  async init(): Promise<void> {
    await this.#disk.mkdirp("tmp");
    for (let i = 0; i < 256; i++) {
      await this.#disk.mkdirp(`shards/${i.toString(16).padStart(2, "0")}`);
    }
    await this.#disk.syncDir("shards");
    await this.segments.init();
  }

  static shardPath(dataId: string, shardIndex = 0): string {
    return `shards/${dataId.slice(0, 2)}/${dataId}.${shardIndex}`;
  }

  async create(dataId: string, opts: CreateOptions = {}): Promise<DataWriter> {
    if (opts.packFor) return new PackedWriter(this.segments, dataId, opts.packFor, opts.onBlock);
    const tmpPath = `tmp/${dataId}.0.tmp`;
    const file = await this.#disk.create(tmpPath);
    const header = encodeShardHeader({
      dataId,
      shardIndex: 0,
      k: 1,
      m: 0,
      sliceSizeBytes: 0,
      frameSizeBytes: 0,
    });
    return new LocalWriter(this, file, tmpPath, dataId, header, opts.onBlock);
  }

  /** @internal */
  get disk(): Disk {
    return this.#disk;
  }

  /** Renames a synced temp file into place and waits for its directory to be durable. */
  async publish(tmpPath: string, dataId: string): Promise<void> {
    const dir = `shards/${dataId.slice(0, 2)}`;
    const target = LocalDataPath.shardPath(dataId);
    await this.#disk.rename(tmpPath, target);
    let sync = this.#dirSyncs.get(dir);
    if (!sync) {
      sync = new DirSync(() => this.#disk.syncDir(dir));
      this.#dirSyncs.set(dir, sync);
    }
    await sync.sync();
  }

  read(ref: DataRef, startByte: number, endByte: number): ReadableStream<Uint8Array> {
    if (ref.segment) {
      const segments = this.segments;
      return new ReadableStream<Uint8Array>({
        async pull(controller) {
          try {
            const payload = await segments.readPayload(ref);
            if (endByte > startByte) controller.enqueue(payload.subarray(startByte, endByte));
            controller.close();
          } catch (err) {
            controller.error(err);
          }
        },
      }, { highWaterMark: 0 });
    }
    const disk = this.#disk;
    let handle: Awaited<ReturnType<Disk["open"]>> | undefined;
    let position = startByte;
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          handle ??= await disk.open(LocalDataPath.shardPath(ref.dataId));
          if (position >= endByte) {
            handle.close();
            handle = undefined;
            controller.close();
            return;
          }
          const buf = new Uint8Array(Math.min(READ_CHUNK_BYTES, endByte - position));
          if (await readUpTo(handle, buf, SHARD_HEADER_SIZE_BYTES + position) < buf.length) {
            throw new Error(`Shard file of "${ref.dataId}" is shorter than its metadata says`);
          }
          position += buf.length;
          controller.enqueue(buf);
        } catch (err) {
          handle?.close();
          handle = undefined;
          controller.error(err);
        }
      },
      cancel() {
        handle?.close();
        handle = undefined;
      },
    }, { highWaterMark: 1 });
  }

  async remove(ref: DataRef): Promise<void> {
    if (ref.segment) this.segments.release(ref);
    else await this.#disk.remove(LocalDataPath.shardPath(ref.dataId));
  }

  settle(ref: DataRef): void {
    this.segments.settle(ref);
  }

  async sweep(live: ReadonlyMap<string, DataRef>): Promise<number> {
    const isLive = (dataId: string) => {
      const ref = live.get(dataId);
      return ref !== undefined && ref.segment === undefined;
    };
    let removed = await this.segments.sweep(live.values());
    for await (const e of this.#disk.list("tmp")) {
      await this.#disk.remove(`tmp/${e.name}`);
      removed++;
    }
    for await (const dir of this.#disk.list("shards")) {
      if (!dir.isDirectory) continue;
      for await (const f of this.#disk.list(`shards/${dir.name}`)) {
        const dataId = f.name.split(".")[0];
        if (!isLive(dataId)) {
          await this.#disk.remove(`shards/${dir.name}/${f.name}`);
          removed++;
        }
      }
    }
    return removed;
  }
}

/**
 * Write buffers shared by all writers: a 4 KiB PUT must not cost a fresh,
 * zeroed 1 MiB allocation. At most {@link POOL_MAX_BUFFERS} idle buffers are kept.
 */
const POOL_MAX_BUFFERS = 32;
const bufferPool = {
  free: [] as Uint8Array<ArrayBuffer>[],
  take(): Uint8Array<ArrayBuffer> {
    return this.free.pop() ?? new Uint8Array(WRITE_BUFFER_BYTES);
  },
  give(buf: Uint8Array<ArrayBuffer>): void {
    if (this.free.length < POOL_MAX_BUFFERS) this.free.push(buf);
  },
};

/**
 * Buffers a small body in memory and appends it to a segment on commit.
 * Bodies over {@link SMALL_OBJECT_MAX_BYTES} are refused: the caller
 * promised a small one.
 */
class PackedWriter implements DataWriter {
  sizeBytes = 0;
  #chunks: Uint8Array[] = [];
  #body: Uint8Array | null = null;
  #state: "open" | "ended" | "committed" | "aborted" = "open";

  constructor(
    readonly segments: SegmentStore,
    readonly dataId: string,
    readonly owner: RecordOwner,
    readonly onBlock?: (block: Uint8Array) => Promise<void>,
  ) {}

  // deno-lint-ignore require-await
  async write(bytes: Uint8Array): Promise<void> {
    if (this.#state !== "open") throw new Error("Write after the writer was ended");
    if (this.sizeBytes + bytes.length > SMALL_OBJECT_MAX_BYTES) {
      throw new RangeError(`A packed body is at most ${SMALL_OBJECT_MAX_BYTES} bytes`);
    }
    this.#chunks.push(bytes.slice());
    this.sizeBytes += bytes.length;
  }

  async end(): Promise<void> {
    if (this.#state === "ended") return;
    if (this.#state !== "open") throw new Error("End after the writer was closed");
    const body = new Uint8Array(this.sizeBytes);
    let at = 0;
    for (const c of this.#chunks) {
      body.set(c, at);
      at += c.length;
    }
    this.#chunks = [];
    this.#body = body;
    this.#state = "ended";
    if (this.onBlock) await this.onBlock(body);
  }

  async commit(): Promise<DataRef> {
    await this.end();
    const ref = await this.segments.append(this.dataId, this.#body!, this.owner);
    this.#state = "committed";
    this.#body = null;
    return ref;
  }

  abort(): Promise<void> {
    this.#state = "aborted";
    this.#chunks = [];
    this.#body = null;
    return Promise.resolve();
  }
}

class LocalWriter implements DataWriter {
  sizeBytes = 0;
  #buffer = bufferPool.take();
  /** The buffer being written to disk while `#buffer` fills: two buffers, reused. */
  #spare: Uint8Array<ArrayBuffer> | null = null;
  #filled = 0;
  #pending: Promise<void>;
  #state: "open" | "ended" | "committed" | "aborted" = "open";

  constructor(
    readonly owner: LocalDataPath,
    readonly file: WriteHandle,
    readonly tmpPath: string,
    readonly dataId: string,
    header: Uint8Array,
    readonly onBlock?: (block: Uint8Array) => Promise<void>,
  ) {
    this.#pending = file.write(header);
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (this.#state !== "open") throw new Error("Write after the writer was ended");
    this.sizeBytes += bytes.length;
    let off = 0;
    while (off < bytes.length) {
      const n = Math.min(bytes.length - off, this.#buffer.length - this.#filled);
      this.#buffer.set(bytes.subarray(off, off + n), this.#filled);
      this.#filled += n;
      off += n;
      if (this.#filled === this.#buffer.length) await this.#flush();
    }
  }

  /** Hands the full buffer to the disk and continues into the other one; at most one write in flight. */
  async #flush(): Promise<void> {
    const full = this.#buffer;
    if (this.onBlock) await this.onBlock(full.subarray(0, this.#filled));
    await this.#pending;
    this.#pending = this.file.write(full.subarray(0, this.#filled));
    this.#buffer = this.#spare ?? bufferPool.take();
    this.#spare = full;
    this.#filled = 0;
  }

  async end(): Promise<void> {
    if (this.#state === "ended") return;
    if (this.#state !== "open") throw new Error("End after the writer was closed");
    try {
      if (this.#filled > 0) await this.#flush();
      await this.#pending;
      this.#state = "ended";
      this.#releaseBuffers();
    } catch (err) {
      await this.abort();
      throw err;
    }
  }

  async commit(): Promise<DataRef> {
    await this.end();
    try {
      await this.file.sync();
      this.file.close();
      this.#state = "committed";
      await this.owner.publish(this.tmpPath, this.dataId);
    } catch (err) {
      await this.abort();
      throw err;
    }
    return { dataId: this.dataId, k: 1, m: 0, sizeBytes: this.sizeBytes };
  }

  #releaseBuffers(): void {
    bufferPool.give(this.#buffer);
    if (this.#spare) bufferPool.give(this.#spare);
    this.#spare = null;
  }

  async abort(): Promise<void> {
    if (this.#state === "aborted") return;
    const before = this.#state;
    const wasOpen = before === "open" || before === "ended";
    this.#state = "aborted";
    if (wasOpen) {
      await this.#pending.catch(() => {});
      if (before === "open") this.#releaseBuffers();
      try {
        this.file.close();
      } catch {
        // already closed
      }
    }
    await this.owner.disk.remove(this.tmpPath);
    await this.owner.remove({ dataId: this.dataId, k: 1, m: 0, sizeBytes: 0 });
  }
}

/**
 * Coalesces directory fsyncs: callers that arrive while a sync runs share
 * the next one, which starts after their renames.
 */
class DirSync {
  #running: Promise<void> | null = null;
  #next: Promise<void> | null = null;

  constructor(readonly doSync: () => Promise<void>) {}

  sync(): Promise<void> {
    if (this.#next) return this.#next;
    if (!this.#running) {
      this.#running = this.doSync().finally(() => {
        this.#running = null;
      });
      return this.#running;
    }
    const next = this.#running.catch(() => {}).then(() => {
      this.#next = null;
      this.#running = this.doSync().finally(() => {
        this.#running = null;
      });
      return this.#running;
    });
    this.#next = next;
    return next;
  }
}
