/**
 * Virtual-hosted addressing with `-domain s3.localhost`: `@aws-sdk/client-s3` configured
 * for virtual hosts (`forcePathStyle: false`), raw SigV4 requests for a bucket with dots
 * (which the SDK itself addresses path style), a presigned URL on a virtual host, and the
 * fallback to path style for any Host outside the domain.
 *
 * `*.localhost` does not resolve everywhere (not in CI's sandbox), and fetch overrides the
 * Host header, so requests go to 127.0.0.1 through node:http with the Host header the
 * client signed: the SDK by a middleware that changes only the connection's hostname after
 * signing, raw requests by setting the header themselves.
 */
import assert from "node:assert/strict";
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { formatAmzDate, presignRequest, sha256Hex, signRequest } from "../../src/auth/sign.ts";
import { readAll } from "../e2e/_client.ts";
import {
  equalBytes,
  md5Hex,
  randomBytes,
  type RawResponse,
  REGION,
  sendWithHost,
} from "./_support.ts";
import { ServerProcess } from "../e2e/_server.ts";

const DOMAIN = "s3.localhost";
const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/**
 * Signs with SigV4 (header auth, Host `host`) and sends, with Host `sendHost` when given
 * (a replay on another host). `path` is percent-encoded.
 */
function signedWithHost(
  server: ServerProcess,
  req: {
    method: string;
    host: string;
    path: string;
    query?: string;
    body?: Uint8Array;
    sendHost?: string;
  },
): Promise<RawResponse> {
  const { headers } = signRequest({
    method: req.method,
    rawPath: req.path,
    rawQuery: req.query ?? "",
    headers: { host: req.host },
    credentials: server.credentials,
    region: REGION,
    amzDate: formatAmzDate(Date.now()),
  }, req.body ? sha256Hex(req.body) : EMPTY_SHA256);
  const out: Record<string, string> = {};
  headers.forEach((v, k) => {
    if (k !== "host") out[k] = v;
  });
  return sendWithHost(server.port, {
    method: req.method,
    path: req.query ? `${req.path}?${req.query}` : req.path,
    host: req.sendHost ?? req.host,
    headers: out,
    body: req.body,
  });
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** The SDK requests as signed: Host header and path. */
type Seen = { host: string; path: string }[];

/** An SDK client for virtual hosts under DOMAIN whose connections go to 127.0.0.1. */
function virtualHostClient(server: ServerProcess, seen: Seen): S3Client {
  const client = new S3Client({
    endpoint: `http://${DOMAIN}:${server.port}`,
    region: REGION,
    credentials: { ...server.credentials },
    forcePathStyle: false,
  });
  client.middlewareStack.add(
    (next) => (args) => {
      const request = args.request as {
        hostname: string;
        path: string;
        headers: Record<string, string>;
      };
      seen.push({ host: request.headers.host, path: request.path });
      // Signed already: only where the socket connects changes, not the Host header.
      request.hostname = "127.0.0.1";
      return next(args);
    },
    { step: "finalizeRequest", name: "hamsterConnectToLoopback", priority: "low" },
  );
  return client;
}

Deno.test("virtual-hosted addressing: the SDK with forcePathStyle false names the bucket in the Host", async (t) => {
  const server = await ServerProcess.start({ args: ["-domain", DOMAIN] });
  const seen: Seen = [];
  const client = virtualHostClient(server, seen);
  const Bucket = "vhost-bucket";
  const bytes = randomBytes(100_000);
  try {
    await t.step(
      "CreateBucket, PutObject, GetObject, ListObjectsV2 and DeleteObject go to bucket.s3.localhost",
      async () => {
        await client.send(new CreateBucketCommand({ Bucket }));
        await client.send(new HeadBucketCommand({ Bucket }));
        const put = await client.send(
          new PutObjectCommand({ Bucket, Key: "dir/a key.bin", Body: bytes }),
        );
        assert.equal(put.ETag, `"${md5Hex(bytes)}"`);
        await client.send(new PutObjectCommand({ Bucket, Key: "other", Body: "x" }));
        const got = await client.send(
          new GetObjectCommand({ Bucket, Key: "dir/a key.bin", ChecksumMode: "ENABLED" }),
        );
        assert.ok(equalBytes(await readAll(got.Body), bytes));
        const list = await client.send(new ListObjectsV2Command({ Bucket, Prefix: "dir/" }));
        assert.deepEqual(list.Contents?.map((o) => [o.Key, o.Size]), [[
          "dir/a key.bin",
          bytes.length,
        ]]);
        await client.send(new DeleteObjectCommand({ Bucket, Key: "other" }));
        const after = await client.send(new ListObjectsV2Command({ Bucket }));
        assert.deepEqual(after.Contents?.map((o) => o.Key), ["dir/a key.bin"]);
        // Every request named the bucket in the Host, never in the path.
        assert.ok(seen.length >= 8);
        for (const s of seen) {
          assert.equal(s.host, `${Bucket}.${DOMAIN}:${server.port}`);
          assert.ok(!s.path.startsWith(`/${Bucket}`), `path-style request: ${s.path}`);
        }
        assert.ok(seen.some((s) => s.path === "/dir/a%20key.bin"), JSON.stringify(seen));
      },
    );

    await t.step(
      "the same object reads back path style, with Host 127.0.0.1 (outside the domain)",
      async () => {
        const res = await signedWithHost(server, {
          method: "GET",
          host: server.host,
          path: `/${Bucket}/dir/a%20key.bin`,
        });
        assert.equal(res.status, 200, text(res.body));
        assert.ok(equalBytes(res.body, bytes));
      },
    );

    await t.step(
      "a presigned GET on the virtual host works with that Host, and not on another bucket's",
      async () => {
        const url = new URL(
          await getSignedUrl(client, new GetObjectCommand({ Bucket, Key: "dir/a key.bin" }), {
            expiresIn: 300,
          }),
        );
        assert.equal(url.host, `${Bucket}.${DOMAIN}:${server.port}`);
        const res = await sendWithHost(server.port, {
          method: "GET",
          path: url.pathname + url.search,
          host: url.host,
        });
        assert.equal(res.status, 200, text(res.body));
        assert.ok(equalBytes(res.body, bytes));
        const elsewhere = await sendWithHost(server.port, {
          method: "GET",
          path: url.pathname + url.search,
          host: `vhost-other.${DOMAIN}:${server.port}`,
        });
        assert.equal(elsewhere.status, 403, text(elsewhere.body));
      },
    );
  } finally {
    client.destroy();
    await server.stop();
  }
});

Deno.test("virtual-hosted addressing: a bucket with dots, and path style for Hosts outside the domain", async (t) => {
  const server = await ServerProcess.start({ args: ["-domain", DOMAIN] });
  const bucket = "my.dotted.bucket";
  const vhost = `${bucket}.${DOMAIN}:${server.port}`;
  const bytes = randomBytes(65_537);
  try {
    await t.step(
      "CreateBucket, PutObject, GetObject, ListObjectsV2 and DeleteObject with Host my.dotted.bucket.s3.localhost",
      async () => {
        let res = await signedWithHost(server, { method: "PUT", host: vhost, path: "/" });
        assert.equal(res.status, 200, text(res.body));
        res = await signedWithHost(server, {
          method: "PUT",
          host: vhost,
          path: "/k/one.bin",
          body: bytes,
        });
        assert.equal(res.status, 200, text(res.body));
        assert.equal(res.headers.etag, `"${md5Hex(bytes)}"`);
        res = await signedWithHost(server, {
          method: "PUT",
          host: vhost,
          path: "/k/two.bin",
          body: bytes.subarray(0, 10),
        });
        assert.equal(res.status, 200, text(res.body));
        res = await signedWithHost(server, { method: "GET", host: vhost, path: "/k/one.bin" });
        assert.equal(res.status, 200, text(res.body));
        assert.ok(equalBytes(res.body, bytes));
        res = await signedWithHost(server, {
          method: "GET",
          host: vhost,
          path: "/",
          query: "list-type=2&prefix=k%2F",
        });
        assert.equal(res.status, 200, text(res.body));
        assert.match(text(res.body), /<Name>my\.dotted\.bucket<\/Name>/);
        assert.deepEqual([...text(res.body).matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1]), [
          "k/one.bin",
          "k/two.bin",
        ]);
        res = await signedWithHost(server, { method: "DELETE", host: vhost, path: "/k/two.bin" });
        assert.equal(res.status, 204, text(res.body));
      },
    );

    await t.step("the virtual host's port may be left out of the Host header", async () => {
      const res = await signedWithHost(server, {
        method: "GET",
        host: `${bucket}.${DOMAIN}`,
        path: "/k/one.bin",
      });
      assert.equal(res.status, 200, text(res.body));
      assert.ok(equalBytes(res.body, bytes));
    });

    await t.step("a presigned GET on the dotted virtual host works", async () => {
      const query = presignRequest({
        method: "GET",
        rawPath: "/k/one.bin",
        headers: { host: vhost },
        credentials: server.credentials,
        region: REGION,
        amzDate: formatAmzDate(Date.now()),
        expiresSec: 60,
      });
      const res = await sendWithHost(server.port, {
        method: "GET",
        path: `/k/one.bin?${query}`,
        host: vhost,
      });
      assert.equal(res.status, 200, text(res.body));
      assert.ok(equalBytes(res.body, bytes));
    });

    await t.step(
      "Hosts outside the domain, and the bare domain, fall back to path style",
      async () => {
        for (
          const host of [
            server.host,
            `localhost:${server.port}`,
            `other.example.com:${server.port}`,
            `${DOMAIN}:${server.port}`,
          ]
        ) {
          const res = await signedWithHost(server, {
            method: "GET",
            host,
            path: `/${bucket}/k/one.bin`,
          });
          assert.equal(res.status, 200, `${host}: ${text(res.body)}`);
          assert.ok(equalBytes(res.body, bytes), host);
          const list = await signedWithHost(server, { method: "GET", host, path: "/" });
          assert.equal(list.status, 200, `${host}: ${text(list.body)}`);
          assert.match(
            text(list.body),
            /<ListAllMyBucketsResult[\s\S]*<Name>my\.dotted\.bucket<\/Name>/,
            host,
          );
        }
      },
    );

    await t.step("a virtual host naming a missing bucket answers 404 NoSuchBucket", async () => {
      const res = await signedWithHost(server, {
        method: "GET",
        host: `no.such.bucket.${DOMAIN}:${server.port}`,
        path: "/k/one.bin",
      });
      assert.equal(res.status, 404, text(res.body));
      assert.match(text(res.body), /<Code>NoSuchBucket<\/Code>/);
    });
  } finally {
    await server.stop();
  }
});

Deno.test("virtual-hosted addressing: a SigV4 request for alpha/secret replayed with Host beta.<domain> is refused", async (t) => {
  const server = await ServerProcess.start({ args: ["-domain", DOMAIN] });
  // The bare domain is path style: /alpha/secret is bucket alpha. With Host beta.<domain>
  // the same path is beta's key alpha/secret, so the signature must not verify there.
  const pathHost = `${DOMAIN}:${server.port}`;
  const beta = `beta.${DOMAIN}:${server.port}`;
  const codeOf = (b: Uint8Array) => /<Code>([^<]*)<\/Code>/.exec(text(b))?.[1];
  try {
    for (
      const [path, body] of [["/alpha", ""], ["/beta", ""], ["/alpha/secret", "a"], [
        "/beta/alpha/secret",
        "b",
      ]]
    ) {
      const res = await signedWithHost(server, {
        method: "PUT",
        host: pathHost,
        path,
        body: body ? new TextEncoder().encode(body) : undefined,
      });
      assert.equal(res.status, 200, text(res.body));
    }

    await t.step(
      "header-signed GET and PUT: 403 SignatureDoesNotMatch, nothing written",
      async () => {
        const get = { method: "GET", host: pathHost, path: "/alpha/secret" };
        const ok = await signedWithHost(server, get);
        assert.equal(ok.status, 200, text(ok.body));
        assert.equal(text(ok.body), "a");
        const replay = await signedWithHost(server, { ...get, sendHost: beta });
        assert.equal(replay.status, 403, text(replay.body));
        assert.equal(codeOf(replay.body), "SignatureDoesNotMatch");
        const put = await signedWithHost(server, {
          method: "PUT",
          host: pathHost,
          path: "/alpha/upload",
          body: randomBytes(10),
          sendHost: beta,
        });
        assert.equal(put.status, 403, text(put.body));
        assert.equal(codeOf(put.body), "SignatureDoesNotMatch");
        const head = await signedWithHost(server, {
          method: "HEAD",
          host: pathHost,
          path: "/beta/alpha/upload",
        });
        assert.equal(head.status, 404);
      },
    );

    await t.step("presigned GET: 403 SignatureDoesNotMatch", async () => {
      const query = presignRequest({
        method: "GET",
        rawPath: "/alpha/secret",
        headers: { host: pathHost },
        credentials: server.credentials,
        region: REGION,
        amzDate: formatAmzDate(Date.now()),
        expiresSec: 60,
      });
      const ok = await sendWithHost(server.port, {
        method: "GET",
        path: `/alpha/secret?${query}`,
        host: pathHost,
      });
      assert.equal(ok.status, 200, text(ok.body));
      const replay = await sendWithHost(server.port, {
        method: "GET",
        path: `/alpha/secret?${query}`,
        host: beta,
      });
      assert.equal(replay.status, 403, text(replay.body));
      assert.equal(codeOf(replay.body), "SignatureDoesNotMatch");
    });
  } finally {
    await server.stop();
  }
});
