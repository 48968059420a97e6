/**
 * Compatibility with boto3 (Debian's python3-boto3, run by /usr/bin/python3) with its
 * defaults: put/get with CRC32 and checksum validation, `upload_file`/`download_file`
 * through multipart, and `generate_presigned_url` for GET, PUT, HEAD and DELETE fetched
 * with plain HTTP. The Python side (_boto3_driver.py) only observes; this file asserts.
 */
import assert from "node:assert/strict";
import { ServerProcess, startServer } from "../e2e/_server.ts";
import { signedFetch } from "../e2e/_client.ts";
import {
  assertClient,
  awsEnv,
  clientGate,
  equalBytes,
  md5Hex,
  MIB,
  ok,
  randomBytes,
  run,
  sendWithHost,
  tempDir,
  writeRandomFile,
} from "./_support.ts";

const PYTHON = "/usr/bin/python3";
const DRIVER = new URL("./_boto3_driver.py", import.meta.url).pathname;
const hasBoto3 = await (async () => {
  try {
    const out = await new Deno.Command(PYTHON, {
      args: ["-c", "import boto3"],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
})();
const REASON = `${PYTHON} cannot import boto3 (apt-get install python3-boto3)`;
const gate = clientGate("boto3_test", hasBoto3, REASON);

/** What `_boto3_driver.py transfer` observed. */
interface TransferOut {
  put: {
    etag: string;
    checksumCRC32: string;
    sentChecksum: string;
    wantChecksum: string;
    md5: string;
  };
  get: { checksumCRC32: string; md5: string; length: number };
  heads: Record<string, { etag: string; length: number; checksumCRC32?: string }>;
  partChecksums: string[];
  downloads: Record<string, string>;
  listing: [string, number][];
}

/** The URLs `_boto3_driver.py presign` made. */
interface PresignOut {
  v4: { get: string; put: string; head: string; delete: string; getExpiring: string };
  default: { get: string; put: string };
}

/** The URLs `_boto3_driver.py presign_hosts` made, for one addressing style. */
interface HostUrls {
  /** SigV2 GET of alpha/secret, PUT of alpha/upload-<style>, ListObjects of alpha. */
  get: string;
  put: string;
  list: string;
  /** SigV2 GET of alpha/secret valid for 604800 s, and for 8 days. */
  week: string;
  eightDays: string;
  /** SigV4 GET of alpha/secret. */
  v4get: string;
}

async function driver(
  server: ServerProcess,
  work: string,
  bucket: string,
  scenario: "transfer",
): Promise<TransferOut>;
async function driver(
  server: ServerProcess,
  work: string,
  bucket: string,
  scenario: "presign",
): Promise<PresignOut>;
async function driver(
  server: ServerProcess,
  work: string,
  bucket: string,
  scenario: "presign_hosts",
  env: { HAMSTER_DOMAIN_ENDPOINT: string },
): Promise<Record<"path" | "virtual", HostUrls>>;
async function driver(
  server: ServerProcess,
  work: string,
  bucket: string,
  scenario: string,
  env: Record<string, string> = {},
): Promise<unknown> {
  const r = ok(
    await run(PYTHON, [DRIVER, scenario], {
      env: {
        ...awsEnv(server.credentials, work),
        HAMSTER_ENDPOINT: server.url,
        HAMSTER_BUCKET: bucket,
        HAMSTER_WORK: work,
        ...env,
      },
    }),
    `boto3 driver ${scenario}`,
  );
  return JSON.parse(r.stdout);
}

async function errorCode(res: Response): Promise<string> {
  const text = await res.text();
  return /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ??
    `(status ${res.status}, body ${JSON.stringify(text.slice(0, 300))})`;
}

Deno.test({
  name: "boto3: put/get with CRC32 and validation, upload_file/download_file through multipart",
  ...gate,
  fn: async () => {
    assertClient(hasBoto3, REASON);
    const server = await startServer();
    await using work = await tempDir("hamster-compat-boto3-");
    try {
      const size = 20 * MIB + 7;
      const want = await writeRandomFile(`${work.path}/big.bin`, size);
      const out = await driver(server, work.path, "boto3-compat", "transfer");

      assert.equal(out.put.sentChecksum, out.put.wantChecksum, "boto3 sent a CRC32 of the body");
      assert.equal(out.put.etag, `"${out.put.md5}"`);
      assert.equal(out.put.checksumCRC32, out.put.wantChecksum);
      assert.deepEqual(out.get, {
        checksumCRC32: out.put.wantChecksum,
        md5: out.put.md5,
        length: 300_001,
      });

      // upload_file: 8 MiB parts by default, so 3 parts for 20 MiB.
      for (const key of ["big/default.bin", "big/crc32.bin"]) {
        assert.match(out.heads[key].etag, /^"[0-9a-f]{32}-3"$/, key);
        assert.equal(out.heads[key].length, size, key);
        assert.equal(out.downloads[key], want, key);
      }
      assert.equal(out.partChecksums.length, 3);
      for (const c of out.partChecksums) assert.match(c, /^[A-Za-z0-9+/]{6}==$/);
      assert.deepEqual(out.listing, [["big/crc32.bin", size], ["big/default.bin", size], [
        "small.bin",
        300_001,
      ]]);
    } finally {
      await server.stop();
    }
  },
});

Deno.test({
  name:
    "boto3: generate_presigned_url for GET, PUT, HEAD, DELETE works with plain fetch, bound to method and expiry",
  ...gate,
  fn: async (t) => {
    assertClient(hasBoto3, REASON);
    const server = await startServer();
    await using work = await tempDir("hamster-compat-boto3-presign-");
    try {
      const bytes = randomBytes(50_000);
      await Deno.writeFile(`${work.path}/obj.bin`, bytes);
      const urls = await driver(server, work.path, "presign-boto3", "presign");
      const started = Date.now();

      await t.step(
        "SigV4 (s3v4): GET returns the bytes, HEAD the length, PUT stores a new object",
        async () => {
          assert.match(urls.v4.get, /X-Amz-Algorithm=AWS4-HMAC-SHA256/);
          const get = await fetch(urls.v4.get);
          assert.equal(get.status, 200);
          assert.ok(equalBytes(new Uint8Array(await get.arrayBuffer()), bytes));
          const head = await fetch(urls.v4.head, { method: "HEAD" });
          assert.equal(head.status, 200);
          assert.equal(head.headers.get("content-length"), String(bytes.length));
          await head.body?.cancel();
          const other = randomBytes(1234);
          const put = await fetch(urls.v4.put, { method: "PUT", body: other });
          assert.equal(put.status, 200, await put.text());
          assert.equal(put.headers.get("etag"), `"${md5Hex(other)}"`);
        },
      );

      await t.step(
        "SigV4: a GET URL used with PUT or DELETE answers 403 SignatureDoesNotMatch",
        async () => {
          const put = await fetch(urls.v4.get, { method: "PUT", body: randomBytes(5) });
          assert.equal(put.status, 403);
          assert.equal(await errorCode(put), "SignatureDoesNotMatch");
          const del = await fetch(urls.v4.get, { method: "DELETE" });
          assert.equal(del.status, 403);
          assert.equal(await errorCode(del), "SignatureDoesNotMatch");
        },
      );

      await t.step(
        "boto3's default presigning (SigV2 query: AWSAccessKeyId, Signature, Expires) works for GET and PUT",
        async () => {
          assert.match(urls.default.get, /[?&]AWSAccessKeyId=[^&]+&Signature=[^&]+&Expires=\d+/);
          const get = await fetch(urls.default.get);
          assert.equal(
            get.status,
            200,
            `GET with a SigV2 presigned URL: ${get.status === 200 ? "" : await errorCode(get)}`,
          );
          assert.ok(equalBytes(new Uint8Array(await get.arrayBuffer()), bytes));
          const data = randomBytes(777);
          const put = await fetch(urls.default.put, { method: "PUT", body: data });
          assert.equal(
            put.status,
            200,
            `PUT with a SigV2 presigned URL: ${put.status === 200 ? "" : await errorCode(put)}`,
          );
          assert.equal(put.headers.get("etag"), `"${md5Hex(data)}"`);
          await put.body?.cancel();
          // A SigV2 URL for another key, or used with another method, must not verify.
          const moved = await fetch(urls.default.get.replace("dir/obj.bin", "dir/put.bin"));
          assert.equal(moved.status, 403);
          await moved.body?.cancel();
          const asPut = await fetch(urls.default.get, { method: "PUT", body: data });
          assert.equal(asPut.status, 403);
          await asPut.body?.cancel();
        },
      );

      await t.step(
        "SigV4: a URL with ExpiresIn=1 answers 403 AccessDenied once expired",
        async () => {
          await new Promise((r) => setTimeout(r, Math.max(0, 2500 - (Date.now() - started))));
          const res = await fetch(urls.v4.getExpiring);
          const text = await res.text();
          assert.equal(res.status, 403, text);
          assert.match(text, /<Code>AccessDenied<\/Code>/);
          assert.match(text, /Request has expired/);
        },
      );

      await t.step(
        "SigV4: DELETE removes the object; a GET then answers 404 NoSuchKey",
        async () => {
          const del = await fetch(urls.v4.delete, { method: "DELETE" });
          assert.equal(del.status, 204, await del.text());
          const get = await fetch(urls.v4.get);
          assert.equal(get.status, 404);
          assert.equal(await errorCode(get), "NoSuchKey");
        },
      );
    } finally {
      await server.stop();
    }
  },
});

Deno.test({
  name:
    "boto3: under -domain, presigned URLs bind the bucket as routed in both addressing styles; SigV2 lasts at most 7 days",
  ...gate,
  fn: async (t) => {
    assertClient(hasBoto3, REASON);
    const domain = "s3.localhost";
    const server = await ServerProcess.start({ args: ["-domain", domain] });
    await using work = await tempDir("hamster-compat-boto3-hosts-");
    try {
      const urls = await driver(server, work.path, "alpha", "presign_hosts", {
        HAMSTER_DOMAIN_ENDPOINT: `http://${domain}:${server.port}`,
      });
      const beta = `beta.${domain}:${server.port}`;
      /** Sends `url` to the server with its own Host, or with `host`. */
      const send = (url: string, method = "GET", host?: string, body?: Uint8Array) => {
        const u = new URL(url);
        return sendWithHost(server.port, {
          method,
          path: u.pathname + u.search,
          host: host ?? u.host,
          body,
        });
      };
      const text = (b: Uint8Array) => new TextDecoder().decode(b);
      const codeOf = (b: Uint8Array) => /<Code>([^<]*)<\/Code>/.exec(text(b))?.[1];

      for (const style of ["path", "virtual"] as const) {
        await t.step(
          `SigV2 ${style} style: GET, PUT, ListObjects and a 7-day GET work`,
          async () => {
            const u = urls[style];
            assert.equal(
              new URL(u.get).host,
              style === "path" ? `${domain}:${server.port}` : `alpha.${domain}:${server.port}`,
            );
            assert.match(u.get, /[?&]AWSAccessKeyId=[^&]+&Signature=[^&]+&Expires=\d+/);
            const get = await send(u.get);
            assert.equal(get.status, 200, text(get.body));
            assert.equal(text(get.body), "alpha/secret");
            const data = randomBytes(321);
            const put = await send(u.put, "PUT", undefined, data);
            assert.equal(put.status, 200, text(put.body));
            assert.equal(put.headers.etag, `"${md5Hex(data)}"`);
            const list = await send(u.list);
            assert.equal(list.status, 200, text(list.body));
            assert.match(text(list.body), new RegExp(`<Key>upload-${style}</Key>`));
            const week = await send(u.week);
            assert.equal(week.status, 200, text(week.body));
          },
        );
      }

      await t.step(
        "SigV2: a URL for alpha replayed on beta's virtual host, or in the other style, answers 403 SignatureDoesNotMatch",
        async () => {
          // Path style /alpha/secret with Host beta.<domain> routes to beta's key alpha/secret.
          let res = await send(urls.path.get, "GET", beta);
          assert.equal(res.status, 403, text(res.body));
          assert.equal(codeOf(res.body), "SignatureDoesNotMatch");
          res = await send(urls.path.put, "PUT", beta, randomBytes(10));
          assert.equal(res.status, 403, text(res.body));
          assert.equal(codeOf(res.body), "SignatureDoesNotMatch");
          const written = await signedFetch(server, {
            method: "HEAD",
            path: "/beta/alpha/upload-path",
          });
          assert.equal(written.status, 404, "the replayed PUT wrote beta/alpha/upload-path");
          // Virtual style alpha.<domain>/secret with Host beta.<domain>: beta's key secret.
          res = await send(urls.virtual.get, "GET", beta);
          assert.equal(res.status, 403, text(res.body));
          assert.equal(codeOf(res.body), "SignatureDoesNotMatch");
          res = await send(urls.virtual.list, "GET", beta);
          assert.equal(res.status, 403, text(res.body));
          assert.equal(codeOf(res.body), "SignatureDoesNotMatch");
          // The virtual-hosted URL sent path style (the bare domain): bucket "secret".
          res = await send(urls.virtual.get, "GET", `${domain}:${server.port}`);
          assert.equal(res.status, 403, text(res.body));
          assert.equal(codeOf(res.body), "SignatureDoesNotMatch");
        },
      );

      await t.step(
        "SigV2: Expires 8 days ahead answers 400 AuthorizationQueryParametersError",
        async () => {
          for (const style of ["path", "virtual"] as const) {
            const res = await send(urls[style].eightDays);
            assert.equal(res.status, 400, `${style}: ${text(res.body)}`);
            assert.equal(codeOf(res.body), "AuthorizationQueryParametersError", style);
            assert.match(text(res.body), /less than a week/);
          }
        },
      );

      await t.step(
        "SigV4 (s3v4): works in both styles and answers 403 SignatureDoesNotMatch on beta's virtual host",
        async () => {
          for (const style of ["path", "virtual"] as const) {
            const ok = await send(urls[style].v4get);
            assert.equal(ok.status, 200, `${style}: ${text(ok.body)}`);
            assert.equal(text(ok.body), "alpha/secret");
            const res = await send(urls[style].v4get, "GET", beta);
            assert.equal(res.status, 403, `${style}: ${text(res.body)}`);
            assert.equal(codeOf(res.body), "SignatureDoesNotMatch", style);
          }
        },
      );
    } finally {
      await server.stop();
    }
  },
});
