/**
 * Durable Raft state (hard state, log, snapshot) in one directory of the
 * `Disk` port: a write-ahead log whose torn tail is detected and truncated
 * on open.
 *
 * Not pure: it does I/O, but only through the injected `Disk`; no `Deno.*`.
 *
 * Layout of `dir` (generation `g` is the highest with a `base` file):
 *
 * | file | content |
 * |---|---|
 * | `base-<g>` | snapshot, hard state and every entry at the time the generation started; written to `base-<g>.tmp`, fsynced, renamed, directory fsynced |
 * | `log-<g>` | records appended since: entries (an entry at index i drops every stored entry >= i) and hard states |
 *
 * Each record is `u32 payloadLength | u32 crc32(payload) | payload`, little
 * endian. Payloads start with a type byte: 1 hard state, 2 entry, 4 batch
 * (`u32 count`, then `u32 length | payload` per nested record: every entry
 * and the hard state of one ready, so a ready is durable whole or not at
 * all), 3 snapshot
 * (which also holds the index before the first kept entry: with retained
 * entries the log may start before the snapshot's own index).
 * Numbers are f64 (indexes and terms stay below 2^53); strings are
 * `u32 length | UTF-8`; byte strings are `u32 length | bytes`.
 *
 * Every `open()` and every snapshot starts a new generation holding the
 * recovered state, so a torn tail is cut off for good and old files go.
 *
 * @module
 */
import type { Disk, WriteHandle } from "../io/mod.ts";
import { bootstrapState, type StoredState } from "./raft.ts";
import type { Entry, HardState, Membership, Ready, Snapshot } from "./types.ts";

/** Raised when a file that must be whole (a `base`) fails its checksum. */
export class StorageCorruptError extends Error {
  override name = "StorageCorruptError";
}

/** What `open()` found. */
export interface RecoveryReport {
  /** Generation recovered from (0: empty directory). */
  readonly generation: number;
  /** Valid records read from the log file. */
  readonly logRecords: number;
  /** Bytes cut off the end of the log file (a torn or unsynced tail). */
  readonly tornBytes: number;
}

/**
 * Hard state, log and snapshot of one Raft node on a Disk.
 *
 * @example
 * ```ts
 * const st = await RaftStorage.open(disk, "raft");
 * const raft = new Raft({ id, rng }, st.state);
 * // for each ready: await st.save(rd) before sending rd.messages
 * ```
 * @see Raft paper Figure 2 ("updated on stable storage before responding to RPCs")
 */
export class RaftStorage {
  #hardState: HardState = { term: 0, vote: null, commit: 0 };
  #snapshot: Snapshot | null = null;
  #entries: Entry[] = [];
  /** Index of the entry just before `#entries[0]`. */
  #base = 0;
  #generation = 0;
  #log: WriteHandle | null = null;
  #report: RecoveryReport = { generation: 0, logRecords: 0, tornBytes: 0 };

  private constructor(readonly disk: Disk, readonly dir: string) {}

  /**
   * Recovers the state in `dir` (creating it if needed), truncating a torn
   * log tail, and starts a new generation.
   * @throws {StorageCorruptError} when a `base` file is damaged.
   */
  static async open(disk: Disk, dir: string): Promise<RaftStorage> {
    const st = new RaftStorage(disk, dir);
    await disk.mkdirp(dir);
    let g = 0;
    const stale: string[] = [];
    for await (const e of disk.list(dir)) {
      const m = /^base-(\d+)$/.exec(e.name);
      if (m) g = Math.max(g, Number(m[1]));
      if (e.name.endsWith(".tmp")) stale.push(e.name);
    }
    for (const name of stale) await disk.remove(`${dir}/${name}`);
    let logRecords = 0;
    let tornBytes = 0;
    if (g > 0) {
      const base = await readAll(disk, `${dir}/base-${g}`);
      const parsed = parseRecords(base);
      if (parsed.tornBytes > 0) {
        throw new StorageCorruptError(
          `Cannot read ${dir}/base-${g}: damaged at byte ${parsed.validBytes}`,
        );
      }
      for (const r of parsed.records) st.#replay(r);
      if (await disk.stat(`${dir}/log-${g}`)) {
        const log = parseRecords(await readAll(disk, `${dir}/log-${g}`));
        if (log.corrupt) {
          throw new StorageCorruptError(
            `Cannot read ${dir}/log-${g}: record at byte ${log.validBytes} is damaged ` +
              `and valid records follow it (not a torn tail)`,
          );
        }
        for (const r of log.records) st.#replay(r);
        logRecords = log.records.length;
        tornBytes = log.tornBytes;
      }
    }
    st.#report = { generation: g, logRecords, tornBytes };
    st.#generation = g;
    await st.#newGeneration();
    return st;
  }

  /** The recovered state, ready for `new Raft(config, state)`. */
  get state(): StoredState {
    return { hardState: this.#hardState, snapshot: this.#snapshot, entries: [...this.#entries] };
  }

  /** What `open()` found and cut. */
  get report(): RecoveryReport {
    return this.#report;
  }

  /** True when nothing was ever stored (a fresh node). */
  get isEmpty(): boolean {
    return this.#snapshot === null && this.#entries.length === 0 && this.#hardState.term === 0;
  }

  /**
   * Persists the founding state of a new cluster, with its snapshot at
   * `index` (default 1; see `bootstrapState`).
   */
  async bootstrap(membership: Membership, index = 1): Promise<void> {
    const s = bootstrapState(membership, index);
    this.#hardState = s.hardState;
    this.#snapshot = s.snapshot;
    this.#entries = [];
    this.#base = s.snapshot!.meta.index;
    await this.#newGeneration();
  }

  /**
   * Makes the durable part of `rd` (snapshot, entries, hard state) stable;
   * resolves after fsync. A ready with nothing durable does no I/O.
   */
  async save(rd: Ready): Promise<void> {
    if (rd.snapshot) {
      const snap = rd.snapshot;
      if (snap.restore) {
        this.#entries = [];
        this.#base = snap.meta.index;
      } else {
        const base = Math.max(this.#base, snap.firstIndex - 1);
        this.#entries = this.#entries.slice(base - this.#base);
        this.#base = base;
      }
      this.#snapshot = { meta: snap.meta, data: snap.data };
      for (const e of rd.entries) this.#appendMirror(e);
      if (rd.hardState) this.#hardState = rd.hardState;
      await this.#newGeneration();
      return;
    }
    if (rd.entries.length === 0 && !rd.hardState) return;
    // One record per ready: a torn write loses the whole ready, never half of
    // it (half would pair new entries with an old term, or cut an
    // acknowledged entry without the term change that allowed it).
    const w = new Writer();
    const hs = rd.hardState;
    encodeRecord(w, (p) => {
      p.u8(4);
      p.u32(rd.entries.length + (hs ? 1 : 0));
      for (const e of rd.entries) nested(p, (q) => encodeEntry(q, e));
      if (hs) nested(p, (q) => encodeHardState(q, hs));
    });
    for (const e of rd.entries) this.#appendMirror(e);
    if (hs) this.#hardState = hs;
    await this.#log!.write(w.bytes());
    await this.#log!.sync();
  }

  /** Closes the open log file. */
  close(): void {
    this.#log?.close();
    this.#log = null;
  }

  #appendMirror(e: Entry): void {
    const base = this.#base;
    if (e.index <= base) return;
    const pos = e.index - base - 1;
    if (pos > this.#entries.length) {
      throw new StorageCorruptError(
        `Entry ${e.index} leaves a gap after ${base + this.#entries.length}`,
      );
    }
    this.#entries.length = pos;
    this.#entries.push(e);
  }

  #replay(r: Rec): void {
    switch (r.type) {
      case "batch":
        for (const x of r.records) this.#replay(x);
        return;
      case "hardState":
        this.#hardState = r.hardState;
        return;
      case "snapshot":
        this.#snapshot = r.snapshot;
        this.#entries = [];
        this.#base = r.base;
        return;
      case "entry":
        this.#appendMirror(r.entry);
        return;
    }
  }

  async #newGeneration(): Promise<void> {
    const g = this.#generation + 1;
    const dir = this.dir;
    const w = new Writer();
    const snap = this.#snapshot;
    if (snap) encodeRecord(w, (p) => encodeSnapshot(p, snap, this.#base));
    encodeRecord(w, (p) => encodeHardState(p, this.#hardState));
    for (const e of this.#entries) encodeRecord(w, (p) => encodeEntry(p, e));
    const tmp = `${dir}/base-${g}.tmp`;
    await this.disk.remove(tmp);
    const h = await this.disk.create(tmp);
    await h.write(w.bytes());
    await h.sync();
    h.close();
    await this.disk.rename(tmp, `${dir}/base-${g}`);
    await this.disk.remove(`${dir}/log-${g}`);
    const log = await this.disk.create(`${dir}/log-${g}`);
    await this.disk.syncDir(dir);
    this.#log?.close();
    this.#log = log;
    this.#generation = g;
    const old: string[] = [];
    for await (const e of this.disk.list(dir)) {
      const m = /^(base|log)-(\d+)$/.exec(e.name);
      if (m && Number(m[2]) < g) old.push(e.name);
    }
    for (const name of old) await this.disk.remove(`${dir}/${name}`);
  }
}

async function readAll(disk: Disk, path: string): Promise<Uint8Array> {
  const h = await disk.open(path);
  try {
    const buf = new Uint8Array(h.sizeBytes);
    let off = 0;
    while (off < buf.length) {
      const n = await h.read(buf.subarray(off), off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off);
  } finally {
    h.close();
  }
}

// ---- record codec ------------------------------------------------------------

type Rec =
  | { type: "hardState"; hardState: HardState }
  | { type: "entry"; entry: Entry }
  | { type: "snapshot"; snapshot: Snapshot; base: number }
  | { type: "batch"; records: Rec[] };

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) of `bytes`. */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

class Writer {
  #buf = new Uint8Array(256);
  #view = new DataView(this.#buf.buffer);
  length = 0;

  #reserve(n: number): void {
    if (this.length + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.length));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }
  u8(v: number): void {
    this.#reserve(1);
    this.#buf[this.length++] = v;
  }
  u32(v: number): void {
    this.#reserve(4);
    this.#view.setUint32(this.length, v, true);
    this.length += 4;
  }
  f64(v: number): void {
    this.#reserve(8);
    this.#view.setFloat64(this.length, v, true);
    this.length += 8;
  }
  raw(b: Uint8Array): void {
    this.#reserve(b.length);
    this.#buf.set(b, this.length);
    this.length += b.length;
  }
  bytes32(b: Uint8Array): void {
    this.u32(b.length);
    this.raw(b);
  }
  str(s: string): void {
    this.bytes32(new TextEncoder().encode(s));
  }
  setU32(at: number, v: number): void {
    this.#view.setUint32(at, v, true);
  }
  slice(from: number, to: number): Uint8Array {
    return this.#buf.subarray(from, to);
  }
  bytes(): Uint8Array {
    return this.#buf.slice(0, this.length);
  }
}

class Reader {
  #view: DataView;
  pos = 0;
  constructor(readonly buf: Uint8Array) {
    this.#view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  #need(n: number): void {
    if (this.pos + n > this.buf.length) {
      throw new RangeError(`Cannot read ${n} bytes at ${this.pos} of ${this.buf.length}`);
    }
  }
  u8(): number {
    this.#need(1);
    return this.buf[this.pos++];
  }
  u32(): number {
    this.#need(4);
    const v = this.#view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  f64(): number {
    this.#need(8);
    const v = this.#view.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }
  bytes32(): Uint8Array {
    const n = this.u32();
    this.#need(n);
    const b = this.buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  str(): string {
    return new TextDecoder().decode(this.bytes32());
  }
}

function encodeRecord(w: Writer, body: (p: Writer) => void): void {
  const start = w.length;
  w.u32(0);
  w.u32(0);
  body(w);
  const payload = w.slice(start + 8, w.length);
  w.setU32(start, payload.length);
  w.setU32(start + 4, crc32(payload));
}

/** Writes `u32 length | payload` for a record nested in a batch. */
function nested(w: Writer, body: (p: Writer) => void): void {
  const start = w.length;
  w.u32(0);
  body(w);
  w.setU32(start, w.length - start - 4);
}

function encodeHardState(w: Writer, hs: HardState): void {
  w.u8(1);
  w.f64(hs.term);
  w.f64(hs.commit);
  w.u8(hs.vote === null ? 0 : 1);
  if (hs.vote !== null) w.str(hs.vote);
}

function encodeEntry(w: Writer, e: Entry): void {
  w.u8(2);
  w.f64(e.index);
  w.f64(e.term);
  w.u8(e.kind === "conf" ? 1 : 0);
  w.u8(e.id === undefined ? 0 : 1);
  if (e.id !== undefined) w.str(e.id);
  w.bytes32(e.data);
}

function encodeSnapshot(w: Writer, s: Snapshot, base: number): void {
  w.u8(3);
  w.f64(s.meta.index);
  w.f64(s.meta.term);
  w.f64(base);
  w.str(JSON.stringify(s.meta.membership));
  w.bytes32(s.data);
}

function decodePayload(p: Uint8Array): Rec {
  const r = new Reader(p);
  const type = r.u8();
  switch (type) {
    case 1: {
      const term = r.f64();
      const commit = r.f64();
      const vote = r.u8() === 1 ? r.str() : null;
      return { type: "hardState", hardState: { term, vote, commit } };
    }
    case 2: {
      const index = r.f64();
      const term = r.f64();
      const kind = r.u8() === 1 ? "conf" : "normal";
      const id = r.u8() === 1 ? r.str() : undefined;
      const data = r.bytes32();
      return {
        type: "entry",
        entry: { index, term, kind, data, ...(id === undefined ? {} : { id }) },
      };
    }
    case 3: {
      const index = r.f64();
      const term = r.f64();
      const base = r.f64();
      const membership = JSON.parse(r.str()) as Membership;
      const data = r.bytes32();
      return { type: "snapshot", snapshot: { meta: { index, term, membership }, data }, base };
    }
    case 4: {
      const n = r.u32();
      const records: Rec[] = [];
      for (let i = 0; i < n; i++) records.push(decodePayload(r.bytes32()));
      return { type: "batch", records };
    }
    default:
      throw new RangeError(`Unknown record type ${type}`);
  }
}

/**
 * Splits a file into records, stopping at the first one that is short or
 * fails its checksum. A torn write leaves damage only at the end (each
 * ready is one record, written and fsynced before the next), so when a
 * valid record still follows the damage, `corrupt` is true: the file was
 * damaged after it was written (bit rot, a bad sector, a stray write), and
 * cutting it there would silently drop acknowledged records.
 */
export function parseRecords(buf: Uint8Array): {
  records: Rec[];
  validBytes: number;
  tornBytes: number;
  corrupt: boolean;
} {
  const records: Rec[] = [];
  let pos = 0;
  for (;;) {
    const rec = recordAt(buf, pos);
    if (rec === null) break;
    records.push(rec.rec);
    pos = rec.end;
  }
  let corrupt = false;
  for (let at = pos + 1; at + 8 <= buf.length && !corrupt; at++) {
    corrupt = recordAt(buf, at) !== null;
  }
  return { records, validBytes: pos, tornBytes: buf.length - pos, corrupt };
}

/** The whole, checksummed, decodable record at `pos`, or null. */
function recordAt(buf: Uint8Array, pos: number): { rec: Rec; end: number } | null {
  if (pos + 8 > buf.length) return null;
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const len = view.getUint32(pos, true);
  const crc = view.getUint32(pos + 4, true);
  if (len === 0 || pos + 8 + len > buf.length) return null;
  const payload = buf.subarray(pos + 8, pos + 8 + len);
  if (crc32(payload) !== crc) return null;
  try {
    return { rec: decodePayload(payload), end: pos + 8 + len };
  } catch {
    return null;
  }
}
