/**
 * Signature Version 2 presigned URLs (`?AWSAccessKeyId=&Expires=&Signature=`),
 * the form boto3's `generate_presigned_url` still makes by default. Only the
 * query form is accepted; a SigV2 `Authorization` header stays refused.
 *
 * String to sign: `METHOD\nContent-MD5\nContent-Type\nExpires\n` + the sorted
 * `x-amz-*` headers as `name:value\n` + the canonical resource: `/bucket` when
 * the Host header names the bucket (virtual-hosted style), then the path as
 * sent, then the sub-resources S3 signs, sorted, as `?name[=value]&...` with
 * decoded values. Signature: base64 of HMAC-SHA1 under the secret key. So the
 * resource is the bucket and key the request is routed to, in either
 * addressing style, and a URL made for one bucket verifies for no other.
 *
 * `Expires` may lie at most {@link MAX_PRESIGNED_EXPIRES_SEC} (7 days) plus
 * {@link MAX_SKEW_MS} ahead of the server's clock, the SigV4 limit (ADR 0041).
 *
 * Pure: no clock, no I/O.
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/userguide/RESTAuthentication.html#RESTAuthenticationQueryStringAuth
 * @module
 */
import { createHmac } from "node:crypto";
import { AuthError } from "./errors.ts";
import {
  canonicalHeaderValue,
  MAX_PRESIGNED_EXPIRES_SEC,
  MAX_SKEW_MS,
  type QueryParam,
  signaturesEqual,
} from "./_sigv4.ts";
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

/**
 * The SigV2 string to sign of a presigned request. The canonical resource starts with
 * `/` + `req.hostBucket` when the request is virtual-hosted, then the path as sent.
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/RESTAuthentication.html#ConstructingTheCanonicalizedResourceElement
 */
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
  const bucket = req.hostBucket === undefined ? "" : `/${req.hostBucket}`;
  return `${req.method}\n${req.headers.get("content-md5") ?? ""}\n` +
    `${req.headers.get("content-type") ?? ""}\n${expires}\n${amz}${bucket}${req.rawPath}${
      sub ? `?${sub}` : ""
    }`;
}

/**
 * Verifies a SigV2 presigned request.
 *
 * @param nowMs the current time, milliseconds since the Unix epoch
 * @throws {AuthError} `AccessDenied` (a parameter missing; expired),
 *   `AuthorizationQueryParametersError` (`Expires` more than 7 days and 15 minutes ahead),
 *   `InvalidAccessKeyId`, `SignatureDoesNotMatch`
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
  if (Number(expires) * 1000 - nowMs > MAX_PRESIGNED_EXPIRES_SEC * 1000 + MAX_SKEW_MS) {
    throw new AuthError(
      "AuthorizationQueryParametersError",
      "Expires must be less than a week (604800 seconds) from now",
      {
        Expires: new Date(Number(expires) * 1000).toISOString(),
        ServerTime: new Date(nowMs).toISOString(),
      },
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
