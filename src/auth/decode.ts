/**
 * `decodeBody()`: turns a request body into the object's bytes according to the payload
 * mode `verifyRequest()` found, checking the payload hash or every chunk signature on
 * the way.
 *
 * Pure: no clock, no I/O of its own; it only reads the stream it is given.
 *
 * @module
 */
import { createHash, type Hash } from "node:crypto";
import { AuthError } from "./errors.ts";
import {
  chunkStringToSign,
  EMPTY_SHA256,
  HmacSha256,
  signaturesEqual,
  trailerStringToSign,
} from "./_sigv4.ts";
import type { Payload, StreamingSignedPayload } from "./types.ts";

/** Largest chunk an aws-chunked body may announce: 16 MiB (clients send 8 KiB to 1 MiB). */
export const MAX_CHUNK_BYTES = 16 * 1024 * 1024;
/** Longest chunk-size line or trailer line, CRLF included. */
export const MAX_LINE_BYTES = 4096;
/** Most bytes of trailing headers. */
export const MAX_TRAILER_BYTES = 16 * 1024;

const CR = 0x0d;
const LF = 0x0a;
const latin1 = new TextDecoder("latin1");
const SIGNATURE_EXT = "chunk-signature=";
const TRAILER_SIGNATURE = "x-amz-trailer-signature";

/** The decoded body, and the trailing headers once it has been read to its end. */
export interface DecodedBody {
  /**
   * The object's bytes. It errors with an {@link AuthError} instead of closing when the
   * body fails a check, so a consumer that reads to the end has read verified bytes.
   * Chunks are views of the input's buffers: read them, do not transfer them.
   */
  stream: ReadableStream<Uint8Array>;
  /**
   * The trailing headers (lower-case names, e.g. `x-amz-checksum-crc32`), without
   * `x-amz-trailer-signature`; empty when there are none. Resolves after `stream` closes;
   * rejects (already marked handled) when it errors or is cancelled.
   */
  trailers: Promise<Headers>;
}

/**
 * Wraps a raw request body per the payload mode and returns the decoded object bytes.
 *
 * - `signed`: passes bytes through, hashing them (SHA-256) as they go; at the end a
 *   digest other than `payload.sha256Hex` errors the stream with
 *   `XAmzContentSHA256Mismatch`.
 * - `unsigned`: the body itself.
 * - `streaming-signed` / `streaming-unsigned-trailer`: parses aws-chunked framing,
 *   ```
 *   hex-size[;chunk-signature=sig]\r\n <size bytes> \r\n ... 0[;chunk-signature=sig]\r\n
 *   [name:value\r\n ...] [x-amz-trailer-signature:sig\r\n] \r\n
 *   ```
 *   verifies every chunk signature before releasing that chunk's bytes, verifies the
 *   trailer signature, and checks the decoded length against
 *   `x-amz-decoded-content-length` when given. Memory stays bounded by the largest
 *   chunk ({@link MAX_CHUNK_BYTES}); reads may split the framing anywhere.
 *
 * @param body the raw request body; `null` (no body) reads as empty
 * @param headers the request headers (`x-amz-decoded-content-length`, `x-amz-trailer`)
 * @throws {AuthError} `InvalidArgument` at once when `x-amz-decoded-content-length` is
 *   not a decimal integer. The stream errors with `XAmzContentSHA256Mismatch` (signed
 *   payload digest), `SignatureDoesNotMatch` (a chunk or trailer signature),
 *   `IncompleteBody` (body ends early, or its decoded length differs from
 *   `x-amz-decoded-content-length`), `InvalidRequest` (malformed framing or trailers, a
 *   chunk over 16 MiB, a line over 4 KiB, a trailer declared in `x-amz-trailer` missing)
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html
 * @example
 * ```ts
 * const auth = verifyRequest(req, lookup, Date.now(), "us-east-1");
 * const { stream, trailers } = decodeBody(request.body!, auth.payload, request.headers);
 * for await (const bytes of stream) await file.write(bytes);
 * const crc = (await trailers).get("x-amz-checksum-crc32");
 * ```
 */
export function decodeBody(
  body: ReadableStream<Uint8Array> | null,
  payload: Payload,
  headers: Headers,
): DecodedBody {
  body ??= new ReadableStream<Uint8Array>({ start: (c) => c.close() });
  if (payload.kind === "unsigned") {
    return { stream: body, trailers: Promise.resolve(new Headers()) };
  }
  let resolveTrailers!: (h: Headers) => void;
  let rejectTrailers!: (e: unknown) => void;
  const trailers = new Promise<Headers>((resolve, reject) => {
    resolveTrailers = resolve;
    rejectTrailers = reject;
  });
  trailers.catch(() => {});
  const reader = body.getReader();
  let step: (input: Uint8Array | null) => Uint8Array[];
  let trailersOf = () => new Headers();
  if (payload.kind === "signed") {
    step = signedPayloadStep(payload.sha256Hex);
  } else {
    const decoder = new ChunkedDecoder(payload, headers);
    step = (input) => input === null ? decoder.finish() : decoder.push(input);
    trailersOf = () => decoder.trailers;
  }
  let finished = false;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          const out = step(done ? null : value);
          for (const bytes of out) controller.enqueue(bytes);
          if (done) {
            finished = true;
            controller.close();
            resolveTrailers(trailersOf());
            return;
          }
          if (out.length > 0) return;
        }
      } catch (err) {
        finished = true;
        controller.error(err);
        rejectTrailers(err);
        reader.cancel(err).catch(() => {});
      }
    },
    cancel(reason) {
      if (!finished) rejectTrailers(reason ?? new Error("Body stream cancelled"));
      return reader.cancel(reason);
    },
  });
  return { stream, trailers };
}

function signedPayloadStep(expectedHex: string): (input: Uint8Array | null) => Uint8Array[] {
  const hash = createHash("sha256");
  const expected = expectedHex.toLowerCase();
  return (input) => {
    if (input !== null) {
      hash.update(input);
      return [input];
    }
    const actual = hash.digest("hex");
    if (actual !== expected) {
      throw new AuthError(
        "XAmzContentSHA256Mismatch",
        "The provided 'x-amz-content-sha256' header does not match what was computed",
        { ClientComputedContentSHA256: expected, S3ComputedContentSHA256: actual },
      );
    }
    return [];
  };
}

type State = "size" | "data" | "crlf" | "trailer" | "end";

/**
 * The aws-chunked parser as a push state machine: `push()` takes the next bytes read
 * and returns the verified object bytes they complete (views of the input); `finish()`
 * checks the end. Both throw {@link AuthError}.
 */
export class ChunkedDecoder {
  /** The trailing headers, complete once `finish()` has returned. */
  readonly trailers = new Headers();
  private readonly signed: StreamingSignedPayload | null;
  private readonly mac: HmacSha256 | null;
  private readonly allowTrailers: boolean;
  private readonly expectedBytes: number;
  private readonly declaredTrailers: string[];
  private state: State = "size";
  private line = new Uint8Array(0);
  private lineBytes = 0;
  private remaining = 0;
  private chunkSize = 0;
  private chunkIndex = 0;
  private chunkSignature = "";
  private previousSignature = "";
  private chunkHash: Hash | null = null;
  private pending: Uint8Array[] = [];
  private crlfSeen = 0;
  private decodedBytes = 0;
  private trailerLines: string[] = [];
  private trailerBytes = 0;
  private trailerSignature: string | null = null;
  private blankBeforeTrailers = false;

  constructor(payload: Payload, headers: Headers) {
    if (payload.kind !== "streaming-signed" && payload.kind !== "streaming-unsigned-trailer") {
      throw new TypeError(`ChunkedDecoder needs a streaming payload, not '${payload.kind}'`);
    }
    this.signed = payload.kind === "streaming-signed" ? payload : null;
    this.mac = this.signed === null ? null : new HmacSha256(this.signed.signingKey);
    this.allowTrailers = payload.kind === "streaming-unsigned-trailer" || payload.trailer;
    this.previousSignature = this.signed?.seedSignature ?? "";
    const decoded = headers.get("x-amz-decoded-content-length");
    if (decoded !== null && !/^\d{1,16}$/.test(decoded.trim())) {
      throw new AuthError(
        "InvalidArgument",
        `x-amz-decoded-content-length must be a decimal integer, not '${decoded}'`,
        { ArgumentName: "x-amz-decoded-content-length", ArgumentValue: decoded },
      );
    }
    this.expectedBytes = decoded === null ? -1 : Number(decoded.trim());
    this.declaredTrailers = (headers.get("x-amz-trailer") ?? "")
      .split(",")
      .map((n) => n.trim().toLowerCase())
      .filter((n) => n !== "");
  }

  /** Takes the next bytes of the body; returns the object bytes now verified. */
  push(input: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let i = 0;
    const n = input.length;
    while (i < n) {
      switch (this.state) {
        case "size":
        case "trailer":
        case "end": {
          const lf = input.indexOf(LF, i);
          const end = lf < 0 ? n : lf + 1;
          if (this.lineBytes + (end - i) > MAX_LINE_BYTES) {
            throw invalid(`A chunk-size or trailer line is longer than ${MAX_LINE_BYTES} bytes`);
          }
          if (lf < 0) {
            this.appendLine(input.subarray(i, n));
            i = n;
            break;
          }
          let line: Uint8Array;
          if (this.lineBytes === 0) {
            line = input.subarray(i, lf + 1);
          } else {
            this.appendLine(input.subarray(i, lf + 1));
            line = this.line.subarray(0, this.lineBytes);
          }
          this.lineBytes = 0;
          i = lf + 1;
          this.onLine(line, out);
          break;
        }
        case "data": {
          const take = Math.min(this.remaining, n - i);
          const piece = input.subarray(i, i + take);
          i += take;
          this.remaining -= take;
          if (this.signed !== null) {
            this.chunkHash!.update(piece);
            this.pending.push(piece);
          } else {
            out.push(piece);
          }
          if (this.remaining === 0) this.endChunkData(out);
          break;
        }
        case "crlf": {
          const expected = this.crlfSeen === 0 ? CR : LF;
          if (input[i] !== expected) {
            throw invalid(
              `Chunk ${this.chunkIndex} does not end in CRLF after its announced ` +
                `${this.chunkSize} bytes`,
            );
          }
          i++;
          if (++this.crlfSeen === 2) this.state = "size";
          break;
        }
      }
    }
    return out;
  }

  /** Checks that the body ended where it may; returns nothing more to release. */
  finish(): Uint8Array[] {
    if (this.lineBytes > 0 && this.state !== "end") {
      throw incomplete("The body ended inside a chunk-size or trailer line");
    }
    if (this.state === "size" || this.state === "data" || this.state === "crlf") {
      throw incomplete(`The body ended before its final zero-length chunk`);
    }
    if (this.state === "end" && this.lineBytes > 0) {
      throw invalid("Unexpected bytes after the end of the chunked body");
    }
    this.finishTrailers();
    return [];
  }

  private appendLine(bytes: Uint8Array): void {
    if (this.line.length < MAX_LINE_BYTES) this.line = new Uint8Array(MAX_LINE_BYTES);
    this.line.set(bytes, this.lineBytes);
    this.lineBytes += bytes.length;
  }

  /** Handles one complete line, `line` ending in LF. */
  private onLine(line: Uint8Array, out: Uint8Array[]): void {
    if (line.length < 2 || line[line.length - 2] !== CR) {
      throw invalid("A chunk-size or trailer line does not end in CRLF");
    }
    const text = latin1.decode(line.subarray(0, line.length - 2));
    if (this.state === "size") this.onSizeLine(text, out);
    else if (this.state === "trailer") this.onTrailerLine(text);
    else if (text !== "") throw invalid("Unexpected bytes after the end of the chunked body");
  }

  private onSizeLine(text: string, out: Uint8Array[]): void {
    const semi = text.indexOf(";");
    const hex = semi < 0 ? text : text.slice(0, semi);
    if (!/^[0-9a-fA-F]{1,16}$/.test(hex)) {
      throw invalid(`Cannot parse chunk size '${truncate(hex)}'`);
    }
    const size = parseInt(hex, 16);
    if (size > MAX_CHUNK_BYTES) {
      throw invalid(`Chunk size ${size} exceeds the ${MAX_CHUNK_BYTES}-byte limit`);
    }
    if (this.expectedBytes >= 0 && this.decodedBytes + size > this.expectedBytes) {
      throw incomplete(
        `The chunked body carries more than the ${this.expectedBytes} bytes ` +
          `announced by x-amz-decoded-content-length`,
      );
    }
    this.chunkIndex++;
    this.chunkSize = size;
    if (this.signed !== null) {
      let signature: string | null = null;
      for (const ext of (semi < 0 ? "" : text.slice(semi + 1)).split(";")) {
        if (ext.startsWith(SIGNATURE_EXT)) signature = ext.slice(SIGNATURE_EXT.length);
      }
      if (signature === null) {
        throw invalid(`Chunk ${this.chunkIndex} has no chunk-signature`);
      }
      this.chunkSignature = signature;
      this.chunkHash = size === 0 ? null : createHash("sha256");
    }
    this.decodedBytes += size;
    if (size === 0) {
      this.endChunkData(out);
      this.state = this.allowTrailers ? "trailer" : "end";
      return;
    }
    this.remaining = size;
    this.state = "data";
  }

  /** The announced bytes of the current chunk are in: verify it and release them. */
  private endChunkData(out: Uint8Array[]): void {
    const signed = this.signed;
    if (signed !== null) {
      const dataHash = this.chunkSize === 0 ? EMPTY_SHA256 : this.chunkHash!.digest("hex");
      this.chunkHash = null;
      const expected = this.mac!.hex(
        chunkStringToSign(signed.amzDate, signed.scope, this.previousSignature, dataHash),
      );
      if (!signaturesEqual(expected, this.chunkSignature)) {
        throw new AuthError(
          "SignatureDoesNotMatch",
          `The chunk signature of chunk ${this.chunkIndex} does not match`,
          { SignatureProvided: truncate(this.chunkSignature) },
        );
      }
      this.previousSignature = expected;
      for (const piece of this.pending) out.push(piece);
      this.pending = [];
    }
    this.state = "crlf";
    this.crlfSeen = 0;
  }

  private onTrailerLine(text: string): void {
    if (text === "") {
      // A blank line ends the trailers; the first one before any trailer may also be the
      // CRLF some clients put after the zero-length chunk, so keep reading after it.
      const none = this.trailerLines.length === 0 && this.trailerSignature === null;
      if (none && !this.blankBeforeTrailers) this.blankBeforeTrailers = true;
      else this.state = "end";
      return;
    }
    if (this.trailerSignature !== null) {
      throw invalid("A trailing header follows x-amz-trailer-signature");
    }
    this.trailerBytes += text.length + 1;
    if (this.trailerBytes > MAX_TRAILER_BYTES) {
      throw invalid(`The trailing headers exceed ${MAX_TRAILER_BYTES} bytes`);
    }
    const colon = text.indexOf(":");
    if (colon <= 0) throw invalid(`Cannot parse trailing header '${truncate(text)}'`);
    const name = text.slice(0, colon).trim().toLowerCase();
    const value = text.slice(colon + 1).trim();
    if (name === TRAILER_SIGNATURE) {
      if (this.signed === null) {
        throw invalid("An unsigned payload carries x-amz-trailer-signature");
      }
      this.trailerSignature = value;
      return;
    }
    try {
      this.trailers.append(name, value);
    } catch {
      throw invalid(`Cannot parse trailing header '${truncate(text)}'`);
    }
    this.trailerLines.push(text);
  }

  private finishTrailers(): void {
    const signed = this.signed;
    if (signed !== null && signed.trailer) {
      if (this.trailerSignature === null) {
        if (this.trailerLines.length > 0 || this.declaredTrailers.length > 0) {
          throw invalid("The trailing headers have no x-amz-trailer-signature");
        }
      } else {
        this.verifyTrailerSignature(signed, this.trailerSignature);
      }
    }
    for (const name of this.declaredTrailers) {
      if (!this.trailers.has(name)) {
        throw invalid(`The trailing header '${name}' named by x-amz-trailer is missing`);
      }
    }
    if (this.expectedBytes >= 0 && this.decodedBytes !== this.expectedBytes) {
      throw incomplete(
        `The chunked body carries ${this.decodedBytes} bytes, not the ${this.expectedBytes} ` +
          `announced by x-amz-decoded-content-length`,
      );
    }
  }

  /**
   * The trailer signature covers the trailer lines as sent, each followed by `\n`; some
   * signers canonicalize them first (lower-case names, trimmed values, sorted), so that
   * form is accepted too.
   */
  private verifyTrailerSignature(signed: StreamingSignedPayload, provided: string): void {
    const asSent = this.trailerLines.map((l) => l + "\n").join("");
    const canonical = this.trailerLines
      .map((l) => {
        const colon = l.indexOf(":");
        return `${l.slice(0, colon).trim().toLowerCase()}:${l.slice(colon + 1).trim()}\n`;
      })
      .sort()
      .join("");
    for (const text of asSent === canonical ? [asSent] : [asSent, canonical]) {
      const expected = this.mac!.hex(
        trailerStringToSign(signed.amzDate, signed.scope, this.previousSignature, text),
      );
      if (signaturesEqual(expected, provided)) return;
    }
    throw new AuthError("SignatureDoesNotMatch", "The trailer signature does not match", {
      SignatureProvided: truncate(provided),
    });
  }
}

function invalid(message: string): AuthError {
  return new AuthError("InvalidRequest", message);
}

function incomplete(message: string): AuthError {
  return new AuthError("IncompleteBody", message);
}

function truncate(s: string): string {
  return s.length > 80 ? s.slice(0, 80) + "..." : s;
}
