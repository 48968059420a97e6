import assert from "node:assert/strict";
import { S3Error } from "./errors.ts";
import {
  checkPreconditions,
  parseRange,
  readObjectHeaders,
  validateBucketName,
  validateKey,
} from "./http.ts";
import { resolveOperation, resolveTarget } from "./router.ts";

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof S3Error, `expected an S3Error, got ${err}`);
    return err.code;
  }
  return "none";
}

Deno.test("parseRange() follows RFC 9110 byte ranges", () => {
  assert.deepEqual(parseRange("bytes=0-9", 100), { start: 0, end: 10 });
  assert.deepEqual(parseRange("bytes=90-", 100), { start: 90, end: 100 });
  assert.deepEqual(parseRange("bytes=-5", 100), { start: 95, end: 100 });
  assert.deepEqual(parseRange("bytes=-500", 100), { start: 0, end: 100 });
  assert.deepEqual(parseRange("bytes=50-5000", 100), { start: 50, end: 100 });
  assert.equal(parseRange(null, 100), null);
  assert.equal(parseRange("bytes=0-1,5-6", 100), null, "multiple ranges: whole object");
  assert.equal(parseRange("items=0-1", 100), null);
  assert.equal(parseRange("bytes=9-1", 100), null);
  assert.equal(code(() => parseRange("bytes=100-", 100)), "InvalidRange");
  assert.equal(code(() => parseRange("bytes=-0", 100)), "InvalidRange");
  assert.equal(code(() => parseRange("bytes=0-", 0)), "InvalidRange");
});

Deno.test("checkPreconditions() evaluates in RFC 9110 order", () => {
  const record = { etag: "abc", lastModifiedMs: Date.parse("2024-01-02T00:00:00Z") };
  const h = (o: Record<string, string>) => new Headers(o);
  const before = "Mon, 01 Jan 2024 00:00:00 GMT";
  const after = "Wed, 03 Jan 2024 00:00:00 GMT";
  assert.equal(code(() => checkPreconditions(h({ "if-match": '"abc"' }), record)), "none");
  assert.equal(code(() => checkPreconditions(h({ "if-match": '"x", "abc"' }), record)), "none");
  assert.equal(
    code(() => checkPreconditions(h({ "if-match": '"x"' }), record)),
    "PreconditionFailed",
  );
  assert.equal(
    code(() => checkPreconditions(h({ "if-unmodified-since": before }), record)),
    "PreconditionFailed",
  );
  // If-Match true wins over a failing If-Unmodified-Since.
  assert.equal(
    code(() => checkPreconditions(h({ "if-match": "*", "if-unmodified-since": before }), record)),
    "none",
  );
  assert.equal(
    code(() => checkPreconditions(h({ "if-none-match": '"abc"' }), record)),
    "NotModified",
  );
  assert.equal(
    code(() => checkPreconditions(h({ "if-modified-since": after }), record)),
    "NotModified",
  );
  assert.equal(code(() => checkPreconditions(h({ "if-modified-since": before }), record)), "none");
  // If-None-Match false: If-Modified-Since is not consulted.
  assert.equal(
    code(() =>
      checkPreconditions(h({ "if-none-match": '"x"', "if-modified-since": after }), record)
    ),
    "none",
  );
  assert.equal(
    code(() =>
      checkPreconditions(
        h({ "x-amz-copy-source-if-none-match": '"abc"' }),
        record,
        "x-amz-copy-source-",
      )
    ),
    "PreconditionFailed",
  );
});

Deno.test("validateBucketName() applies the AWS naming rules", () => {
  for (const ok of ["abc", "my-bucket.2", "a".repeat(63), "1bucket"]) {
    assert.equal(code(() => validateBucketName(ok)), "none", ok);
  }
  for (
    const bad of [
      "ab",
      "a".repeat(64),
      "Upper",
      "under_score",
      "-lead",
      "trail-",
      "a..b",
      "a.-b",
      "192.168.1.1",
      "xn--abc",
      "sthree-x",
      "x-s3alias",
      "x--ol-s3",
    ]
  ) {
    assert.equal(code(() => validateBucketName(bad)), "InvalidBucketName", bad);
  }
});

Deno.test("validateKey() allows 1024 UTF-8 bytes and refuses 1025", () => {
  assert.equal(code(() => validateKey("a".repeat(1024))), "none");
  assert.equal(code(() => validateKey("a".repeat(1025))), "KeyTooLongError");
  assert.equal(code(() => validateKey("é".repeat(512))), "none");
  assert.equal(code(() => validateKey("é".repeat(512) + "a")), "KeyTooLongError");
  assert.equal(code(() => validateKey("")), "InvalidArgument");
});

Deno.test("readObjectHeaders() keeps standard headers and user metadata, drops aws-chunked", () => {
  const { stored, userMeta } = readObjectHeaders(
    new Headers({
      "content-type": "text/plain",
      "content-encoding": "aws-chunked,gzip",
      "cache-control": "no-cache",
      "x-amz-meta-color": "blue",
    }),
  );
  assert.deepEqual(stored, {
    contentType: "text/plain",
    contentEncoding: "gzip",
    cacheControl: "no-cache",
  });
  assert.deepEqual(userMeta, { color: "blue" });
  assert.equal(
    code(() => readObjectHeaders(new Headers({ "x-amz-meta-big": "x".repeat(3000) }))),
    "MetadataTooLarge",
  );
});

Deno.test("resolveTarget() decodes path-style and virtual-hosted addresses", () => {
  assert.deepEqual(resolveTarget("/b/a%20b/c%2Fd", "h", undefined), {
    bucket: "b",
    key: "a b/c/d",
    virtualHosted: false,
  });
  assert.deepEqual(resolveTarget("/b", "h"), { bucket: "b", key: "", virtualHosted: false });
  assert.deepEqual(resolveTarget("/b/", "h"), { bucket: "b", key: "", virtualHosted: false });
  assert.deepEqual(resolveTarget("/", "h"), { bucket: "", key: "", virtualHosted: false });
  assert.deepEqual(resolveTarget("/k/x", "my.bucket.s3.local:9000", "s3.local"), {
    bucket: "my.bucket",
    key: "k/x",
    virtualHosted: true,
  });
  assert.deepEqual(resolveTarget("/b/k", "other:9000", "s3.local"), {
    bucket: "b",
    key: "k",
    virtualHosted: false,
  });
  assert.equal(code(() => resolveTarget("/b/%ff", "h")), "InvalidURI");
});

Deno.test("resolveOperation() maps method, target and query to AWS operation names", () => {
  const op = (method: string, path: string, query = "", headers: Record<string, string> = {}) =>
    resolveOperation(
      method,
      resolveTarget(path, "h"),
      new URLSearchParams(query),
      new Headers(headers),
    );
  assert.equal(op("GET", "/"), "ListBuckets");
  assert.equal(op("PUT", "/b"), "CreateBucket");
  assert.equal(op("HEAD", "/b"), "HeadBucket");
  assert.equal(op("DELETE", "/b"), "DeleteBucket");
  assert.equal(op("GET", "/b", "location"), "GetBucketLocation");
  assert.equal(op("GET", "/b", "list-type=2&prefix=a"), "ListObjectsV2");
  assert.equal(op("GET", "/b", "prefix=a"), "ListObjects");
  assert.equal(op("GET", "/b", "uploads"), "ListMultipartUploads");
  assert.equal(op("POST", "/b", "delete"), "DeleteObjects");
  assert.equal(op("PUT", "/b/k"), "PutObject");
  assert.equal(op("PUT", "/b/k", "x-id=PutObject"), "PutObject");
  assert.equal(op("PUT", "/b/k", "", { "x-amz-copy-source": "/b/j" }), "CopyObject");
  assert.equal(op("PUT", "/b/k", "partNumber=1&uploadId=u"), "UploadPart");
  assert.equal(
    op("PUT", "/b/k", "partNumber=1&uploadId=u", { "x-amz-copy-source": "b/j" }),
    "UploadPartCopy",
  );
  assert.equal(op("GET", "/b/k"), "GetObject");
  assert.equal(op("GET", "/b/k", "uploadId=u"), "ListParts");
  assert.equal(op("HEAD", "/b/k"), "HeadObject");
  assert.equal(op("DELETE", "/b/k"), "DeleteObject");
  assert.equal(op("DELETE", "/b/k", "uploadId=u"), "AbortMultipartUpload");
  assert.equal(op("POST", "/b/k", "uploads"), "CreateMultipartUpload");
  assert.equal(op("POST", "/b/k", "uploadId=u"), "CompleteMultipartUpload");
  assert.equal(op("GET", "/b/k", "tagging"), "GetObjectTagging");
  assert.equal(op("PUT", "/b/k", "tagging"), "PutObjectTagging");
  assert.equal(op("DELETE", "/b/k", "tagging"), "DeleteObjectTagging");
  assert.equal(op("PUT", "/b", "cors"), "PutBucketCors");
  assert.equal(op("GET", "/b", "cors"), "GetBucketCors");
  assert.equal(op("DELETE", "/b", "cors"), "DeleteBucketCors");
  assert.equal(op("GET", "/b", "acl"), "GetBucketAcl");
  assert.equal(op("PUT", "/b/k", "acl"), "PutObjectAcl");
  assert.equal(code(() => op("GET", "/b/k", "retention")), "NotImplemented");
  assert.equal(code(() => op("PUT", "/b", "lifecycle")), "NotImplemented");
  assert.equal(code(() => op("PUT", "/b", "tagging")), "NotImplemented");
  assert.equal(code(() => op("GET", "/b", "versions")), "NotImplemented");
  assert.equal(code(() => op("PATCH", "/b/k")), "MethodNotAllowed");
});
