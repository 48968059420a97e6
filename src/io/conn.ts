/**
 * Port: one secured byte connection on the cluster port, after the TLS 1.3
 * handshake. Interfaces only; no `Deno.*`. The real adapter is
 * `src/io/deno/tls.ts` (node:tls); the transport in `src/transport/` decides
 * what a connection may do from the facts reported here.
 *
 * Pure: this module declares types and has no behaviour.
 *
 * @module
 */

/** A connection whose TLS handshake has finished. */
export interface SecureConn {
  /**
   * `true` when the TLS stack verified the peer's certificate chain against
   * the cluster CA (and nothing else). On the accepting side, `false` means
   * the client sent no certificate or one that did not verify.
   */
  readonly authorized: boolean;
  /** The peer's leaf certificate (DER), or `null` when it sent none. */
  readonly peerCertDer: Uint8Array | null;
  /**
   * The peer's certificate chain as it was presented, leaf first, DER. Used by
   * a joiner, who pins the CA by its SHA-256 before trusting anything.
   */
  readonly peerChainDer: readonly Uint8Array[];
  /** Received bytes in order; ends when the peer closes, throws on a reset. */
  readonly chunks: AsyncIterable<Uint8Array>;
  /** Writes `bytes`; resolves when the socket accepted them (backpressure). */
  write(bytes: Uint8Array): Promise<void>;
  /** Closes the connection; safe to call twice. */
  close(): void;
}

/** A node's TLS identity on the cluster port, all PEM. */
export interface TlsIdentity {
  /** The cluster CA certificate: the only trust anchor. */
  caCertPem: string;
  /** This node's certificate, signed by the cluster CA. */
  certPem: string;
  /** This node's private key, PKCS#8. */
  keyPem: string;
}

/** A `host:port` to dial. */
export interface DialAddr {
  /** A host name or a literal IP address. */
  hostname: string;
  /** TCP port, 1 to 65535. */
  port: number;
}
