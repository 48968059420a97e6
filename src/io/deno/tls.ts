/**
 * TLS 1.3 sockets for the cluster port, on `node:tls`: the listener asks
 * every client for a certificate and verifies it against the cluster CA, and
 * the dialer presents this node's certificate and trusts the cluster CA
 * alone. Thin adapters: they report what TLS verified (`SecureConn`) and the
 * transport decides what a connection may do. No plaintext mode exists.
 *
 * Why `node:tls` on both sides (docs/adr/0050-transport-framing.md):
 * `Deno.listenTls` cannot require client certificates, and
 * `Deno.connectTls({caCerts})` adds `caCerts` to the default root store, so a
 * certificate from any publicly trusted CA would pass its check; `node:tls`
 * with `ca` trusts the cluster CA only.
 *
 * @module
 */
import tls from "node:tls";
import type { Buffer } from "node:buffer";
import type { DialAddr, SecureConn, TlsIdentity } from "../conn.ts";

/** A listening cluster port. */
export interface ClusterListener {
  /** The bound address (the port is real when 0 was asked for). */
  readonly addr: DialAddr;
  /** Stops accepting and destroys every open connection. */
  close(): Promise<void>;
}

/** Options of {@link listenCluster}. */
export interface ListenClusterOptions {
  /** Address to bind. */
  hostname: string;
  /** 0 picks a free port. */
  port: number;
  /** This node's certificate and key, and the cluster CA. */
  identity: TlsIdentity;
  /** Called once per connection whose TLS 1.3 handshake finished. */
  onConn: (conn: SecureConn) => void;
  /** A connection without a verified client certificate is closed after this long idle. Default 10 s. */
  unauthenticatedIdleMs?: number;
  /** Handshakes slower than this are abandoned. */
  handshakeTimeoutMs?: number;
}

/**
 * Listens on the cluster port. Clients are asked for a certificate
 * (`requestCert: true`) and checked against the cluster CA only; a client
 * without a valid one still completes the handshake with
 * `authorized: false`, so it can make the join exchange and nothing else (the
 * transport enforces that). Plain TCP clients fail the handshake and are
 * dropped without a byte of application data.
 */
export function listenCluster(opts: ListenClusterOptions): Promise<ClusterListener> {
  const sockets = new Set<tls.TLSSocket>();
  const server = tls.createServer({
    cert: `${opts.identity.certPem.trimEnd()}\n${opts.identity.caCertPem}`,
    key: opts.identity.keyPem,
    ca: [opts.identity.caCertPem],
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: "TLSv1.3",
    handshakeTimeout: opts.handshakeTimeoutMs ?? 10_000,
  }, (socket) => {
    if (socket.getProtocol() !== "TLSv1.3") {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.setNoDelay(true); // Raft messages and stream credits are small: no Nagle delay
    socket.once("close", () => sockets.delete(socket));
    if (!socket.authorized) {
      socket.setTimeout(opts.unauthenticatedIdleMs ?? 10_000, () => socket.destroy());
    }
    opts.onConn(wrapSocket(socket));
  });
  server.on("tlsClientError", () => {}); // a failed handshake only closes that socket
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.hostname, () => {
      server.off("error", reject);
      const bound = server.address() as { address: string; port: number };
      resolve({
        addr: { hostname: bound.address, port: bound.port },
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

/**
 * Dials a member's cluster port with this node's certificate, trusting the
 * cluster CA only. The caller checks which node answered
 * (`peerCertDer`); host name checks are skipped because node certificates
 * name node ids, not addresses.
 *
 * @throws the TLS or socket error when the handshake fails (unknown CA, refused, reset).
 */
export function dialCluster(
  addr: DialAddr,
  identity: TlsIdentity,
  timeoutMs = 10_000,
): Promise<SecureConn> {
  return connect({
    host: addr.hostname,
    port: addr.port,
    ca: [identity.caCertPem],
    cert: identity.certPem,
    key: identity.keyPem,
    minVersion: "TLSv1.3",
    checkServerIdentity: () => undefined,
  }, timeoutMs);
}

/**
 * Dials a join address without a client certificate and without verifying
 * the server: the joiner has no trust anchor yet, only the CA's SHA-256 from
 * its token, and must check `peerChainDer` against it before it sends
 * anything (src/cluster/join.ts does).
 */
export function dialForJoin(addr: DialAddr, timeoutMs = 10_000): Promise<SecureConn> {
  return connect({
    host: addr.hostname,
    port: addr.port,
    rejectUnauthorized: false,
    minVersion: "TLSv1.3",
  }, timeoutMs);
}

function connect(options: tls.ConnectionOptions, timeoutMs: number): Promise<SecureConn> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(options, () => {
      socket.setTimeout(0);
      socket.off("error", reject);
      if (socket.getProtocol() !== "TLSv1.3") {
        socket.destroy();
        reject(new Error(`Cluster peer spoke ${socket.getProtocol()}, not TLSv1.3`));
        return;
      }
      socket.setNoDelay(true); // Raft messages and stream credits are small: no Nagle delay
      resolve(wrapSocket(socket));
    });
    socket.once("error", reject);
    socket.setTimeout(timeoutMs, () => {
      socket.destroy();
      reject(new Error(`TLS handshake with ${options.host}:${options.port} timed out`));
    });
  });
}

function wrapSocket(socket: tls.TLSSocket): SecureConn {
  const chain: Uint8Array[] = [];
  let cert = socket.getPeerCertificate(true) as tls.DetailedPeerCertificate | undefined;
  while (cert?.raw && chain.length < 8) {
    const der = new Uint8Array(cert.raw);
    if (chain.some((c) => sameBytes(c, der))) break; // a self-signed root names itself
    chain.push(der);
    cert = cert.issuerCertificate;
  }
  return {
    authorized: socket.authorized,
    peerCertDer: chain[0] ?? null,
    peerChainDer: chain,
    chunks: chunksOf(socket),
    write: (bytes) =>
      new Promise<void>((resolve, reject) => {
        if (socket.destroyed) {
          reject(new Error("Connection is closed"));
          return;
        }
        socket.write(bytes, (err) => err ? reject(err) : resolve());
      }),
    // Flush what was written (a join answer, say), send FIN, then let go.
    close: () => {
      if (!socket.destroyed) socket.end(() => socket.destroy());
    },
  };
}

/**
 * The socket's bytes as an async iterable that leaves the socket open when
 * the consumer stops early (a Node stream's own iterator destroys it, which
 * would cut off a reply still to be written). At most 16 chunks wait; past
 * that the socket is paused, so a slow consumer pushes back on the sender.
 */
function chunksOf(socket: tls.TLSSocket): AsyncIterable<Uint8Array> {
  const queue: Uint8Array[] = [];
  let ended = false;
  let failure: Error | null = null;
  let wake: (() => void) | null = null;
  const notify = () => {
    wake?.();
    wake = null;
  };
  socket.on("data", (b: Buffer) => {
    queue.push(new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
    if (queue.length >= 16) socket.pause();
    notify();
  });
  socket.on("end", () => {
    ended = true;
    notify();
  });
  socket.on("close", () => {
    ended = true;
    notify();
  });
  socket.on("error", (e: Error) => {
    failure = e;
    notify();
  });
  return {
    async *[Symbol.asyncIterator]() {
      for (;;) {
        const chunk = queue.shift();
        if (chunk) {
          if (queue.length < 4) socket.resume();
          yield chunk;
          continue;
        }
        if (failure) throw failure;
        if (ended) return;
        await new Promise<void>((resolve) => wake = resolve);
      }
    },
  };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
