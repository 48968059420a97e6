/**
 * Small objects packed into shared, append-only segment files, so that one
 * fsync makes a whole group of concurrent PUTs durable and no PUT creates a
 * file of its own (ADR 0008).
 *
 * Files: `segments/<16 hex digits>.seg`, named by a sequence number that only
 * grows. One segment is active: `append()` queues a record, and every record
 * queued while a write is in flight goes out in the next single write and
 * fsync. The active segment is sealed at {@link SEGMENT_ROLL_BYTES}, after a
 * failed write, and at every restart; a sealed segment is never written again.
 *
 * Space is reclaimed by compaction (`compactor.ts`): a sealed segment whose
 * live bytes fell under half is read record by record, the records still
 * referenced are appended again and relocated by a metadata command, and the
 * file is removed once the reads that may use it are done.
 *
 * Live byte counts here are estimates kept in memory (the startup sweep sets
 * them from metadata); they decide when to compact, never what to keep.
 *
 * @module
 */
import type { DataRef } from "../meta/records.ts";
import type { Disk, ReadHandle, WriteHandle } from "../io/mod.ts";
import {
  decodeRecordHeader,
  decodeRecordOwner,
  decodeSegmentHeader,
  encodeRecord,
  encodeSegmentHeader,
  payloadMatches,
  RECORD_HEADER_SIZE_BYTES,
  type RecordOwner,
  SEGMENT_HEADER_SIZE_BYTES,
} from "./segment_record.ts";

/** Objects of at most this many bytes are packed into segments (DESIGN.md section 5: k=1 under 128 KiB). */
export const SMALL_OBJECT_MAX_BYTES = 128 * 1024;
/** The active segment is sealed once it reaches this size. */
export const SEGMENT_ROLL_BYTES = 64 * 1024 * 1024;
/** Bytes of records written by one write and fsync, at most. */
const MAX_BATCH_BYTES = 8 * 1024 * 1024;

/** What the data path knows of one segment. */
export interface SegmentStats {
  /** 16 lower-case hex digits: the sequence number. */
  id: string;
  /** Bytes of the file that hold whole, synced records (the header included). */
  sizeBytes: number;
  /** Payload bytes still referenced by metadata (an estimate). */
  liveBytes: number;
  /** Records still referenced by metadata (an estimate). */
  liveCount: number;
  /** Records appended whose metadata commit has not settled yet. */
  inflight: number;
  /**
   * `active`: takes appends; `sealed`: takes no more; `damaged`: compaction
   * found damage and leaves it whole; `retired`: compacted, its removal
   * waits for the reads that may use it.
   */
  state: "active" | "sealed" | "damaged" | "retired";
  /**
   * A scan of the segment must read whole records up to here to have seen
   * every record metadata may reference.
   */
  trustedEndBytes: number;
}

/** One record read back from a segment. */
export interface SegmentRecord {
  /** Where the record starts in the file. */
  offsetBytes: number;
  dataId: string;
  owner: RecordOwner;
  payload: Uint8Array;
  /** Whether the payload matches its checksum. */
  intact: boolean;
}

/**
 * Which segments to compact: sealed ones with no append in flight whose live
 * bytes are under `maxLiveFraction` of their size, emptiest first.
 *
 * Pure.
 */
export function planCompaction(
  stats: readonly SegmentStats[],
  maxLiveFraction = 0.5,
): string[] {
  return stats
    .filter((s) =>
      s.state === "sealed" && s.inflight === 0 &&
      (s.liveCount === 0 || s.liveBytes < maxLiveFraction * s.sizeBytes)
    )
    .sort((a, b) => a.liveBytes / a.sizeBytes - b.liveBytes / b.sizeBytes || (a.id < b.id ? -1 : 1))
    .map((s) => s.id);
}

interface Queued {
  record: Uint8Array;
  dataId: string;
  sizeBytes: number;
  resolve(ref: DataRef): void;
  reject(err: unknown): void;
}

interface Active {
  stats: SegmentStats;
  file: WriteHandle;
}

/** The segment files of one disk. */
export class SegmentStore {
  readonly #disk: Disk;
  readonly #segments = new Map<string, SegmentStats>();
  #active: Active | null = null;
  #nextSequence = 1;
  #queue: Queued[] = [];
  #flushing = false;

  constructor(disk: Disk, readonly rollBytes = SEGMENT_ROLL_BYTES) {
    this.#disk = disk;
  }

  static path(id: string): string {
    return `segments/${id}.seg`;
  }

  /** Creates the segments folder and makes its entry durable. */
  async init(): Promise<void> {
    await this.#disk.mkdirp("segments");
    await this.#disk.syncDir("");
  }

  /**
   * Appends `payload` as a record owned by `owner` and resolves once it is
   * durable (written and fsynced together with every record queued with it).
   *
   * @returns where it lives; the caller must `settle()` it after the metadata commit
   * @throws the disk's error; the record is then garbage in a sealed segment
   */
  append(dataId: string, payload: Uint8Array, owner: RecordOwner): Promise<DataRef> {
    const record = encodeRecord(dataId, payload, owner);
    return new Promise((resolve, reject) => {
      this.#queue.push({ record, dataId, sizeBytes: payload.length, resolve, reject });
      if (!this.#flushing) this.#flush();
    });
  }

  async #flush(): Promise<void> {
    this.#flushing = true;
    try {
      while (this.#queue.length > 0) {
        let bytes = 0;
        let n = 0;
        while (n < this.#queue.length && (n === 0 || bytes < MAX_BATCH_BYTES)) {
          bytes += this.#queue[n++].record.length;
        }
        const batch = this.#queue.splice(0, n);
        try {
          const active = await this.#activeFor(bytes);
          const buf = new Uint8Array(bytes);
          let at = 0;
          for (const q of batch) {
            buf.set(q.record, at);
            at += q.record.length;
          }
          await active.file.write(buf);
          await active.file.sync();
          const s = active.stats;
          let offset = s.sizeBytes;
          for (const q of batch) {
            s.liveBytes += q.sizeBytes;
            s.liveCount++;
            s.inflight++;
            q.resolve({
              dataId: q.dataId,
              k: 1,
              m: 0,
              sizeBytes: q.sizeBytes,
              segment: { id: s.id, offsetBytes: offset },
            });
            offset += q.record.length;
          }
          s.sizeBytes = s.trustedEndBytes = offset;
        } catch (err) {
          this.#seal();
          for (const q of batch) q.reject(err);
        }
      }
    } finally {
      this.#flushing = false;
    }
  }

  /** The active segment, rolled over first when `bytes` more would pass the roll size. */
  async #activeFor(bytes: number): Promise<Active> {
    if (
      this.#active && this.#active.stats.sizeBytes > SEGMENT_HEADER_SIZE_BYTES &&
      this.#active.stats.sizeBytes + bytes > this.rollBytes
    ) {
      this.#seal();
    }
    if (this.#active) return this.#active;
    const sequence = this.#nextSequence++;
    const id = sequence.toString(16).padStart(16, "0");
    const file = await this.#disk.create(SegmentStore.path(id));
    try {
      await file.write(encodeSegmentHeader(sequence));
      await file.sync();
      await this.#disk.syncDir("segments");
    } catch (err) {
      file.close();
      throw err;
    }
    const stats: SegmentStats = {
      id,
      sizeBytes: SEGMENT_HEADER_SIZE_BYTES,
      liveBytes: 0,
      liveCount: 0,
      inflight: 0,
      state: "active",
      trustedEndBytes: SEGMENT_HEADER_SIZE_BYTES,
    };
    this.#segments.set(id, stats);
    this.#active = { stats, file };
    return this.#active;
  }

  #seal(): void {
    if (!this.#active) return;
    this.#active.stats.state = "sealed";
    try {
      this.#active.file.close();
    } catch {
      // already closed
    }
    this.#active = null;
  }

  /**
   * Seals the active segment: the next append starts a new one. Call only
   * while no append is in flight (tests, tools); writes seal by themselves.
   */
  seal(): void {
    this.#seal();
  }

  /** Reports that the metadata commit meant to reference `ref` finished, either way. */
  settle(ref: DataRef): void {
    const s = ref.segment && this.#segments.get(ref.segment.id);
    if (s) s.inflight = Math.max(0, s.inflight - 1);
  }

  /** Notes that metadata no longer references `ref` (no I/O: compaction reclaims the space). */
  release(ref: DataRef): void {
    const s = ref.segment && this.#segments.get(ref.segment.id);
    if (!s) return;
    s.liveBytes = Math.max(0, s.liveBytes - ref.sizeBytes);
    s.liveCount = Math.max(0, s.liveCount - 1);
  }

  /**
   * Reads and verifies `ref`'s record.
   *
   * @returns the payload
   * @throws {Error} when the record is missing, damaged or belongs to other data
   */
  async readPayload(ref: DataRef): Promise<Uint8Array> {
    const loc = ref.segment!;
    const handle = await this.#disk.open(SegmentStore.path(loc.id));
    try {
      const buf = new Uint8Array(RECORD_HEADER_SIZE_BYTES + ref.sizeBytes);
      await readFully(handle, buf, loc.offsetBytes);
      const header = decodeRecordHeader(buf);
      const payload = buf.subarray(RECORD_HEADER_SIZE_BYTES);
      if (!header || header.dataId !== ref.dataId || !payloadMatches(header, payload)) {
        throw new Error(
          `Segment record of "${ref.dataId}" at ${loc.id}:${loc.offsetBytes} is damaged`,
        );
      }
      return payload;
    } finally {
      handle.close();
    }
  }

  /** A snapshot of every segment's stats. */
  stats(): SegmentStats[] {
    return [...this.#segments.values()].map((s) => ({ ...s }));
  }

  /**
   * Reads a sealed segment's records in order, calling `fn` for each, up to
   * the end of the file or the first record that does not decode (a torn tail).
   *
   * @returns whether the scan read every record metadata may reference
   *   (it reached the segment's trusted end)
   */
  async scan(id: string, fn: (rec: SegmentRecord) => Promise<void>): Promise<boolean> {
    const s = this.#segments.get(id);
    if (!s) return false;
    const handle = await this.#disk.open(SegmentStore.path(id));
    let position = SEGMENT_HEADER_SIZE_BYTES;
    try {
      const fileHeader = new Uint8Array(SEGMENT_HEADER_SIZE_BYTES);
      if (await readUpTo(handle, fileHeader, 0) < fileHeader.length) return false;
      decodeSegmentHeader(fileHeader);
      const head = new Uint8Array(RECORD_HEADER_SIZE_BYTES);
      while (position < handle.sizeBytes) {
        if (await readUpTo(handle, head, position) < head.length) break;
        const header = decodeRecordHeader(head);
        if (!header) break;
        const rest = new Uint8Array(header.payloadSizeBytes + header.ownerSizeBytes);
        if (await readUpTo(handle, rest, position + head.length) < rest.length) break;
        const payload = rest.subarray(0, header.payloadSizeBytes);
        const owner = decodeRecordOwner(head, rest.subarray(header.payloadSizeBytes));
        if (!owner) break;
        await fn({
          offsetBytes: position,
          dataId: header.dataId,
          owner,
          payload,
          intact: payloadMatches(header, payload),
        });
        position += head.length + rest.length;
      }
    } finally {
      handle.close();
    }
    return position >= s.trustedEndBytes;
  }

  /** Sets a sealed segment's state after compaction: `damaged` (kept whole) or `retired`. */
  mark(id: string, state: "damaged" | "retired"): void {
    const s = this.#segments.get(id);
    if (s && s.state === "sealed") s.state = state;
  }

  /** Forgets a retired segment and removes its file (call when nothing can read it any more). */
  async removeSegment(id: string): Promise<void> {
    this.#segments.delete(id);
    await this.#disk.remove(SegmentStore.path(id));
  }

  /**
   * Startup: seals every existing segment, sets its estimates from the live
   * references metadata holds, and removes segments nothing references.
   * Run only while no write is in flight.
   *
   * @returns how many files were removed
   */
  async sweep(live: Iterable<DataRef>): Promise<number> {
    const byId = new Map<string, { bytes: number; count: number; end: number }>();
    for (const ref of live) {
      if (!ref.segment) continue;
      const e = byId.get(ref.segment.id) ?? { bytes: 0, count: 0, end: 0 };
      e.bytes += ref.sizeBytes;
      e.count++;
      e.end = Math.max(e.end, ref.segment.offsetBytes + RECORD_HEADER_SIZE_BYTES + ref.sizeBytes);
      byId.set(ref.segment.id, e);
    }
    this.#seal();
    let removed = 0;
    for await (const f of this.#disk.list("segments")) {
      const m = /^([0-9a-f]{16})\.seg$/.exec(f.name);
      if (m) this.#nextSequence = Math.max(this.#nextSequence, parseInt(m[1], 16) + 1);
      const e = m ? byId.get(m[1]) : undefined;
      if (!m || !e) {
        await this.#disk.remove(`segments/${f.name}`);
        this.#segments.delete(m?.[1] ?? "");
        removed++;
        continue;
      }
      const st = await this.#disk.stat(`segments/${f.name}`);
      this.#segments.set(m[1], {
        id: m[1],
        sizeBytes: st?.sizeBytes ?? 0,
        liveBytes: e.bytes,
        liveCount: e.count,
        inflight: 0,
        state: "sealed",
        trustedEndBytes: e.end,
      });
    }
    return removed;
  }
}

/**
 * Reads from `offsetBytes` until `buf` is full or the file ends.
 *
 * @returns the bytes read: less than `buf.length` only at the end of the file
 */
export async function readUpTo(
  handle: ReadHandle,
  buf: Uint8Array,
  offsetBytes: number,
): Promise<number> {
  let filled = 0;
  while (filled < buf.length) {
    const n = await handle.read(buf.subarray(filled), offsetBytes + filled);
    if (n === 0) break;
    filled += n;
  }
  return filled;
}

async function readFully(handle: ReadHandle, buf: Uint8Array, offsetBytes: number): Promise<void> {
  if (await readUpTo(handle, buf, offsetBytes) < buf.length) {
    throw new Error(`Segment file is shorter than a record it holds (offset ${offsetBytes})`);
  }
}
