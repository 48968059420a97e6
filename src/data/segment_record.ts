/**
 * The codec of segment files: many small objects' bytes packed into one
 * append-only file, so one fsync makes a whole group of PUTs durable.
 *
 * Pure: no clock, no I/O.
 *
 * A segment file is a {@link SEGMENT_HEADER_SIZE_BYTES}-byte file header,
 * then records back to back. Big-endian throughout.
 *
 * File header:
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 4 | magic `HMSG` |
 * | 4 | 2 | format version (1) |
 * | 6 | 2 | header size in bytes (32) |
 * | 8 | 8 | segment sequence number |
 * | 16 | 12 | reserved, zero |
 * | 28 | 4 | CRC32 of bytes 0..28 |
 *
 * Record ({@link RECORD_HEADER_SIZE_BYTES}-byte header, payload, then the
 * owner's bucket and key as UTF-8, so compaction can find the record that
 * references it without a reverse index):
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 4 | magic `HMRC` |
 * | 4 | 4 | payload size in bytes |
 * | 8 | 2 | key size in bytes |
 * | 10 | 1 | bucket size in bytes |
 * | 11 | 1 | format version (1) |
 * | 12 | 16 | data id (128 bits) |
 * | 28 | 4 | CRC32 of the payload |
 * | 32 | 4 | CRC32 of the bucket and key bytes |
 * | 36 | 4 | CRC32 of bytes 0..36 |
 *
 * CRC32 is the IEEE polynomial (`node:zlib`); it guards against torn and
 * misdirected writes, not against tampering.
 *
 * @module
 */
import { crc32 } from "node:zlib";

/** The file header's size; the first record starts here. */
export const SEGMENT_HEADER_SIZE_BYTES = 32;
/** A record header's size; the payload starts this far after the record's offset. */
export const RECORD_HEADER_SIZE_BYTES = 40;

const FILE_MAGIC = 0x484d5347; // "HMSG"
const RECORD_MAGIC = 0x484d5243; // "HMRC"
const FORMAT_VERSION = 1;

/** Who a record's bytes belong to: the object that was written with them. */
export interface RecordOwner {
  bucket: string;
  key: string;
}

/** A decoded record header. */
export interface RecordHeader {
  /** 32 lower-case hex digits. */
  dataId: string;
  payloadSizeBytes: number;
  /** Bytes of bucket and key after the payload. */
  ownerSizeBytes: number;
  payloadCrc: number;
  ownerCrc: number;
}

/** Encodes a segment file's header. */
export function encodeSegmentHeader(sequence: number): Uint8Array {
  const out = new Uint8Array(SEGMENT_HEADER_SIZE_BYTES);
  const view = new DataView(out.buffer);
  view.setUint32(0, FILE_MAGIC);
  view.setUint16(4, FORMAT_VERSION);
  view.setUint16(6, SEGMENT_HEADER_SIZE_BYTES);
  view.setBigUint64(8, BigInt(sequence));
  view.setUint32(28, crc32(out.subarray(0, 28)));
  return out;
}

/**
 * Decodes a segment file's header.
 *
 * @returns the segment's sequence number
 * @throws {RangeError} on a short buffer, a wrong magic or version, or a bad checksum
 */
export function decodeSegmentHeader(bytes: Uint8Array): number {
  if (bytes.length < SEGMENT_HEADER_SIZE_BYTES) {
    throw new RangeError("Cannot decode segment header: too short");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0) !== FILE_MAGIC) {
    throw new RangeError("Cannot decode segment header: bad magic");
  }
  if (view.getUint16(4) !== FORMAT_VERSION) {
    throw new RangeError(`Cannot decode segment header: unknown version ${view.getUint16(4)}`);
  }
  if (view.getUint32(28) !== crc32(bytes.subarray(0, 28))) {
    throw new RangeError("Cannot decode segment header: bad checksum");
  }
  return Number(view.getBigUint64(8));
}

/**
 * Encodes one record: header, payload, owner.
 *
 * @throws {RangeError} on a bad data id, a bucket over 255 or a key over 65535 UTF-8 bytes
 */
export function encodeRecord(dataId: string, payload: Uint8Array, owner: RecordOwner): Uint8Array {
  if (!/^[0-9a-f]{32}$/.test(dataId)) throw new RangeError(`Bad data id: "${dataId}"`);
  const enc = new TextEncoder();
  const bucket = enc.encode(owner.bucket);
  const key = enc.encode(owner.key);
  if (bucket.length > 255 || key.length > 65535) throw new RangeError("Owner name too long");
  const out = new Uint8Array(
    RECORD_HEADER_SIZE_BYTES + payload.length + bucket.length + key.length,
  );
  const view = new DataView(out.buffer);
  view.setUint32(0, RECORD_MAGIC);
  view.setUint32(4, payload.length);
  view.setUint16(8, key.length);
  out[10] = bucket.length;
  out[11] = FORMAT_VERSION;
  for (let i = 0; i < 16; i++) out[12 + i] = parseInt(dataId.slice(i * 2, i * 2 + 2), 16);
  const ownerAt = RECORD_HEADER_SIZE_BYTES + payload.length;
  out.set(payload, RECORD_HEADER_SIZE_BYTES);
  out.set(bucket, ownerAt);
  out.set(key, ownerAt + bucket.length);
  view.setUint32(28, crc32(payload));
  view.setUint32(32, crc32(out.subarray(ownerAt)));
  view.setUint32(36, crc32(out.subarray(0, 36)));
  return out;
}

/**
 * Decodes a record header.
 *
 * @returns the header, or `null` when the bytes are not a valid record
 *   header (a torn or never-written tail reads as `null`)
 */
export function decodeRecordHeader(bytes: Uint8Array): RecordHeader | null {
  if (bytes.length < RECORD_HEADER_SIZE_BYTES) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0) !== RECORD_MAGIC || bytes[11] !== FORMAT_VERSION) return null;
  if (view.getUint32(36) !== crc32(bytes.subarray(0, 36))) return null;
  let dataId = "";
  for (let i = 0; i < 16; i++) dataId += bytes[12 + i].toString(16).padStart(2, "0");
  return {
    dataId,
    payloadSizeBytes: view.getUint32(4),
    ownerSizeBytes: view.getUint16(8) + bytes[10],
    payloadCrc: view.getUint32(28),
    ownerCrc: view.getUint32(32),
  };
}

/**
 * Decodes the owner bytes that follow a record's payload.
 *
 * @returns the owner, or `null` when the bytes fail their checksum
 */
export function decodeRecordOwner(header: Uint8Array, owner: Uint8Array): RecordOwner | null {
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  if (crc32(owner) !== view.getUint32(32)) return null;
  const bucketSize = header[10];
  const dec = new TextDecoder();
  return {
    bucket: dec.decode(owner.subarray(0, bucketSize)),
    key: dec.decode(owner.subarray(bucketSize)),
  };
}

/** Whether `payload` matches the checksum in its record header. */
export function payloadMatches(header: RecordHeader, payload: Uint8Array): boolean {
  return payload.length === header.payloadSizeBytes && crc32(payload) === header.payloadCrc;
}
