/**
 * HTTPS on the S3 port: `serve -tls-cert -tls-key` with a certificate signed
 * by a CA made in the test; clients that verify it against that CA succeed,
 * clients that do not trust it fail.
 */
import assert from "node:assert/strict";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { formatAmzDate, signRequest } from "../../src/auth/sign.ts";

const CREDS = { accessKeyId: "tlsuser", secretAccessKey: "tls-secret" };
const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

function pem(label: string, der: ArrayBuffer): string {
  const b64 = btoa(String.fromCharCode(...new Uint8Array(der))).replace(/(.{64})/g, "$1\n");
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** A CA and a server certificate for 127.0.0.1 and localhost, as PEM. */
async function makeCerts(): Promise<{ ca: string; cert: string; key: string }> {
  x509.cryptoProvider.set(crypto);
  const caKeys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]) as CryptoKeyPair;
  const now = new Date();
  const later = new Date(now.getTime() + 24 * 3600 * 1000);
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: "CN=Hamster test CA",
    notBefore: now,
    notAfter: later,
    keys: caKeys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
    ],
  });
  const serverKeys = await crypto.subtle.generateKey(ALG, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const serverCert = await x509.X509CertificateGenerator.create({
    serialNumber: "02",
    subject: "CN=localhost",
    issuer: caCert.subject,
    notBefore: now,
    notAfter: later,
    signingAlgorithm: ALG,
    publicKey: serverKeys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "localhost" }, {
        type: "ip",
        value: "127.0.0.1",
      }]),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    ],
  });
  return {
    ca: caCert.toString("pem"),
    cert: serverCert.toString("pem"),
    key: pem("PRIVATE KEY", await crypto.subtle.exportKey("pkcs8", serverKeys.privateKey)),
  };
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

Deno.test("serve -tls-cert -tls-key answers HTTPS that verifies against the CA, and only that; HTTP/2 by ALPN; the header timeout applies", async () => {
  const dir = await Deno.makeTempDir();
  const { ca, cert, key } = await makeCerts();
  await Deno.writeTextFile(`${dir}/ca.pem`, ca);
  await Deno.writeTextFile(`${dir}/cert.pem`, cert);
  await Deno.writeTextFile(`${dir}/key.pem`, key);
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-kv",
      new URL("../../main.ts", import.meta.url).pathname,
      "serve",
      "-data-dir",
      `${dir}/data`,
      "-s3",
      `127.0.0.1:${port}`,
      "-tls-cert",
      `${dir}/cert.pem`,
      "-tls-key",
      `${dir}/key.pem`,
      "-header-timeout",
      "2s",
    ],
    env: {
      HAMSTER_ACCESS_KEY_ID: CREDS.accessKeyId,
      HAMSTER_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
    },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const client = Deno.createHttpClient({ caCerts: [ca] });
  try {
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    while (!seen.includes("S3 on https://")) {
      const { value, done } = await lines.read();
      assert.ok(!done, "server exited before listening");
      seen += value;
    }
    lines.releaseLock();
    const send = async (method: string, path: string) => {
      const headers = signRequest({
        method,
        rawPath: path,
        headers: { host: `localhost:${port}` },
        credentials: CREDS,
        region: "us-east-1",
        amzDate: formatAmzDate(Date.now()),
      }, "UNSIGNED-PAYLOAD").headers;
      return await fetch(`https://localhost:${port}${path}`, { method, headers, client });
    };
    const mb = await send("PUT", "/secure");
    assert.equal(mb.status, 200, await mb.text());
    const list = await send("GET", "/");
    assert.match(await list.text(), /<Name>secure<\/Name>/);
    // HTTP/2 is offered by ALPN.
    const h2 = await Deno.connectTls({
      hostname: "localhost",
      port,
      caCerts: [ca],
      alpnProtocols: ["h2"],
    });
    assert.equal((await h2.handshake()).alpnProtocol, "h2");
    h2.close();
    // A request head that never ends is cut by -header-timeout over TLS too.
    const slow = await Deno.connectTls({ hostname: "localhost", port, caCerts: [ca] });
    await slow.write(new TextEncoder().encode(`GET / HTTP/1.1\r\nhost: localhost:${port}\r\n`));
    const cut = await Promise.race([
      slow.read(new Uint8Array(1024)).then(
        (n) => n === null ? "closed" : "answered",
        () => "closed",
      ),
      new Promise((r) => setTimeout(() => r("still open after 15 s"), 15_000)),
    ]);
    slow.close();
    assert.equal(cut, "closed");
    // A client that does not trust the test CA refuses the connection.
    await assert.rejects(fetch(`https://localhost:${port}/`));
    // The aws CLI verifies against the CA bundle too, when it is installed.
    if (
      new Deno.Command("which", { args: ["aws"], stdout: "null", stderr: "null" }).outputSync()
        .success
    ) {
      const env = {
        AWS_ACCESS_KEY_ID: CREDS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
        AWS_DEFAULT_REGION: "us-east-1",
        AWS_CONFIG_FILE: "/dev/null",
        AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
        AWS_EC2_METADATA_DISABLED: "true",
      };
      const ls = await new Deno.Command("aws", {
        args: [
          "--endpoint-url",
          `https://localhost:${port}`,
          "--ca-bundle",
          `${dir}/ca.pem`,
          "s3",
          "ls",
        ],
        env,
      }).output();
      assert.equal(ls.code, 0, new TextDecoder().decode(ls.stderr));
      assert.match(new TextDecoder().decode(ls.stdout), /secure/);
      const untrusted = await new Deno.Command("aws", {
        args: ["--endpoint-url", `https://localhost:${port}`, "s3", "ls"],
        env,
      }).output();
      assert.notEqual(untrusted.code, 0);
    } else {
      console.log("aws CLI not installed: skipping its part of the HTTPS test");
    }
  } finally {
    client.close();
    child.kill("SIGTERM");
    assert.equal((await child.status).code, 0);
    await child.stdout.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});
