/**
 * Calls between members over the transport: a `Request` frame answered by
 * one `Response` or `Error` frame on the same id, and the id space that
 * requests and data streams (`remote_data.ts`) share.
 *
 * Ids: the transport hides which side dialled a connection (both sides may
 * dial, and the kept connection can change on a reconnect), so ids follow a
 * rule both members know without it: between members `a` and `b`, the
 * smaller node id opens odd ids, the larger even ones. A call or stream
 * outlives no connection: when the peer's connection drops, everything open
 * with it fails at once (the caller retries).
 *
 * Pure of `Deno.*`: timers come through a port.
 *
 * @module
 */
import { decodeErrorFrame, type Frame, FrameType } from "../transport/frame.ts";

/** Timers, injected (same shape as the Raft driver's). */
export interface Timers {
  /** Runs `fn` once after `delayMs`; returns a function that cancels it. */
  setTimeout(delayMs: number, fn: () => void): () => void;
}

/** Where frames go out: `Transport.send`. */
export type SendFrame = (peerId: string, frame: Frame) => boolean;

/** A call that got an `Error` frame, or none in time, or lost its connection. */
export class RpcError extends Error {
  /** Always `"RpcError"`. */
  override name = "RpcError";
  /** `code`: the answer's error code, or `Unreachable` / `Timeout`. */
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/** Allocates ids per peer by the parity rule in the module doc. */
export class StreamIds {
  readonly #next = new Map<string, number>();
  /** Ids for `selfId`. */
  constructor(readonly selfId: string) {}

  /** A fresh id for a request or stream opened towards `peerId`. */
  next(peerId: string): number {
    const odd = this.selfId < peerId;
    let n = this.#next.get(peerId) ?? (odd ? 1 : 2);
    if (n > 0xfffffff0) n = odd ? 1 : 2;
    this.#next.set(peerId, n + 2);
    return n;
  }

  /** Whether `peerId` opened `id` (so this node answers it). */
  openedBy(peerId: string, id: number): boolean {
    return (id % 2 === 1) === (peerId < this.selfId);
  }
}

interface Pending {
  peerId: string;
  resolve(body: unknown): void;
  reject(err: unknown): void;
  cancel(): void;
}

/**
 * JSON request/response between members.
 *
 * @example
 * ```ts
 * const rpc = new PeerRpc(ids, transport.send.bind(transport), timers, handler);
 * const progress = await rpc.call("n1", { op: "status" }, 2000);
 * ```
 */
export class PeerRpc {
  readonly #pending = new Map<string, Pending>();

  /** `handle` answers requests from peers; a throw becomes an `Error` frame. */
  constructor(
    readonly ids: StreamIds,
    readonly send: SendFrame,
    readonly timers: Timers,
    readonly handle: (peerId: string, body: unknown) => Promise<unknown>,
  ) {}

  /**
   * Sends `body` to `peerId` and resolves with its answer.
   * @throws {RpcError} the answer's code, `Unreachable` (not sent, or the
   *   connection dropped) or `Timeout` after `timeoutMs`.
   */
  call(peerId: string, body: unknown, timeoutMs: number): Promise<unknown> {
    const id = this.ids.next(peerId);
    const key = `${peerId}/${id}`;
    return new Promise((resolve, reject) => {
      const cancel = this.timers.setTimeout(timeoutMs, () => {
        this.#pending.delete(key);
        reject(new RpcError("Timeout", `${peerId} did not answer within ${timeoutMs} ms`));
      });
      this.#pending.set(key, { peerId, resolve, reject, cancel });
      const sent = this.send(peerId, jsonFrame(FrameType.Request, id, body));
      if (!sent) this.#fail(key, new RpcError("Unreachable", `Cannot send to ${peerId}`));
    });
  }

  /**
   * Takes a `Request`, `Response` or `Error` frame from `peerId`.
   * @returns `false` when the frame is not for this module.
   */
  onFrame(peerId: string, frame: Frame): boolean {
    const key = `${peerId}/${frame.streamId}`;
    if (frame.type === FrameType.Request) {
      if (!this.ids.openedBy(peerId, frame.streamId)) return true;
      this.#answer(peerId, frame);
      return true;
    }
    if (frame.type !== FrameType.Response && frame.type !== FrameType.Error) return false;
    const p = this.#pending.get(key);
    if (!p) return frame.type === FrameType.Response;
    this.#pending.delete(key);
    p.cancel();
    try {
      if (frame.type === FrameType.Error) {
        const { code, message } = decodeErrorFrame(frame);
        p.reject(new RpcError(code, message));
      } else {
        p.resolve(JSON.parse(new TextDecoder().decode(frame.payload)));
      }
    } catch (err) {
      p.reject(new RpcError("BadResponse", (err as Error).message));
    }
    return true;
  }

  /** Fails every call open with `peerId` (its connection dropped). */
  peerLost(peerId: string): void {
    for (const [key, p] of this.#pending) {
      if (p.peerId === peerId) {
        this.#fail(key, new RpcError("Unreachable", `Connection to ${peerId} was lost`));
      }
    }
  }

  #fail(key: string, err: RpcError): void {
    const p = this.#pending.get(key);
    if (!p) return;
    this.#pending.delete(key);
    p.cancel();
    p.reject(err);
  }

  async #answer(peerId: string, frame: Frame): Promise<void> {
    let out: Frame;
    try {
      const body = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(frame.payload));
      out = jsonFrame(FrameType.Response, frame.streamId, await this.handle(peerId, body));
    } catch (err) {
      out = errorFrameOf(frame.streamId, err);
    }
    this.send(peerId, out);
  }
}

/** A frame of `type` on `streamId` carrying `value` as UTF-8 JSON. */
export function jsonFrame(type: FrameType, streamId: number, value: unknown): Frame {
  return { type, streamId, payload: new TextEncoder().encode(JSON.stringify(value ?? null)) };
}

/** An `Error` frame for `err`: its `code` when it has one, else `InternalError`. */
export function errorFrameOf(streamId: number, err: unknown): Frame {
  const code = typeof (err as { code?: unknown })?.code === "string"
    ? (err as { code: string }).code
    : "InternalError";
  const message = err instanceof Error ? err.message : String(err);
  return jsonFrame(FrameType.Error, streamId, { code, message });
}
