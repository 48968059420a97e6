/**
 * The shapes `verifyRequest()` takes and returns and `decodeBody()` takes.
 *
 * Pure: types only.
 *
 * @module
 */

/** What the verifier needs of an HTTP request. */
export interface AuthRequest {
  /** `GET`, `PUT`, ... as on the wire (upper case). */
  method: string;
  /** The path exactly as on the wire, percent-encoded, e.g. `/bucket/a%20b`. */
  rawPath: string;
  /** The query string exactly as on the wire, without `?`; `""` when there is none. */
  rawQuery: string;
  /** The request headers, `Host` included. */
  headers: Headers;
  /**
   * The bucket the request is routed to when the Host header names it (virtual-hosted
   * style); absent for path-style requests, whose path names the bucket. SigV2 signs it
   * ahead of the path; SigV4 needs no such field (it signs the Host header itself).
   */
  hostBucket?: string;
}

/** The secret access key of an access key id, or `undefined` when the id is unknown. */
export type SecretLookup = (accessKeyId: string) => string | undefined;

/**
 * What the body of a verified request must satisfy, from `x-amz-content-sha256` (or, for
 * presigned requests, the `X-Amz-Content-Sha256` query parameter):
 *
 * | kind | `x-amz-content-sha256` | body |
 * |---|---|---|
 * | `signed` | 64 hex digits | raw bytes that hash to `sha256Hex` |
 * | `unsigned` | `UNSIGNED-PAYLOAD` (and presigned requests) | raw bytes, unchecked |
 * | `streaming-signed` | `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]` | aws-chunked, every chunk signed, then (trailer) signed trailing headers |
 * | `streaming-unsigned-trailer` | `STREAMING-UNSIGNED-PAYLOAD-TRAILER` | aws-chunked, no signatures, trailing headers |
 */
export type Payload =
  | { kind: "signed"; sha256Hex: string }
  | { kind: "unsigned" }
  | StreamingSignedPayload
  | { kind: "streaming-unsigned-trailer" };

/** The chain state for verifying aws-chunked chunk signatures. */
export interface StreamingSignedPayload {
  kind: "streaming-signed";
  /** true for `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`: signed trailing headers follow. */
  trailer: boolean;
  /** The SigV4 signing key of the request's scope (32 bytes). */
  signingKey: Uint8Array;
  /** The credential scope, `YYYYMMDD/region/s3/aws4_request`. */
  scope: string;
  /** The request time as signed, `YYYYMMDDTHHMMSSZ`. */
  amzDate: string;
  /** The request's own signature: the previous signature of the first chunk. */
  seedSignature: string;
}

/** A verified request. */
export interface AuthResult {
  /** Whose key signed the request. */
  accessKeyId: string;
  /** How the body must be decoded and checked; pass it to `decodeBody()`. */
  payload: Payload;
  /** true when the request was signed by query parameters (a presigned URL). */
  presigned: boolean;
}
