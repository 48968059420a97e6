import assert from "node:assert/strict";
import { AuthError } from "./errors.ts";
import { verifyRequest } from "./verify.ts";
import { presignRequestV2 } from "./sign.ts";

const SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const lookup = (id: string) => (id === "AKIAIOSFODNN7EXAMPLE" ? SECRET : undefined);
// AWS's published query-string example: GET /johnsmith/photos/puppy.jpg, Expires 1175139620.
const QUERY =
  "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1175139620&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D";
const BEFORE_EXPIRY_MS = 1175139000 * 1000;

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof AuthError);
    return err.code;
  }
  return "none";
}

function request(method: string, rawPath: string, rawQuery: string) {
  return { method, rawPath, rawQuery, headers: new Headers({ host: "127.0.0.1:9000" }) };
}

Deno.test("verifyRequest() accepts AWS's published SigV2 presigned URL example", () => {
  const result = verifyRequest(
    request("GET", "/johnsmith/photos/puppy.jpg", QUERY),
    lookup,
    BEFORE_EXPIRY_MS,
    "us-east-1",
  );
  assert.deepEqual(result, {
    accessKeyId: "AKIAIOSFODNN7EXAMPLE",
    payload: { kind: "unsigned" },
    presigned: true,
  });
});

Deno.test("verifyRequest() binds a SigV2 presigned URL to its method, path, expiry and key", () => {
  const run = (method: string, path: string, query: string, nowMs = BEFORE_EXPIRY_MS) =>
    code(() => verifyRequest(request(method, path, query), lookup, nowMs, "us-east-1"));
  assert.equal(run("PUT", "/johnsmith/photos/puppy.jpg", QUERY), "SignatureDoesNotMatch");
  assert.equal(run("GET", "/johnsmith/photos/kitten.jpg", QUERY), "SignatureDoesNotMatch");
  assert.equal(
    run("GET", "/johnsmith/photos/puppy.jpg", QUERY.replace("1175139620", "1175139621")),
    "SignatureDoesNotMatch",
  );
  assert.equal(run("GET", "/johnsmith/photos/puppy.jpg", QUERY, 1175139621 * 1000), "AccessDenied");
  assert.equal(
    run("GET", "/johnsmith/photos/puppy.jpg", QUERY.replace("AKIAIOSFODNN7EXAMPLE", "NOPE")),
    "InvalidAccessKeyId",
  );
  assert.equal(
    run("GET", "/johnsmith/photos/puppy.jpg", `${QUERY}&tagging`),
    "SignatureDoesNotMatch",
  );
  assert.equal(
    run("GET", "/johnsmith/photos/puppy.jpg", QUERY.replace("Expires=1175139620&", "")),
    "AccessDenied",
  );
});

Deno.test("verifyRequest() signs a virtual-hosted SigV2 URL's bucket from the Host, as AWS's example", () => {
  // AWS's example is virtual-hosted: GET /photos/puppy.jpg, Host johnsmith.s3.amazonaws.com.
  const virtual = (rawPath: string, hostBucket: string | undefined) =>
    code(() =>
      verifyRequest(
        { ...request("GET", rawPath, QUERY), hostBucket },
        lookup,
        BEFORE_EXPIRY_MS,
        "us-east-1",
      )
    );
  assert.equal(virtual("/photos/puppy.jpg", "johnsmith"), "none");
  // The path-style URL replayed on another bucket's virtual host routes to that bucket.
  assert.equal(virtual("/johnsmith/photos/puppy.jpg", "beta"), "SignatureDoesNotMatch");
  assert.equal(virtual("/johnsmith/photos/puppy.jpg", "johnsmith"), "SignatureDoesNotMatch");
  // The virtual-hosted URL sent path style, or to another virtual host.
  assert.equal(virtual("/photos/puppy.jpg", undefined), "SignatureDoesNotMatch");
  assert.equal(virtual("/photos/puppy.jpg", "photos"), "SignatureDoesNotMatch");
});

Deno.test("verifyRequest() refuses a SigV2 URL expiring more than 7 days (and the skew) ahead", () => {
  const limitMs = (604800 + 15 * 60) * 1000;
  const at = (nowMs: number) =>
    code(() =>
      verifyRequest(
        request("GET", "/johnsmith/photos/puppy.jpg", QUERY),
        lookup,
        nowMs,
        "us-east-1",
      )
    );
  assert.equal(at(1175139620 * 1000 - limitMs), "none");
  assert.equal(at(1175139620 * 1000 - limitMs - 1), "AuthorizationQueryParametersError");
  assert.equal(at(0), "AuthorizationQueryParametersError");
  try {
    verifyRequest(request("GET", "/johnsmith/photos/puppy.jpg", QUERY), lookup, 0, "us-east-1");
  } catch (err) {
    assert.ok(err instanceof AuthError);
    assert.equal(err.status, 400);
    assert.match(err.message, /less than a week/);
  }
});

Deno.test("verifyRequest() takes botocore's SigV2 bucket URLs, signed /bucket/, in both styles", () => {
  // botocore 1.29 (Debian's python3-boto3), signature_version "s3", key AK / secret SK:
  // list_objects(Bucket="alpha") made /alpha?... (path) and alpha.<domain>/?... (virtual),
  // both with this signature, over the resource /alpha/.
  const query = "encoding-type=url&AWSAccessKeyId=AK&Signature=tqDqqfzLEe6ugdwg1IyCGsYCBJQ%3D" +
    "&Expires=1796409969";
  const at = (rawPath: string, hostBucket?: string) =>
    code(() =>
      verifyRequest(
        { ...request("GET", rawPath, query), hostBucket },
        (id) => (id === "AK" ? "SK" : undefined),
        1796409000 * 1000,
        "us-east-1",
      )
    );
  assert.equal(at("/alpha"), "none");
  assert.equal(at("/alpha/"), "none");
  assert.equal(at("/", "alpha"), "none");
  assert.equal(at("/", "beta"), "SignatureDoesNotMatch");
  assert.equal(at("/beta"), "SignatureDoesNotMatch");
  assert.equal(at("/alpha", "beta"), "SignatureDoesNotMatch");
});

Deno.test("presignRequestV2() (the tests' SigV2 signer) makes AWS's published example", () => {
  const query = presignRequestV2({
    method: "GET",
    resource: "/johnsmith/photos/puppy.jpg",
    headers: { host: "johnsmith.s3.amazonaws.com" },
    credentials: { accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: SECRET },
    expiresAtSec: 1175139620,
  });
  assert.equal(query, QUERY);
});
