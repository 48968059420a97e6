/**
 * The error every function in `src/auth/` throws.
 *
 * Pure: no clock, no I/O.
 *
 * @module
 */

/** The S3 error codes `src/auth/` raises, with the HTTP status AWS answers for each. */
export const AUTH_ERROR_STATUS = {
  AccessDenied: 403,
  AuthorizationHeaderMalformed: 400,
  AuthorizationQueryParametersError: 400,
  IncompleteBody: 400,
  InvalidAccessKeyId: 403,
  InvalidArgument: 400,
  InvalidRequest: 400,
  NotImplemented: 501,
  RequestTimeTooSkewed: 403,
  SignatureDoesNotMatch: 403,
  XAmzContentSHA256Mismatch: 400,
} as const satisfies Record<string, number>;

/** An S3 error code that `src/auth/` raises. */
export type AuthErrorCode = keyof typeof AUTH_ERROR_STATUS;

/**
 * A refused request: `code` is the S3 error code (a key of {@link AUTH_ERROR_STATUS}),
 * `message` the text for the error document, `extra` further elements AWS puts in the
 * error document (for example `{ HeadersNotSigned: "x-amz-meta-a" }` or, for
 * `SignatureDoesNotMatch`, `StringToSign` and `CanonicalRequest`).
 *
 * @example
 * ```ts
 * throw new AuthError("InvalidAccessKeyId", "The access key ID 'AK' does not exist in our records");
 * ```
 */
export class AuthError extends Error {
  override name = "AuthError";
  /** HTTP status AWS answers with for `code`. */
  readonly status: number;

  constructor(
    readonly code: AuthErrorCode,
    message: string,
    readonly extra: Record<string, string> = {},
  ) {
    super(message);
    this.status = AUTH_ERROR_STATUS[code];
  }
}
