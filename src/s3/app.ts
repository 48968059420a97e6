/**
 * The S3 endpoint: a Hono app on Web-standard Request/Response. Every request
 * is authenticated (SigV4), resolved to an AWS operation name, and dispatched
 * through one table of handlers; every failure renders as S3 error XML.
 *
 * @module
 */
import { Hono } from "hono";
import { decodeBody, splitRequestUrl, verifyRequest } from "../auth/mod.ts";
import type { Handler, ResolvedDeps, S3Context, S3Deps } from "./context.ts";
import { Reclaimer } from "../data/reclaim.ts";
import { newId } from "./context.ts";
import { S3Error, toS3Error } from "./errors.ts";
import { type Operation, resolveOperation, resolveTarget } from "./router.ts";
import * as buckets from "./buckets.ts";
import * as list from "./list.ts";
import * as objects from "./objects.ts";
import * as multipart from "./multipart.ts";
import * as tagging from "./tagging.ts";
import * as cors from "./cors.ts";
import * as acl from "./acl.ts";
import { Reads } from "./lookup.ts";
import { renderError } from "./xml.ts";

/** The operation table: every AWS operation Hamster answers, by name. */
export const OPERATIONS: Record<Operation, Handler> = {
  ListBuckets: buckets.ListBuckets,
  CreateBucket: buckets.CreateBucket,
  HeadBucket: buckets.HeadBucket,
  DeleteBucket: buckets.DeleteBucket,
  GetBucketLocation: buckets.GetBucketLocation,
  GetBucketVersioning: buckets.GetBucketVersioning,
  ListObjects: list.ListObjects,
  ListObjectsV2: list.ListObjectsV2,
  ListMultipartUploads: multipart.ListMultipartUploads,
  DeleteObjects: objects.DeleteObjects,
  PutObject: objects.PutObject,
  CopyObject: objects.CopyObject,
  GetObject: objects.GetObject,
  HeadObject: objects.HeadObject,
  DeleteObject: objects.DeleteObject,
  CreateMultipartUpload: multipart.CreateMultipartUpload,
  UploadPart: multipart.UploadPart,
  UploadPartCopy: multipart.UploadPartCopy,
  CompleteMultipartUpload: multipart.CompleteMultipartUpload,
  AbortMultipartUpload: multipart.AbortMultipartUpload,
  ListParts: multipart.ListParts,
  PutObjectTagging: tagging.PutObjectTagging,
  GetObjectTagging: tagging.GetObjectTagging,
  DeleteObjectTagging: tagging.DeleteObjectTagging,
  PutBucketCors: cors.PutBucketCors,
  GetBucketCors: cors.GetBucketCors,
  DeleteBucketCors: cors.DeleteBucketCors,
  GetBucketAcl: acl.GetBucketAcl,
  PutBucketAcl: acl.PutBucketAcl,
  GetObjectAcl: acl.GetObjectAcl,
  PutObjectAcl: acl.PutObjectAcl,
};

/** Handles one S3 request end to end; never throws. */
export async function handleS3(req: Request, deps: ResolvedDeps): Promise<Response> {
  const requestId = newId(deps.rng, 8).toUpperCase();
  const { rawPath, rawQuery } = splitRequestUrl(req.url);
  let res: Response;
  let bucket = "";
  const reads = new Reads(deps);
  try {
    const url = parseUrl(req.url, rawPath, rawQuery);
    // HTTP/2 carries the host as :authority, which Deno puts in the URL only.
    const headers = req.headers.has("host") ? req.headers : withHost(req.headers, url.host);
    const target = resolveTarget(rawPath, headers.get("host"), deps.domain);
    bucket = target.bucket;
    // No bucket name over 63 characters can exist; refuse it before it reaches a key limit.
    if (target.bucket.length > 63) {
      throw new S3Error("InvalidBucketName", "Bucket names are at most 63 characters long", {
        extra: { BucketName: target.bucket.slice(0, 100) },
      });
    }
    // Only the chunked transfer coding is implemented; a body under any other would be stored as sent.
    const te = req.headers.get("transfer-encoding");
    if (te !== null && te.trim().toLowerCase() !== "chunked") {
      throw new S3Error(
        "NotImplemented",
        `Transfer-Encoding "${te}" is not implemented; only chunked is`,
        {
          extra: { Header: "Transfer-Encoding" },
        },
      );
    }
    if (req.method === "OPTIONS") {
      res = await cors.preflight(req, reads, target.bucket);
      res.headers.set("x-amz-request-id", requestId);
      return res;
    }
    const auth = verifyRequest(
      {
        method: req.method,
        rawPath,
        rawQuery,
        headers,
        hostBucket: target.virtualHosted ? target.bucket : undefined,
      },
      deps.secretFor,
      deps.clock.nowMs(),
      deps.region,
    );
    const operation = resolveOperation(req.method, target, url.searchParams, req.headers);
    let decoded: ReturnType<S3Context["body"]> | undefined;
    const ctx: S3Context = {
      deps,
      req,
      url,
      query: url.searchParams,
      bucket: target.bucket,
      key: target.key,
      requestId,
      auth,
      reads,
      body: () => {
        decoded ??= decodeBody(
          req.body ?? new ReadableStream({ start: (c) => c.close() }),
          auth.payload,
          req.headers,
        );
        return decoded;
      },
    };
    res = await OPERATIONS[operation](ctx);
  } catch (err) {
    const s3err = toS3Error(err);
    // Server faults are logged: InternalError, and ServiceUnavailable (a failed metadata commit).
    if (s3err.code === "InternalError" || s3err.code === "ServiceUnavailable") {
      deps.logError(requestId, err);
    }
    const headers = new Headers(s3err.headers);
    headers.set("x-amz-request-id", requestId);
    if (req.method === "HEAD" || s3err.status === 304) {
      res = new Response(null, { status: s3err.status, headers });
    } else {
      headers.set("content-type", "application/xml");
      res = new Response(renderError(s3err, decodeURIComponentSafe(rawPath), requestId), {
        status: s3err.status,
        headers,
      });
    }
    // The rest of a refused request's body is not read: draining it would let anyone make the
    // server take unbounded bytes. `connection: close` makes the listener close the connection
    // as soon as the answer is sent (src/io/deno/listener.ts).
    if (req.body !== null) res.headers.set("connection", "close");
  }
  if (req.method !== "OPTIONS" && req.headers.has("origin")) {
    await cors.addCorsHeaders(req, reads, bucket, res).catch((err) =>
      deps.logError(requestId, err)
    );
  }
  res.headers.set("x-amz-request-id", requestId);
  res.headers.set("server", "Hamster");
  // An empty body sent with Expect: 100-continue leaves Deno's HTTP/1.1 connection unable to take
  // the next request (botocore waits for its read timeout); closing it makes the client reconnect.
  if (req.headers.has("expect") && req.headers.get("content-length") === "0") {
    res.headers.set("connection", "close");
  }
  return res;
}

/**
 * The request URL. A Host that is no valid URL authority (`bucket.127.0.0.1`,
 * a port over 65535) makes `new URL` throw; path-style requests must still
 * work then, so the path and query are kept under a placeholder authority.
 */
function parseUrl(url: string, rawPath: string, rawQuery: string): URL {
  try {
    return new URL(url);
  } catch {
    return new URL(`http://invalid-host${rawPath}${rawQuery ? `?${rawQuery}` : ""}`);
  }
}

function withHost(headers: Headers, host: string): Headers {
  const h = new Headers(headers);
  h.set("host", host);
  return h;
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Builds the Hono app serving the S3 API over `deps`. */
export function createS3App(given: S3Deps): Hono {
  const deps: ResolvedDeps = {
    ...given,
    reclaimer: given.reclaimer ??
      new Reclaimer((ref) => {
        given.data.remove(ref).catch((err) => given.logError("reclaim", err));
      }),
  };
  const app = new Hono();
  app.all("*", (c) => handleS3(c.req.raw, deps));
  app.onError((err) => {
    const s3err = err instanceof S3Error ? err : toS3Error(err);
    deps.logError("-", err);
    return new Response(renderError(s3err, "/", "-"), { status: s3err.status });
  });
  return app;
}
