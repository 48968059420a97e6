import assert from "node:assert/strict";
import type { AuthErrorCode } from "./errors.ts";
import {
  canonicalHeaderValue,
  canonicalQuery,
  canonicalRequest,
  hmacHex,
  scopeOf,
  sha256Hex,
  signingKey,
  stringToSign,
} from "./_sigv4.ts";

import { formatAmzDate, presignRequest, signRequest } from "./sign.ts";
import type { AuthRequest } from "./types.ts";
import { splitRequestUrl, verifyRequest } from "./verify.ts";
import { AWS_EXAMPLE, AWS_EXAMPLE_MS, exampleLookup, throwsWith } from "./_test_util.ts";

const REGION = "us-east-1";
const EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const AMZ_DATE = "20130524T000000Z";
const CREDENTIAL = `${AWS_EXAMPLE.accessKeyId}/20130524/us-east-1/s3/aws4_request`;

function authz(signedHeaders: string, signature: string): string {
  return `AWS4-HMAC-SHA256 Credential=${CREDENTIAL},SignedHeaders=${signedHeaders},Signature=${signature}`;
}

function verifyAt(req: AuthRequest, nowMs = AWS_EXAMPLE_MS) {
  return verifyRequest(req, exampleLookup, nowMs, REGION);
}

// AWS examples: "Signature Calculations for the Authorization Header: Transferring Payload
// in a Single Chunk", https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html

Deno.test("verifyRequest() accepts the AWS example GET Object with Range", () => {
  const result = verifyAt({
    method: "GET",
    rawPath: "/test.txt",
    rawQuery: "",
    headers: new Headers({
      Host: "examplebucket.s3.amazonaws.com",
      Range: "bytes=0-9",
      "x-amz-content-sha256": EMPTY,
      "x-amz-date": AMZ_DATE,
      Authorization: authz(
        "host;range;x-amz-content-sha256;x-amz-date",
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
      ),
    }),
  });
  assert.deepEqual(result, {
    accessKeyId: AWS_EXAMPLE.accessKeyId,
    payload: { kind: "signed", sha256Hex: EMPTY },
    presigned: false,
  });
});

Deno.test("verifyRequest() accepts the AWS example PUT Object with the path encoded or raw", () => {
  const body = sha256Hex("Welcome to Amazon S3.");
  assert.equal(body, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  for (const rawPath of ["/test%24file.text", "/test$file.text"]) {
    const result = verifyAt({
      method: "PUT",
      rawPath,
      rawQuery: "",
      headers: new Headers({
        Host: "examplebucket.s3.amazonaws.com",
        Date: "Fri, 24 May 2013 00:00:00 GMT",
        "x-amz-date": AMZ_DATE,
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256": body,
        Authorization: authz(
          "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
          "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
        ),
      }),
    });
    assert.deepEqual(result.payload, { kind: "signed", sha256Hex: body });
  }
});

Deno.test("verifyRequest() accepts the AWS example GET Bucket Lifecycle", () => {
  const result = verifyAt({
    method: "GET",
    rawPath: "/",
    rawQuery: "lifecycle",
    headers: new Headers({
      Host: "examplebucket.s3.amazonaws.com",
      "x-amz-date": AMZ_DATE,
      "x-amz-content-sha256": EMPTY,
      Authorization: authz(
        "host;x-amz-content-sha256;x-amz-date",
        "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
      ),
    }),
  });
  assert.equal(result.accessKeyId, AWS_EXAMPLE.accessKeyId);
});

Deno.test("verifyRequest() accepts the AWS example GET Bucket (List Objects), query in any order", () => {
  for (const rawQuery of ["max-keys=2&prefix=J", "prefix=J&max-keys=2"]) {
    const result = verifyAt({
      method: "GET",
      rawPath: "/",
      rawQuery,
      headers: new Headers({
        Host: "examplebucket.s3.amazonaws.com",
        "x-amz-date": AMZ_DATE,
        "x-amz-content-sha256": EMPTY,
        Authorization: authz(
          "host;x-amz-content-sha256;x-amz-date",
          "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
        ),
      }),
    });
    assert.equal(result.presigned, false);
  }
});

// AWS example: "Transferring Payload in Multiple Chunks (Chunked Upload)",
// https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html
Deno.test("verifyRequest() accepts the AWS example chunked PUT and returns its seed signature", () => {
  const result = verifyAt({
    method: "PUT",
    rawPath: "/examplebucket/chunkObject.txt",
    rawQuery: "",
    headers: new Headers({
      Host: "s3.amazonaws.com",
      "x-amz-date": AMZ_DATE,
      "x-amz-storage-class": "REDUCED_REDUNDANCY",
      "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
      "Content-Encoding": "aws-chunked",
      "x-amz-decoded-content-length": "66560",
      "Content-Length": "66824",
      Authorization: authz(
        "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;" +
          "x-amz-decoded-content-length;x-amz-storage-class",
        "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
      ),
    }),
  });
  assert.equal(result.payload.kind, "streaming-signed");
  if (result.payload.kind !== "streaming-signed") return;
  assert.equal(result.payload.trailer, false);
  assert.equal(
    result.payload.seedSignature,
    "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
  );
  assert.equal(result.payload.scope, "20130524/us-east-1/s3/aws4_request");
  assert.equal(result.payload.amzDate, AMZ_DATE);
});

// AWS example: "Signature calculations for trailing headers (chunked uploads)",
// https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html
Deno.test("verifyRequest() accepts the AWS example chunked PUT with a trailer", () => {
  const result = verifyAt({
    method: "PUT",
    rawPath: "/examplebucket/chunkObject.txt",
    rawQuery: "",
    headers: new Headers({
      Host: "s3.amazonaws.com",
      "x-amz-date": AMZ_DATE,
      "x-amz-storage-class": "REDUCED_REDUNDANCY",
      "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
      "Content-Encoding": "aws-chunked",
      "x-amz-decoded-content-length": "66560",
      "x-amz-trailer": "x-amz-checksum-crc32c",
      Authorization: authz(
        "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;" +
          "x-amz-storage-class;x-amz-trailer",
        "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
      ),
    }),
  });
  assert.equal(result.payload.kind, "streaming-signed");
  assert.equal(result.payload.kind === "streaming-signed" && result.payload.trailer, true);
});

// AWS example: "Authenticating Requests: Using Query Parameters",
// https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html
const PRESIGNED_QUERY = "X-Amz-Algorithm=AWS4-HMAC-SHA256" +
  "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request" +
  "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host" +
  "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

function presignedExample(rawQuery = PRESIGNED_QUERY): AuthRequest {
  return {
    method: "GET",
    rawPath: "/test.txt",
    rawQuery,
    headers: new Headers({ Host: "examplebucket.s3.amazonaws.com" }),
  };
}

Deno.test("verifyRequest() accepts the AWS example presigned GET Object within its 86400 s", () => {
  for (const nowMs of [AWS_EXAMPLE_MS, AWS_EXAMPLE_MS + 86400_000]) {
    assert.deepEqual(verifyAt(presignedExample(), nowMs), {
      accessKeyId: AWS_EXAMPLE.accessKeyId,
      payload: { kind: "unsigned" },
      presigned: true,
    });
  }
});

Deno.test("verifyRequest() rejects the AWS example presigned URL once expired", () => {
  const err = throwsWith(
    () => verifyAt(presignedExample(), AWS_EXAMPLE_MS + 86400_001),
    "AccessDenied",
  );
  assert.equal(err.message, "Request has expired");
});

Deno.test("verifyRequest() rejects a presigned URL dated more than 15 minutes ahead", () => {
  verifyAt(presignedExample(), AWS_EXAMPLE_MS - 15 * 60_000);
  const err = throwsWith(
    () => verifyAt(presignedExample(), AWS_EXAMPLE_MS - 15 * 60_000 - 1),
    "AccessDenied",
  );
  assert.equal(err.message, "Request is not yet valid");
});

Deno.test("verifyRequest() rejects a tampered presigned URL", () => {
  for (
    const [what, req] of [
      ["path", { ...presignedExample(), rawPath: "/test2.txt" }],
      ["method", { ...presignedExample(), method: "PUT" }],
      ["host", { ...presignedExample(), headers: new Headers({ Host: "evil.example" }) }],
      ["expires", presignedExample(PRESIGNED_QUERY.replace("86400", "86401"))],
      ["extra parameter", presignedExample(PRESIGNED_QUERY + "&acl")],
      ["signature", presignedExample(PRESIGNED_QUERY.replace("aeeed9", "aeeed8"))],
    ] as const
  ) {
    const err = throwsWith(() => verifyAt(req), "SignatureDoesNotMatch");
    assert.ok(err.extra.CanonicalRequest, what);
  }
});

Deno.test("verifyRequest() rejects bad presigned parameters with AuthorizationQueryParametersError", () => {
  const cases = [
    PRESIGNED_QUERY.replace("&X-Amz-SignedHeaders=host", ""),
    PRESIGNED_QUERY.replace("X-Amz-Expires=86400", "X-Amz-Expires=604801"),
    PRESIGNED_QUERY.replace("X-Amz-Expires=86400", "X-Amz-Expires=0"),
    PRESIGNED_QUERY.replace("X-Amz-Expires=86400", "X-Amz-Expires=-5"),
    PRESIGNED_QUERY.replace("X-Amz-Expires=86400", "X-Amz-Expires=1e3"),
    PRESIGNED_QUERY.replace("X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Algorithm=AWS4-HMAC-SHA1"),
    PRESIGNED_QUERY.replace("X-Amz-Date=20130524T000000Z", "X-Amz-Date=2013-05-24"),
    PRESIGNED_QUERY.replace("%2Fus-east-1%2F", "%2Feu-west-1%2F"),
    PRESIGNED_QUERY.replace("%2Fs3%2F", "%2Fs4%2F"),
    PRESIGNED_QUERY.replace("%2Faws4_request", "%2Faws5_request"),
    PRESIGNED_QUERY.replace("%2F20130524%2F", "%2F20130525%2F"),
  ];
  for (const q of cases) {
    throwsWith(() => verifyAt(presignedExample(q)), "AuthorizationQueryParametersError");
  }
});

Deno.test("verifyRequest() rejects a presigned URL of an unknown key with InvalidAccessKeyId", () => {
  const err = throwsWith(
    () =>
      verifyAt(presignedExample(PRESIGNED_QUERY.replace("AKIAIOSFODNN7EXAMPLE", "AKIDUNKNOWN"))),
    "InvalidAccessKeyId",
  );
  assert.equal(err.extra.AWSAccessKeyId, "AKIDUNKNOWN");
});

Deno.test("verifyRequest() rejects header and query auth together with InvalidArgument", () => {
  const req = presignedExample();
  req.headers.set("Authorization", authz("host", "0".repeat(64)));
  throwsWith(() => verifyAt(req), "InvalidArgument");
});

// Round trips through the signer in sign.ts, and tampering.

const CREDS = { accessKeyId: "HAMSTERKEY", secretAccessKey: "hamster/secret+key" };
const lookup = (id: string) => id === CREDS.accessKeyId ? CREDS.secretAccessKey : undefined;
const NOW = Date.UTC(2026, 10, 22, 3, 0, 0);

function signed(
  over: Partial<{
    method: string;
    rawPath: string;
    rawQuery: string;
    headers: Record<string, string>;
    payloadHash: string;
    amzDate: string;
  }> = {},
): AuthRequest {
  const method = over.method ?? "PUT";
  const rawPath = over.rawPath ?? "/bucket/dir/a%20b%2Bc~%E2%82%AC.txt";
  const rawQuery = over.rawQuery ?? "uploadId=abc%2F%3D&partNumber=3";
  const { headers } = signRequest(
    {
      method,
      rawPath,
      rawQuery,
      headers: over.headers ??
        {
          host: "127.0.0.1:9000",
          "content-type": "text/plain",
          "x-amz-meta-note": "  two   spaces  ",
        },
      credentials: CREDS,
      region: REGION,
      amzDate: over.amzDate ?? formatAmzDate(NOW),
    },
    over.payloadHash ?? sha256Hex("hello"),
  );
  return { method, rawPath, rawQuery, headers };
}

Deno.test("verifyRequest() accepts what signRequest() signs, for every payload mode", () => {
  for (
    const [payloadHash, kind] of [
      [sha256Hex("hello"), "signed"],
      ["UNSIGNED-PAYLOAD", "unsigned"],
      ["STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "streaming-signed"],
      ["STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", "streaming-signed"],
      ["STREAMING-UNSIGNED-PAYLOAD-TRAILER", "streaming-unsigned-trailer"],
    ]
  ) {
    const result = verifyRequest(signed({ payloadHash }), lookup, NOW, REGION);
    assert.equal(result.payload.kind, kind);
    assert.equal(result.accessKeyId, CREDS.accessKeyId);
  }
});

Deno.test("verifyRequest() accepts an upper-case hex payload hash and reports it lower-case", () => {
  const hash = sha256Hex("hello").toUpperCase();
  const result = verifyRequest(signed({ payloadHash: hash }), lookup, NOW, REGION);
  assert.deepEqual(result.payload, { kind: "signed", sha256Hex: hash.toLowerCase() });
});

Deno.test("verifyRequest() accepts the same request whatever spelling of the path was signed", () => {
  // Signed over "/bucket/a%20b" (the canonical form); sent in other legal spellings.
  const req = signed({ rawPath: "/bucket/a%20b/c%7E(d)" });
  for (const rawPath of ["/bucket/a%20b/c~%28d%29", "/bucket/a b/c%7e(d)"]) {
    verifyRequest({ ...req, rawPath }, lookup, NOW, REGION);
  }
});

Deno.test("verifyRequest() does not normalize '.', '..' or '//' in the path", () => {
  const req = signed({ rawPath: "/bucket/a/../b//c/./d" });
  verifyRequest(req, lookup, NOW, REGION);
  throwsWith(
    () => verifyRequest({ ...req, rawPath: "/bucket/b/c/d" }, lookup, NOW, REGION),
    "SignatureDoesNotMatch",
  );
});

Deno.test("verifyRequest() accepts a client that signed the raw path as sent", () => {
  // Such a client signs "%2F" or lower-case hex literally, which the canonical form turns
  // into "/" or upper-case hex.
  for (const rawPath of ["/bucket/a%2Fb", "/bucket/%e2%82%ac"]) {
    verifyRequest(signedOverLiteral(rawPath), lookup, NOW, REGION);
  }
});

/** Signs over the path exactly as given, without canonicalizing it (a sloppy client). */
function signedOverLiteral(rawPath: string): AuthRequest {
  const amzDate = formatAmzDate(NOW);
  const headers = new Headers({
    host: "h",
    "x-amz-date": amzDate,
    "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
  });
  const names = "host;x-amz-content-sha256;x-amz-date";
  const lines = names.split(";").map((n) => `${n}:${canonicalHeaderValue(headers.get(n)!)}`);
  const canonical = canonicalRequest(
    "GET",
    rawPath,
    canonicalQuery("", null),
    lines,
    names,
    "UNSIGNED-PAYLOAD",
  );
  const date = amzDate.slice(0, 8);
  const sig = hmacHex(
    signingKey(CREDS.secretAccessKey, date, REGION),
    stringToSign(amzDate, scopeOf(date, REGION), canonical),
  );
  headers.set(
    "authorization",
    `AWS4-HMAC-SHA256 Credential=${CREDS.accessKeyId}/${
      scopeOf(date, REGION)
    }, SignedHeaders=${names}, Signature=${sig}`,
  );
  return { method: "GET", rawPath, rawQuery: "", headers };
}

Deno.test("verifyRequest() rejects a tampered method, path or query", () => {
  const req = signed();
  for (
    const changed of [
      { ...req, method: "POST" },
      { ...req, rawPath: "/bucket/dir/a%20b%2Bc~%E2%82%AC.txT" },
      { ...req, rawPath: "/bucket/dir/a+b%2Bc~%E2%82%AC.txt" },
      { ...req, rawQuery: "uploadId=abc%2F%3D&partNumber=4" },
      { ...req, rawQuery: "uploadId=abc%2F%3D" },
      { ...req, rawQuery: "uploadId=abc%2F%3D&partNumber=3&x=1" },
    ]
  ) {
    throwsWith(() => verifyRequest(changed, lookup, NOW, REGION), "SignatureDoesNotMatch");
  }
});

Deno.test("verifyRequest() rejects a tampered signed header, each in turn", () => {
  const req = signed();
  const names = [...req.headers.keys()].filter((n) => n !== "authorization");
  assert.ok(names.length >= 5);
  for (const name of names) {
    const headers = new Headers(req.headers);
    const value = headers.get(name)!;
    headers.set(name, name === "x-amz-date" ? formatAmzDate(NOW + 1000) : value + "x");
    if (name === "x-amz-content-sha256") {
      headers.set(name, sha256Hex("tampered"));
    }
    throwsWith(
      () => verifyRequest({ ...req, headers }, lookup, NOW, REGION),
      "SignatureDoesNotMatch",
    );
  }
});

Deno.test("verifyRequest() collapses whitespace runs in header values as SigV4 does", () => {
  const req = signed();
  const headers = new Headers(req.headers);
  headers.set("x-amz-meta-note", "two spaces");
  verifyRequest({ ...req, headers }, lookup, NOW, REGION);
});

Deno.test("verifyRequest() rejects a missing signed header", () => {
  const req = signed();
  const headers = new Headers(req.headers);
  headers.delete("content-type");
  throwsWith(
    () => verifyRequest({ ...req, headers }, lookup, NOW, REGION),
    "SignatureDoesNotMatch",
  );
});

Deno.test("verifyRequest() rejects an x-amz-* header that is not signed", () => {
  const req = signed();
  const headers = new Headers(req.headers);
  headers.set("x-amz-meta-smuggled", "1");
  const err = throwsWith(
    () => verifyRequest({ ...req, headers }, lookup, NOW, REGION),
    "AccessDenied",
  );
  assert.equal(err.extra.HeadersNotSigned, "x-amz-meta-smuggled");
});

Deno.test("verifyRequest() lets x-amz-content-sha256 go unsigned, bound as the payload line", () => {
  const amzDate = formatAmzDate(NOW);
  const headers = new Headers({ host: "h", "x-amz-date": amzDate });
  const names = "host;x-amz-date";
  const lines = names.split(";").map((n) => `${n}:${canonicalHeaderValue(headers.get(n)!)}`);
  const hash = sha256Hex("body");
  const canonical = canonicalRequest("PUT", "/b/k", "", lines, names, hash);
  const date = amzDate.slice(0, 8);
  const sig = hmacHex(
    signingKey(CREDS.secretAccessKey, date, REGION),
    stringToSign(amzDate, scopeOf(date, REGION), canonical),
  );
  headers.set(
    "authorization",
    `AWS4-HMAC-SHA256 Credential=${CREDS.accessKeyId}/${
      scopeOf(date, REGION)
    },SignedHeaders=${names},Signature=${sig}`,
  );
  headers.set("x-amz-content-sha256", hash);
  const req = { method: "PUT", rawPath: "/b/k", rawQuery: "", headers };
  assert.deepEqual(verifyRequest(req, lookup, NOW, REGION).payload, {
    kind: "signed",
    sha256Hex: hash,
  });
  headers.set("x-amz-content-sha256", sha256Hex("other body"));
  throwsWith(() => verifyRequest(req, lookup, NOW, REGION), "SignatureDoesNotMatch");
});

Deno.test("verifyRequest() rejects a signature that does not sign host", () => {
  const req = signed({ headers: {} });
  const headers = new Headers(req.headers);
  headers.set("host", "h");
  throwsWith(() => verifyRequest({ ...req, headers }, lookup, NOW, REGION), "AccessDenied");
});

Deno.test("verifyRequest() rejects a request more than 15 minutes from now with RequestTimeTooSkewed", () => {
  const req = signed();
  verifyRequest(req, lookup, NOW + 15 * 60_000, REGION);
  verifyRequest(req, lookup, NOW - 15 * 60_000, REGION);
  const err = throwsWith(
    () => verifyRequest(req, lookup, NOW + 15 * 60_000 + 1, REGION),
    "RequestTimeTooSkewed",
  );
  assert.equal(err.extra.MaxAllowedSkewMilliseconds, "900000");
  throwsWith(
    () => verifyRequest(req, lookup, NOW - 15 * 60_000 - 1, REGION),
    "RequestTimeTooSkewed",
  );
});

Deno.test("verifyRequest() takes the time from Date when x-amz-date is absent", () => {
  // The AWS PUT example signs both; here only Date is sent and signed.
  const amzDate = formatAmzDate(NOW);
  const headers = new Headers({
    host: "h",
    date: new Date(NOW).toUTCString(),
    "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
  });
  const names = "date;host;x-amz-content-sha256";
  const lines = names.split(";").map((n) => `${n}:${canonicalHeaderValue(headers.get(n)!)}`);
  const canonical = canonicalRequest("GET", "/b", "", lines, names, "UNSIGNED-PAYLOAD");
  const date = amzDate.slice(0, 8);
  const sig = hmacHex(
    signingKey(CREDS.secretAccessKey, date, REGION),
    stringToSign(amzDate, scopeOf(date, REGION), canonical),
  );
  headers.set(
    "authorization",
    `AWS4-HMAC-SHA256 Credential=${CREDS.accessKeyId}/${
      scopeOf(date, REGION)
    },SignedHeaders=${names},Signature=${sig}`,
  );
  verifyRequest({ method: "GET", rawPath: "/b", rawQuery: "", headers }, lookup, NOW, REGION);
  headers.delete("date");
  throwsWith(
    () =>
      verifyRequest({ method: "GET", rawPath: "/b", rawQuery: "", headers }, lookup, NOW, REGION),
    "AccessDenied",
  );
});

Deno.test("verifyRequest() rejects a scope date other than the request's day", () => {
  const req = signed({ amzDate: formatAmzDate(Date.UTC(2026, 10, 21, 23, 59, 0)) });
  const auth = req.headers.get("authorization")!.replace("/20261121/", "/20261122/");
  req.headers.set("authorization", auth);
  throwsWith(
    () => verifyRequest(req, lookup, Date.UTC(2026, 10, 21, 23, 59, 0), REGION),
    "AuthorizationHeaderMalformed",
  );
});

Deno.test("verifyRequest() rejects a scope naming another region with AuthorizationHeaderMalformed", () => {
  const req = signed();
  const err = throwsWith(
    () => verifyRequest(req, lookup, NOW, "eu-west-1"),
    "AuthorizationHeaderMalformed",
  );
  assert.equal(err.extra.Region, "eu-west-1");
});

Deno.test("verifyRequest() rejects an unknown access key with InvalidAccessKeyId", () => {
  throwsWith(() => verifyRequest(signed(), () => undefined, NOW, REGION), "InvalidAccessKeyId");
});

Deno.test("verifyRequest() rejects a wrong secret with SignatureDoesNotMatch", () => {
  const err = throwsWith(
    () => verifyRequest(signed(), () => "not the secret", NOW, REGION),
    "SignatureDoesNotMatch",
  );
  assert.match(err.extra.StringToSign, /^AWS4-HMAC-SHA256\n/);
});

Deno.test("verifyRequest() rejects a request with no signature with AccessDenied", () => {
  throwsWith(
    () =>
      verifyRequest(
        { method: "GET", rawPath: "/", rawQuery: "", headers: new Headers({ host: "h" }) },
        lookup,
        NOW,
        REGION,
      ),
    "AccessDenied",
  );
});

Deno.test("verifyRequest() refuses a SigV2 Authorization header, and checks SigV2 presigned URLs", () => {
  throwsWith(
    () =>
      verifyRequest(
        {
          method: "GET",
          rawPath: "/",
          rawQuery: "",
          headers: new Headers({ host: "h", authorization: "AWS AKID:c2lnbmF0dXJl" }),
        },
        lookup,
        NOW,
        REGION,
      ),
    "InvalidRequest",
  );
  throwsWith(
    () =>
      verifyRequest(
        {
          method: "GET",
          rawPath: "/b/k",
          rawQuery: "AWSAccessKeyId=AKID&Expires=1700000000&Signature=abc%3D",
          headers: new Headers({ host: "h" }),
        },
        lookup,
        NOW,
        REGION,
      ),
    "InvalidAccessKeyId",
  );
});

Deno.test("verifyRequest() rejects garbled Authorization headers", () => {
  const good = signed().headers.get("authorization")!;
  const cases: [string, string][] = [
    ["Bearer abc", "InvalidArgument"],
    ["AWS4-HMAC-SHA256", "AuthorizationHeaderMalformed"],
    [good.replace(/Signature=[0-9a-f]+/, ""), "AuthorizationHeaderMalformed"],
    [good.replace(/SignedHeaders=[^,]+,/, ""), "AuthorizationHeaderMalformed"],
    [good.replace("Credential=", "Credentials="), "AuthorizationHeaderMalformed"],
    [good.replace("/aws4_request", ""), "AuthorizationHeaderMalformed"],
    [good.replace("/s3/", "/iam/"), "AuthorizationHeaderMalformed"],
    [good.replace("/20261122/", "/2026-11-22/"), "AuthorizationHeaderMalformed"],
    [good + ", Signature=" + "0".repeat(64), "AuthorizationHeaderMalformed"],
    [good.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256"), "NotImplemented"],
    [good.replace(/Signature=[0-9a-f]+/, "Signature=zz"), "SignatureDoesNotMatch"],
    // Two Authorization headers arrive joined by ", ".
    [good + ", junk=1", "AuthorizationHeaderMalformed"],
    [good + ", AWS4-HMAC-SHA256 Credential=x", "InvalidArgument"],
  ];
  for (const [authorization, code] of cases) {
    const req = signed();
    req.headers.set("authorization", authorization);
    throwsWith(() => verifyRequest(req, lookup, NOW, REGION), code as AuthErrorCode);
  }
});

Deno.test("verifyRequest() parses the Authorization header with or without spaces after commas", () => {
  const req = signed();
  const compact = req.headers.get("authorization")!.replaceAll(", ", ",");
  const loose = compact.replaceAll(",", " ,  ").replace("AWS4-HMAC-SHA256 ", "AWS4-HMAC-SHA256   ");
  for (const authorization of [compact, loose]) {
    const headers = new Headers(req.headers);
    headers.set("authorization", authorization);
    verifyRequest({ ...req, headers }, lookup, NOW, REGION);
  }
});

Deno.test("verifyRequest() needs x-amz-content-sha256 and one of its legal values", () => {
  const req = signed();
  const headers = new Headers(req.headers);
  headers.delete("x-amz-content-sha256");
  throwsWith(() => verifyRequest({ ...req, headers }, lookup, NOW, REGION), "InvalidRequest");
  for (const value of ["abc", "STREAMING-PAYLOAD", sha256Hex("x") + "0"]) {
    throwsWith(
      () => verifyRequest(signed({ payloadHash: value }), lookup, NOW, REGION),
      "InvalidArgument",
    );
  }
  for (
    const value of [
      "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
      "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER",
    ]
  ) {
    throwsWith(
      () => verifyRequest(signed({ payloadHash: value }), lookup, NOW, REGION),
      "NotImplemented",
    );
  }
});

Deno.test("verifyRequest() accepts what presignRequest() signs, and rejects it tampered", () => {
  const rawQuery = presignRequest({
    method: "PUT",
    rawPath: "/bucket/k%20y",
    rawQuery: "partNumber=1&uploadId=u",
    headers: { host: "127.0.0.1:9000", "content-type": "image/png" },
    credentials: CREDS,
    region: REGION,
    amzDate: formatAmzDate(NOW),
    expiresSec: 3600,
  });
  const req: AuthRequest = {
    method: "PUT",
    rawPath: "/bucket/k%20y",
    rawQuery,
    headers: new Headers({ host: "127.0.0.1:9000", "content-type": "image/png" }),
  };
  const result = verifyRequest(req, lookup, NOW + 3_600_000, REGION);
  assert.deepEqual(result.payload, { kind: "unsigned" });
  assert.equal(result.presigned, true);
  throwsWith(() => verifyRequest(req, lookup, NOW + 3_600_001, REGION), "AccessDenied");
  const other = new Headers(req.headers);
  other.set("content-type", "text/html");
  throwsWith(
    () => verifyRequest({ ...req, headers: other }, lookup, NOW, REGION),
    "SignatureDoesNotMatch",
  );
  throwsWith(
    () =>
      verifyRequest(
        { ...req, rawQuery: rawQuery.replace("partNumber=1", "partNumber=2") },
        lookup,
        NOW,
        REGION,
      ),
    "SignatureDoesNotMatch",
  );
});

Deno.test("splitRequestUrl() keeps the path and query exactly as written", () => {
  assert.deepEqual(splitRequestUrl("http://h:9000/b/a/../k%2f//x?q=a+b&z=%7e"), {
    rawPath: "/b/a/../k%2f//x",
    rawQuery: "q=a+b&z=%7e",
  });
  assert.deepEqual(splitRequestUrl("http://h:9000"), { rawPath: "/", rawQuery: "" });
  assert.deepEqual(splitRequestUrl("http://h:9000?acl"), { rawPath: "/", rawQuery: "acl" });
  assert.deepEqual(splitRequestUrl("https://h/b?"), { rawPath: "/b", rawQuery: "" });
  assert.deepEqual(splitRequestUrl("/b/k?x"), { rawPath: "/b/k", rawQuery: "x" });
});
