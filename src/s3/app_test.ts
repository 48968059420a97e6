import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { formatAmzDate, signRequest } from "../auth/sign.ts";
import { LocalDataPath } from "../data/local.ts";
import { DenoDisk } from "../io/deno/disk.ts";
import { openDenoKv } from "../io/deno/kv.ts";
import { systemRng } from "../io/deno/clock.ts";
import type { Clock } from "../io/mod.ts";
import { LocalLog } from "../meta/mod.ts";
import { createS3App } from "./app.ts";

const CREDS = { accessKeyId: "AKTEST", secretAccessKey: "test-secret" };
const NOW_MS = Date.parse("2026-01-02T03:04:05Z");

interface Harness {
  send(
    method: string,
    path: string,
    opts?: {
      query?: string;
      headers?: Record<string, string>;
      body?: Uint8Array | string;
      payloadHash?: string;
    },
  ): Promise<Response>;
  root: string;
}

/** An S3 app over a real Deno KV file and a real data dir, driven with `app.request()` (no socket). */
async function withApp(fn: (h: Harness) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir();
  const kv = await openDenoKv(`${root}/kv.sqlite3`);
  const data = new LocalDataPath(new DenoDisk(root));
  await data.init();
  const clock: Clock = { nowMs: () => NOW_MS, sleep: () => Promise.resolve() };
  const app = createS3App({
    kv,
    log: await LocalLog.open(kv),
    data,
    clock,
    rng: systemRng,
    secretFor: (id) => (id === CREDS.accessKeyId ? CREDS.secretAccessKey : undefined),
    region: "us-east-1",
    logError: (_id, err) => {
      throw err;
    },
  });
  const send: Harness["send"] = async (method, path, opts = {}) => {
    const body = typeof opts.body === "string" ? new TextEncoder().encode(opts.body) : opts.body;
    const hash = opts.payloadHash ??
      (body ? createHash("sha256").update(body).digest("hex") : "UNSIGNED-PAYLOAD");
    const signed = signRequest({
      method,
      rawPath: path,
      rawQuery: opts.query,
      headers: { host: "localhost", ...opts.headers },
      credentials: CREDS,
      region: "us-east-1",
      amzDate: formatAmzDate(NOW_MS),
    }, hash);
    const url = `http://localhost${path}${opts.query ? `?${opts.query}` : ""}`;
    return await app.request(url, {
      method,
      headers: signed.headers,
      body: body as BodyInit | undefined,
    });
  };
  try {
    await fn({ send, root });
  } finally {
    kv.close();
    await Deno.remove(root, { recursive: true });
  }
}

function tags(xml: string, name: string): string[] {
  return [...xml.matchAll(new RegExp(`<${name}>([^<]*)</${name}>`, "g"))].map((m) => m[1]);
}

Deno.test("ListObjectsV2 pages through keys and common prefixes in UTF-8 order", async () => {
  await withApp(async ({ send }) => {
    assert.equal((await send("PUT", "/bkt")).status, 200);
    const names = ["a/1", "a/2", "b", "c/x/y", "d", "\u{1F600}", "\uFF5E"];
    for (const k of names) {
      assert.equal(
        (await send("PUT", `/bkt/${encodeURIComponent(k).replace(/%2F/g, "/")}`, { body: k }))
          .status,
        200,
      );
    }
    const all = await (await send("GET", "/bkt", { query: "list-type=2" })).text();
    // UTF-8 byte order puts U+FF5E (EF BD 9E) before U+1F600 (F0 9F 98 80), unlike UTF-16 order.
    assert.deepEqual(tags(all, "Key"), ["a/1", "a/2", "b", "c/x/y", "d", "\uFF5E", "\u{1F600}"]);
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const q = `delimiter=%2F&list-type=2&max-keys=2${
        token ? `&continuation-token=${encodeURIComponent(token)}` : ""
      }`;
      const xml = await (await send("GET", "/bkt", { query: q })).text();
      seen.push(...tags(xml, "Key"), ...tags(xml, "Prefix").filter((p) => p !== ""));
      assert.ok(Number(tags(xml, "KeyCount")[0]) <= 2);
      token = tags(xml, "NextContinuationToken")[0];
      pages++;
    } while (token);
    assert.deepEqual(seen.sort(), ["a/", "b", "c/", "d", "\uFF5E", "\u{1F600}"].sort());
    assert.equal(pages, 3);
    const pre =
      await (await send("GET", "/bkt", { query: "delimiter=%2F&list-type=2&prefix=c%2F" })).text();
    assert.deepEqual(tags(pre, "Prefix"), ["c/", "c/x/"]);
  });
});

Deno.test("ListObjects V1 returns NextMarker with a delimiter and encodes keys for encoding-type=url", async () => {
  await withApp(async ({ send }) => {
    await send("PUT", "/bkt");
    for (const k of ["a b/1", "a b/2", "c+d", "e"]) {
      await send("PUT", `/bkt/${encodeURIComponent(k).replace(/%2F/g, "/")}`, { body: "x" });
    }
    const p1 = await (await send("GET", "/bkt", { query: "delimiter=%2F&max-keys=2" })).text();
    assert.deepEqual(tags(p1, "Prefix").slice(1), ["a b/"]);
    assert.deepEqual(tags(p1, "NextMarker"), ["c+d"]);
    assert.deepEqual(tags(p1, "IsTruncated"), ["true"]);
    const p2 = await (await send("GET", "/bkt", { query: "delimiter=%2F&marker=c%2Bd" })).text();
    assert.deepEqual(tags(p2, "Key"), ["e"]);
    const enc = await (await send("GET", "/bkt", { query: "encoding-type=url" })).text();
    assert.deepEqual(tags(enc, "Key"), ["a%20b/1", "a%20b/2", "c%2Bd", "e"]);
  });
});

Deno.test("S3 errors render Code, Message, Resource and RequestId; HEAD errors have no body", async () => {
  await withApp(async ({ send }) => {
    const res = await send("GET", "/nope/key");
    assert.equal(res.status, 404);
    const xml = await res.text();
    assert.deepEqual(tags(xml, "Code"), ["NoSuchBucket"]);
    assert.deepEqual(tags(xml, "Resource"), ["/nope/key"]);
    assert.equal(tags(xml, "RequestId")[0], res.headers.get("x-amz-request-id"));
    assert.ok(tags(xml, "Message")[0].length > 0);
    await send("PUT", "/bkt");
    const head = await send("HEAD", "/bkt/missing");
    assert.equal(head.status, 404);
    assert.equal(await head.text(), "");
    const ni = await send("GET", "/bkt", { query: "lifecycle" });
    assert.equal(ni.status, 501);
    assert.deepEqual(tags(await ni.text(), "Code"), ["NotImplemented"]);
  });
});

Deno.test("GetObject with a Range spanning parts of a multipart object reads only that range", async () => {
  await withApp(async ({ send }) => {
    await send("PUT", "/bkt");
    const init = await (await send("POST", "/bkt/mp", { query: "uploads" })).text();
    const uploadId = tags(init, "UploadId")[0];
    const part1 = new Uint8Array(5 * 1024 * 1024).map((_, i) => i & 0xff);
    const part2 = new Uint8Array(1000).fill(7);
    const etags: string[] = [];
    for (const [n, body] of [[1, part1], [2, part2]] as const) {
      const r = await send("PUT", "/bkt/mp", {
        query: `partNumber=${n}&uploadId=${uploadId}`,
        body,
      });
      assert.equal(r.status, 200);
      etags.push(r.headers.get("etag")!);
    }
    const complete = `<CompleteMultipartUpload>${
      etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e}</ETag></Part>`).join(
        "",
      )
    }</CompleteMultipartUpload>`;
    const done = await send("POST", "/bkt/mp", { query: `uploadId=${uploadId}`, body: complete });
    assert.equal(done.status, 200);
    const md5s = [part1, part2].map((p) => createHash("md5").update(p).digest());
    const want = `"${createHash("md5").update(Buffer.concat(md5s)).digest("hex")}-2"`;
    assert.deepEqual(tags(await done.text(), "ETag"), [want.replaceAll('"', "&quot;")]);
    const start = part1.length - 10;
    const r = await send("GET", "/bkt/mp", { headers: { range: `bytes=${start}-${start + 19}` } });
    assert.equal(r.status, 206);
    assert.equal(
      r.headers.get("content-range"),
      `bytes ${start}-${start + 19}/${part1.length + 1000}`,
    );
    const got = new Uint8Array(await r.arrayBuffer());
    assert.deepEqual(got, new Uint8Array([...part1.subarray(start), ...part2.subarray(0, 10)]));
    assert.equal((await send("HEAD", "/bkt/mp")).headers.get("etag"), want);
  });
});

Deno.test("PutObject whose body does not match its signed hash stores nothing", async () => {
  await withApp(async ({ send, root }) => {
    await send("PUT", "/bkt");
    const signedFor = createHash("sha256").update("other body").digest("hex");
    const res = await send("PUT", "/bkt/k", {
      body: "the real body",
      payloadHash: signedFor,
    });
    assert.equal(res.status, 400);
    assert.deepEqual(tags(await res.text(), "Code"), ["XAmzContentSHA256Mismatch"]);
    assert.equal((await send("HEAD", "/bkt/k")).status, 404);
    const leftovers: string[] = [];
    for (const dir of ["tmp", "shards"]) {
      for await (const e of Deno.readDir(`${root}/${dir}`)) {
        if (e.isFile) leftovers.push(e.name);
        else for await (const f of Deno.readDir(`${root}/${dir}/${e.name}`)) leftovers.push(f.name);
      }
    }
    assert.deepEqual(leftovers, []);
  });
});

Deno.test("PutObjectTagging, GetObjectTagging and x-amz-tagging keep AWS's limits", async () => {
  await withApp(async ({ send }) => {
    await send("PUT", "/bkt");
    const put = await send("PUT", "/bkt/k", {
      body: "x",
      headers: { "x-amz-tagging": "a=1&b=two%20words" },
    });
    assert.equal(put.status, 200);
    assert.equal((await send("HEAD", "/bkt/k")).headers.get("x-amz-tagging-count"), "2");
    const got = await (await send("GET", "/bkt/k", { query: "tagging" })).text();
    assert.deepEqual(tags(got, "Key"), ["a", "b"]);
    assert.deepEqual(tags(got, "Value"), ["1", "two words"]);
    const doc = (pairs: [string, string][]) =>
      `<Tagging><TagSet>${
        pairs.map(([k, v]) => `<Tag><Key>${k}</Key><Value>${v}</Value></Tag>`).join("")
      }</TagSet></Tagging>`;
    assert.equal(
      (await send("PUT", "/bkt/k", { query: "tagging", body: doc([["c", "3"]]) })).status,
      200,
    );
    assert.deepEqual(
      tags(await (await send("GET", "/bkt/k", { query: "tagging" })).text(), "Key"),
      ["c"],
    );
    const eleven = Array.from({ length: 11 }, (_, i) => [`k${i}`, "v"] as [string, string]);
    assert.equal(
      (await send("PUT", "/bkt/k", { query: "tagging", body: doc(eleven) })).status,
      400,
    );
    const longKey = await send("PUT", "/bkt/k", {
      query: "tagging",
      body: doc([["k".repeat(129), "v"]]),
    });
    assert.deepEqual(tags(await longKey.text(), "Code"), ["InvalidTag"]);
    const dup = await send("PUT", "/bkt/k", {
      query: "tagging",
      body: doc([["a", "1"], ["a", "2"]]),
    });
    assert.deepEqual(tags(await dup.text(), "Code"), ["InvalidTag"]);
    assert.equal(
      (await send("PUT", "/bkt/j", {
        body: "y",
        headers: { "x-amz-tagging": "v=" + "x".repeat(257) },
      })).status,
      400,
    );
    assert.equal((await send("HEAD", "/bkt/j")).status, 404);
    // CopyObject copies tags by default and replaces them with REPLACE.
    await send("PUT", "/bkt/copy1", { headers: { "x-amz-copy-source": "/bkt/k" } });
    assert.deepEqual(
      tags(await (await send("GET", "/bkt/copy1", { query: "tagging" })).text(), "Key"),
      ["c"],
    );
    await send("PUT", "/bkt/copy2", {
      headers: {
        "x-amz-copy-source": "/bkt/k",
        "x-amz-tagging-directive": "REPLACE",
        "x-amz-tagging": "z=9",
      },
    });
    assert.deepEqual(
      tags(await (await send("GET", "/bkt/copy2", { query: "tagging" })).text(), "Key"),
      ["z"],
    );
    assert.equal((await send("DELETE", "/bkt/k", { query: "tagging" })).status, 204);
    assert.deepEqual(
      tags(await (await send("GET", "/bkt/k", { query: "tagging" })).text(), "Key"),
      [],
    );
    assert.equal((await send("GET", "/bkt/nokey", { query: "tagging" })).status, 404);
  });
});

Deno.test("PutBucketCors rules answer preflights and add headers to actual requests", async () => {
  await withApp(async ({ send }) => {
    await send("PUT", "/bkt");
    const app = send;
    const preflight = (origin: string, method: string, headers = "") =>
      app("OPTIONS", "/bkt/k", {
        headers: {
          origin,
          "access-control-request-method": method,
          ...(headers ? { "access-control-request-headers": headers } : {}),
        },
      });
    assert.equal((await preflight("https://a.example", "GET")).status, 403, "no CORS config yet");
    assert.equal((await send("GET", "/bkt", { query: "cors" })).status, 404);
    const config = `<CORSConfiguration><CORSRule><AllowedOrigin>https://*.example</AllowedOrigin>
      <AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod><AllowedHeader>x-amz-*</AllowedHeader>
      <AllowedHeader>content-type</AllowedHeader><ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>300</MaxAgeSeconds>
      </CORSRule></CORSConfiguration>`;
    assert.equal((await send("PUT", "/bkt", { query: "cors", body: config })).status, 200);
    const ok = await preflight("https://a.example", "PUT", "content-type, x-amz-date");
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get("access-control-allow-origin"), "https://a.example");
    assert.equal(ok.headers.get("access-control-allow-methods"), "GET, PUT");
    assert.equal(ok.headers.get("access-control-max-age"), "300");
    assert.equal((await preflight("https://evil.test", "GET")).status, 403);
    assert.equal((await preflight("https://a.example", "DELETE")).status, 403);
    assert.equal((await preflight("https://a.example", "GET", "authorization-x")).status, 403);
    const bad = await app("OPTIONS", "/bkt/k", { headers: { origin: "https://a.example" } });
    assert.equal(bad.status, 400);
    await send("PUT", "/bkt/k", { body: "x" });
    const actual = await send("GET", "/bkt/k", { headers: { origin: "https://b.example" } });
    assert.equal(actual.headers.get("access-control-allow-origin"), "https://b.example");
    assert.equal(actual.headers.get("access-control-expose-headers"), "ETag");
    const got = await (await send("GET", "/bkt", { query: "cors" })).text();
    assert.deepEqual(tags(got, "AllowedMethod"), ["GET", "PUT"]);
    const badMethod = config.replace(
      "<AllowedMethod>PUT</AllowedMethod>",
      "<AllowedMethod>PATCH</AllowedMethod>",
    );
    assert.equal((await send("PUT", "/bkt", { query: "cors", body: badMethod })).status, 400);
    assert.equal((await send("DELETE", "/bkt", { query: "cors" })).status, 204);
    assert.equal((await preflight("https://a.example", "GET")).status, 403);
  });
});

Deno.test("GetBucketAcl and GetObjectAcl answer the owner's FULL_CONTROL; only private ACLs are accepted", async () => {
  await withApp(async ({ send }) => {
    assert.equal((await send("PUT", "/bkt", { headers: { "x-amz-acl": "private" } })).status, 200);
    assert.equal(
      (await send("PUT", "/bk2", { headers: { "x-amz-acl": "public-read" } })).status,
      501,
    );
    await send("PUT", "/bkt/k", { body: "x" });
    for (const path of ["/bkt", "/bkt/k"]) {
      const xml = await (await send("GET", path, { query: "acl" })).text();
      assert.deepEqual(tags(xml, "Permission"), ["FULL_CONTROL"]);
      assert.match(xml, /xsi:type="CanonicalUser"/);
    }
    assert.equal(
      (await send("PUT", "/bkt/k", { query: "acl", headers: { "x-amz-acl": "private" } })).status,
      200,
    );
    assert.equal(
      (await send("PUT", "/bkt/k", { query: "acl", headers: { "x-amz-acl": "public-read" } }))
        .status,
      501,
    );
    assert.equal(
      (await send("PUT", "/bkt/k", { body: "x", headers: { "x-amz-grant-read": "id=x" } })).status,
      501,
    );
  });
});
