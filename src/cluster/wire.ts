/**
 * The frame of one Raft message between members: `u32 payloadLength |
 * u32 crc32(payload) | payload`, little endian, the payload being the
 * message as UTF-8 JSON with byte strings as `{"$b": base64}`. The checksum
 * catches damage that a transport without integrity protection (or a bug
 * below it) lets through; a frame that fails it is dropped, like a lost
 * message, which Raft tolerates.
 *
 * Pure: no I/O.
 *
 * @module
 */
import { crc32 } from "../raft/storage.ts";
import type { Message } from "../raft/mod.ts";

/** Raised by `decodeMessage` for a damaged or malformed frame. */
export class FrameCorruptError extends Error {
  override name = "FrameCorruptError";
}

const MESSAGE_TYPES = new Set([
  "PreVote",
  "RequestVote",
  "PreVoteResponse",
  "RequestVoteResponse",
  "AppendEntries",
  "AppendEntriesResponse",
  "Heartbeat",
  "HeartbeatResponse",
  "InstallSnapshot",
  "InstallSnapshotResponse",
  "Propose",
  "ReadIndex",
  "ReadIndexResponse",
]);

/** Encodes `m` as one checksummed frame. */
export function encodeMessage(m: Message): Uint8Array {
  const json = JSON.stringify(m, (_k, v) => v instanceof Uint8Array ? { $b: toBase64(v) } : v);
  const payload = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, payload.length, true);
  view.setUint32(4, crc32(payload), true);
  out.set(payload, 8);
  return out;
}

/**
 * Decodes one frame made by `encodeMessage`.
 * @throws {FrameCorruptError} when the length, checksum or shape is wrong.
 */
export function decodeMessage(frame: Uint8Array): Message {
  if (frame.length < 8) throw new FrameCorruptError(`Frame of ${frame.length} bytes is too short`);
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const len = view.getUint32(0, true);
  if (len !== frame.length - 8) {
    throw new FrameCorruptError(`Frame length ${len} does not match ${frame.length - 8} bytes`);
  }
  const payload = frame.subarray(8);
  if (crc32(payload) !== view.getUint32(4, true)) {
    throw new FrameCorruptError("Frame checksum mismatch");
  }
  let m: unknown;
  try {
    m = JSON.parse(
      new TextDecoder("utf-8", { fatal: true }).decode(payload),
      (_k, v) =>
        v !== null && typeof v === "object" && typeof v.$b === "string" ? fromBase64(v.$b) : v,
    );
  } catch (err) {
    throw new FrameCorruptError(`Frame payload is not a message: ${(err as Error).message}`);
  }
  const o = m as Record<string, unknown>;
  if (
    typeof o !== "object" || o === null || !MESSAGE_TYPES.has(o.type as string) ||
    typeof o.from !== "string" || typeof o.to !== "string" || typeof o.term !== "number"
  ) {
    throw new FrameCorruptError("Frame payload is not a message");
  }
  return m as Message;
}

function toBase64(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 0x8000) {
    s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
