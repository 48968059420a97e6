/**
 * ACLs, as far as Hamster has them: every bucket and object is private to its
 * owner. GetBucketAcl and GetObjectAcl answer that; PutBucketAcl and
 * PutObjectAcl accept the canned `private` ACL (what exists already) and
 * answer `NotImplemented` to anything else, never a silent success.
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/userguide/acl-overview.html
 * @module
 */
import { OWNER, type S3Context, xmlResponse } from "./context.ts";
import { S3Error } from "./errors.ts";
import { readVerifiedText } from "./ingest.ts";
import { requireBucket, requireObject } from "./lookup.ts";
import { escapeXml, S3_XMLNS } from "./xml.ts";

/** The one ACL every resource has: FULL_CONTROL for its owner. */
function privateAcl(): string {
  const id = escapeXml(OWNER.ID);
  const name = escapeXml(OWNER.DisplayName);
  return `<?xml version="1.0" encoding="UTF-8"?>\n<AccessControlPolicy xmlns="${S3_XMLNS}">` +
    `<Owner><ID>${id}</ID><DisplayName>${name}</DisplayName></Owner><AccessControlList><Grant>` +
    `<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser">` +
    `<ID>${id}</ID><DisplayName>${name}</DisplayName></Grantee><Permission>FULL_CONTROL</Permission>` +
    `</Grant></AccessControlList></AccessControlPolicy>`;
}

/**
 * Refuses ACLs other than canned `private`: an `x-amz-acl` header naming
 * another, any `x-amz-grant-*` header.
 *
 * @throws {S3Error} `NotImplemented`
 */
export function refuseNonPrivateAcl(headers: Headers): void {
  const acl = headers.get("x-amz-acl");
  if (acl !== null && acl !== "private") {
    throw new S3Error(
      "NotImplemented",
      `Canned ACL "${acl}" is not implemented; only "private" is`,
    );
  }
  for (const name of headers.keys()) {
    if (name.startsWith("x-amz-grant-")) {
      throw new S3Error(
        "NotImplemented",
        `The "${name}" header is not implemented; every resource is private`,
      );
    }
  }
}

/** A PUT ?acl body must be absent (canned header) or grant only the owner FULL_CONTROL. */
async function checkAclBody(ctx: S3Context): Promise<void> {
  const text = (await readVerifiedText(ctx, 64 * 1024)).trim();
  if (text === "") return;
  const grants = [...text.matchAll(/<Permission>\s*([A-Z_]+)\s*<\/Permission>/g)].map((m) => m[1]);
  const grantees = [...text.matchAll(/<Grantee[\s\S]*?<\/Grantee>/g)].map((m) => m[0]);
  const onlyOwner = grantees.every((g) => g.includes(`<ID>${OWNER.ID}</ID>`));
  if (grants.length !== 1 || grants[0] !== "FULL_CONTROL" || !onlyOwner) {
    throw new S3Error(
      "NotImplemented",
      "Only the private ACL (the owner with FULL_CONTROL) is implemented",
    );
  }
}

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketAcl.html */
export async function GetBucketAcl(ctx: S3Context): Promise<Response> {
  await requireBucket(ctx);
  return xmlResponse(privateAcl());
}

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObjectAcl.html */
export async function GetObjectAcl(ctx: S3Context): Promise<Response> {
  await requireObject(ctx, ctx.bucket, ctx.key);
  return xmlResponse(privateAcl());
}

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutBucketAcl.html */
export async function PutBucketAcl(ctx: S3Context): Promise<Response> {
  refuseNonPrivateAcl(ctx.req.headers);
  await requireBucket(ctx);
  await checkAclBody(ctx);
  return new Response(null, { status: 200 });
}

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObjectAcl.html */
export async function PutObjectAcl(ctx: S3Context): Promise<Response> {
  refuseNonPrivateAcl(ctx.req.headers);
  await requireObject(ctx, ctx.bucket, ctx.key);
  await checkAclBody(ctx);
  return new Response(null, { status: 200 });
}
