/**
 * `verifyRequest()`: checks a request's SigV4 signature, by `Authorization` header or by
 * presigned query parameters (and SigV2 presigned URLs, see `sigv2_query.ts`).
 *
 * Pure: no clock, no I/O; the time is a parameter.
 *
 * @module
 */
import { AuthError } from "./errors.ts";
import {
  ALGORITHM,
  canonicalHeaderValue,
  canonicalQuery,
  canonicalRequest,
  canonicalUri,
  formatAmzDate,
  hmacHex,
  MAX_PRESIGNED_EXPIRES_SEC,
  MAX_SKEW_MS,
  parseAmzDate,
  parseHttpDate,
  parseQuery,
  type QueryParam,
  scopeOf,
  SERVICE,
  signaturesEqual,
  signingKey,
  STREAMING_ECDSA,
  STREAMING_ECDSA_TRAILER,
  STREAMING_SIGNED,
  STREAMING_SIGNED_TRAILER,
  STREAMING_UNSIGNED_TRAILER,
  stringToSign,
  TERMINATOR,
  UNSIGNED_PAYLOAD,
} from "./_sigv4.ts";
import type { AuthRequest, AuthResult, Payload, SecretLookup } from "./types.ts";
import { verifyQueryAuthV2 } from "./sigv2_query.ts";

export { MAX_PRESIGNED_EXPIRES_SEC };

const SIGV2_UNSUPPORTED =
  "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256";
const QUERY_PARAMS_REQUIRED =
  "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, " +
  "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters";
const CONTENT_SHA256_VALUES = "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, " +
  "STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, " +
  "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a valid sha256 value";
const HEX64 = /^[0-9a-fA-F]{64}$/;

/**
 * Verifies a request's AWS Signature Version 4, sent in the `Authorization` header or as
 * presigned query parameters (`X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
 * `X-Amz-Expires`, `X-Amz-SignedHeaders`, `X-Amz-Signature`).
 *
 * Checks, in order: exactly one mechanism; its syntax; the scope (`region` must be the
 * server's, service `s3`, `aws4_request`); the access key; `x-amz-content-sha256`; the
 * request time (within 15 minutes of `nowMs` for header auth; for presigned, not expired
 * and not more than 15 minutes ahead); the scope date equal to the request's day; `host`
 * and every `x-amz-*` header present (but `x-amz-content-sha256`) are signed; then the signature, compared in constant
 * time. The canonical URI is the path decoded once and encoded again; when that does not
 * match, the path exactly as sent is tried too.
 *
 * The body is not read: pass `result.payload` to `decodeBody()`.
 *
 * @param nowMs the current time, milliseconds since the Unix epoch
 * @param region the server's region, e.g. `us-east-1`
 * @throws {AuthError} `AccessDenied` (no signature at all; presigned URL expired or dated
 *   more than 15 minutes ahead; a header present but not signed; no request time), `InvalidArgument` (both header and
 *   query auth; an unknown `Authorization` scheme; a bad `x-amz-content-sha256`),
 *   `InvalidRequest` (SigV2; `x-amz-content-sha256` missing), `NotImplemented` (ECDSA
 *   streaming payloads, SigV4a), `AuthorizationHeaderMalformed` /
 *   `AuthorizationQueryParametersError` (syntax, wrong region, service or scope date),
 *   `InvalidAccessKeyId`, `RequestTimeTooSkewed`, `SignatureDoesNotMatch`
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html
 * @example
 * ```ts
 * const result = verifyRequest(
 *   { method: "GET", rawPath: "/b/k", rawQuery: "", headers: request.headers },
 *   (id) => id === "AK" ? "SECRET" : undefined,
 *   Date.now(),
 *   "us-east-1",
 * );
 * ```
 */
export function verifyRequest(
  req: AuthRequest,
  lookup: SecretLookup,
  nowMs: number,
  region: string,
): AuthResult {
  const authorization = req.headers.get("authorization");
  const query = parseQuery(req.rawQuery);
  const has = (name: string) => query.some((p) => p.name === name);
  const v4Query = has("X-Amz-Algorithm") || has("X-Amz-Credential") || has("X-Amz-Signature");
  const v2Query = has("AWSAccessKeyId") && has("Signature");
  if (authorization !== null && (v4Query || v2Query)) {
    throw new AuthError(
      "InvalidArgument",
      "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature " +
        "query string parameter or the Authorization header should be specified",
      { ArgumentName: "Authorization", ArgumentValue: authorization },
    );
  }
  if (authorization !== null) return verifyHeaderAuth(req, authorization, lookup, nowMs, region);
  if (v4Query) return verifyQueryAuth(req, query, lookup, nowMs, region);
  if (v2Query) return verifyQueryAuthV2(req, query, lookup, nowMs);
  throw new AuthError(
    "AccessDenied",
    "Anonymous requests are not supported; sign the request with AWS Signature Version 4",
  );
}

/** A parsed credential `AKID/YYYYMMDD/region/service/aws4_request`. */
interface Credential {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
}

/** What both mechanisms hand to the common checks. */
interface Signed {
  credential: Credential;
  signedHeaders: string;
  signature: string;
  amzDate: string;
}

/** The fields of a SigV4 Authorization header; any other is refused. */
const AUTH_FIELDS = ["Credential", "SignedHeaders", "Signature"];

function verifyHeaderAuth(
  req: AuthRequest,
  authorization: string,
  lookup: SecretLookup,
  nowMs: number,
  region: string,
): AuthResult {
  const malformed = (why: string, extra: Record<string, string> = {}) =>
    new AuthError(
      "AuthorizationHeaderMalformed",
      `The authorization header is malformed; ${why}`,
      extra,
    );
  const trimmed = authorization.trim();
  const space = trimmed.search(/\s/);
  const scheme = space < 0 ? trimmed : trimmed.slice(0, space);
  if (scheme === "AWS") throw new AuthError("InvalidRequest", SIGV2_UNSUPPORTED);
  if (scheme === "AWS4-ECDSA-P256-SHA256") {
    throw new AuthError(
      "NotImplemented",
      "Signature Version 4A (AWS4-ECDSA-P256-SHA256) is not supported",
    );
  }
  if (scheme !== ALGORITHM) {
    throw new AuthError("InvalidArgument", "Unsupported Authorization Type", {
      ArgumentName: "Authorization",
      ArgumentValue: authorization,
    });
  }
  const fields = new Map<string, string>();
  for (const part of (space < 0 ? "" : trimmed.slice(space + 1)).split(",")) {
    const item = part.trim();
    if (item === "") continue;
    const eq = item.indexOf("=");
    if (eq <= 0) throw malformed(`cannot parse '${item}'`);
    const key = item.slice(0, eq).trim();
    // Two Authorization headers reach here joined by ", " (RFC 9110 section 5.3): a second
    // scheme or a field SigV4 lacks means more than one header, or one forged to look valid.
    if (/^(AWS4-HMAC-SHA256|AWS4-ECDSA-P256-SHA256|AWS)\s/.test(key)) {
      throw new AuthError("InvalidArgument", "Only one Authorization header is allowed", {
        ArgumentName: "Authorization",
        ArgumentValue: authorization,
      });
    }
    if (!AUTH_FIELDS.includes(key)) throw malformed(`unexpected field '${key}'`);
    if (fields.has(key)) throw malformed(`'${key}' appears more than once`);
    fields.set(key, item.slice(eq + 1).trim());
  }
  for (const key of ["Credential", "SignedHeaders", "Signature"]) {
    if (!fields.get(key)) throw malformed(`missing '${key}'`);
  }
  const credential = parseCredential(fields.get("Credential")!);
  if (credential === null) {
    throw malformed(
      'the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request"',
    );
  }
  checkScope(credential, region, malformed);

  const secret = lookupSecret(lookup, credential.accessKeyId);

  const contentSha256 = req.headers.get("x-amz-content-sha256");
  if (contentSha256 === null) {
    throw new AuthError(
      "InvalidRequest",
      "Missing required header for this request: x-amz-content-sha256",
    );
  }
  const mode = classifyContentSha256(contentSha256);

  const xAmzDate = req.headers.get("x-amz-date");
  let timeMs: number;
  let amzDate: string;
  if (xAmzDate !== null) {
    timeMs = parseAmzDate(xAmzDate.trim());
    amzDate = xAmzDate.trim();
  } else {
    const date = req.headers.get("date");
    timeMs = date === null ? NaN : parseHttpDate(date);
    amzDate = Number.isFinite(timeMs) ? formatAmzDate(timeMs) : "";
  }
  if (!Number.isFinite(timeMs)) {
    throw new AuthError(
      "AccessDenied",
      "AWS authentication requires a valid Date or x-amz-date header",
    );
  }
  checkSkew(timeMs, nowMs);
  if (credential.date !== amzDate.slice(0, 8)) {
    throw malformed(
      `the credential date '${credential.date}' is not the day of the request date '${amzDate}'`,
    );
  }

  if (!validSignedHeaders(fields.get("SignedHeaders")!)) {
    throw malformed(`cannot parse SignedHeaders '${fields.get("SignedHeaders")}'`);
  }
  const signed: Signed = {
    credential,
    signedHeaders: fields.get("SignedHeaders")!,
    signature: fields.get("Signature")!,
    amzDate,
  };
  const key = checkSignature(req, signed, secret, null, [contentSha256]);
  return {
    accessKeyId: credential.accessKeyId,
    payload: payloadOf(mode, contentSha256, key, signed),
    presigned: false,
  };
}

function verifyQueryAuth(
  req: AuthRequest,
  query: QueryParam[],
  lookup: SecretLookup,
  nowMs: number,
  region: string,
): AuthResult {
  const param = (name: string) => query.find((p) => p.name === name)?.value;
  const queryError = (why: string, extra: Record<string, string> = {}) =>
    new AuthError("AuthorizationQueryParametersError", why, extra);
  const algorithm = param("X-Amz-Algorithm");
  const rawCredential = param("X-Amz-Credential");
  const amzDate = param("X-Amz-Date");
  const expires = param("X-Amz-Expires");
  const signedHeaders = param("X-Amz-SignedHeaders");
  const signature = param("X-Amz-Signature");
  if (
    algorithm === undefined || rawCredential === undefined || amzDate === undefined ||
    expires === undefined || signedHeaders === undefined || signature === undefined ||
    signedHeaders === "" || signature === ""
  ) {
    throw queryError(QUERY_PARAMS_REQUIRED);
  }
  if (algorithm !== ALGORITHM) throw queryError('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"');
  const credential = parseCredential(rawCredential);
  if (credential === null) {
    throw queryError(
      "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; " +
        'expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request"',
    );
  }
  checkScope(
    credential,
    region,
    (why, extra) => queryError(`Error parsing the X-Amz-Credential parameter; ${why}`, extra),
  );
  if (!/^\d{1,7}$/.test(expires) || Number(expires) < 1) {
    throw queryError(
      `X-Amz-Expires must be an integer number of seconds from 1 to 604800, not '${expires}'`,
    );
  }
  const expiresSec = Number(expires);
  if (expiresSec > MAX_PRESIGNED_EXPIRES_SEC) {
    throw queryError("X-Amz-Expires must be less than a week (in seconds) that is 604800");
  }
  const timeMs = parseAmzDate(amzDate);
  if (!Number.isFinite(timeMs)) {
    throw queryError(`X-Amz-Date must be in the ISO8601 Long Format "yyyyMMdd'T'HHmmss'Z'"`);
  }

  const secret = lookupSecret(lookup, credential.accessKeyId);

  if (timeMs - nowMs > MAX_SKEW_MS) {
    throw new AuthError("AccessDenied", "Request is not yet valid", {
      "X-Amz-Date": amzDate,
      Expires: new Date(timeMs + expiresSec * 1000).toISOString(),
      ServerTime: new Date(nowMs).toISOString(),
    });
  }
  if (nowMs > timeMs + expiresSec * 1000) {
    throw new AuthError("AccessDenied", "Request has expired", {
      "X-Amz-Expires": expires,
      Expires: new Date(timeMs + expiresSec * 1000).toISOString(),
      ServerTime: new Date(nowMs).toISOString(),
    });
  }
  if (credential.date !== amzDate.slice(0, 8)) {
    throw queryError(
      `Error parsing the X-Amz-Credential parameter; the credential date '${credential.date}' ` +
        `is not the day of X-Amz-Date '${amzDate}'`,
    );
  }

  const contentSha256 = param("X-Amz-Content-Sha256");
  const mode = contentSha256 === undefined ? "unsigned" : classifyContentSha256(contentSha256);
  const payloadHashes = contentSha256 === undefined
    ? [UNSIGNED_PAYLOAD]
    : contentSha256 === UNSIGNED_PAYLOAD
    ? [UNSIGNED_PAYLOAD]
    : [contentSha256, UNSIGNED_PAYLOAD];
  if (!validSignedHeaders(signedHeaders)) {
    throw queryError(`Cannot parse X-Amz-SignedHeaders '${signedHeaders}'`);
  }
  const signed: Signed = { credential, signedHeaders, signature, amzDate };
  const key = checkSignature(req, signed, secret, "X-Amz-Signature", payloadHashes);
  return {
    accessKeyId: credential.accessKeyId,
    payload: payloadOf(mode, contentSha256 ?? UNSIGNED_PAYLOAD, key, signed),
    presigned: true,
  };
}

/** A `;`-separated list of HTTP header names (RFC 9110 tokens). */
function validSignedHeaders(s: string): boolean {
  return /^[!#$%&'*+.^_`|~0-9A-Za-z-]+(;[!#$%&'*+.^_`|~0-9A-Za-z-]+)*$/.test(s);
}

function parseCredential(s: string): Credential | null {
  const parts = s.split("/");
  if (parts.length !== 5) return null;
  const [accessKeyId, date, region, service, terminator] = parts;
  if (accessKeyId === "" || !/^\d{8}$/.test(date) || region === "" || service === "") return null;
  if (terminator !== TERMINATOR) return null;
  return { accessKeyId, date, region, service };
}

function checkScope(
  credential: Credential,
  region: string,
  fail: (why: string, extra?: Record<string, string>) => AuthError,
): void {
  if (credential.region !== region) {
    throw fail(`the region '${credential.region}' is wrong; expecting '${region}'`, {
      Region: region,
    });
  }
  if (credential.service !== SERVICE) {
    throw fail(`incorrect service '${credential.service}'. This endpoint belongs to '${SERVICE}'`);
  }
}

function lookupSecret(lookup: SecretLookup, accessKeyId: string): string {
  const secret = lookup(accessKeyId);
  if (secret === undefined) {
    throw new AuthError(
      "InvalidAccessKeyId",
      `The AWS access key Id '${accessKeyId}' does not exist in our records`,
      { AWSAccessKeyId: accessKeyId },
    );
  }
  return secret;
}

function checkSkew(timeMs: number, nowMs: number): void {
  if (Math.abs(timeMs - nowMs) > MAX_SKEW_MS) {
    throw new AuthError(
      "RequestTimeTooSkewed",
      "The difference between the request time and the current time is too large",
      {
        RequestTime: new Date(timeMs).toISOString(),
        ServerTime: new Date(nowMs).toISOString(),
        MaxAllowedSkewMilliseconds: String(MAX_SKEW_MS),
      },
    );
  }
}

type Mode = Payload["kind"] | "streaming-signed-trailer";

function classifyContentSha256(value: string): Mode {
  if (HEX64.test(value)) return "signed";
  switch (value) {
    case UNSIGNED_PAYLOAD:
      return "unsigned";
    case STREAMING_SIGNED:
      return "streaming-signed";
    case STREAMING_SIGNED_TRAILER:
      return "streaming-signed-trailer";
    case STREAMING_UNSIGNED_TRAILER:
      return "streaming-unsigned-trailer";
    case STREAMING_ECDSA:
    case STREAMING_ECDSA_TRAILER:
      throw new AuthError("NotImplemented", `x-amz-content-sha256 '${value}' is not supported`);
  }
  throw new AuthError("InvalidArgument", CONTENT_SHA256_VALUES, {
    ArgumentName: "x-amz-content-sha256",
    ArgumentValue: value,
  });
}

function payloadOf(mode: Mode, contentSha256: string, key: Uint8Array, signed: Signed): Payload {
  switch (mode) {
    case "signed":
      return { kind: "signed", sha256Hex: contentSha256.toLowerCase() };
    case "unsigned":
      return { kind: "unsigned" };
    case "streaming-unsigned-trailer":
      return { kind: "streaming-unsigned-trailer" };
    case "streaming-signed":
    case "streaming-signed-trailer":
      return {
        kind: "streaming-signed",
        trailer: mode === "streaming-signed-trailer",
        signingKey: key,
        scope: scopeOf(signed.credential.date, signed.credential.region),
        amzDate: signed.amzDate,
        seedSignature: signed.signature,
      };
  }
}

/**
 * Checks the signed-header list against the request, then the signature over each
 * candidate canonical request (decoded-and-encoded path first, then the raw path; each
 * payload hash given). Returns the signing key.
 */
function checkSignature(
  req: AuthRequest,
  signed: Signed,
  secret: string,
  excludeParam: string | null,
  payloadHashes: string[],
): Uint8Array {
  const names = signed.signedHeaders.split(";").map((n) => n.toLowerCase());
  if (!names.includes("host")) {
    throw new AuthError(
      "AccessDenied",
      "There were headers present in the request which were not signed",
      { HeadersNotSigned: "host" },
    );
  }
  const signedSet = new Set(names);
  const notSigned: string[] = [];
  for (const [name] of req.headers) {
    // x-amz-content-sha256 may go unsigned, as on AWS: header auth binds its value as the
    // canonical request's last line anyway, and presigned requests ignore it.
    if (name.startsWith("x-amz-") && !signedSet.has(name) && name !== "x-amz-content-sha256") {
      notSigned.push(name);
    }
  }
  if (notSigned.length > 0) {
    throw new AuthError(
      "AccessDenied",
      "There were headers present in the request which were not signed",
      { HeadersNotSigned: notSigned.join(", ") },
    );
  }
  const headerLines: string[] = [];
  for (const name of names) {
    const value = req.headers.get(name);
    if (value === null) {
      throw new AuthError(
        "SignatureDoesNotMatch",
        `The request signature we calculated does not match the signature you provided: ` +
          `signed header '${name}' is not in the request`,
      );
    }
    headerLines.push(`${name}:${canonicalHeaderValue(value)}`);
  }
  const { credential } = signed;
  const scope = scopeOf(credential.date, credential.region);
  const key = signingKey(secret, credential.date, credential.region);

  const uris = [canonicalUri(req.rawPath)];
  if (req.rawPath !== uris[0] && req.rawPath !== "") uris.push(req.rawPath);
  const query = canonicalQuery(req.rawQuery, excludeParam);

  let first: { canonical: string; toSign: string } | null = null;
  for (const payloadHash of payloadHashes) {
    for (const uri of uris) {
      const canonical = canonicalRequest(
        req.method,
        uri,
        query,
        headerLines,
        signed.signedHeaders,
        payloadHash,
      );
      const toSign = stringToSign(signed.amzDate, scope, canonical);
      if (signaturesEqual(hmacHex(key, toSign), signed.signature)) return key;
      first ??= { canonical, toSign };
    }
  }
  throw new AuthError(
    "SignatureDoesNotMatch",
    "The request signature we calculated does not match the signature you provided. " +
      "Check your key and signing method",
    {
      AWSAccessKeyId: credential.accessKeyId,
      StringToSign: first!.toSign,
      SignatureProvided: signed.signature,
      CanonicalRequest: first!.canonical,
    },
  );
}

/**
 * The path and query of an absolute request URL exactly as written, for
 * {@link AuthRequest}. Unlike `new URL(url).pathname` it resolves no `.` / `..` segments
 * and changes no encoding (Deno's `Request.url` for served requests keeps the request
 * target as received).
 *
 * @example
 * ```ts
 * splitRequestUrl("http://h:9000/b/a/../k%2F?x=1");
 * // { rawPath: "/b/a/../k%2F", rawQuery: "x=1" }
 * ```
 */
export function splitRequestUrl(url: string): { rawPath: string; rawQuery: string } {
  const scheme = url.indexOf("://");
  let start = scheme < 0 ? 0 : scheme + 3;
  if (scheme >= 0) {
    const slash = url.indexOf("/", start);
    const question = url.indexOf("?", start);
    start = slash < 0
      ? (question < 0 ? url.length : question)
      : question >= 0 && question < slash
      ? question
      : slash;
  }
  const hash = url.indexOf("#", start);
  const end = hash < 0 ? url.length : hash;
  const question = url.indexOf("?", start);
  if (question < 0 || question >= end) {
    return { rawPath: url.slice(start, end) || "/", rawQuery: "" };
  }
  return { rawPath: url.slice(start, question) || "/", rawQuery: url.slice(question + 1, end) };
}
