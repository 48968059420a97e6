/**
 * Reading object bytes held by another member, over the cluster transport,
 * with a bounded window: the read path any node uses to serve a GET whose
 * bytes live elsewhere (today the 1+0 copy on the node that took the PUT;
 * with erasure coding, each shard on its holder).
 *
 * Protocol on one stream id (ids: `rpc.ts`), reader `R`, holder `H`:
 * - R→H `StreamOpen`: u32 window (bytes H may send before more credit),
 *   then UTF-8 JSON `{ref: DataRef, startByte, endByte}`;
 * - H→R `StreamData`* (each at most {@link DATA_FRAME_BYTES}, never more
 *   than the credit left), then `StreamEnd`; or an `Error` frame
 *   (`NoSuchData`, `InvalidRequest`, `InternalError`) or `StreamReset`;
 * - R→H `StreamCredit` as the consumer takes bytes; `StreamReset` to stop.
 *
 * Memory per stream is bounded by the window on both ends. A stream does not
 * survive its connection: when the peer's connection drops the reader gets
 * an error and the holder stops reading.
 *
 * No `Deno.*`: frames go out through `SendFrame`, bytes come from a `DataPath`.
 *
 * @module
 */
import type { DataRef } from "../meta/mod.ts";
import type { DataPath } from "../data/local.ts";
import { decodeErrorFrame, type Frame, FrameType, readU32, u32Bytes } from "../transport/frame.ts";
import { errorFrameOf, RpcError, type SendFrame, type StreamIds, type Timers } from "./rpc.ts";

/** Largest `StreamData` payload sent. */
export const DATA_FRAME_BYTES = 256 * 1024;
/** Window a reader grants when it opens a stream. */
export const DEFAULT_WINDOW_BYTES = 1024 * 1024;
/** A holder that sends nothing for this long after a stream opens or credit is granted is unreachable. */
export const DEFAULT_SILENCE_MS = 10_000;

interface Reading {
  queue: Uint8Array[];
  queuedBytes: number;
  ended: boolean;
  error: Error | null;
  wake: (() => void) | null;
  /** Cancels the silence timer. */
  quiet: (() => void) | null;
}

interface Serving {
  credit: number;
  stopped: boolean;
  wake: (() => void) | null;
  cancel: () => void;
}

/** The request header of a `StreamOpen`. */
interface OpenHeader {
  ref: DataRef;
  startByte: number;
  endByte: number;
}

/**
 * Both ends of remote reads for one node: `read()` streams bytes from a
 * holder; `onFrame()` takes stream frames, serving other members' reads from
 * `local`.
 */
export class RemoteData {
  readonly #reading = new Map<string, Reading>();
  readonly #serving = new Map<string, Serving>();

  /**
   * `local` serves reads asked by peers; `windowBytes` is granted per read; a
   * holder silent for `silenceMs` while the reader waits fails the read
   * (`Unreachable`): a down holder, or one the transport cannot reach.
   */
  constructor(
    readonly ids: StreamIds,
    readonly send: SendFrame,
    readonly local: DataPath,
    readonly timers: Timers,
    readonly windowBytes: number = DEFAULT_WINDOW_BYTES,
    readonly silenceMs: number = DEFAULT_SILENCE_MS,
  ) {}

  /**
   * The bytes `[startByte, endByte)` of `ref`, streamed from `holder`.
   * The stream errors with {@link RpcError} (`NoSuchData`, `Unreachable`, ...)
   * when the holder cannot serve them or the connection drops.
   */
  read(
    holder: string,
    ref: DataRef,
    startByte: number,
    endByte: number,
  ): ReadableStream<Uint8Array> {
    let key = "";
    let id = 0;
    const state: Reading = {
      queue: [],
      queuedBytes: 0,
      ended: false,
      error: null,
      wake: null,
      quiet: null,
    };
    return new ReadableStream<Uint8Array>({
      start: () => {
        id = this.ids.next(holder);
        key = `${holder}/${id}`;
        this.#reading.set(key, state);
        const header = new TextEncoder().encode(JSON.stringify({ ref, startByte, endByte }));
        const payload = new Uint8Array(4 + header.length);
        payload.set(u32Bytes(this.windowBytes));
        payload.set(header, 4);
        if (!this.send(holder, { type: FrameType.StreamOpen, streamId: id, payload })) {
          state.error = new RpcError("Unreachable", `Cannot send to ${holder}`);
        }
      },
      pull: async (controller) => {
        while (state.queue.length === 0 && !state.ended && !state.error) {
          state.quiet = this.timers.setTimeout(this.silenceMs, () => {
            this.#failReading(
              key,
              new RpcError("Unreachable", `${holder} sent nothing for ${this.silenceMs} ms`),
            );
            this.send(holder, { type: FrameType.StreamReset, streamId: id, payload: u32Bytes(2) });
          });
          await new Promise<void>((resolve) => state.wake = resolve);
          state.quiet();
          state.quiet = null;
        }
        const chunk = state.queue.shift();
        if (chunk) {
          state.queuedBytes -= chunk.length;
          controller.enqueue(chunk);
          this.send(holder, {
            type: FrameType.StreamCredit,
            streamId: id,
            payload: u32Bytes(chunk.length),
          });
          return;
        }
        this.#reading.delete(key);
        if (state.error) controller.error(state.error);
        else controller.close();
      },
      cancel: () => {
        if (!this.#reading.delete(key)) return;
        this.send(holder, { type: FrameType.StreamReset, streamId: id, payload: u32Bytes(0) });
      },
    }, { highWaterMark: 0 });
  }

  /**
   * Takes a stream frame (or an `Error` answering a stream) from `peerId`.
   * @returns `false` when the frame is not for this module.
   */
  onFrame(peerId: string, frame: Frame): boolean {
    const key = `${peerId}/${frame.streamId}`;
    switch (frame.type) {
      case FrameType.StreamOpen:
        if (this.ids.openedBy(peerId, frame.streamId) && !this.#serving.has(key)) {
          this.#serve(peerId, frame);
        }
        return true;
      case FrameType.StreamCredit: {
        const s = this.#serving.get(key);
        if (s) {
          s.credit += readU32(frame.payload, 0);
          s.wake?.();
        }
        return true;
      }
      case FrameType.StreamData: {
        const r = this.#reading.get(key);
        if (!r || r.ended || r.error) return true;
        if (r.queuedBytes + frame.payload.length > this.windowBytes) {
          this.#failReading(key, new RpcError("BadResponse", `${peerId} sent past its credit`));
          this.send(peerId, {
            type: FrameType.StreamReset,
            streamId: frame.streamId,
            payload: u32Bytes(1),
          });
          return true;
        }
        r.queue.push(frame.payload);
        r.queuedBytes += frame.payload.length;
        r.wake?.();
        return true;
      }
      case FrameType.StreamEnd: {
        const r = this.#reading.get(key);
        if (r) {
          r.ended = true;
          r.wake?.();
        }
        return true;
      }
      case FrameType.StreamReset: {
        this.#stopServing(key);
        this.#failReading(key, new RpcError("StreamReset", `${peerId} abandoned the read`));
        return true;
      }
      case FrameType.Error: {
        if (!this.#reading.has(key)) return false;
        let err: RpcError;
        try {
          const { code, message } = decodeErrorFrame(frame);
          err = new RpcError(code, message);
        } catch {
          err = new RpcError("BadResponse", `${peerId} sent a malformed Error frame`);
        }
        this.#failReading(key, err);
        return true;
      }
      default:
        return false;
    }
  }

  /** Fails every read from `peerId` and stops serving it (its connection dropped). */
  peerLost(peerId: string): void {
    for (const key of [...this.#reading.keys()]) {
      if (key.startsWith(`${peerId}/`)) {
        this.#failReading(key, new RpcError("Unreachable", `Connection to ${peerId} was lost`));
      }
    }
    for (const key of [...this.#serving.keys()]) {
      if (key.startsWith(`${peerId}/`)) this.#stopServing(key);
    }
  }

  /** Reads and streams being served, for tests and status. */
  get openStreams(): { reading: number; serving: number } {
    return { reading: this.#reading.size, serving: this.#serving.size };
  }

  #failReading(key: string, err: Error): void {
    const r = this.#reading.get(key);
    if (!r || r.ended) return;
    r.error ??= err;
    r.wake?.();
  }

  #stopServing(key: string): void {
    const s = this.#serving.get(key);
    if (!s) return;
    this.#serving.delete(key);
    s.stopped = true;
    s.cancel();
    s.wake?.();
  }

  async #serve(peerId: string, open: Frame): Promise<void> {
    const id = open.streamId;
    const key = `${peerId}/${id}`;
    let header: OpenHeader;
    try {
      header = parseHeader(open.payload.subarray(4));
    } catch (err) {
      this.send(peerId, errorFrameOf(id, err));
      return;
    }
    let reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
    const s: Serving = {
      credit: readU32(open.payload, 0),
      stopped: false,
      wake: null,
      cancel: () => reader?.cancel().catch(() => {}),
    };
    this.#serving.set(key, s);
    try {
      reader = this.local.read(header.ref, header.startByte, header.endByte).getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (s.stopped) return;
        if (done) break;
        let at = 0;
        while (at < value.length) {
          while (s.credit === 0 && !s.stopped) {
            await new Promise<void>((resolve) => s.wake = resolve);
          }
          if (s.stopped) return;
          const n = Math.min(s.credit, value.length - at, DATA_FRAME_BYTES);
          const payload = value.subarray(at, at + n);
          if (!this.send(peerId, { type: FrameType.StreamData, streamId: id, payload })) {
            throw new RpcError("SlowDown", "The connection to the reader is congested");
          }
          s.credit -= n;
          at += n;
        }
      }
      this.send(peerId, { type: FrameType.StreamEnd, streamId: id, payload: new Uint8Array(0) });
    } catch (err) {
      if (s.stopped) return;
      const notFound = (err as Error)?.name === "NotFoundError" ||
        (err as { code?: string })?.code === "ENOENT";
      this.send(
        peerId,
        notFound
          ? errorFrameOf(id, new RpcError("NoSuchData", `Data ${header.ref.dataId} is not here`))
          : errorFrameOf(id, err),
      );
    } finally {
      this.#serving.delete(key);
    }
  }
}

/**
 * The `StreamOpen` header: a data ref with a safe id and a byte range.
 * @throws {RpcError} `InvalidRequest` naming what is wrong.
 */
function parseHeader(bytes: Uint8Array): OpenHeader {
  let v: Partial<OpenHeader>;
  try {
    v = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw new RpcError("InvalidRequest", "StreamOpen header is not UTF-8 JSON");
  }
  const ref = v?.ref;
  if (
    typeof ref !== "object" || ref === null || typeof ref.dataId !== "string" ||
    !/^[0-9a-f]{32}$/.test(ref.dataId) ||
    (ref.segment !== undefined &&
      (typeof ref.segment?.id !== "string" || !/^[0-9a-f]{16}$/.test(ref.segment.id) ||
        !Number.isSafeInteger(ref.segment.offsetBytes)))
  ) {
    throw new RpcError("InvalidRequest", "StreamOpen header does not name valid data");
  }
  const { startByte, endByte } = v;
  if (
    !Number.isSafeInteger(startByte) || !Number.isSafeInteger(endByte) || startByte! < 0 ||
    endByte! < startByte!
  ) {
    throw new RpcError("InvalidRequest", "StreamOpen header has a bad byte range");
  }
  return { ref, startByte: startByte!, endByte: endByte! };
}
