/**
 * The shard file header codec.
 *
 * Pure: no clock, no I/O.
 *
 * Byte layout (big-endian, {@link SHARD_HEADER_SIZE_BYTES} bytes, then the payload):
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 4 | magic `HMSH` |
 * | 4 | 2 | format version (1) |
 * | 6 | 2 | header size in bytes (64) |
 * | 8 | 16 | data id (128 bits) |
 * | 24 | 1 | shard index |
 * | 25 | 1 | k, data shards |
 * | 26 | 1 | m, parity shards |
 * | 27 | 1 | flags (0) |
 * | 28 | 4 | slice size in bytes (0: unstriped, the 1+0 profile) |
 * | 32 | 4 | frame size in bytes (0: unframed) |
 * | 36 | 28 | reserved, zero |
 *
 * The shard's SHA-256 lives in metadata, not in the shard.
 *
 * @module
 */

/** The header's size in bytes; the payload starts here. */
export const SHARD_HEADER_SIZE_BYTES = 64;
const MAGIC = 0x484d5348; // "HMSH"
const FORMAT_VERSION = 1;

/** The self-description every shard file carries. */
export interface ShardHeader {
  /** 32 lower-case hex digits. */
  dataId: string;
  shardIndex: number;
  k: number;
  m: number;
  sliceSizeBytes: number;
  frameSizeBytes: number;
}

/**
 * Encodes a shard header.
 *
 * @throws {RangeError} when the data id is not 32 hex digits or a field is out of range
 */
export function encodeShardHeader(h: ShardHeader): Uint8Array {
  if (!/^[0-9a-f]{32}$/.test(h.dataId)) throw new RangeError(`Bad data id: "${h.dataId}"`);
  for (
    const [name, v, max] of [["shardIndex", h.shardIndex, 255], ["k", h.k, 255], [
      "m",
      h.m,
      255,
    ]] as const
  ) {
    if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`Bad ${name}: ${v}`);
  }
  const out = new Uint8Array(SHARD_HEADER_SIZE_BYTES);
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC);
  view.setUint16(4, FORMAT_VERSION);
  view.setUint16(6, SHARD_HEADER_SIZE_BYTES);
  for (let i = 0; i < 16; i++) out[8 + i] = parseInt(h.dataId.slice(i * 2, i * 2 + 2), 16);
  out[24] = h.shardIndex;
  out[25] = h.k;
  out[26] = h.m;
  view.setUint32(28, h.sliceSizeBytes);
  view.setUint32(32, h.frameSizeBytes);
  return out;
}

/**
 * Decodes a shard header.
 *
 * @throws {RangeError} on a short buffer, a wrong magic or an unknown format version
 */
export function decodeShardHeader(bytes: Uint8Array): ShardHeader {
  if (bytes.length < SHARD_HEADER_SIZE_BYTES) {
    throw new RangeError(
      `Cannot decode shard header: length ${SHARD_HEADER_SIZE_BYTES} exceeds ${bytes.length} bytes`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0) !== MAGIC) throw new RangeError("Cannot decode shard header: bad magic");
  const version = view.getUint16(4);
  if (version !== FORMAT_VERSION) {
    throw new RangeError(`Cannot decode shard header: unknown format version ${version}`);
  }
  let dataId = "";
  for (let i = 0; i < 16; i++) dataId += bytes[8 + i].toString(16).padStart(2, "0");
  return {
    dataId,
    shardIndex: bytes[24],
    k: bytes[25],
    m: bytes[26],
    sliceSizeBytes: view.getUint32(28),
    frameSizeBytes: view.getUint32(32),
  };
}
