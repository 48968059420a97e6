/**
 * Object tagging: PutObjectTagging, GetObjectTagging, DeleteObjectTagging,
 * and the `x-amz-tagging` header on PutObject, CopyObject and
 * CreateMultipartUpload.
 *
 * Limits as AWS: at most 10 tags, keys 1 to 128 characters, values up to 256,
 * keys unique.
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-tagging.html
 * @module
 */
import type { TagSet } from "../meta/mod.ts";
import { type S3Context, xmlResponse } from "./context.ts";
import { S3Error } from "./errors.ts";
import { readXmlBody } from "./ingest.ts";
import { validateKey } from "./http.ts";
import { requireObject } from "./lookup.ts";
import { childElement, childElements, childText, renderXml } from "./xml.ts";

/** The most tags one object may carry. */
export const MAX_TAGS = 10;
/** The longest tag key, in characters. */
export const MAX_TAG_KEY_CHARS = 128;
/** The longest tag value, in characters. */
export const MAX_TAG_VALUE_CHARS = 256;

/** Control characters (C0, DEL, C1) and the non-characters U+FFFE and U+FFFF. */
// deno-lint-ignore no-control-regex
const TAG_FORBIDDEN = /[\u0000-\u001F\u007F-\u009F\uFFFE\uFFFF]/;

/**
 * Checks a tag set against the AWS limits and refuses control characters.
 *
 * @throws {S3Error} `InvalidTag` (or `BadRequest` for too many tags, as AWS answers)
 */
export function validateTags(tags: TagSet): TagSet {
  if (tags.length > MAX_TAGS) {
    throw new S3Error("BadRequest", `Object tags cannot be greater than ${MAX_TAGS}`);
  }
  const seen = new Set<string>();
  for (const [k, v] of tags) {
    const keyChars = [...k].length;
    if (keyChars < 1 || keyChars > MAX_TAG_KEY_CHARS) {
      throw new S3Error(
        "InvalidTag",
        `The TagKey "${k}" must be 1 to ${MAX_TAG_KEY_CHARS} characters`,
      );
    }
    if ([...v].length > MAX_TAG_VALUE_CHARS) {
      throw new S3Error(
        "InvalidTag",
        `The TagValue for "${k}" must be at most ${MAX_TAG_VALUE_CHARS} characters`,
      );
    }
    for (const [what, text] of [["TagKey", k], ["TagValue", v]]) {
      if (TAG_FORBIDDEN.test(text)) {
        throw new S3Error("InvalidTag", `The ${what} you have provided is invalid`);
      }
    }
    if (k.startsWith("aws:")) throw new S3Error("InvalidTag", `Tag keys may not start with "aws:"`);
    if (seen.has(k)) {
      throw new S3Error("InvalidTag", `Cannot provide multiple Tags with the same key "${k}"`);
    }
    seen.add(k);
  }
  return tags;
}

/**
 * Parses an `x-amz-tagging` header: a URL-encoded query string `k1=v1&k2=v2`.
 *
 * @returns the tags, or undefined when the header is absent
 * @throws {S3Error} `InvalidTag`, `BadRequest`
 */
export function taggingHeader(headers: Headers): TagSet | undefined {
  const v = headers.get("x-amz-tagging");
  if (v === null) return undefined;
  if (v.trim() === "") return [];
  return validateTags([...new URLSearchParams(v)]);
}

function tagSetXml(tags: TagSet) {
  return { TagSet: { Tag: tags.map(([Key, Value]) => ({ Key, Value })) } };
}

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObjectTagging.html */
export async function PutObjectTagging(ctx: S3Context): Promise<Response> {
  validateKey(ctx.key);
  const doc = await readXmlBody(ctx, "Tagging", { maxBytes: 64 * 1024 });
  const set = childElement(doc, "TagSet");
  if (set === undefined) throw new S3Error("MalformedXML", "Tagging needs a TagSet");
  const tags: TagSet = childElements(set, "Tag").map((t) => {
    const key = childText(t, "Key");
    if (key === undefined) throw new S3Error("MalformedXML", "Every Tag needs a Key");
    return [key, childText(t, "Value") ?? ""];
  });
  validateTags(tags);
  await ctx.deps.log.propose({ type: "PutObjectTagging", bucket: ctx.bucket, key: ctx.key, tags });
  return new Response(null, { status: 200 });
}

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObjectTagging.html */
export async function GetObjectTagging(ctx: S3Context): Promise<Response> {
  validateKey(ctx.key);
  const record = await requireObject(ctx, ctx.bucket, ctx.key);
  return xmlResponse(renderXml("Tagging", tagSetXml(record.tags ?? [])));
}

/** @see https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjectTagging.html */
export async function DeleteObjectTagging(ctx: S3Context): Promise<Response> {
  validateKey(ctx.key);
  await ctx.deps.log.propose({
    type: "PutObjectTagging",
    bucket: ctx.bucket,
    key: ctx.key,
    tags: null,
  });
  return new Response(null, { status: 204 });
}
