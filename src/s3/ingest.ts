/**
 * The write path for object bytes: the decoded request body streams to a new
 * data file while its MD5 (the ETag) and any requested `x-amz-checksum-*` are
 * computed; every check (size, Content-MD5, checksum header or trailer,
 * signed payload hash) runs before the data is made durable and visible to the
 * metadata commit, so a rejected body leaves nothing behind.
 *
 * @module
 */
import type { ChecksumAlgorithm, ChecksumValue, DataRef } from "../meta/records.ts";
import {
  CHECKSUM_HEADERS,
  checksumHeader,
  parseChecksumAlgorithm,
  validateChecksumValue,
} from "./checksums.ts";
import { newDataId, type S3Context } from "./context.ts";
import { S3Error } from "./errors.ts";
import { MAX_PUT_SIZE_BYTES } from "./http.ts";
import {
  decodeXmlText,
  MAX_XML_BODY_BYTES,
  parseXmlBody,
  readCappedBytes,
  readOrIncomplete,
  XML_GATE,
  type XmlDoc,
} from "./xml.ts";
import { inlineHashPool } from "./hashing.ts";
import { SMALL_OBJECT_MAX_BYTES } from "../data/local.ts";
import type { RecordOwner } from "../data/segment_record.ts";

/** What a stored body produced. */
export interface Ingested {
  data: DataRef;
  /** Hex MD5 of the body. */
  md5Hex: string;
  checksum?: ChecksumValue;
}

/** The checksum a request asks for: the algorithm and, when sent in a header, the expected value. */
export interface ChecksumRequest {
  algorithm: ChecksumAlgorithm;
  expected?: string;
  fromTrailer: boolean;
}

/**
 * Reads which checksum the request carries: an `x-amz-checksum-*` header,
 * a trailer announced in `x-amz-trailer`, or just an algorithm asked for
 * with `x-amz-sdk-checksum-algorithm` / `x-amz-checksum-algorithm`.
 *
 * @throws {S3Error} `InvalidRequest` for more than one checksum or a malformed value
 */
export function checksumRequest(
  headers: Headers,
  uploadAlgorithm?: ChecksumAlgorithm,
): ChecksumRequest | undefined {
  const found: ChecksumRequest[] = [];
  for (const [header, algorithm] of Object.entries(CHECKSUM_HEADERS)) {
    const v = headers.get(header);
    if (v !== null) {
      validateChecksumValue(algorithm, v);
      found.push({ algorithm, expected: v, fromTrailer: false });
    }
  }
  const trailer = headers.get("x-amz-trailer");
  if (trailer !== null) {
    for (const name of trailer.split(",").map((s) => s.trim().toLowerCase())) {
      const algorithm = CHECKSUM_HEADERS[name];
      if (algorithm) found.push({ algorithm, fromTrailer: true });
    }
  }
  if (found.length > 1) {
    throw new S3Error(
      "InvalidRequest",
      "Expecting a single x-amz-checksum- header; multiple checksum types are not allowed",
    );
  }
  if (found.length === 1) return found[0];
  const asked = headers.get("x-amz-sdk-checksum-algorithm") ??
    headers.get("x-amz-checksum-algorithm");
  if (asked !== null) return { algorithm: parseChecksumAlgorithm(asked), fromTrailer: false };
  if (uploadAlgorithm) return { algorithm: uploadAlgorithm, fromTrailer: false };
  return undefined;
}

/**
 * Parses `Content-MD5`.
 *
 * @returns the 16 digest bytes as hex, or undefined when absent
 * @throws {S3Error} `InvalidDigest` when it is not base64 of 16 bytes
 */
export function contentMd5Hex(headers: Headers): string | undefined {
  const v = headers.get("content-md5");
  if (v === null) return undefined;
  let raw = "";
  try {
    raw = atob(v.trim());
  } catch {
    // falls through to the length check
  }
  if (raw.length !== 16) {
    throw new S3Error("InvalidDigest", "The Content-MD5 you specified is not valid");
  }
  let hex = "";
  for (let i = 0; i < raw.length; i++) hex += raw.charCodeAt(i).toString(16).padStart(2, "0");
  return hex;
}

/** The body size the client announced, from x-amz-decoded-content-length or Content-Length. */
export function announcedSizeBytes(headers: Headers): number | undefined {
  const v = headers.get("x-amz-decoded-content-length") ?? headers.get("content-length");
  if (v === null) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new S3Error("InvalidArgument", `Bad content length "${v}"`);
  }
  return n;
}

/**
 * Whether a body of this announced size is small: packed into a segment when
 * it becomes an object's whole data (ADR 0008). An unannounced size is not small.
 */
export function isSmallBody(announcedSizeBytes: number | undefined): boolean {
  return announcedSizeBytes !== undefined && announcedSizeBytes <= SMALL_OBJECT_MAX_BYTES;
}

/** What a stored body must match: its announced size, Content-MD5 and checksum. */
export interface Expectations {
  maxSizeBytes: number;
  /** Whether the bytes come from the client (a read failure is then `IncompleteBody`) or from storage. */
  fromClient?: boolean;
  announcedSizeBytes?: number;
  md5Hex?: string;
  checksum?: ChecksumRequest;
  /**
   * The object the body is written for, when it becomes an object's whole
   * data (PutObject, CopyObject): a small body is then packed into a segment.
   */
  owner?: RecordOwner;
}

/**
 * Streams a request's decoded body into a new data file, checking it against
 * the request's Content-MD5, checksum and announced length, then makes it durable.
 *
 * @throws {S3Error} `EntityTooLarge`, `BadDigest`, `IncompleteBody`, `InvalidDigest`, `XAmzContentSHA256Mismatch` (from auth); nothing is stored then
 */
export async function ingest(
  ctx: S3Context,
  source: { stream: ReadableStream<Uint8Array>; trailers: Promise<Headers> },
  opts: { maxSizeBytes?: number; uploadAlgorithm?: ChecksumAlgorithm; owner?: RecordOwner } = {},
): Promise<Ingested> {
  const headers = ctx.req.headers;
  let expect: Expectations;
  try {
    expect = {
      maxSizeBytes: opts.maxSizeBytes ?? MAX_PUT_SIZE_BYTES,
      announcedSizeBytes: announcedSizeBytes(headers),
      md5Hex: contentMd5Hex(headers),
      checksum: checksumRequest(headers, opts.uploadAlgorithm),
      ...(opts.owner ? { owner: opts.owner } : {}),
    };
  } catch (err) {
    await source.stream.cancel().catch(() => {});
    throw err;
  }
  return await storeStream(ctx, source, expect);
}

/**
 * Streams `source` into a new data file, computing its MD5 and checksum and
 * checking them against `expect`, then makes it durable.
 *
 * @throws {S3Error} `EntityTooLarge`, `BadDigest`, `IncompleteBody`; nothing is stored then
 */
export async function storeStream(
  ctx: S3Context,
  source: { stream: ReadableStream<Uint8Array>; trailers: Promise<Headers> },
  expect: Expectations,
): Promise<Ingested> {
  const { maxSizeBytes, announcedSizeBytes: announced, md5Hex: md5Expected, checksum: wanted } =
    expect;
  if (announced !== undefined && announced > maxSizeBytes) {
    await source.stream.cancel().catch(() => {});
    throw new S3Error(
      "EntityTooLarge",
      `Body of ${announced} bytes exceeds the limit of ${maxSizeBytes}`,
      {
        extra: { ProposedSize: String(announced), MaxSizeAllowed: String(maxSizeBytes) },
      },
    );
  }
  const small = isSmallBody(announced);
  const hasher = await (ctx.deps.hashPool ?? inlineHashPool).open(wanted?.algorithm);
  const writer = await ctx.deps.data.create(newDataId(ctx.deps.clock, ctx.deps.rng), {
    onBlock: (block) => hasher.update(block),
    ...(small && expect.owner ? { packFor: expect.owner } : {}),
  });
  try {
    let sizeBytes = 0;
    const reader = source.stream.getReader();
    while (true) {
      const { done, value } = expect.fromClient === false
        ? await reader.read()
        : await readOrIncomplete(reader);
      if (done) break;
      sizeBytes += value.length;
      if (announced !== undefined && sizeBytes > announced) {
        await reader.cancel().catch(() => {});
        throw new S3Error(
          "IncompleteBody",
          `Received more than the announced ${announced} bytes`,
        );
      }
      if (sizeBytes > maxSizeBytes) {
        await reader.cancel().catch(() => {});
        throw new S3Error("EntityTooLarge", `Body exceeds the limit of ${maxSizeBytes} bytes`);
      }
      await writer.write(value);
    }
    if (announced !== undefined && sizeBytes !== announced) {
      throw new S3Error(
        "IncompleteBody",
        `Received ${sizeBytes} bytes of the announced ${announced}`,
      );
    }
    await writer.end();
    const digest = await hasher.digest();
    const md5Hex = digest.md5Hex;
    if (md5Expected !== undefined && md5Expected !== md5Hex) {
      throw new S3Error(
        "BadDigest",
        "The Content-MD5 you specified did not match what was received",
      );
    }
    let checksum: ChecksumValue | undefined;
    if (wanted && digest.checksum !== undefined) {
      const value = digest.checksum;
      let expected = wanted.expected;
      if (wanted.fromTrailer) {
        const trailers = await source.trailers;
        expected = trailers.get(checksumHeader(wanted.algorithm)) ?? undefined;
        if (expected === undefined) {
          throw new S3Error(
            "InvalidRequest",
            `The ${checksumHeader(wanted.algorithm)} trailer is missing`,
          );
        }
        validateChecksumValue(wanted.algorithm, expected);
      }
      if (expected !== undefined && expected !== value) {
        throw new S3Error(
          "BadDigest",
          `The ${wanted.algorithm} you specified did not match the calculated checksum`,
        );
      }
      checksum = { algorithm: wanted.algorithm, value, type: "FULL_OBJECT" };
    }
    const data = await writer.commit();
    return { data, md5Hex, checksum };
  } catch (err) {
    hasher.discard();
    await writer.abort();
    throw err;
  }
}

/**
 * Reads a small request body (an XML document) of at most `maxBytes`,
 * checking it against Content-MD5 and any `x-amz-checksum-*` header or
 * trailer, and returns it as text.
 *
 * @throws {S3Error} `MaxMessageLengthExceeded`, `BadDigest`, `InvalidDigest`, `MalformedXML` (not UTF-8)
 */
export async function readVerifiedText(
  ctx: S3Context,
  maxBytes = MAX_XML_BODY_BYTES,
): Promise<string> {
  const headers = ctx.req.headers;
  const md5Expected = contentMd5Hex(headers);
  const wanted = checksumRequest(headers);
  const body = ctx.body();
  const bytes = await readCappedBytes(body.stream, maxBytes);
  const hasher = await inlineHashPool.open(wanted?.algorithm);
  await hasher.update(bytes);
  const digest = await hasher.digest();
  if (md5Expected !== undefined && md5Expected !== digest.md5Hex) {
    throw new S3Error("BadDigest", "The Content-MD5 you specified did not match what was received");
  }
  if (wanted) {
    const expected = wanted.fromTrailer
      ? (await body.trailers).get(checksumHeader(wanted.algorithm)) ?? undefined
      : wanted.expected;
    if (expected !== undefined && expected !== digest.checksum) {
      throw new S3Error(
        "BadDigest",
        `The ${wanted.algorithm} you specified did not match the calculated checksum`,
      );
    }
  }
  return decodeXmlText(bytes);
}

/**
 * Reads, verifies and parses an XML request body with root element `root`,
 * through {@link XML_GATE} so that only a few bodies are held and parsed at once.
 *
 * @param opts.maxBytes the body cap for this operation (default {@link MAX_XML_BODY_BYTES})
 * @param opts.optional an empty (or all-whitespace) body is allowed: then undefined
 * @throws {S3Error} `SlowDown` when too many wait, `MalformedXML`, and what {@link readVerifiedText} throws
 */
export function readXmlBody(
  ctx: S3Context,
  root: string,
  opts: { maxBytes?: number; optional: true },
): Promise<XmlDoc | undefined>;
export function readXmlBody(
  ctx: S3Context,
  root: string,
  opts?: { maxBytes?: number; optional?: false },
): Promise<XmlDoc>;
export function readXmlBody(
  ctx: S3Context,
  root: string,
  opts: { maxBytes?: number; optional?: boolean } = {},
): Promise<XmlDoc | undefined> {
  return XML_GATE.run(async () => {
    const text = await readVerifiedText(ctx, opts.maxBytes ?? MAX_XML_BODY_BYTES);
    if (opts.optional && text.trim() === "") return undefined;
    return parseXmlBody(text, root);
  });
}
