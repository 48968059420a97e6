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
export const SIGNED_SUBRESOURCES: ReadonlySet<string> = new Set([
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
 * The canonical resources a SigV2 presigned request may have been signed with: `/` +
 * `req.hostBucket` when the request is virtual-hosted, then the path as sent. For a
 * request on a bucket alone (`/bucket` or `/bucket/`) both spellings are tried: botocore
 * signs `/bucket/` whichever form its URL has. Either names the same bucket, no other.
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/RESTAuthentication.html#ConstructingTheCanonicalizedResourceElement
 */
export function canonicalResourcesV2(req: AuthRequest): string[] {
  const resource = (req.hostBucket === undefined ? "" : `/${req.hostBucket}`) + req.rawPath;
  const bucketOnly = /^\/[^/]+\/?$/.exec(resource);
  if (bucketOnly === null) return [resource];
  return resource.endsWith("/") ? [resource, resource.slice(0, -1)] : [resource, `${resource}/`];
}

/** The SigV2 string to sign of a presigned request, for one canonical resource path. */
export function stringToSignV2(
  req: AuthRequest,
  query: QueryParam[],
  expires: string,
  resource: string,
): string {
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
    `${req.headers.get("content-type") ?? ""}\n${expires}\n${amz}${resource}${
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
  const candidates = canonicalResourcesV2(req).map((r) => stringToSignV2(req, query, expires, r));
  const matches = (toSign: string) =>
    signaturesEqual(createHmac("sha1", secret).update(toSign, "utf8").digest("base64"), signature);
  if (!candidates.some(matches)) {
    throw new AuthError(
      "SignatureDoesNotMatch",
      "The request signature we calculated does not match the signature you provided",
      { StringToSign: candidates[0], SignatureProvided: signature, AWSAccessKeyId: accessKeyId },
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
