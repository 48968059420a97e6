/**
 * What every S3 operation handler receives: the parsed request, the
 * authenticated caller and the node's services.
 *
 * @module
 */
import type { AuthResult } from "../auth/mod.ts";
import type { DataPath } from "../data/local.ts";
import type { Clock, MetaKv, Rng } from "../io/mod.ts";
import type { MetaLog } from "../meta/mod.ts";
import type { HashPool } from "./hashing.ts";
import type { Reads } from "./lookup.ts";
import type { Reclaimer } from "../data/reclaim.ts";

/** The services an S3 endpoint runs on. */
export interface S3Deps {
  /** The local metadata replica, read only through `Reads` (`lookup.ts`). */
  kv: MetaKv;
  /** The seam every metadata change goes through. */
  log: MetaLog;
  /** Where object bytes are stored. */
  data: DataPath;
  clock: Clock;
  rng: Rng;
  /** The secret for an access key id, or undefined when unknown. */
  secretFor(accessKeyId: string): string | undefined;
  /** The region this endpoint reports and expects in signatures. */
  region: string;
  /** With virtual-hosted addressing: the base domain (`s3.example.com`). */
  domain?: string;
  /** Defers data removal until reads that may use it finish; `createS3App` makes one when absent. */
  reclaimer?: Reclaimer;
  /** Where body hashing runs; inline when absent. */
  hashPool?: HashPool;
  /** Logs an internal error. */
  logError(requestId: string, err: unknown): void;
}

/** S3Deps with every optional service filled in. */
export type ResolvedDeps = S3Deps & { reclaimer: Reclaimer };

/** One S3 request, resolved to its operation and authenticated. */
export interface S3Context {
  deps: ResolvedDeps;
  req: Request;
  url: URL;
  query: URLSearchParams;
  /** The bucket named by the path or host; "" for service-level requests. */
  bucket: string;
  /** The decoded object key; "" for bucket-level requests. */
  key: string;
  requestId: string;
  auth: AuthResult;
  /** Every metadata read of this request; waits on the read barrier once. */
  reads: Reads;
  /** The request's body, decoded from aws-chunked and checked against its signature. */
  body(): { stream: ReadableStream<Uint8Array>; trailers: Promise<Headers> };
}

/** An operation handler. */
export type Handler = (ctx: S3Context) => Promise<Response>;

/** A new random id of `sizeBytes` bytes, as lower-case hex. */
export function newId(rng: Rng, sizeBytes = 16): string {
  const b = rng.fill(new Uint8Array(sizeBytes));
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/**
 * A new data id: 32 hex digits whose first two are the current minute (mod
 * 256) and whose other 120 bits are random. Data written together then shares
 * a shard directory (`shards/<first two hex>/`), so concurrent writes share
 * one directory fsync; over hours the ids still spread over all 256 directories.
 */
export function newDataId(clock: Clock, rng: Rng): string {
  const minute = Math.floor(clock.nowMs() / 60_000) & 0xff;
  return minute.toString(16).padStart(2, "0") + newId(rng, 15);
}

/** An XML response with status 200 unless told. */
export function xmlResponse(xml: string, status = 200, headers: HeadersInit = {}): Response {
  const h = new Headers(headers);
  h.set("content-type", "application/xml");
  return new Response(xml, { status, headers: h });
}

/** The canonical owner every bucket and object reports (one account per node for now). */
export const OWNER = { ID: "hamster", DisplayName: "hamster" } as const;
