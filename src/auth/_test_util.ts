/**
 * Helpers shared by the `src/auth/` tests: the AWS example credentials, a seeded PRNG,
 * stream plumbing.
 *
 * Pure: no clock, no I/O.
 *
 * @module
 */
import { AuthError, type AuthErrorCode } from "./errors.ts";

/** The access key pair of every AWS SigV4 documentation example. */
export const AWS_EXAMPLE = {
  accessKeyId: "AKIAIOSFODNN7EXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
};
/** The time of every AWS SigV4 documentation example, 2013-05-24T00:00:00Z. */
export const AWS_EXAMPLE_MS = Date.UTC(2013, 4, 24, 0, 0, 0);

/** A lookup that knows only the AWS example key. */
export function exampleLookup(id: string): string | undefined {
  return id === AWS_EXAMPLE.accessKeyId ? AWS_EXAMPLE.secretAccessKey : undefined;
}

/** mulberry32: a small seeded PRNG returning floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A stream yielding `bytes` cut at the given lengths (the rest as one last piece). */
export function streamOf(bytes: Uint8Array, cuts: number[] = []): ReadableStream<Uint8Array> {
  const pieces: Uint8Array[] = [];
  let at = 0;
  for (const n of cuts) {
    if (at >= bytes.length) break;
    pieces.push(bytes.slice(at, at + n));
    at += n;
  }
  if (at < bytes.length || pieces.length === 0) pieces.push(bytes.slice(at));
  let i = 0;
  return new ReadableStream({
    pull(c) {
      if (i < pieces.length) c.enqueue(pieces[i++]);
      else c.close();
    },
  });
}

/** Random piece lengths from 1 to `max` covering `total` bytes. */
export function randomCuts(rand: () => number, total: number, max: number): number[] {
  const cuts: number[] = [];
  for (let at = 0; at < total;) {
    const n = 1 + Math.floor(rand() * max);
    cuts.push(n);
    at += n;
  }
  return cuts;
}

/** Reads a stream to its end and concatenates it. */
export async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const p of stream) {
    parts.push(p);
    total += p.length;
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Asserts that `fn` throws (or rejects with) an AuthError with `code`; returns it. */
export async function rejectsWith(
  fn: () => unknown,
  code: AuthErrorCode,
): Promise<AuthError> {
  try {
    await fn();
  } catch (err) {
    if (!(err instanceof AuthError)) throw err;
    if (err.code !== code) {
      throw new Error(`Expected AuthError ${code}, got ${err.code}: ${err.message}`);
    }
    return err;
  }
  throw new Error(`Expected AuthError ${code}, but nothing was thrown`);
}

/** Synchronous {@link rejectsWith}. */
export function throwsWith(fn: () => unknown, code: AuthErrorCode): AuthError {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof AuthError)) throw err;
    if (err.code !== code) {
      throw new Error(`Expected AuthError ${code}, got ${err.code}: ${err.message}`);
    }
    return err;
  }
  throw new Error(`Expected AuthError ${code}, but nothing was thrown`);
}

/** `n` bytes of ASCII `a`. */
export function aBytes(n: number): Uint8Array {
  return new Uint8Array(n).fill(0x61);
}
