/**
 * The cluster's public key infrastructure: the cluster CA, node certificates
 * issued from certificate signing requests, and the checks that turn a
 * certificate into a node id. ECDSA P-256 with SHA-256 throughout, on
 * WebCrypto through `@peculiar/x509`.
 *
 * No clock and no random source of its own: times (`nowMs`) and serial numbers
 * are parameters. Key generation and ECDSA signing use WebCrypto, whose
 * randomness never reaches a result that a test or the simulation compares.
 *
 * Certificate shapes (see docs/adr/0051-join-protocol.md):
 *
 * | field | cluster CA | node certificate |
 * |---|---|---|
 * | subject | `CN=Hamster cluster CA <clusterId>` | `CN=<nodeId>` |
 * | SAN | none | `URI:urn:hamster:node:<nodeId>` |
 * | basicConstraints (critical) | CA, pathLen 0 | not a CA |
 * | keyUsage (critical) | keyCertSign, cRLSign | digitalSignature |
 * | extKeyUsage | none | serverAuth, clientAuth |
 * | validity | 10 years | 2 years |
 *
 * Both start 5 minutes before `nowMs`, so a peer whose clock is slightly
 * behind accepts a certificate issued a moment ago.
 *
 * @module
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(crypto);

/** A parsed X.509 certificate (`@peculiar/x509`). */
export type X509Certificate = x509.X509Certificate;

const KEY_ALG = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGN_ALG = { name: "ECDSA", hash: "SHA-256" } as const;
const DAY_MS = 24 * 3600 * 1000;

/** Validity of the cluster CA certificate: 10 years. */
export const CA_VALIDITY_MS = 3652 * DAY_MS;
/** Validity of a node certificate: 2 years (renewal is the node wiring's job). */
export const NODE_CERT_VALIDITY_MS = 730 * DAY_MS;
/** How far before `nowMs` a certificate's validity starts, for clock skew. */
export const NOT_BEFORE_SKEW_MS = 5 * 60 * 1000;
/** Prefix of the URI subject alternative name that carries the node id. */
export const NODE_URI_PREFIX = "urn:hamster:node:";

/** Raised for any certificate, CSR or key that fails a check; `message` says which. */
export class PkiError extends Error {
  /** Always `"PkiError"`. */
  override name = "PkiError";
}

/** The cluster CA: its certificate and its private key (PKCS#8), both PEM. */
export interface ClusterCa {
  /** The self-signed CA certificate. */
  certPem: string;
  /** The CA private key, PKCS#8. */
  keyPem: string;
}

/** A node's key pair and the CSR for it. The key never leaves the node. */
export interface NodeCsr {
  /** PKCS#8 private key, PEM. */
  keyPem: string;
  /** PKCS#10 certificate signing request, PEM. */
  csrPem: string;
}

/**
 * A node id: 1 to 63 characters of `a-z`, `0-9` and `-`, starting with a
 * letter or digit (a DNS label, so it fits every place a name goes).
 */
export function isValidNodeId(nodeId: string): boolean {
  return /^[a-z0-9][a-z0-9-]{0,62}$/.test(nodeId);
}

/**
 * Wraps DER bytes as PEM with `label` (`CERTIFICATE`, `PRIVATE KEY`,
 * `CERTIFICATE REQUEST`), 64 base64 characters a line.
 * @see RFC 7468
 */
export function derToPem(der: Uint8Array | ArrayBuffer, label: string): string {
  return x509.PemConverter.encode(der instanceof Uint8Array ? toArrayBuffer(der) : der, label);
}

/**
 * The DER bytes of the first PEM block labelled `label` in `pem`.
 * @throws {PkiError} when there is no such block.
 * @see RFC 7468
 */
export function pemToDer(pem: string, label: string): Uint8Array<ArrayBuffer> {
  const re = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]*)-----END ${label}-----`);
  const m = re.exec(pem);
  if (!m) throw new PkiError(`Cannot decode PEM: no "${label}" block`);
  try {
    return Uint8Array.from(atob(m[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  } catch {
    throw new PkiError(`Cannot decode PEM: "${label}" block is not base64`);
  }
}

/**
 * SHA-256 of the CA certificate's DER bytes as 64 lowercase hex digits: the
 * value a join token pins.
 * @throws {PkiError} when `caCertPem` holds no certificate.
 */
export async function caFingerprintSha256(caCertPem: string | Uint8Array): Promise<string> {
  const der = typeof caCertPem === "string" ? pemToDer(caCertPem, "CERTIFICATE") : caCertPem;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", toArrayBuffer(der)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Mints the cluster CA: a fresh P-256 key pair and a self-signed certificate
 * valid for {@link CA_VALIDITY_MS}.
 *
 * @param opts.clusterId names the CA in its subject (any printable text).
 * @param opts.serial 1 to 20 random bytes for the serial number.
 */
export async function createClusterCa(
  opts: { clusterId: string; nowMs: number; serial: Uint8Array },
): Promise<ClusterCa> {
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialHex(opts.serial),
    name: [{ CN: [`Hamster cluster CA ${opts.clusterId}`] }],
    notBefore: new Date(opts.nowMs - NOT_BEFORE_SKEW_MS),
    notAfter: new Date(opts.nowMs + CA_VALIDITY_MS),
    keys,
    signingAlgorithm: SIGN_ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString("pem"), keyPem: await exportPrivateKey(keys.privateKey) };
}

/**
 * Generates this node's key pair and a CSR whose subject is `CN=<nodeId>`.
 * The joiner keeps `keyPem` and sends only `csrPem`.
 * @throws {PkiError} when `nodeId` is not a valid node id.
 */
export async function createCsr(nodeId: string): Promise<NodeCsr> {
  assertNodeId(nodeId);
  const keys = await generateKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: [{ CN: [nodeId] }],
    keys,
    signingAlgorithm: SIGN_ALG,
  });
  return { keyPem: await exportPrivateKey(keys.privateKey), csrPem: csr.toString("pem") };
}

/**
 * Checks a CSR: it parses, its self-signature is valid (the sender holds the
 * private key), its key is ECDSA P-256, and its subject is exactly
 * `CN=<expectedNodeId>`.
 *
 * @returns the public key the certificate will carry.
 * @throws {PkiError} naming the first check that failed.
 * @see RFC 2986 (PKCS #10)
 */
export async function verifyCsr(csrPem: string, expectedNodeId: string): Promise<CryptoKey> {
  assertNodeId(expectedNodeId);
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pemToDer(csrPem, "CERTIFICATE REQUEST"));
  } catch (e) {
    throw new PkiError(`Cannot decode certificate request: ${(e as Error).message}`);
  }
  const alg = csr.publicKey.algorithm as EcKeyAlgorithm;
  if (alg.name !== "ECDSA" || alg.namedCurve !== "P-256") {
    throw new PkiError(`Certificate request key is not ECDSA P-256: "${alg.name}"`);
  }
  if (!(await csr.verify())) throw new PkiError("Certificate request signature is not valid");
  const subject = csr.subject;
  if (subject !== `CN=${expectedNodeId}`) {
    throw new PkiError(
      `Certificate request subject "${subject}" does not match node id "${expectedNodeId}"`,
    );
  }
  return await csr.publicKey.export(KEY_ALG, ["verify"]);
}

/**
 * Issues a node certificate signed by the cluster CA, valid for
 * {@link NODE_CERT_VALIDITY_MS}: subject `CN=<nodeId>`, SAN
 * `urn:hamster:node:<nodeId>`, usable as both TLS server and client.
 *
 * @param subjectKey a CSR (checked with {@link verifyCsr} against `nodeId`)
 *   or the node's public key (for `init`, which made the key itself).
 * @param opts.serial 1 to 20 random bytes for the serial number.
 * @returns the certificate, PEM.
 * @throws {PkiError} when the CSR fails a check or the CA key does not parse.
 */
export async function issueNodeCertificate(
  ca: ClusterCa,
  nodeId: string,
  subjectKey: string | CryptoKey,
  opts: { nowMs: number; serial: Uint8Array },
): Promise<string> {
  assertNodeId(nodeId);
  const publicKey = typeof subjectKey === "string"
    ? await verifyCsr(subjectKey, nodeId)
    : subjectKey;
  const caCert = new x509.X509Certificate(pemToDer(ca.certPem, "CERTIFICATE"));
  const caKey = await importPrivateKey(ca.keyPem);
  const notAfterMs = Math.min(
    opts.nowMs + NODE_CERT_VALIDITY_MS,
    caCert.notAfter.getTime(),
  );
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialHex(opts.serial),
    subject: [{ CN: [nodeId] }],
    issuer: caCert.subjectName,
    notBefore: new Date(opts.nowMs - NOT_BEFORE_SKEW_MS),
    notAfter: new Date(notAfterMs),
    publicKey,
    signingKey: caKey,
    signingAlgorithm: SIGN_ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension([{
        type: "url",
        value: NODE_URI_PREFIX + nodeId,
      }]),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return cert.toString("pem");
}

/**
 * Verifies a node certificate against the cluster CA and returns the node id
 * it names. Checks: it parses; the CA's key signed it; `nowMs` is inside its
 * validity; it is not a CA; its subject is `CN=<id>` and its SAN carries the
 * same id; the id is valid. TLS has already checked the chain when this runs;
 * this check is the one the transport trusts for the peer's identity.
 *
 * @param cert DER bytes or PEM.
 * @throws {PkiError} naming the first check that failed.
 */
export async function verifyNodeCertificate(
  cert: Uint8Array | string,
  caCertPem: string,
  nowMs: number,
): Promise<string> {
  let c: x509.X509Certificate;
  try {
    c = new x509.X509Certificate(
      typeof cert === "string" ? pemToDer(cert, "CERTIFICATE") : toArrayBuffer(cert),
    );
  } catch (e) {
    throw new PkiError(`Cannot decode node certificate: ${(e as Error).message}`);
  }
  const caCert = new x509.X509Certificate(pemToDer(caCertPem, "CERTIFICATE"));
  const signedByCa = await c.verify({ publicKey: caCert, signatureOnly: true }).catch(() => false);
  if (!signedByCa || c.issuer !== caCert.subject) {
    throw new PkiError(`Node certificate "${c.subject}" is not signed by the cluster CA`);
  }
  if (nowMs < c.notBefore.getTime() || nowMs > c.notAfter.getTime()) {
    throw new PkiError(
      `Node certificate "${c.subject}" is not valid at ${new Date(nowMs).toISOString()}`,
    );
  }
  const bc = c.getExtension(x509.BasicConstraintsExtension);
  if (bc?.ca) throw new PkiError(`Node certificate "${c.subject}" is a CA certificate`);
  return nodeIdOf(c);
}

/**
 * The node id a parsed certificate names: `CN` and the `urn:hamster:node:`
 * SAN must agree. Does not check the signature: use
 * {@link verifyNodeCertificate} for a peer's certificate.
 * @throws {PkiError} when the names are missing, disagree or are not valid.
 */
export function nodeIdOf(cert: X509Certificate | string): string {
  const c = typeof cert === "string"
    ? new x509.X509Certificate(pemToDer(cert, "CERTIFICATE"))
    : cert;
  const cns = c.subjectName.getField("CN");
  const san = c.getExtension(x509.SubjectAlternativeNameExtension);
  const uris = (san?.names.items ?? [])
    .filter((n) => n.type === "url" && n.value.startsWith(NODE_URI_PREFIX))
    .map((n) => n.value.slice(NODE_URI_PREFIX.length));
  if (cns.length !== 1 || uris.length !== 1 || cns[0] !== uris[0]) {
    throw new PkiError(
      `Node certificate "${c.subject}" does not name one node id in CN and SAN`,
    );
  }
  if (!isValidNodeId(cns[0])) throw new PkiError(`Node id "${cns[0]}" is not valid`);
  return cns[0];
}

/**
 * Imports a PKCS#8 P-256 private key (PEM) for signing.
 * @throws {PkiError} when it does not parse.
 */
export async function importPrivateKey(keyPem: string): Promise<CryptoKey> {
  try {
    return await crypto.subtle.importKey(
      "pkcs8",
      toArrayBuffer(pemToDer(keyPem, "PRIVATE KEY")),
      KEY_ALG,
      false,
      ["sign"],
    );
  } catch (e) {
    throw new PkiError(`Cannot import private key: ${(e as Error).message}`);
  }
}

/** The SubjectPublicKeyInfo DER of a certificate or CSR, for comparing keys. */
export function publicKeyDer(pem: string): Uint8Array<ArrayBuffer> {
  const parsed = pem.includes("CERTIFICATE REQUEST")
    ? new x509.Pkcs10CertificateRequest(pemToDer(pem, "CERTIFICATE REQUEST"))
    : new x509.X509Certificate(pemToDer(pem, "CERTIFICATE"));
  return new Uint8Array(parsed.publicKey.rawData);
}

function assertNodeId(nodeId: string): void {
  if (!isValidNodeId(nodeId)) {
    throw new PkiError(
      `Node id "${nodeId}" is not valid: use 1 to 63 of a-z, 0-9 and "-", not starting with "-"`,
    );
  }
}

async function generateKeyPair(): Promise<CryptoKeyPair> {
  return await crypto.subtle.generateKey(KEY_ALG, true, ["sign", "verify"]) as CryptoKeyPair;
}

async function exportPrivateKey(key: CryptoKey): Promise<string> {
  return derToPem(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

/** A positive serial number of 1 to 20 bytes as hex (RFC 5280 §4.1.2.2). */
function serialHex(serial: Uint8Array): string {
  if (serial.length < 1 || serial.length > 20) {
    throw new PkiError(`Serial number must be 1 to 20 bytes, got ${serial.length}`);
  }
  const bytes = Uint8Array.from(serial);
  bytes[0] = (bytes[0] & 0x7f) | 0x01; // positive, and never a leading zero byte
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}
