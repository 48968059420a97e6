/**
 * AWS Signature Version 4 verification for the S3 API: the `Authorization` header,
 * presigned URLs (query parameters), single-chunk signed and unsigned payloads, and
 * aws-chunked streaming uploads with per-chunk signatures and signed or unsigned
 * trailing headers.
 *
 * Pure: no clock, no I/O. The current time is a parameter (`nowMs`), secrets come from a
 * lookup function, and the body is a stream the caller hands in.
 *
 * Use: `verifyRequest()` on the request head, then `decodeBody()` on the body with the
 * payload mode it returned. Errors are {@link AuthError}s whose `code` is the S3 error
 * code to answer with.
 *
 * @example
 * ```ts
 * import { decodeBody, verifyRequest } from "./mod.ts";
 *
 * const url = new URL(request.url);
 * const auth = verifyRequest(
 *   { method: request.method, rawPath: url.pathname, rawQuery: url.search.slice(1), headers: request.headers },
 *   (id) => keys.get(id),
 *   clock.nowMs(),
 *   "us-east-1",
 * );
 * const { stream, trailers } = decodeBody(request.body!, auth.payload, request.headers);
 * ```
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-authenticating-requests.html
 * @module
 */
export { AUTH_ERROR_STATUS, AuthError, type AuthErrorCode } from "./errors.ts";
export type {
  AuthRequest,
  AuthResult,
  Payload,
  SecretLookup,
  StreamingSignedPayload,
} from "./types.ts";
export { MAX_PRESIGNED_EXPIRES_SEC, splitRequestUrl, verifyRequest } from "./verify.ts";
export {
  decodeBody,
  type DecodedBody,
  MAX_CHUNK_BYTES,
  MAX_LINE_BYTES,
  MAX_TRAILER_BYTES,
} from "./decode.ts";
export { MAX_SKEW_MS } from "./_sigv4.ts";
