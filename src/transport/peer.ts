/**
 * Peer connections on the cluster port: one long-lived TLS connection per
 * peer, redialled with jittered exponential backoff, a bounded send queue per
 * peer, and frames delivered with the peer id taken from the peer's verified
 * certificate, never from a message.
 *
 * No `Deno.*`, no timers of its own: sockets come through the `SecureConn`
 * port (real: `src/io/deno/tls.ts`), time and randomness through the `Clock`
 * and `Rng` ports.
 *
 * Rules (docs/adr/0050-transport-framing.md):
 * - A connection whose client certificate verified is a peer connection; its
 *   node id is what `identify` reads from the certificate.
 * - A connection without a client certificate may send one `JoinRequest` and
 *   gets one answer (`JoinResponse` or `Error`), then is closed. Any other
 *   first frame closes it without an answer. A client that presented a
 *   certificate which did not verify is closed at once.
 * - Both sides may dial. When two connections to one peer meet, the one
 *   dialled by the smaller node id stays and the other is closed, so both
 *   sides keep the same one.
 * - `send()` never blocks: when a peer's queue is full the frame is dropped
 *   and counted (Raft retransmits). Data-path streams stay under the queue
 *   bound by their credit windows.
 *
 * @module
 */
import type { Clock, Rng } from "../io/mod.ts";
import type { DialAddr, SecureConn } from "../io/conn.ts";
import {
  encodeFrame,
  errorFrame,
  type Frame,
  FrameReader,
  FrameType,
  MAX_PAYLOAD_BYTES,
} from "./frame.ts";

/** What the transport needs from the node. */
export interface TransportDeps {
  /** This node's id (the one in its own certificate). */
  selfId: string;
  /** Time for redial backoff. */
  clock: Clock;
  /** Jitter for redial backoff. */
  rng: Rng;
  /** Opens a TLS connection to `addr` with this node's certificate. */
  dial(addr: DialAddr): Promise<SecureConn>;
  /**
   * The node id a peer's leaf certificate (DER) names, after checking it
   * against the cluster CA; throws to refuse the peer (a bad certificate, or a
   * node that is no longer a member).
   */
  identify(certDer: Uint8Array): Promise<string>;
  /**
   * Every frame a verified peer sends, except Ping and Pong (answered here).
   * Must not throw: a throw is taken as a broken connection and closes it.
   */
  onMessage(peerId: string, frame: Frame): void;
  /**
   * Answers the one `JoinRequest` of an unauthenticated connection with a
   * `JoinResponse` or an `Error` frame. Absent: such connections are closed.
   */
  onJoinRequest?(request: Frame): Promise<Frame>;
  /** Told when `peerId` gains or loses its connection (for status and tests). */
  onPeerChange?(peerId: string, connected: boolean): void;
  /**
   * Answers one `Request` frame from a client holding this node's own
   * certificate (the `hamster cluster` CLI run with `-data-dir`), with a
   * `Response` or `Error` frame on the same stream id. Absent: such
   * connections are closed.
   */
  onLocalRequest?(request: Frame): Promise<Frame>;
}

/** Limits and timings; every field has a default. */
export interface TransportOptions {
  /** Frames one peer's send queue holds before `send()` drops. Default 1024. */
  maxQueuedFrames: number;
  /** Encoded bytes one peer's send queue holds before `send()` drops. Default 16 MiB. */
  maxQueuedBytes: number;
  /** First redial delay; doubles per failed attempt. Default 100 ms. */
  backoffMinMs: number;
  /** Largest redial delay. Default 5000 ms. */
  backoffMaxMs: number;
  /** Largest frame payload from a verified peer. Default {@link MAX_PAYLOAD_BYTES}. */
  maxPayloadBytes: number;
  /** Largest frame payload from an unauthenticated connection. Default 64 KiB. */
  joinMaxPayloadBytes: number;
  /** Bytes of queued frames joined into one socket write. Default 256 KiB. */
  writeBatchBytes: number;
  /** Unauthenticated (join) connections served at once; more are closed at once. Default 16. */
  maxJoinConnections: number;
}

/** Defaults of {@link TransportOptions}. */
export const DEFAULT_TRANSPORT_OPTIONS: TransportOptions = {
  maxQueuedFrames: 1024,
  maxQueuedBytes: 16 * 1024 * 1024,
  backoffMinMs: 100,
  backoffMaxMs: 5000,
  maxPayloadBytes: MAX_PAYLOAD_BYTES,
  joinMaxPayloadBytes: 64 * 1024,
  writeBatchBytes: 256 * 1024,
  maxJoinConnections: 16,
};

/** Counters for one peer. */
export interface PeerStats {
  /** Whether a connection to the peer is up. */
  connected: boolean;
  /** Frames waiting to be written. */
  queuedFrames: number;
  /** Encoded bytes waiting to be written. */
  queuedBytes: number;
  /** Frames `send()` dropped because the queue was full. */
  droppedFrames: number;
  /** Dials started to this peer. */
  dialAttempts: number;
  /** Dials that failed, or reached a node with another id. */
  dialFailures: number;
}

/** Counters for connections that never became a peer connection. */
export interface RefusalStats {
  /** Clients whose certificate did not verify or named no acceptable node. */
  badCertificate: number;
  /** Unauthenticated connections that sent something other than one JoinRequest. */
  notJoin: number;
  /** Connections closed for a frame that did not decode. */
  badFrame: number;
  /** Unauthenticated connections closed because `maxJoinConnections` were open. */
  joinBusy: number;
}

interface Peer {
  readonly id: string;
  addr: DialAddr | null;
  conn: SecureConn | null;
  /** Node id of the side that dialled `conn`. */
  connDialer: string;
  queue: Uint8Array[];
  queuedBytes: number;
  pumping: boolean;
  dialing: boolean;
  stats: PeerStats;
}

/**
 * The cluster transport of one node.
 *
 * @example
 * ```ts
 * const t = new Transport({ selfId: "n1", clock, rng, dial, identify, onMessage });
 * t.setPeerAddr("n2", { hostname: "10.0.0.2", port: 7946 });
 * t.send("n2", { type: FrameType.Raft, streamId: 0, payload });
 * ```
 */
export class Transport {
  readonly #deps: TransportDeps;
  readonly #opts: TransportOptions;
  readonly #peers = new Map<string, Peer>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #open = new Set<SecureConn>();
  #joinConnections = 0;
  #closed = false;
  /** Counters of refused inbound connections. */
  readonly refused: RefusalStats = { badCertificate: 0, notJoin: 0, badFrame: 0, joinBusy: 0 };

  /** A transport for `deps.selfId`; `options` override {@link DEFAULT_TRANSPORT_OPTIONS}. */
  constructor(deps: TransportDeps, options: Partial<TransportOptions> = {}) {
    this.#deps = deps;
    this.#opts = { ...DEFAULT_TRANSPORT_OPTIONS, ...options };
  }

  /**
   * Sets where `peerId` listens and starts keeping a connection to it;
   * `null` stops dialling (an inbound connection from it is still accepted
   * while `identify` accepts its certificate).
   */
  setPeerAddr(peerId: string, addr: DialAddr | null): void {
    if (peerId === this.#deps.selfId) return;
    const peer = this.#peer(peerId);
    peer.addr = addr;
    this.#ensureDialing(peer, false);
  }

  /** Forgets `peerId`: closes its connection, drops its queue, stops dialling. */
  removePeer(peerId: string): void {
    const peer = this.#peers.get(peerId);
    if (!peer) return;
    this.#peers.delete(peerId);
    peer.addr = null;
    peer.queue = [];
    peer.queuedBytes = 0;
    peer.conn?.close();
    peer.conn = null;
  }

  /**
   * Queues `frame` for `peerId`. Never blocks and never throws for an
   * unreachable peer.
   * @returns `false` when the frame was dropped (queue full, closed, or self).
   * @throws {FrameError} when `frame` itself is not valid.
   */
  send(peerId: string, frame: Frame): boolean {
    const bytes = encodeFrame(frame, this.#opts.maxPayloadBytes);
    if (this.#closed || peerId === this.#deps.selfId) return false;
    const peer = this.#peer(peerId);
    if (
      peer.queue.length >= this.#opts.maxQueuedFrames ||
      peer.queuedBytes + bytes.length > this.#opts.maxQueuedBytes
    ) {
      peer.stats.droppedFrames++;
      return false;
    }
    peer.queue.push(bytes);
    peer.queuedBytes += bytes.length;
    this.#pump(peer);
    return true;
  }

  /** Counters of `peerId`, or `null` for a peer never seen. */
  stats(peerId: string): PeerStats | null {
    const peer = this.#peers.get(peerId);
    if (!peer) return null;
    return {
      ...peer.stats,
      connected: peer.conn !== null,
      queuedFrames: peer.queue.length,
      queuedBytes: peer.queuedBytes,
    };
  }

  /**
   * Takes an inbound connection from the listener: a verified peer joins the
   * peer set, a client without a certificate gets the join exchange only.
   */
  accept(conn: SecureConn): void {
    this.#track(this.#accept(conn));
  }

  /**
   * Closes every connection and stops dialling; resolves when every loop has
   * ended (a redial waiting out its backoff ends when the wait does).
   */
  async close(): Promise<void> {
    this.#closed = true;
    for (const conn of this.#open) conn.close();
    while (this.#tasks.size > 0) await Promise.all([...this.#tasks]);
  }

  async #accept(conn: SecureConn): Promise<void> {
    if (this.#closed) return conn.close();
    if (!conn.authorized) {
      if (conn.peerCertDer !== null) {
        this.refused.badCertificate++;
        return conn.close();
      }
      return await this.#serveJoin(conn);
    }
    let peerId: string;
    try {
      peerId = await this.#deps.identify(conn.peerCertDer!);
    } catch {
      this.refused.badCertificate++;
      return conn.close();
    }
    if (this.#closed) return conn.close();
    if (peerId === this.#deps.selfId) return await this.#serveLocal(conn);
    this.#attach(this.#peer(peerId), conn, peerId);
  }

  /** One JoinRequest, one answer, then close. Nothing else is served. */
  async #serveJoin(conn: SecureConn): Promise<void> {
    if (this.#joinConnections >= this.#opts.maxJoinConnections) {
      this.refused.joinBusy++;
      return conn.close();
    }
    this.#joinConnections++;
    this.#open.add(conn);
    try {
      const reader = new FrameReader(this.#opts.joinMaxPayloadBytes);
      let request: Frame | undefined;
      try {
        for await (const chunk of conn.chunks) {
          const frames = reader.push(chunk);
          if (frames.length > 0) {
            request = frames[0];
            break;
          }
        }
      } catch {
        this.refused.badFrame++;
        return;
      }
      if (request?.type !== FrameType.JoinRequest || !this.#deps.onJoinRequest) {
        if (request) this.refused.notJoin++;
        return;
      }
      let answer: Frame;
      try {
        answer = await this.#deps.onJoinRequest(request);
      } catch {
        answer = errorFrame(0, "InternalError", "The join request could not be answered");
      }
      await conn.write(encodeFrame(answer)).catch(() => {});
    } finally {
      this.#joinConnections--;
      this.#open.delete(conn);
      conn.close();
    }
  }

  /**
   * A connection authenticated as this node itself: the CLI. It may send
   * `Request` frames, each answered on its stream id; anything else closes it.
   */
  async #serveLocal(conn: SecureConn): Promise<void> {
    const onLocalRequest = this.#deps.onLocalRequest;
    if (!onLocalRequest) return conn.close();
    this.#open.add(conn);
    try {
      const reader = new FrameReader(this.#opts.joinMaxPayloadBytes);
      for await (const chunk of conn.chunks) {
        for (const frame of reader.push(chunk)) {
          if (frame.type !== FrameType.Request) return;
          let answer: Frame;
          try {
            answer = await onLocalRequest(frame);
          } catch {
            answer = errorFrame(
              frame.streamId,
              "InternalError",
              "The request could not be answered",
            );
          }
          await conn.write(encodeFrame(answer));
        }
      }
    } catch {
      this.refused.badFrame++;
    } finally {
      this.#open.delete(conn);
      conn.close();
    }
  }

  #peer(peerId: string): Peer {
    let peer = this.#peers.get(peerId);
    if (!peer) {
      peer = {
        id: peerId,
        addr: null,
        conn: null,
        connDialer: "",
        queue: [],
        queuedBytes: 0,
        pumping: false,
        dialing: false,
        stats: {
          connected: false,
          queuedFrames: 0,
          queuedBytes: 0,
          droppedFrames: 0,
          dialAttempts: 0,
          dialFailures: 0,
        },
      };
      this.#peers.set(peerId, peer);
    }
    return peer;
  }

  /** Makes `conn` the peer's connection, unless the kept one wins the tie-break. */
  #attach(peer: Peer, conn: SecureConn, dialer: string): void {
    if (this.#closed || this.#peers.get(peer.id) !== peer) return conn.close();
    const wasConnected = peer.conn !== null;
    if (peer.conn) {
      const preferred = peer.id < this.#deps.selfId ? peer.id : this.#deps.selfId;
      if (peer.connDialer === preferred && dialer !== preferred) return conn.close();
      const old = peer.conn;
      peer.conn = null;
      old.close();
    }
    peer.conn = conn;
    peer.connDialer = dialer;
    this.#open.add(conn);
    if (!wasConnected) this.#deps.onPeerChange?.(peer.id, true);
    this.#track(this.#read(peer, conn));
    this.#pump(peer);
  }

  #detach(peer: Peer, conn: SecureConn): void {
    this.#open.delete(conn);
    conn.close();
    if (peer.conn !== conn) return;
    peer.conn = null;
    this.#deps.onPeerChange?.(peer.id, false);
    this.#ensureDialing(peer, true);
  }

  async #read(peer: Peer, conn: SecureConn): Promise<void> {
    const reader = new FrameReader(this.#opts.maxPayloadBytes);
    try {
      for await (const chunk of conn.chunks) {
        for (const frame of reader.push(chunk)) {
          if (!this.#handle(peer, frame)) return;
        }
      }
      reader.finish();
    } catch {
      this.refused.badFrame++;
    } finally {
      this.#detach(peer, conn);
    }
  }

  /** @returns `false` when the frame breaks the protocol and the connection must close. */
  #handle(peer: Peer, frame: Frame): boolean {
    switch (frame.type) {
      case FrameType.Ping:
        this.send(peer.id, { type: FrameType.Pong, streamId: 0, payload: frame.payload });
        return true;
      case FrameType.Pong:
        return true;
      case FrameType.JoinRequest:
      case FrameType.JoinResponse:
        return false; // the join exchange belongs to unauthenticated connections
      default:
        this.#deps.onMessage(peer.id, frame);
        return true;
    }
  }

  /** Writes queued frames, a batch per write, while the peer has a connection. */
  #pump(peer: Peer): void {
    if (peer.pumping || !peer.conn || peer.queue.length === 0) return;
    peer.pumping = true;
    this.#track((async () => {
      try {
        while (peer.conn && peer.queue.length > 0) {
          const conn = peer.conn;
          const batch = this.#takeBatch(peer);
          try {
            await conn.write(batch);
          } catch {
            this.#detach(peer, conn);
          }
        }
      } finally {
        peer.pumping = false;
      }
    })());
  }

  #takeBatch(peer: Peer): Uint8Array {
    let n = 0;
    let size = 0;
    while (
      n < peer.queue.length &&
      (n === 0 || size + peer.queue[n].length <= this.#opts.writeBatchBytes)
    ) {
      size += peer.queue[n].length;
      n++;
    }
    const frames = peer.queue.splice(0, n);
    peer.queuedBytes -= size;
    if (n === 1) return frames[0];
    const out = new Uint8Array(size);
    let at = 0;
    for (const f of frames) {
      out.set(f, at);
      at += f.length;
    }
    return out;
  }

  #ensureDialing(peer: Peer, afterLoss: boolean): void {
    if (peer.dialing || !peer.addr || peer.conn || this.#closed) return;
    peer.dialing = true;
    this.#track(this.#dialLoop(peer, afterLoss ? 1 : 0));
  }

  async #dialLoop(peer: Peer, attempt: number): Promise<void> {
    try {
      while (!this.#closed && peer.addr && !peer.conn && this.#peers.get(peer.id) === peer) {
        if (attempt > 0) {
          await this.#deps.clock.sleep(this.#backoffMs(attempt));
          if (this.#closed || !peer.addr || peer.conn) break;
        }
        attempt++;
        peer.stats.dialAttempts++;
        const conn = await this.#dialOnce(peer.id, peer.addr);
        if (!conn) {
          peer.stats.dialFailures++;
          continue;
        }
        this.#attach(peer, conn, this.#deps.selfId);
      }
    } finally {
      peer.dialing = false;
    }
  }

  /** A connection to `addr` whose certificate names `peerId`, or `null`. */
  async #dialOnce(peerId: string, addr: DialAddr): Promise<SecureConn | null> {
    let conn: SecureConn;
    try {
      conn = await this.#deps.dial(addr);
    } catch {
      return null;
    }
    try {
      if (conn.authorized && conn.peerCertDer) {
        if (await this.#deps.identify(conn.peerCertDer) === peerId) return conn;
      }
    } catch {
      // refused below
    }
    conn.close();
    return null;
  }

  /** Exponential backoff with jitter: uniform in [d/2, d], d = min(max, min * 2^(attempt-1)). */
  #backoffMs(attempt: number): number {
    const d = Math.min(
      this.#opts.backoffMaxMs,
      this.#opts.backoffMinMs * 2 ** Math.min(attempt - 1, 30),
    );
    return Math.floor(d / 2 + (this.#deps.rng.nextU32() / 2 ** 32) * (d / 2));
  }

  #track(task: Promise<void>): void {
    const t = task.catch(() => {}).finally(() => this.#tasks.delete(t));
    this.#tasks.add(t);
  }
}
