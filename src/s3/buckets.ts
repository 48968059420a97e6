/**
 * Bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket,
 * GetBucketLocation, GetBucketVersioning.
 *
 * @module
 */
import { OWNER, type S3Context, xmlResponse } from "./context.ts";
import { S3Error } from "./errors.ts";
import { readXmlBody } from "./ingest.ts";
import { isoDate, validateBucketName } from "./http.ts";
import { childText, hasChild, renderXml } from "./xml.ts";
import { refuseNonPrivateAcl } from "./acl.ts";
import { requireBucket } from "./lookup.ts";

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListBuckets.html */
export async function ListBuckets(ctx: S3Context): Promise<Response> {
  const buckets: { Name: string; CreationDate: string; BucketRegion: string }[] = [];
  for await (const b of ctx.reads.buckets()) {
    buckets.push({
      Name: b.name,
      CreationDate: isoDate(b.createdMs),
      BucketRegion: b.region,
    });
  }
  return xmlResponse(renderXml("ListAllMyBucketsResult", {
    Owner: { ...OWNER },
    Buckets: { Bucket: buckets },
  }));
}

/**
 * Creates a bucket. A `CreateBucketConfiguration` body may name this
 * endpoint's region only.
 *
 * @throws {S3Error} `InvalidBucketName`, `BucketAlreadyOwnedByYou`, `InvalidLocationConstraint` (as `InvalidArgument`)
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateBucket.html
 */
export async function CreateBucket(ctx: S3Context): Promise<Response> {
  validateBucketName(ctx.bucket);
  refuseNonPrivateAcl(ctx.req.headers);
  if (ctx.req.headers.get("x-amz-bucket-object-lock-enabled")?.toLowerCase() === "true") {
    throw new S3Error("NotImplemented", "Object lock is not implemented");
  }
  const doc = await readXmlBody(ctx, "CreateBucketConfiguration", {
    maxBytes: 64 * 1024,
    optional: true,
  });
  if (doc !== undefined) {
    const constraint = childText(doc, "LocationConstraint");
    if (constraint !== undefined && constraint !== "" && constraint !== ctx.deps.region) {
      throw new S3Error(
        "InvalidArgument",
        `The location constraint "${constraint}" does not match this endpoint's region "${ctx.deps.region}"`,
        { extra: { ArgumentName: "LocationConstraint" } },
      );
    }
    for (const name of ["Location", "Bucket", "Tags"]) {
      if (hasChild(doc, name)) {
        throw new S3Error(
          "NotImplemented",
          `CreateBucketConfiguration "${name}" is not implemented`,
        );
      }
    }
  }
  await ctx.deps.log.propose({
    type: "CreateBucket",
    bucket: { name: ctx.bucket, createdMs: ctx.deps.clock.nowMs(), region: ctx.deps.region },
  });
  return new Response(null, { status: 200, headers: { location: `/${ctx.bucket}` } });
}

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadBucket.html */
export async function HeadBucket(ctx: S3Context): Promise<Response> {
  const b = await requireBucket(ctx);
  return new Response(null, { status: 200, headers: { "x-amz-bucket-region": b.region } });
}

/** @throws {S3Error} `NoSuchBucket`, `BucketNotEmpty` @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteBucket.html */
export async function DeleteBucket(ctx: S3Context): Promise<Response> {
  await ctx.deps.log.propose({ type: "DeleteBucket", bucket: ctx.bucket });
  return new Response(null, { status: 204 });
}

/** An empty LocationConstraint means us-east-1, as in AWS. @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketLocation.html */
export async function GetBucketLocation(ctx: S3Context): Promise<Response> {
  const b = await requireBucket(ctx);
  return xmlResponse(renderXml("LocationConstraint", {}, b.region === "us-east-1" ? "" : b.region));
}

/** Buckets are unversioned: an empty configuration. @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketVersioning.html */
export async function GetBucketVersioning(ctx: S3Context): Promise<Response> {
  await requireBucket(ctx);
  return xmlResponse(renderXml("VersioningConfiguration", {}));
}
