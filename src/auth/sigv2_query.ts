/**
 * Signature Version 2 presigned URLs (`?AWSAccessKeyId=&Expires=&Signature=`),
 * the form boto3's `generate_presigned_url` still makes by default. Only the
 * query form is accepted; a SigV2 `Authorization` header stays refused.
 *
 * String to sign: `METHOD\nContent-MD5\nContent-Type\nExpires\n` + the sorted
 * `x-amz-*` headers as `name:value\n` + the canonical resource: the path as
 * sent, then the sub-resources S3 signs, sorted, as `?name[=value]&...` with
 * decoded values. Signature: base64 of HMAC-SHA1 under the secret key.
 *
 * Pure: no clock, no I/O.
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/userguide/RESTAuthentication.html#RESTAuthenticationQueryStringAuth
 * @module
 */
import { createHmac } from "node:crypto";
import { AuthError } from "./errors.ts";
import { canonicalHeaderValue, type QueryParam, signaturesEqual } from "./_sigv4.ts";
import type { AuthRequest, AuthResult, SecretLookup } from "./types.ts";

/** The query parameters that are part of a SigV2 canonical resource. */
const SIGNED_SUBRESOURCES = new Set([
  "acl",
  "cors",
  "delete",
  "lifecycle",
  "location",
  "logging",
  "notification",
  "partNumber",
  "policy",
  "requestPayment",
  "response-cache-control",
  "response-content-disposition",
  "response-content-encoding",
  "response-content-language",
  "response-content-type",
  "response-expires",
  "restore",
  "tagging",
  "torrent",
  "uploadId",
  "uploads",
  "versionId",
  "versioning",
  "versions",
  "website",
]);

/** The SigV2 string to sign of a presigned request. */
export function stringToSignV2(req: AuthRequest, query: QueryParam[], expires: string): string {
  const amz = [...req.headers.entries()]
    .filter(([name]) => name.startsWith("x-amz-"))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, value]) => `${name}:${canonicalHeaderValue(value)}\n`)
    .join("");
  const sub = query
    .filter((p) => SIGNED_SUBRESOURCES.has(p.name))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((p) => (p.value === "" ? p.name : `${p.name}=${p.value}`))
    .join("&");
  return `${req.method}\n${req.headers.get("content-md5") ?? ""}\n` +
    `${req.headers.get("content-type") ?? ""}\n${expires}\n${amz}${req.rawPath}${
      sub ? `?${sub}` : ""
    }`;
}

/**
 * Verifies a SigV2 presigned request.
 *
 * @throws {AuthError} `InvalidAccessKeyId`, `SignatureDoesNotMatch`, `AccessDenied` (expired)
 */
export function verifyQueryAuthV2(
  req: AuthRequest,
  query: QueryParam[],
  lookup: SecretLookup,
  nowMs: number,
): AuthResult {
  const get = (name: string) => query.find((p) => p.name === name)?.value;
  const accessKeyId = get("AWSAccessKeyId") ?? "";
  const signature = get("Signature") ?? "";
  const expires = get("Expires");
  if (expires === undefined || !/^\d{1,12}$/.test(expires)) {
    throw new AuthError(
      "AccessDenied",
      "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters",
    );
  }
  const secret = lookup(accessKeyId);
  if (secret === undefined) {
    throw new AuthError(
      "InvalidAccessKeyId",
      `The AWS access key Id '${accessKeyId}' does not exist in our records`,
      {
        AWSAccessKeyId: accessKeyId,
      },
    );
  }
  const toSign = stringToSignV2(req, query, expires);
  const expected = createHmac("sha1", secret).update(toSign, "utf8").digest("base64");
  if (!signaturesEqual(expected, signature)) {
    throw new AuthError(
      "SignatureDoesNotMatch",
      "The request signature we calculated does not match the signature you provided",
      { StringToSign: toSign, SignatureProvided: signature, AWSAccessKeyId: accessKeyId },
    );
  }
  if (nowMs > Number(expires) * 1000) {
    throw new AuthError("AccessDenied", "Request has expired", {
      Expires: new Date(Number(expires) * 1000).toISOString(),
      ServerTime: new Date(nowMs).toISOString(),
    });
  }
  return { accessKeyId, payload: { kind: "unsigned" }, presigned: true };
}
