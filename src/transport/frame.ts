/**
 * Frames on the cluster port: length-prefixed, versioned, typed, with a
 * stream id. One TLS connection per peer carries Raft messages, node-CLI
 * requests and (later) data-path streams with credit-based flow control.
 *
 * Pure: no clock, no I/O.
 *
 * Layout (big-endian), {@link FRAME_HEADER_BYTES} bytes of header:
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 4 | `payloadLength`: bytes after the header, 0..`maxPayloadBytes` |
 * | 4 | 1 | `version`: {@link FRAME_VERSION} |
 * | 5 | 1 | `type`: a {@link FrameType} |
 * | 6 | 4 | `streamId`: 0 for connection-level types, else the stream |
 * | 10 | payloadLength | payload, per type |
 *
 * Payloads per type:
 *
 * | type | stream | payload |
 * |---|---|---|
 * | `Raft` 0x01 | 0 | one Raft message, opaque here |
 * | `Ping` 0x02, `Pong` 0x03 | 0 | 8 bytes; a Pong echoes its Ping |
 * | `JoinRequest` 0x10, `JoinResponse` 0x11 | 0 | UTF-8 JSON (src/cluster/join.ts) |
 * | `Error` 0x12 | any | UTF-8 JSON `{code, message}` answering that stream |
 * | `Request` 0x20, `Response` 0x21 | request id | opaque (node-CLI calls) |
 * | `StreamOpen` 0x30 | stream | u32 initial window in bytes, then opaque header |
 * | `StreamData` 0x31 | stream | bytes; each byte spends one byte of credit |
 * | `StreamCredit` 0x32 | stream | u32 credit increment in bytes, > 0 |
 * | `StreamEnd` 0x33 | stream | empty: the sender has finished |
 * | `StreamReset` 0x34 | stream | u32 reason code: the stream is abandoned |
 *
 * Request and stream ids are chosen by the side that opens them: odd by the
 * side that dialed the connection, even by the side that accepted it, so the
 * two never collide. See docs/adr/0050-transport-framing.md.
 *
 * @module
 */

/** The only frame version this code speaks. */
export const FRAME_VERSION = 1;
/** Bytes of the fixed header. */
export const FRAME_HEADER_BYTES = 10;
/** Largest payload accepted by default: 4 MiB. */
export const MAX_PAYLOAD_BYTES = 4 * 1024 * 1024;

/** Frame types; values are the `type` byte. */
export const FrameType = {
  Raft: 0x01,
  Ping: 0x02,
  Pong: 0x03,
  JoinRequest: 0x10,
  JoinResponse: 0x11,
  Error: 0x12,
  Request: 0x20,
  Response: 0x21,
  StreamOpen: 0x30,
  StreamData: 0x31,
  StreamCredit: 0x32,
  StreamEnd: 0x33,
  StreamReset: 0x34,
} as const;

/** A frame type's numeric value. */
export type FrameType = typeof FrameType[keyof typeof FrameType];

/** One decoded frame. `payload` may be a view into the decoder's buffer. */
export interface Frame {
  /** What the frame is. */
  type: FrameType;
  /** 0 for connection-level types, else the request or stream id (u32). */
  streamId: number;
  /** The body, per type. */
  payload: Uint8Array;
}

/** What was wrong with bytes that did not decode. */
export type FrameErrorCode =
  | "Truncated"
  | "TooLarge"
  | "UnsupportedVersion"
  | "UnknownType"
  | "BadStreamId"
  | "BadPayload"
  | "TrailingBytes";

/** Bytes that are not a valid frame. A connection that sends one is closed. */
export class FrameError extends Error {
  /** Always `"FrameError"`. */
  override name = "FrameError";
  /** The error, with `code`: what was wrong. */
  constructor(readonly code: FrameErrorCode, message: string) {
    super(message);
  }
}

const TYPE_NAMES = new Map<number, string>(
  Object.entries(FrameType).map(([name, value]) => [value, name]),
);

/** The name of a frame type (`"Raft"`), or `0x..` for an unknown byte. */
export function frameTypeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `0x${type.toString(16).padStart(2, "0")}`;
}

const CONNECTION_TYPES: ReadonlySet<number> = new Set([
  FrameType.Raft,
  FrameType.Ping,
  FrameType.Pong,
  FrameType.JoinRequest,
  FrameType.JoinResponse,
]);

/**
 * Checks one frame's type, stream id and payload shape.
 * @throws {FrameError} `UnknownType`, `BadStreamId`, `BadPayload` or `TooLarge`.
 */
export function validateFrame(frame: Frame, maxPayloadBytes = MAX_PAYLOAD_BYTES): void {
  const { type, streamId, payload } = frame;
  const name = frameTypeName(type);
  if (!TYPE_NAMES.has(type)) throw new FrameError("UnknownType", `Unknown frame type ${name}`);
  if (!Number.isInteger(streamId) || streamId < 0 || streamId > 0xffffffff) {
    throw new FrameError("BadStreamId", `${name} frame has stream id ${streamId} outside u32`);
  }
  if (payload.length > maxPayloadBytes) {
    throw new FrameError(
      "TooLarge",
      `${name} frame payload of ${payload.length} bytes exceeds ${maxPayloadBytes}`,
    );
  }
  if (CONNECTION_TYPES.has(type) !== (streamId === 0) && type !== FrameType.Error) {
    throw new FrameError(
      "BadStreamId",
      `${name} frame has stream id ${streamId}: ${
        CONNECTION_TYPES.has(type) ? "must be 0" : "must not be 0"
      }`,
    );
  }
  const exact = type === FrameType.Ping || type === FrameType.Pong
    ? 8
    : type === FrameType.StreamCredit || type === FrameType.StreamReset
    ? 4
    : type === FrameType.StreamEnd
    ? 0
    : null;
  if (exact !== null && payload.length !== exact) {
    throw new FrameError(
      "BadPayload",
      `${name} frame payload is ${payload.length} bytes, must be ${exact}`,
    );
  }
  if (type === FrameType.StreamOpen && payload.length < 4) {
    throw new FrameError(
      "BadPayload",
      `StreamOpen frame payload is ${payload.length} bytes, under 4`,
    );
  }
  if (type === FrameType.StreamCredit && readU32(payload, 0) === 0) {
    throw new FrameError("BadPayload", "StreamCredit frame grants 0 bytes");
  }
}

/**
 * Encodes one frame (header then payload) after {@link validateFrame}.
 * @throws {FrameError} when the frame is not valid.
 */
export function encodeFrame(frame: Frame, maxPayloadBytes = MAX_PAYLOAD_BYTES): Uint8Array {
  validateFrame(frame, maxPayloadBytes);
  const out = new Uint8Array(FRAME_HEADER_BYTES + frame.payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, frame.payload.length);
  out[4] = FRAME_VERSION;
  out[5] = frame.type;
  view.setUint32(6, frame.streamId);
  out.set(frame.payload, FRAME_HEADER_BYTES);
  return out;
}

/**
 * Decodes exactly one frame from `bytes`.
 * @throws {FrameError} `Truncated`, `TooLarge`, `UnsupportedVersion`,
 *   `UnknownType`, `BadStreamId`, `BadPayload`, or `TrailingBytes` when bytes
 *   follow the frame.
 */
export function decodeFrame(bytes: Uint8Array, maxPayloadBytes = MAX_PAYLOAD_BYTES): Frame {
  const reader = new FrameReader(maxPayloadBytes);
  const frames = reader.push(bytes);
  if (frames.length === 0) reader.finish();
  if (frames.length === 0) {
    throw new FrameError("Truncated", "Cannot decode frame: no bytes");
  }
  const rest = bytes.length - FRAME_HEADER_BYTES - frames[0].payload.length;
  if (rest > 0) {
    throw new FrameError("TrailingBytes", `Cannot decode frame: ${rest} bytes follow it`);
  }
  return frames[0];
}

/**
 * Incremental decoder for a byte stream: feed chunks as they arrive and get
 * whole frames back. The header is checked as soon as its 10 bytes are in, so
 * an oversized or wrong-version frame is refused before its payload is
 * buffered; memory stays under one header plus `maxPayloadBytes`.
 * After a {@link FrameError} the reader is unusable: close the connection.
 */
export class FrameReader {
  #chunks: Uint8Array[] = [];
  #size = 0;
  #failed: FrameError | null = null;

  /** A reader; `maxPayloadBytes`: largest payload accepted; a larger header fails at once. */
  constructor(readonly maxPayloadBytes: number = MAX_PAYLOAD_BYTES) {}

  /** Bytes received that do not yet form a whole frame. */
  get bufferedBytes(): number {
    return this.#size;
  }

  /**
   * Appends `chunk` and returns the frames it completed, in order. Returned
   * payloads are copies and stay valid; `chunk` is not kept after the call
   * returns unless it holds part of an unfinished frame, and then by copy.
   * @throws {FrameError} on the first invalid frame, and on every call after it.
   */
  push(chunk: Uint8Array): Frame[] {
    if (this.#failed) throw this.#failed;
    try {
      return this.#push(chunk);
    } catch (e) {
      if (e instanceof FrameError) this.#failed = e;
      throw e;
    }
  }

  /**
   * Declares the end of the stream.
   * @throws {FrameError} `Truncated` when a partial frame is buffered.
   */
  finish(): void {
    if (this.#failed) throw this.#failed;
    if (this.#size > 0) {
      const want = this.#size >= 4
        ? FRAME_HEADER_BYTES + readU32(this.#peek(4), 0)
        : FRAME_HEADER_BYTES;
      throw new FrameError(
        "Truncated",
        `Cannot decode frame: stream ended after ${this.#size} of ${want} bytes`,
      );
    }
  }

  #push(chunk: Uint8Array): Frame[] {
    if (chunk.length > 0) {
      this.#chunks.push(chunk.slice());
      this.#size += chunk.length;
    }
    const frames: Frame[] = [];
    while (this.#size >= FRAME_HEADER_BYTES) {
      const head = this.#peek(FRAME_HEADER_BYTES);
      const length = readU32(head, 0);
      const version = head[4];
      const type = head[5];
      if (version !== FRAME_VERSION) {
        throw new FrameError(
          "UnsupportedVersion",
          `Cannot decode frame: version ${version}, this node speaks ${FRAME_VERSION}`,
        );
      }
      if (length > this.maxPayloadBytes) {
        throw new FrameError(
          "TooLarge",
          `Cannot decode ${
            frameTypeName(type)
          } frame: payload of ${length} bytes exceeds ${this.maxPayloadBytes}`,
        );
      }
      if (!TYPE_NAMES.has(type)) {
        throw new FrameError("UnknownType", `Unknown frame type ${frameTypeName(type)}`);
      }
      if (this.#size < FRAME_HEADER_BYTES + length) break;
      const bytes = this.#take(FRAME_HEADER_BYTES + length);
      const frame: Frame = {
        type: type as FrameType,
        streamId: readU32(bytes, 6),
        payload: bytes.subarray(FRAME_HEADER_BYTES),
      };
      validateFrame(frame, this.maxPayloadBytes);
      frames.push(frame);
    }
    return frames;
  }

  /** The first `n` buffered bytes (n <= size), joining chunks only when needed. */
  #peek(n: number): Uint8Array {
    if (this.#chunks[0].length < n) {
      const all = this.#take(this.#size);
      this.#chunks = [all];
      this.#size = all.length;
    }
    return this.#chunks[0];
  }

  /** Removes and returns the first `n` buffered bytes as a new array. */
  #take(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const head = this.#chunks[0];
      const use = Math.min(head.length, n - filled);
      out.set(head.subarray(0, use), filled);
      filled += use;
      if (use === head.length) this.#chunks.shift();
      else this.#chunks[0] = head.subarray(use);
    }
    this.#size -= n;
    return out;
  }
}

/** Reads a big-endian u32 at `offset`. */
export function readU32(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset] << 24) >>> 0) + (bytes[offset + 1] << 16) + (bytes[offset + 2] << 8) +
    bytes[offset + 3];
}

/** Four bytes holding `value` as a big-endian u32. */
export function u32Bytes(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value);
  return out;
}

/** An `Error` frame answering `streamId` (0 for the connection). */
export function errorFrame(streamId: number, code: string, message: string): Frame {
  return {
    type: FrameType.Error,
    streamId,
    payload: new TextEncoder().encode(JSON.stringify({ code, message })),
  };
}

/**
 * The `{code, message}` of an `Error` frame.
 * @throws {FrameError} `BadPayload` when the payload is not that JSON.
 */
export function decodeErrorFrame(frame: Frame): { code: string; message: string } {
  const v = decodeJsonPayload(frame) as { code?: unknown; message?: unknown };
  if (typeof v?.code !== "string" || typeof v.message !== "string") {
    throw new FrameError("BadPayload", "Error frame payload lacks a string code and message");
  }
  return { code: v.code, message: v.message };
}

/**
 * Parses a frame's UTF-8 JSON payload.
 * @throws {FrameError} `BadPayload` when it is not UTF-8 JSON.
 */
export function decodeJsonPayload(frame: Frame): unknown {
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(frame.payload));
  } catch {
    throw new FrameError(
      "BadPayload",
      `${frameTypeName(frame.type)} frame payload is not UTF-8 JSON`,
    );
  }
}

/** A frame of `type` on stream 0 carrying `value` as UTF-8 JSON. */
export function jsonFrame(type: FrameType, value: unknown, streamId = 0): Frame {
  return { type, streamId, payload: new TextEncoder().encode(JSON.stringify(value)) };
}
