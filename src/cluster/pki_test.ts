import assert from "node:assert/strict";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import {
  caFingerprintSha256,
  createClusterCa,
  createCsr,
  issueNodeCertificate,
  nodeIdOf,
  pemToDer,
  PkiError,
  publicKeyDer,
  verifyCsr,
  verifyNodeCertificate,
} from "./pki.ts";

const NOW = Date.UTC(2026, 11, 4, 12);
const serial = (n: number) => Uint8Array.from({ length: 16 }, (_, i) => i + n);

async function pkiError(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof PkiError) return e.message;
    throw e;
  }
  return "no error";
}

Deno.test("issueNodeCertificate() from a CSR yields a cert naming the node, signed by the CA", async () => {
  const ca = await createClusterCa({ clusterId: "c1", nowMs: NOW, serial: serial(1) });
  const csr = await createCsr("node-2");
  const certPem = await issueNodeCertificate(ca, "node-2", csr.csrPem, {
    nowMs: NOW,
    serial: serial(2),
  });
  assert.equal(await verifyNodeCertificate(certPem, ca.certPem, NOW), "node-2");
  assert.deepEqual(
    publicKeyDer(certPem),
    publicKeyDer(csr.csrPem),
    "the cert carries the CSR's key",
  );
  const cert = new x509.X509Certificate(pemToDer(certPem, "CERTIFICATE"));
  assert.equal(cert.subject, "CN=node-2");
  assert.equal(nodeIdOf(cert), "node-2");
  assert.equal(cert.notAfter.getTime() - NOW, 730 * 24 * 3600 * 1000);
  const caCert = new x509.X509Certificate(pemToDer(ca.certPem, "CERTIFICATE"));
  assert.equal(caCert.getExtension(x509.BasicConstraintsExtension)?.ca, true);
  assert.match(await caFingerprintSha256(ca.certPem), /^[0-9a-f]{64}$/);
});

Deno.test("verifyCsr() refuses a CSR for another node id, a tampered CSR and garbage", async () => {
  const csr = await createCsr("node-2");
  assert.match(
    await pkiError(verifyCsr(csr.csrPem, "node-3")),
    /subject "CN=node-2" does not match node id "node-3"/,
  );
  const der = pemToDer(csr.csrPem, "CERTIFICATE REQUEST");
  const i = der.indexOf(0x6e); // the first "n" of "node-2" in the subject
  const tampered = der.slice();
  tampered[i] = 0x6d; // "mode-2": the signature no longer matches
  const tamperedPem = x509.PemConverter.encode(tampered.buffer, "CERTIFICATE REQUEST");
  assert.match(await pkiError(verifyCsr(tamperedPem, "mode-2")), /signature is not valid/);
  assert.match(await pkiError(verifyCsr("hello", "node-2")), /Cannot decode/);
  assert.match(await pkiError(createCsr("Node_2")), /is not valid/);
});

Deno.test("verifyNodeCertificate() refuses a cert from another CA and an expired cert", async () => {
  const ca = await createClusterCa({ clusterId: "c1", nowMs: NOW, serial: serial(1) });
  const other = await createClusterCa({ clusterId: "c1", nowMs: NOW, serial: serial(1) });
  const csr = await createCsr("n1");
  const fromOther = await issueNodeCertificate(other, "n1", csr.csrPem, {
    nowMs: NOW,
    serial: serial(3),
  });
  assert.match(
    await pkiError(verifyNodeCertificate(fromOther, ca.certPem, NOW)),
    /not signed by the cluster CA/,
  );
  const cert = await issueNodeCertificate(ca, "n1", csr.csrPem, { nowMs: NOW, serial: serial(4) });
  assert.match(
    await pkiError(verifyNodeCertificate(cert, ca.certPem, NOW + 731 * 24 * 3600 * 1000)),
    /is not valid at/,
  );
  assert.match(
    await pkiError(verifyNodeCertificate(ca.certPem, ca.certPem, NOW)),
    /is a CA certificate/,
  );
});
