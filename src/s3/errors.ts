/**
 * The one table of S3 errors, the `S3Error` class that renders them, and the
 * one function that maps inner errors to S3 errors.
 *
 * Pure: no clock, no I/O.
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
 * @module
 */
/** Every S3 error Hamster can answer: its HTTP status and default message. */
export const S3_ERRORS = {
  AccessDenied: [403, "Access denied"],
  AccessForbidden: [403, "CORSResponse: This CORS request is not allowed"],
  AuthorizationHeaderMalformed: [400, "The authorization header is malformed"],
  AuthorizationQueryParametersError: [400, "The authorization query parameters are malformed"],
  BadRequest: [400, "Bad request"],
  BadDigest: [400, "The Content-MD5 or checksum you specified did not match what was received"],
  BucketAlreadyExists: [409, "The requested bucket name is not available"],
  BucketAlreadyOwnedByYou: [409, "Your previous request to create the named bucket succeeded"],
  BucketNotEmpty: [409, "The bucket you tried to delete is not empty"],
  EntityTooLarge: [400, "Your proposed upload exceeds the maximum allowed size"],
  EntityTooSmall: [400, "Your proposed upload is smaller than the minimum allowed object size"],
  IncompleteBody: [400, "You did not provide the number of bytes specified by Content-Length"],
  InternalError: [500, "We encountered an internal error, please try again"],
  InvalidAccessKeyId: [403, "The access key ID you provided does not exist in our records"],
  InvalidArgument: [400, "Invalid argument"],
  InvalidBucketName: [400, "The specified bucket is not valid"],
  InvalidDigest: [400, "The Content-MD5 or checksum you specified is not valid"],
  InvalidObjectState: [403, "The operation is not valid for the current state of the object"],
  InvalidPart: [400, "One or more of the specified parts could not be found"],
  InvalidPartOrder: [400, "The list of parts was not in ascending order"],
  InvalidRange: [416, "The requested range is not satisfiable"],
  InvalidRequest: [400, "Invalid request"],
  InvalidTag: [400, "The tag provided was not a valid tag"],
  InvalidURI: [400, "Could not parse the specified URI"],
  InvalidStorageClass: [400, "The storage class you specified is not valid"],
  KeyTooLongError: [400, "Your key is too long"],
  MalformedXML: [400, "The XML you provided was not well-formed or did not validate"],
  MaxMessageLengthExceeded: [400, "Your request was too big"],
  MetadataTooLarge: [400, "Your metadata headers exceed the maximum allowed metadata size"],
  MethodNotAllowed: [405, "The specified method is not allowed against this resource"],
  MissingContentLength: [411, "You must provide the Content-Length HTTP header"],
  NoSuchBucket: [404, "The specified bucket does not exist"],
  NoSuchCORSConfiguration: [404, "The CORS configuration does not exist"],
  NoSuchKey: [404, "The specified key does not exist"],
  NoSuchVersion: [404, "The specified version does not exist"],
  NoSuchUpload: [404, "The specified multipart upload does not exist"],
  NotImplemented: [501, "A header or operation you provided implies functionality not implemented"],
  NotModified: [304, "Not modified"],
  PreconditionFailed: [412, "At least one of the preconditions you specified did not hold"],
  RequestTimeTooSkewed: [
    403,
    "The difference between the request time and the server's time is too large",
  ],
  RequestTimeout: [
    400,
    "Your socket connection to the server was not read from or written to within the timeout period",
  ],
  ServiceUnavailable: [503, "Please reduce your request rate"],
  SignatureDoesNotMatch: [
    403,
    "The request signature we calculated does not match the signature you provided",
  ],
  SlowDown: [503, "Please reduce your request rate"],
  XAmzContentSHA256Mismatch: [
    400,
    "The provided 'x-amz-content-sha256' header does not match what was computed",
  ],
  ConditionalRequestConflict: [
    409,
    "A conflicting operation occurred during the conditional request",
  ],
} as const satisfies Record<string, readonly [number, string]>;

/** An S3 error code from the table. */
export type S3ErrorCode = keyof typeof S3_ERRORS;

/**
 * An S3 error: its code, HTTP status, message and extra elements; `renderError`
 * in xml.ts renders the body `<Error><Code/><Message/>...extra<Resource/><RequestId/></Error>`.
 */
export class S3Error extends Error {
  override name = "S3Error";
  readonly status: number;
  /** Extra XML elements, e.g. `{ Key: "a" }` or `{ ArgumentName: "partNumber" }`. */
  readonly extra: Record<string, string>;
  /** Extra response headers, e.g. `Retry-After`. */
  readonly headers: Record<string, string>;

  constructor(
    readonly code: S3ErrorCode,
    message?: string,
    opts: { extra?: Record<string, string>; headers?: Record<string, string> } = {},
  ) {
    super(message ?? S3_ERRORS[code][1]);
    this.status = S3_ERRORS[code][0];
    this.extra = opts.extra ?? {};
    this.headers = opts.headers ?? {};
  }
}

/** An inner error whose `code` names an S3 error (auth, data path and meta layers raise these). */
interface CodedError {
  code: string;
  message: string;
  /** Extra XML elements, as `AuthError` carries (`StringToSign`, `ServerTime`, ...). */
  extra?: Record<string, string>;
}

function isCoded(err: unknown): err is CodedError {
  return typeof err === "object" && err !== null && "code" in err &&
    typeof (err as CodedError).code === "string" && (err as CodedError).code in S3_ERRORS;
}

/**
 * Maps any thrown value to an S3Error: S3Errors pass through, inner errors
 * whose `code` is an S3 error code keep it and their message, everything else
 * is `InternalError` (its detail goes to the log, not to the client). A
 * `SlowDown` from the metadata log (no Raft leader known within its bound)
 * carries `Retry-After: 1`.
 */
export function toS3Error(err: unknown): S3Error {
  if (err instanceof S3Error) return err;
  if (isCoded(err)) {
    const extra = typeof err.extra === "object" && err.extra !== null ? err.extra : undefined;
    // A cluster with no leader known answers SlowDown: tell the client when to retry.
    const headers = err.code === "SlowDown" ? { "Retry-After": "1" } : undefined;
    return new S3Error(err.code as S3ErrorCode, err.message, {
      ...(extra ? { extra } : {}),
      ...(headers ? { headers } : {}),
    });
  }
  return new S3Error("InternalError");
}
