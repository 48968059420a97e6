/**
 * CORS: PutBucketCors, GetBucketCors, DeleteBucketCors, preflight `OPTIONS`
 * answered from the bucket's rules, and CORS headers on actual requests.
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/userguide/cors.html
 * @module
 */
import type { CorsRule } from "../meta/mod.ts";
import { type S3Context, xmlResponse } from "./context.ts";
import { S3Error } from "./errors.ts";
import { readXmlBody } from "./ingest.ts";
import { type Reads, requireBucket } from "./lookup.ts";
import {
  childElements,
  childText,
  childTexts,
  hasNonXmlChar,
  renderXml,
  type XmlDoc,
} from "./xml.ts";

/** The most rules one CORS configuration may hold. */
export const MAX_CORS_RULES = 100;
const METHODS = new Set(["GET", "PUT", "POST", "DELETE", "HEAD"]);

/** The longest rule ID, in characters. */
export const MAX_CORS_ID_CHARS = 255;
/** The largest MaxAgeSeconds (an xs:int). */
const MAX_AGE_SECONDS = 2 ** 31 - 1;
/** An HTTP field name (RFC 9110 section 5.1: a token); `*` is one of its characters. */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** An origin pattern: visible ASCII, no spaces or controls. */
const ORIGIN = /^[\x21-\x7e]+$/;

function refuse(message: string): never {
  throw new S3Error("InvalidRequest", message);
}

function parseRule(r: XmlDoc): CorsRule {
  const rule: CorsRule = {
    allowedOrigins: childTexts(r, "AllowedOrigin"),
    allowedMethods: childTexts(r, "AllowedMethod"),
    allowedHeaders: childTexts(r, "AllowedHeader").map((h) => h.toLowerCase()),
    exposeHeaders: childTexts(r, "ExposeHeader"),
  };
  const id = childText(r, "ID");
  if (id !== undefined) {
    if ([...id].length > MAX_CORS_ID_CHARS || hasNonXmlChar(id)) {
      throw new S3Error(
        "InvalidArgument",
        `The CORS rule ID must be at most ${MAX_CORS_ID_CHARS} characters`,
        { extra: { ArgumentName: "ID" } },
      );
    }
    rule.id = id;
  }
  const maxAge = childText(r, "MaxAgeSeconds");
  if (maxAge !== undefined) {
    if (!/^\d{1,10}$/.test(maxAge) || Number(maxAge) > MAX_AGE_SECONDS) {
      throw new S3Error("MalformedXML", "MaxAgeSeconds must be a non-negative integer");
    }
    rule.maxAgeSeconds = Number(maxAge);
  }
  if (rule.allowedOrigins.length === 0 || rule.allowedMethods.length === 0) {
    throw new S3Error("MalformedXML", "Every CORSRule needs an AllowedOrigin and an AllowedMethod");
  }
  for (const m of rule.allowedMethods) {
    if (!METHODS.has(m)) {
      refuse(`Found unsupported HTTP method in CORS config. Unsupported method is ${m}`);
    }
  }
  for (const o of rule.allowedOrigins) {
    if (!ORIGIN.test(o)) refuse(`AllowedOrigin "${o}" is not a valid origin`);
    if (o.split("*").length > 2) {
      refuse(`AllowedOrigin "${o}" can not have more than one wildcard.`);
    }
  }
  for (const h of rule.allowedHeaders) {
    if (!HEADER_NAME.test(h)) refuse(`AllowedHeader "${h}" is not a valid header name`);
    if (h.split("*").length > 2) {
      refuse(`AllowedHeader "${h}" can not have more than one wildcard.`);
    }
  }
  for (const h of rule.exposeHeaders) {
    if (!HEADER_NAME.test(h) || h.includes("*")) {
      refuse(`ExposeHeader "${h}" contains wildcard or is not a valid header name`);
    }
  }
  return rule;
}

/**
 * Parses and checks a CORSConfiguration document as AWS does: 1 to 100 rules,
 * each with at least one AllowedOrigin and AllowedMethod; methods GET, PUT,
 * POST, DELETE and HEAD only; origins and AllowedHeaders with at most one `*`;
 * header names HTTP tokens (ExposeHeader without `*`); MaxAgeSeconds a
 * non-negative integer; ID at most 255 characters. Values are taken byte for
 * byte, so a header name with a space, CR or LF is refused, never stored.
 *
 * @throws {S3Error} `MalformedXML` for the structure, `InvalidRequest` for a bad method, origin or header, `InvalidArgument` for a long ID
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutBucketCors.html
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_CORSRule.html
 */
export function parseCorsConfiguration(doc: XmlDoc): CorsRule[] {
  const raw = childElements(doc, "CORSRule");
  if (raw.length === 0 || raw.length > MAX_CORS_RULES) {
    throw new S3Error(
      "MalformedXML",
      `A CORS configuration holds 1 to ${MAX_CORS_RULES} rules; it held ${raw.length}`,
    );
  }
  return raw.map(parseRule);
}

/** Whether `value` matches `pattern`, which may hold one `*` standing for any run of characters. */
export function wildcardMatch(pattern: string, value: string): boolean {
  const star = pattern.indexOf("*");
  if (star === -1) return pattern === value;
  const head = pattern.slice(0, star);
  const tail = pattern.slice(star + 1);
  return value.length >= head.length + tail.length && value.startsWith(head) &&
    value.endsWith(tail);
}

/** The first rule allowing `origin`, `method` and every header in `requestHeaders`. */
export function matchCorsRule(
  rules: CorsRule[],
  origin: string,
  method: string,
  requestHeaders: string[] = [],
): CorsRule | undefined {
  return rules.find((r) =>
    r.allowedOrigins.some((o) => wildcardMatch(o, origin)) &&
    r.allowedMethods.includes(method) &&
    requestHeaders.every((h) => r.allowedHeaders.some((a) => wildcardMatch(a, h.toLowerCase())))
  );
}

/** The largest CORS configuration document, in bytes ("limited to 64 KB in size"). */
export const MAX_CORS_CONFIGURATION_BYTES = 64 * 1024;

/**
 * @throws {S3Error} `MaxMessageLengthExceeded` over {@link MAX_CORS_CONFIGURATION_BYTES}
 * (or when the stored record would exceed Deno KV's value limit)
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutBucketCors.html
 */
export async function PutBucketCors(ctx: S3Context): Promise<Response> {
  const rules = parseCorsConfiguration(
    await readXmlBody(ctx, "CORSConfiguration", { maxBytes: MAX_CORS_CONFIGURATION_BYTES }),
  );
  await ctx.deps.log.propose({ type: "PutBucketCors", bucket: ctx.bucket, rules });
  return new Response(null, { status: 200 });
}

/** @throws {S3Error} `NoSuchCORSConfiguration` @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketCors.html */
export async function GetBucketCors(ctx: S3Context): Promise<Response> {
  const bucket = await requireBucket(ctx);
  if (!bucket.cors) throw new S3Error("NoSuchCORSConfiguration");
  return xmlResponse(renderXml("CORSConfiguration", {
    CORSRule: bucket.cors.map((r) => ({
      ID: r.id,
      AllowedHeader: r.allowedHeaders,
      AllowedMethod: r.allowedMethods,
      AllowedOrigin: r.allowedOrigins,
      ExposeHeader: r.exposeHeaders,
      MaxAgeSeconds: r.maxAgeSeconds,
    })),
  }));
}

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteBucketCors.html */
export async function DeleteBucketCors(ctx: S3Context): Promise<Response> {
  await ctx.deps.log.propose({ type: "PutBucketCors", bucket: ctx.bucket, rules: null });
  return new Response(null, { status: 204 });
}

/** ExposeHeaders fit for a header value (a rule stored before they were checked may hold others). */
function exposeHeaders(rule: CorsRule): string[] {
  return rule.exposeHeaders.filter((h) => HEADER_NAME.test(h));
}

function allowOrigin(rule: CorsRule, origin: string): string {
  return rule.allowedOrigins.includes("*") ? "*" : origin;
}

/**
 * Answers a preflight `OPTIONS` request from the bucket's rules. Preflights
 * carry no credentials, so this runs before authentication.
 *
 * @throws {S3Error} `BadRequest` without Origin or Access-Control-Request-Method; `AccessForbidden` when no rule allows it
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/RESTOPTIONSobject.html
 */
export async function preflight(req: Request, reads: Reads, bucket: string): Promise<Response> {
  const origin = req.headers.get("origin");
  const method = req.headers.get("access-control-request-method");
  if (origin === null || method === null) {
    throw new S3Error("BadRequest", "Insufficient information. Origin request header needed.");
  }
  const record = bucket === "" ? null : await reads.bucket(bucket);
  if (!record?.cors) {
    throw new S3Error("AccessForbidden", "CORSResponse: CORS is not enabled for this bucket.");
  }
  const requested = (req.headers.get("access-control-request-headers") ?? "")
    .split(",").map((h) => h.trim()).filter((h) => h !== "");
  const rule = matchCorsRule(record.cors, origin, method, requested);
  if (!rule) {
    throw new S3Error("AccessForbidden", "CORSResponse: This CORS request is not allowed.");
  }
  const headers = new Headers({
    "access-control-allow-origin": allowOrigin(rule, origin),
    "access-control-allow-methods": rule.allowedMethods.join(", "),
    "vary": "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
  });
  if (requested.length > 0) headers.set("access-control-allow-headers", requested.join(", "));
  if (exposeHeaders(rule).length > 0) {
    headers.set("access-control-expose-headers", exposeHeaders(rule).join(", "));
  }
  if (rule.maxAgeSeconds !== undefined) {
    headers.set("access-control-max-age", String(rule.maxAgeSeconds));
  }
  if (!rule.allowedOrigins.includes("*")) headers.set("access-control-allow-credentials", "true");
  return new Response(null, { status: 200, headers });
}

/** Adds CORS headers to the response of an actual (non-preflight) request that sent an Origin. */
export async function addCorsHeaders(
  req: Request,
  reads: Reads,
  bucket: string,
  res: Response,
): Promise<void> {
  const origin = req.headers.get("origin");
  if (origin === null || bucket === "") return;
  const record = await reads.bucket(bucket);
  if (!record?.cors) return;
  const rule = matchCorsRule(record.cors, origin, req.method);
  if (!rule) return;
  res.headers.set("access-control-allow-origin", allowOrigin(rule, origin));
  res.headers.set("access-control-allow-methods", rule.allowedMethods.join(", "));
  res.headers.append("vary", "Origin");
  if (exposeHeaders(rule).length > 0) {
    res.headers.set("access-control-expose-headers", exposeHeaders(rule).join(", "));
  }
  if (rule.maxAgeSeconds !== undefined) {
    res.headers.set("access-control-max-age", String(rule.maxAgeSeconds));
  }
  if (!rule.allowedOrigins.includes("*")) {
    res.headers.set("access-control-allow-credentials", "true");
  }
}
