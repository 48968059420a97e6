/**
 * Routing: from a request to its bucket, key and AWS operation name.
 *
 * Pure: no clock, no I/O.
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/userguide/VirtualHosting.html
 * @module
 */
import { S3Error } from "./errors.ts";

/** The operations Hamster implements, by their AWS names. */
export type Operation =
  | "ListBuckets"
  | "CreateBucket"
  | "HeadBucket"
  | "DeleteBucket"
  | "GetBucketLocation"
  | "GetBucketVersioning"
  | "ListObjects"
  | "ListObjectsV2"
  | "ListMultipartUploads"
  | "DeleteObjects"
  | "PutObject"
  | "CopyObject"
  | "GetObject"
  | "HeadObject"
  | "DeleteObject"
  | "CreateMultipartUpload"
  | "UploadPart"
  | "UploadPartCopy"
  | "CompleteMultipartUpload"
  | "AbortMultipartUpload"
  | "ListParts"
  | "PutObjectTagging"
  | "GetObjectTagging"
  | "DeleteObjectTagging"
  | "PutBucketCors"
  | "GetBucketCors"
  | "DeleteBucketCors"
  | "GetBucketAcl"
  | "PutBucketAcl"
  | "GetObjectAcl"
  | "PutObjectAcl";

/**
 * Sub-resources S3 defines that Hamster does not implement yet: a request
 * naming one answers `NotImplemented` rather than being mistaken for a plain
 * object or bucket request.
 */
const UNSUPPORTED_SUBRESOURCES = new Set([
  "accelerate",
  "analytics",
  "attributes",
  "encryption",
  "intelligent-tiering",
  "inventory",
  "legal-hold",
  "lifecycle",
  "logging",
  "metadataConfiguration",
  "metrics",
  "notification",
  "object-lock",
  "ownershipControls",
  "policy",
  "policyStatus",
  "publicAccessBlock",
  "renameObject",
  "replication",
  "requestPayment",
  "restore",
  "retention",
  "select",
  "session",
  "torrent",
  "versions",
  "website",
]);

/** Where a request points: bucket and key, both decoded. */
export interface Target {
  bucket: string;
  key: string;
  /** true when the bucket came from the Host header (virtual-hosted style), not the path. */
  virtualHosted: boolean;
}

/**
 * Resolves the bucket and key from the path, or from the Host header under
 * `domain` (virtual-hosted style). A Host outside `domain` falls back to path style.
 *
 * @throws {S3Error} `InvalidURI` when the path is not valid percent-encoded UTF-8
 */
export function resolveTarget(pathname: string, host: string | null, domain?: string): Target {
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathname);
  } catch {
    throw new S3Error("InvalidURI", "Could not parse the request path as UTF-8");
  }
  if (domain && host) {
    const hostname = host.replace(/:\d+$/, "").toLowerCase();
    if (hostname.endsWith(`.${domain}`)) {
      return {
        bucket: hostname.slice(0, -domain.length - 1),
        key: decoded.slice(1),
        virtualHosted: true,
      };
    }
  }
  const rest = decoded.slice(1);
  const slash = rest.indexOf("/");
  if (slash === -1) return { bucket: rest, key: "", virtualHosted: false };
  return { bucket: rest.slice(0, slash), key: rest.slice(slash + 1), virtualHosted: false };
}

/**
 * Resolves the AWS operation from method, target, query and headers.
 *
 * @throws {S3Error} `NotImplemented` for sub-resources Hamster lacks, `MethodNotAllowed` otherwise
 */
export function resolveOperation(
  method: string,
  target: Target,
  query: URLSearchParams,
  headers: Headers,
): Operation {
  for (const name of query.keys()) {
    if (UNSUPPORTED_SUBRESOURCES.has(name)) {
      throw new S3Error("NotImplemented", `The "${name}" sub-resource is not implemented`);
    }
  }
  const has = (name: string) => query.has(name);
  if (target.bucket === "") {
    if (method === "GET" || method === "HEAD") return "ListBuckets";
    throw new S3Error("MethodNotAllowed");
  }
  if (target.key === "") {
    switch (method) {
      case "PUT":
        if (has("versioning")) {
          throw new S3Error("NotImplemented", "Bucket versioning is not implemented");
        }
        if (has("cors")) return "PutBucketCors";
        if (has("acl")) return "PutBucketAcl";
        if (has("tagging")) {
          throw new S3Error("NotImplemented", "Bucket tagging is not implemented");
        }
        return "CreateBucket";
      case "HEAD":
        return "HeadBucket";
      case "DELETE":
        if (has("cors")) return "DeleteBucketCors";
        if (has("tagging")) {
          throw new S3Error("NotImplemented", "Bucket tagging is not implemented");
        }
        return "DeleteBucket";
      case "GET":
        if (has("location")) return "GetBucketLocation";
        if (has("versioning")) return "GetBucketVersioning";
        if (has("uploads")) return "ListMultipartUploads";
        if (has("cors")) return "GetBucketCors";
        if (has("acl")) return "GetBucketAcl";
        if (has("tagging")) {
          throw new S3Error("NotImplemented", "Bucket tagging is not implemented");
        }
        if (query.get("list-type") === "2") return "ListObjectsV2";
        return "ListObjects";
      case "POST":
        if (has("delete")) return "DeleteObjects";
        throw new S3Error("NotImplemented", "This POST on a bucket is not implemented");
      default:
        throw new S3Error("MethodNotAllowed");
    }
  }
  const copy = headers.has("x-amz-copy-source");
  switch (method) {
    case "PUT":
      if (has("tagging")) return "PutObjectTagging";
      if (has("acl")) return "PutObjectAcl";
      if (has("partNumber") || has("uploadId")) return copy ? "UploadPartCopy" : "UploadPart";
      return copy ? "CopyObject" : "PutObject";
    case "GET":
      if (has("tagging")) return "GetObjectTagging";
      if (has("acl")) return "GetObjectAcl";
      return has("uploadId") ? "ListParts" : "GetObject";
    case "HEAD":
      return "HeadObject";
    case "DELETE":
      if (has("tagging")) return "DeleteObjectTagging";
      return has("uploadId") ? "AbortMultipartUpload" : "DeleteObject";
    case "POST":
      if (has("uploads")) return "CreateMultipartUpload";
      if (has("uploadId")) return "CompleteMultipartUpload";
      throw new S3Error("NotImplemented", "This POST on an object is not implemented");
    default:
      throw new S3Error("MethodNotAllowed");
  }
}
