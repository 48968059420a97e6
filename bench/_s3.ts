/**
 * Shared pieces of the benchmarks: SigV4-signed (UNSIGNED-PAYLOAD) requests
 * from this process, a bounded-concurrency pool, free ports, body patterns.
 *
 * @module
 */
import { formatAmzDate, signRequest } from "../src/auth/sign.ts";

/** The key pair every benchmark server is started with. */
export const CREDS = { accessKeyId: "bench", secretAccessKey: "bench-secret" };

/** A server under test; `signed` is false for the null server. */
export interface Target {
  name: string;
  base: string;
  pid: number;
  signed: boolean;
}

/** A TCP port on 127.0.0.1 free at the time of the call. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** SigV4 headers (UNSIGNED-PAYLOAD) for one request with {@link CREDS}. */
export function sign(method: string, url: URL, headers: Record<string, string> = {}): Headers {
  return signRequest({
    method,
    rawPath: url.pathname,
    rawQuery: url.search.slice(1),
    headers: { host: url.host, ...headers },
    credentials: CREDS,
    region: "us-east-1",
    amzDate: formatAmzDate(Date.now()),
  }, "UNSIGNED-PAYLOAD").headers;
}

/**
 * PUTs `body` to `bench/<key>` on `t`.
 * @throws Error when the status is not 200
 */
export async function put(t: Target, key: string, body: BodyInit, length?: number): Promise<void> {
  const url = new URL(`${t.base}/bench/${key}`);
  const h = t.signed
    ? sign("PUT", url, length !== undefined ? { "content-length": String(length) } : {})
    : new Headers();
  const res = await fetch(url, { method: "PUT", headers: h, body });
  await res.body?.cancel();
  if (res.status !== 200) throw new Error(`PUT ${key} on ${t.name}: ${res.status}`);
}

/** Runs `fn(0..count-1)` on `streams` concurrent loops; returns the seconds taken. */
export async function pool(
  count: number,
  streams: number,
  fn: (i: number) => Promise<void>,
): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: streams }, async () => {
    while (next < count) await fn(next++);
  }));
  return (performance.now() - t0) / 1000;
}

/** `sizeBytes` of xorshift noise from `seed`. */
export function pattern(sizeBytes: number, seed: number): Uint8Array {
  const b = new Uint8Array(sizeBytes);
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < sizeBytes; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x;
    b[i + 1] = x >>> 8;
    b[i + 2] = x >>> 16;
    b[i + 3] = x >>> 24;
  }
  return b;
}
