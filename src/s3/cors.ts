/**
 * CORS: PutBucketCors, GetBucketCors, DeleteBucketCors, preflight `OPTIONS`
 * answered from the bucket's rules, and CORS headers on actual requests.
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/userguide/cors.html
 * @module
 */
import { type BucketRecord, type CorsRule, keys } from "../meta/mod.ts";
import { type S3Context, type S3Deps, xmlResponse } from "./context.ts";
import { S3Error } from "./errors.ts";
import { readVerifiedText } from "./ingest.ts";
import { requireBucket } from "./buckets.ts";
import { asArray, parseXmlBody, renderXml } from "./xml.ts";

/** The most rules one CORS configuration may hold. */
export const MAX_CORS_RULES = 100;
const METHODS = new Set(["GET", "PUT", "POST", "DELETE", "HEAD"]);

function strings(v: unknown): string[] {
  return asArray(v as string | string[] | undefined).map((s) => String(s).trim());
}

/**
 * Parses and checks a CORSConfiguration document.
 *
 * @throws {S3Error} `MalformedXML`, `InvalidRequest` for an unknown method or a second wildcard
 */
export function parseCorsConfiguration(text: string): CorsRule[] {
  const doc = parseXmlBody(text, "CORSConfiguration");
  const raw = asArray(
    doc.CORSRule as Record<string, unknown> | Record<string, unknown>[] | undefined,
  );
  if (raw.length === 0 || raw.length > MAX_CORS_RULES) {
    throw new S3Error(
      "MalformedXML",
      `A CORS configuration holds 1 to ${MAX_CORS_RULES} rules; it held ${raw.length}`,
    );
  }
  return raw.map((r) => {
    const rule: CorsRule = {
      allowedOrigins: strings(r.AllowedOrigin),
      allowedMethods: strings(r.AllowedMethod),
      allowedHeaders: strings(r.AllowedHeader).map((h) => h.toLowerCase()),
      exposeHeaders: strings(r.ExposeHeader),
    };
    if (typeof r.ID === "string") rule.id = r.ID;
    if (r.MaxAgeSeconds !== undefined) {
      const n = Number(r.MaxAgeSeconds);
      if (!Number.isInteger(n) || n < 0) {
        throw new S3Error("MalformedXML", "MaxAgeSeconds must be a non-negative integer");
      }
      rule.maxAgeSeconds = n;
    }
    if (rule.allowedOrigins.length === 0 || rule.allowedMethods.length === 0) {
      throw new S3Error(
        "MalformedXML",
        "Every CORSRule needs an AllowedOrigin and an AllowedMethod",
      );
    }
    for (const m of rule.allowedMethods) {
      if (!METHODS.has(m)) {
        throw new S3Error(
          "InvalidRequest",
          `Found unsupported HTTP method in CORS config. Unsupported method is ${m}`,
        );
      }
    }
    for (const v of [...rule.allowedOrigins, ...rule.allowedHeaders]) {
      if (v.split("*").length > 2) {
        throw new S3Error("InvalidRequest", `"${v}" can not have more than one wildcard`);
      }
    }
    return rule;
  });
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
  const rules = parseCorsConfiguration(await readVerifiedText(ctx, MAX_CORS_CONFIGURATION_BYTES));
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
export async function preflight(req: Request, deps: S3Deps, bucket: string): Promise<Response> {
  const origin = req.headers.get("origin");
  const method = req.headers.get("access-control-request-method");
  if (origin === null || method === null) {
    throw new S3Error("BadRequest", "Insufficient information. Origin request header needed.");
  }
  const record = bucket === ""
    ? null
    : (await deps.kv.get<BucketRecord>(keys.bucket(bucket)))?.value;
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
  if (rule.exposeHeaders.length > 0) {
    headers.set("access-control-expose-headers", rule.exposeHeaders.join(", "));
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
  deps: S3Deps,
  bucket: string,
  res: Response,
): Promise<void> {
  const origin = req.headers.get("origin");
  if (origin === null || bucket === "") return;
  const record = (await deps.kv.get<BucketRecord>(keys.bucket(bucket)))?.value;
  if (!record?.cors) return;
  const rule = matchCorsRule(record.cors, origin, req.method);
  if (!rule) return;
  res.headers.set("access-control-allow-origin", allowOrigin(rule, origin));
  res.headers.set("access-control-allow-methods", rule.allowedMethods.join(", "));
  res.headers.append("vary", "Origin");
  if (rule.exposeHeaders.length > 0) {
    res.headers.set("access-control-expose-headers", rule.exposeHeaders.join(", "));
  }
  if (rule.maxAgeSeconds !== undefined) {
    res.headers.set("access-control-max-age", String(rule.maxAgeSeconds));
  }
  if (!rule.allowedOrigins.includes("*")) {
    res.headers.set("access-control-allow-credentials", "true");
  }
}
