/**
 * The join exchange: a new node trades a join token and a certificate signing
 * request for a node certificate signed by the cluster CA. Both ends live
 * here; sockets come through the `SecureConn` port (real:
 * `dialForJoin` in `src/io/deno/tls.ts`), time and randomness through ports.
 *
 * Sequence (docs/adr/0051-join-protocol.md):
 * 1. The joiner decodes the token and makes its key pair and CSR.
 * 2. It dials the token's address over TLS 1.3 without a client certificate.
 * 3. Before sending anything it finds, in the chain the server presented, a
 *    certificate whose SHA-256 is the token's pin, and checks that this CA
 *    signed the server's certificate. Otherwise it hangs up: a wrong cluster
 *    never sees the secret.
 * 4. It sends one `JoinRequest` frame; the server checks the token (unknown,
 *    used, expired, wrong secret: refused, nothing burned), the node id (not
 *    a member already) and the CSR (signature, subject), burns the token by a
 *    committed command, and only then signs.
 * 5. The server answers one `JoinResponse` (certificate and CA) or `Error`
 *    and closes. The joiner checks the certificate names it, carries its own
 *    key and chains to the pinned CA.
 *
 * `JoinRequest` payload, UTF-8 JSON:
 * `{"nodeId": string, "tokenId": 32 hex, "secret": base64url of 32 bytes, "csrPem": string,
 * "addr"?: host:port}` (`addr`: the joiner's cluster port, for its member record).
 * `JoinResponse` payload, UTF-8 JSON: `{"certPem": string, "caCertPem": string,
 * "members"?: [{"id": string, "addr": string}]}` (`members`: whom the joiner dials first).
 *
 * @module
 */
import type { Clock, Rng } from "../io/mod.ts";
import type { DialAddr, SecureConn } from "../io/conn.ts";
import {
  decodeErrorFrame,
  decodeJsonPayload,
  encodeFrame,
  errorFrame,
  type Frame,
  FrameError,
  FrameReader,
  FrameType,
  jsonFrame,
} from "../transport/frame.ts";
import {
  caFingerprintSha256,
  type ClusterCa,
  createCsr,
  derToPem,
  issueNodeCertificate,
  isValidNodeId,
  type PkiError,
  publicKeyDer,
  verifyCsr,
  verifyNodeCertificate,
} from "./pki.ts";
import {
  checkJoinToken,
  constantTimeEqual,
  decodeJoinToken,
  JoinTokenError,
  type JoinTokenRecord,
} from "./token.ts";

/** The body of a `JoinRequest` frame. */
export interface JoinRequest {
  /** The id the joiner asks for; its CSR subject must be `CN=<nodeId>`. */
  nodeId: string;
  /** The token id, 32 hex digits. */
  tokenId: string;
  /** The token secret, base64url without padding. */
  secret: string;
  /** The joiner's PKCS#10 CSR, PEM. */
  csrPem: string;
  /** The joiner's cluster port, `host:port`, when it gave one. */
  addr?: string;
}

/** A member as a `JoinResponse` lists it. */
export interface JoinMember {
  /** Node id. */
  id: string;
  /** Cluster port, `host:port`. */
  addr: string;
}

/** The body of a `JoinResponse` frame. */
export interface JoinResponse {
  /** The joiner's new node certificate, PEM. */
  certPem: string;
  /** The cluster CA certificate, PEM. */
  caCertPem: string;
  /** Current members and their cluster ports. */
  members?: JoinMember[];
}

/** What a joiner keeps: its certificate, its own private key, the CA. */
export interface JoinResult {
  /** This node's id, as its certificate names it. */
  nodeId: string;
  /** This node's certificate, PEM. */
  certPem: string;
  /** This node's private key, PKCS#8 PEM; it never left the node. */
  keyPem: string;
  /** The pinned cluster CA certificate, PEM. */
  caCertPem: string;
  /** Members the answering node listed (possibly none). */
  members: JoinMember[];
}

/**
 * Codes of a refused join: the token's (`JoinTokenRefusal`), and
 * `CaMismatch` (the server is not the pinned cluster), `BadCsr`,
 * `NodeIdTaken`, `BadRequest`, `BadResponse`, `Unreachable`, `InternalError`.
 */
export type JoinErrorCode = string;

/** A join that did not produce a certificate; `message` says why. */
export class JoinError extends Error {
  /** Always `"JoinError"`. */
  override name = "JoinError";
  /** The error, with `code`: why, as a {@link JoinErrorCode}. */
  constructor(readonly code: JoinErrorCode, message: string) {
    super(message);
  }
}

/** What the answering member needs. */
export interface JoinAuthorityDeps {
  /** The cluster CA, with its key. */
  ca: ClusterCa;
  /** `nowMs` for token expiry and certificate validity. */
  clock: Clock;
  /** Certificate serial numbers. */
  rng: Rng;
  /** The committed record of `tokenId`, or `null`. */
  lookupToken(tokenId: string): Promise<JoinTokenRecord | null>;
  /** Whether `nodeId` is already a member (or a joiner that got a certificate). */
  nodeIdTaken(nodeId: string): Promise<boolean>;
  /**
   * Proposes `BurnJoinToken` and waits for it to apply; `true` only when this
   * proposal burned the token (see `BurnJoinTokenCommand`).
   */
  burnToken(tokenId: string, nodeId: string, nowMs: number): Promise<boolean>;
  /**
   * After the burn committed, before signing: records the joiner as a member
   * (and a Raft learner) and returns the members to list in the answer.
   * A throw refuses the join (the token stays burned).
   */
  admit?(request: JoinRequest): Promise<JoinMember[]>;
}

/**
 * Answers one `JoinRequest` frame with a `JoinResponse` or an `Error` frame.
 * A wrong secret, an expired or unknown token, a bad CSR or a taken node id
 * is refused before anything is burned; the certificate is signed only after
 * the burn committed.
 */
export async function answerJoinRequest(request: Frame, deps: JoinAuthorityDeps): Promise<Frame> {
  try {
    const req = decodeJoinRequest(request);
    const nowMs = deps.clock.nowMs();
    await checkJoinToken(
      await deps.lookupToken(req.tokenId),
      req.tokenId,
      unbase64url(req.secret),
      nowMs,
    );
    try {
      await verifyCsr(req.csrPem, req.nodeId);
    } catch (e) {
      throw new JoinError("BadCsr", (e as Error).message);
    }
    if (await deps.nodeIdTaken(req.nodeId)) {
      throw new JoinError("NodeIdTaken", `Node id "${req.nodeId}" is already in this cluster`);
    }
    if (!(await deps.burnToken(req.tokenId, req.nodeId, nowMs))) {
      throw new JoinError("UsedToken", `Join token "${req.tokenId}" has already been used`);
    }
    const members = deps.admit ? await deps.admit(req) : undefined;
    const certPem = await issueNodeCertificate(deps.ca, req.nodeId, req.csrPem, {
      nowMs,
      serial: deps.rng.fill(new Uint8Array(16)),
    });
    const answer: JoinResponse = { certPem, caCertPem: deps.ca.certPem };
    if (members) answer.members = members;
    return jsonFrame(FrameType.JoinResponse, answer);
  } catch (e) {
    if (e instanceof JoinError || e instanceof JoinTokenError) {
      return errorFrame(0, e.code, e.message);
    }
    return errorFrame(0, "InternalError", "The join request could not be answered");
  }
}

/**
 * Decodes and checks a `JoinRequest` frame's body.
 * @throws {JoinError} `BadRequest` naming the field that is wrong.
 */
export function decodeJoinRequest(frame: Frame): JoinRequest {
  if (frame.type !== FrameType.JoinRequest) {
    throw new JoinError("BadRequest", "Expected a JoinRequest frame");
  }
  let v: Partial<Record<keyof JoinRequest, unknown>>;
  try {
    v = decodeJsonPayload(frame) as typeof v;
  } catch (e) {
    throw new JoinError("BadRequest", (e as FrameError).message);
  }
  if (typeof v?.nodeId !== "string" || !isValidNodeId(v.nodeId)) {
    throw new JoinError(
      "BadRequest",
      `JoinRequest node id is not valid: ${JSON.stringify(v?.nodeId)}`,
    );
  }
  if (typeof v.tokenId !== "string" || !/^[0-9a-f]{32}$/.test(v.tokenId)) {
    throw new JoinError("BadRequest", "JoinRequest token id is not 32 hex digits");
  }
  if (typeof v.secret !== "string" || !/^[A-Za-z0-9_-]{43}$/.test(v.secret)) {
    throw new JoinError("BadRequest", "JoinRequest secret is not 32 bytes of base64url");
  }
  if (typeof v.csrPem !== "string") throw new JoinError("BadRequest", "JoinRequest lacks a CSR");
  const out: JoinRequest = {
    nodeId: v.nodeId,
    tokenId: v.tokenId,
    secret: v.secret,
    csrPem: v.csrPem,
  };
  if (v.addr !== undefined) {
    if (typeof v.addr !== "string" || v.addr.length > 300) {
      throw new JoinError("BadRequest", "JoinRequest addr is not host:port");
    }
    try {
      parseAddr(v.addr);
    } catch {
      throw new JoinError("BadRequest", `JoinRequest addr "${v.addr}" is not host:port`);
    }
    out.addr = v.addr;
  }
  return out;
}

/**
 * Joins a cluster with `tokenText` as node `nodeId`: makes the key pair and
 * CSR, dials, pins the CA, sends the request, checks the answer.
 *
 * @param dial opens an unauthenticated TLS connection (`dialForJoin`).
 * @throws {JoinError} `MalformedToken`, `Unreachable`, `CaMismatch` (nothing
 *   was sent), a refusal code from the server with its message (for example
 *   `ExpiredToken`), or `BadResponse`.
 */
export async function requestJoin(
  tokenText: string,
  nodeId: string,
  deps: { dial(addr: DialAddr): Promise<SecureConn>; clock: Clock; addr?: string },
): Promise<JoinResult> {
  let token;
  try {
    token = decodeJoinToken(tokenText);
  } catch (e) {
    if (e instanceof JoinTokenError) throw new JoinError(e.code, e.message);
    throw e;
  }
  const csr = await createCsr(nodeId);
  const addr = parseAddr(token.addr);
  let conn: SecureConn;
  try {
    conn = await deps.dial(addr);
  } catch (e) {
    throw new JoinError("Unreachable", `Cannot reach ${token.addr}: ${(e as Error).message}`);
  }
  try {
    const caCertPem = await pinnedCa(conn, token.caSha256, deps.clock.nowMs());
    const request: JoinRequest = {
      nodeId,
      tokenId: token.tokenId,
      secret: base64url(token.secret),
      csrPem: csr.csrPem,
    };
    if (deps.addr !== undefined) request.addr = deps.addr;
    await conn.write(encodeFrame(jsonFrame(FrameType.JoinRequest, request)));
    const answer = await readOneFrame(conn);
    if (answer?.type === FrameType.Error) {
      const { code, message } = decodeErrorFrame(answer);
      throw new JoinError(code, message);
    }
    if (answer?.type !== FrameType.JoinResponse) {
      throw new JoinError("BadResponse", `${token.addr} answered the join without a JoinResponse`);
    }
    const res = decodeJsonPayload(answer) as Partial<JoinResponse>;
    if (typeof res?.certPem !== "string" || res.caCertPem !== caCertPem) {
      throw new JoinError("BadResponse", "JoinResponse does not carry the pinned CA");
    }
    let named: string;
    try {
      named = await verifyNodeCertificate(res.certPem, caCertPem, deps.clock.nowMs());
    } catch (e) {
      throw new JoinError("BadResponse", (e as PkiError).message);
    }
    if (
      named !== nodeId || !constantTimeEqual(publicKeyDer(res.certPem), publicKeyDer(csr.csrPem))
    ) {
      throw new JoinError("BadResponse", "JoinResponse certificate is not for this node's key");
    }
    const members = Array.isArray(res.members)
      ? res.members.filter((m): m is JoinMember =>
        typeof m?.id === "string" && isValidNodeId(m.id) && typeof m.addr === "string"
      )
      : [];
    return { nodeId, certPem: res.certPem, keyPem: csr.keyPem, caCertPem, members };
  } catch (e) {
    if (e instanceof FrameError) throw new JoinError("BadResponse", e.message);
    throw e;
  } finally {
    conn.close();
  }
}

/**
 * The pinned CA, as PEM: the certificate in the server's chain whose SHA-256
 * is `caSha256`, which must also have signed the server's own certificate.
 * @throws {JoinError} `CaMismatch` otherwise.
 */
async function pinnedCa(conn: SecureConn, caSha256: string, nowMs: number): Promise<string> {
  for (const der of conn.peerChainDer) {
    if (await caFingerprintSha256(der) !== caSha256) continue;
    const caCertPem = derToPem(der, "CERTIFICATE");
    try {
      if (conn.peerCertDer) {
        await verifyNodeCertificate(conn.peerCertDer, caCertPem, nowMs);
        return caCertPem;
      }
    } catch {
      break;
    }
  }
  throw new JoinError(
    "CaMismatch",
    "The server at the join address is not part of the cluster this token is for (CA fingerprint mismatch); nothing was sent",
  );
}

async function readOneFrame(conn: SecureConn): Promise<Frame | null> {
  const reader = new FrameReader(64 * 1024);
  for await (const chunk of conn.chunks) {
    const frames = reader.push(chunk);
    if (frames.length > 0) return frames[0];
  }
  reader.finish();
  return null;
}

/**
 * `host:port` or `[v6]:port` to a dial address.
 * @throws {JoinError} `MalformedToken` when it is neither.
 */
export function parseAddr(addr: string): DialAddr {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(addr);
  const port = m ? Number(m[3]) : 0;
  if (!m || port < 1 || port > 65535) {
    throw new JoinError("MalformedToken", `Join address "${addr}" is not host:port`);
  }
  return { hostname: m[1] ?? m[2], port };
}

function base64url(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function unbase64url(s: string): Uint8Array {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(
    atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)),
    (c) => c.charCodeAt(0),
  );
}
