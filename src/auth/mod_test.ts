/**
 * The public API end to end: sign with sign.ts, verify, decode; and seeded fuzzing of
 * both halves.
 */
import assert from "node:assert/strict";
import {
  AuthError,
  type AuthRequest,
  decodeBody,
  type Payload,
  splitRequestUrl,
  verifyRequest,
} from "./mod.ts";
import {
  encodeSignedChunks,
  encodeUnsignedChunks,
  formatAmzDate,
  presignRequest,
  sha256Hex,
  signRequest,
} from "./sign.ts";
import { prng, randomCuts, readAll, streamOf } from "./_test_util.ts";

const CREDS = { accessKeyId: "HAMSTERE2E", secretAccessKey: "e2e-secret" };
const lookup = (id: string) => id === CREDS.accessKeyId ? CREDS.secretAccessKey : undefined;
const REGION = "hamster-1";
const NOW = Date.UTC(2026, 10, 22, 4, 0, 0);
const AMZ_DATE = formatAmzDate(NOW);

function objectData(seed: number, sizeBytes: number): Uint8Array {
  const rand = prng(seed);
  const data = new Uint8Array(sizeBytes);
  for (let i = 0; i < sizeBytes; i++) data[i] = Math.floor(rand() * 256);
  return data;
}

function split(data: Uint8Array, pieceBytes: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < data.length; at += pieceBytes) out.push(data.subarray(at, at + pieceBytes));
  return out;
}

interface Upload {
  req: AuthRequest;
  body: Uint8Array;
}

/** A PUT of `data` as a client would send it in `mode`. */
function upload(mode: string, data: Uint8Array): Upload {
  const base = {
    method: "PUT",
    rawPath: "/bucket/photos/2026/a%20b.jpg",
    rawQuery: "",
    credentials: CREDS,
    region: REGION,
    amzDate: AMZ_DATE,
  };
  const crc: [string, string][] = [["x-amz-checksum-crc32", "AAAAAA=="]];
  const chunked = {
    host: "s3.local:9000",
    "content-encoding": "aws-chunked",
    "x-amz-decoded-content-length": String(data.length),
  };
  switch (mode) {
    case "signed":
    case "unsigned": {
      const { headers } = signRequest(
        { ...base, headers: { host: "s3.local:9000", "content-length": String(data.length) } },
        mode === "signed" ? sha256Hex(data) : "UNSIGNED-PAYLOAD",
      );
      return { req: { ...base, headers }, body: data };
    }
    case "presigned": {
      const rawQuery = presignRequest({
        ...base,
        headers: { host: "s3.local:9000" },
        expiresSec: 60,
      });
      return {
        req: { ...base, rawQuery, headers: new Headers({ host: "s3.local:9000" }) },
        body: data,
      };
    }
    case "streaming-signed":
    case "streaming-signed-trailer": {
      const trailer = mode === "streaming-signed-trailer";
      const { headers, signature } = signRequest(
        {
          ...base,
          headers: trailer ? { ...chunked, "x-amz-trailer": "x-amz-checksum-crc32" } : chunked,
        },
        trailer
          ? "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
          : "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
      );
      const body = encodeSignedChunks(
        split(data, 8192),
        {
          secretAccessKey: CREDS.secretAccessKey,
          region: REGION,
          amzDate: AMZ_DATE,
          seedSignature: signature,
        },
        trailer ? crc : undefined,
      );
      return { req: { ...base, headers }, body };
    }
    case "streaming-unsigned-trailer": {
      const { headers } = signRequest(
        { ...base, headers: { ...chunked, "x-amz-trailer": "x-amz-checksum-crc32" } },
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
      );
      return { req: { ...base, headers }, body: encodeUnsignedChunks(split(data, 8192), crc) };
    }
  }
  throw new Error(`unknown mode ${mode}`);
}

const MODES = [
  "signed",
  "unsigned",
  "presigned",
  "streaming-signed",
  "streaming-signed-trailer",
  "streaming-unsigned-trailer",
];

async function receive(
  up: Upload,
  cuts: number[] = [],
): Promise<{ bytes: Uint8Array; trailers: Headers; payload: Payload }> {
  const auth = verifyRequest(up.req, lookup, NOW, REGION);
  const decoded = decodeBody(streamOf(up.body, cuts), auth.payload, up.req.headers);
  const bytes = await readAll(decoded.stream);
  return { bytes, trailers: await decoded.trailers, payload: auth.payload };
}

Deno.test("verifyRequest() and decodeBody() round-trip every mode through the public API", async (t) => {
  for (const mode of MODES) {
    await t.step(mode, async () => {
      for (const seed of [1, 2]) {
        const data = objectData(seed, 30_000 + seed * 1000);
        const up = upload(mode, data);
        const out = await receive(up, randomCuts(prng(seed), up.body.length, 4096));
        assert.deepEqual(out.bytes, data);
        const expectTrailer = mode.endsWith("trailer");
        assert.equal(out.trailers.get("x-amz-checksum-crc32"), expectTrailer ? "AAAAAA==" : null);
      }
    });
  }
});

Deno.test("decodeBody() rejects a changed body byte in every checked mode", async (t) => {
  for (const mode of ["signed", "streaming-signed", "streaming-signed-trailer"]) {
    await t.step(mode, async () => {
      const data = objectData(7, 20_000);
      const up = upload(mode, data);
      const body = up.body.slice();
      // A byte of object data, past the first size line.
      body[body.length >> 1] ^= 0x01;
      const err = await receive({ ...up, body }).then(() => null, (e) => e);
      assert.ok(err instanceof AuthError, String(err));
      assert.ok(
        ["XAmzContentSHA256Mismatch", "SignatureDoesNotMatch"].includes(err.code),
        err.code,
      );
    });
  }
});

Deno.test("decodeBody() never accepts a changed signed chunked body as different content", async (t) => {
  for (const mode of ["streaming-signed", "streaming-signed-trailer"]) {
    await t.step(mode, async () => {
      const data = objectData(9, 3000);
      const up = upload(mode, data);
      const rand = prng(99);
      for (let round = 0; round < 300; round++) {
        const body = up.body.slice();
        const at = Math.floor(rand() * body.length);
        body[at] = (body[at] + 1 + Math.floor(rand() * 255)) & 0xff;
        const out = await receive({ ...up, body }).then((o) => o, (e) => e);
        if (out instanceof AuthError) continue;
        if (out instanceof Error) throw out;
        // Accepted only if the change did not change meaning (e.g. a trailer name's case).
        assert.deepEqual(out.bytes, data, `round=${round} at=${at}`);
        assert.equal(out.trailers.get("x-amz-checksum-crc32"), "AAAAAA==");
      }
    });
  }
});

Deno.test("verifyRequest() throws only AuthErrors on mutated requests (seeded fuzz)", async (t) => {
  const printable =
    " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";
  for (const seed of [1, 2, 3, 4]) {
    await t.step(`seed=${seed}`, () => {
      const rand = prng(seed);
      const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)];
      const mutate = (s: string) => {
        const at = Math.floor(rand() * (s.length + 1));
        const op = Math.floor(rand() * 3);
        const c = pick([...printable]);
        if (op === 0) return s.slice(0, at) + c + s.slice(at);
        if (op === 1) return s.slice(0, at) + s.slice(at + 1);
        return s.slice(0, at) + c + s.slice(at + 1);
      };
      for (let round = 0; round < 400; round++) {
        const mode = pick(MODES);
        const { req } = upload(mode, new Uint8Array(10));
        const headers = new Headers(req.headers);
        const target = pick([
          "authorization",
          "x-amz-date",
          "x-amz-content-sha256",
          "query",
          "path",
        ]);
        let rawQuery = req.rawQuery;
        let rawPath = req.rawPath;
        if (target === "query") rawQuery = mutate(rawQuery);
        else if (target === "path") rawPath = mutate(rawPath);
        else if (headers.has(target)) headers.set(target, mutate(headers.get(target)!).trim());
        try {
          verifyRequest({ ...req, rawQuery, rawPath, headers }, lookup, NOW, REGION);
        } catch (err) {
          if (!(err instanceof AuthError)) {
            throw new Error(`seed=${seed} round=${round} ${mode}/${target}: ${err}`);
          }
        }
      }
    });
  }
});

Deno.test("splitRequestUrl() output verifies for a presigned URL", () => {
  const rawQuery = presignRequest({
    method: "GET",
    rawPath: "/b/k%2Bx",
    headers: { host: "h:1" },
    credentials: CREDS,
    region: REGION,
    amzDate: AMZ_DATE,
    expiresSec: 10,
  });
  const { rawPath, rawQuery: q } = splitRequestUrl(`http://h:1/b/k%2Bx?${rawQuery}`);
  const result = verifyRequest(
    { method: "GET", rawPath, rawQuery: q, headers: new Headers({ host: "h:1" }) },
    lookup,
    NOW,
    REGION,
  );
  assert.equal(result.presigned, true);
});

Deno.test("decodeBody() fails only with AuthErrors on mangled aws-chunked bodies (seeded fuzz)", async (t) => {
  for (const mode of ["streaming-unsigned-trailer", "streaming-signed-trailer"]) {
    await t.step(mode, async () => {
      const up = upload(mode, objectData(5, 20_000));
      const rand = prng(1234);
      for (let round = 0; round < 200; round++) {
        const body = up.body.slice(0, Math.floor(rand() * (up.body.length + 1)));
        for (let k = Math.floor(rand() * 4); k > 0; k--) {
          body[Math.floor(rand() * body.length)] = pick(rand, [0x0d, 0x0a, 0x3b, 0x3a, 0x30, 0x66]);
        }
        const err = await receive({ ...up, body }, randomCuts(rand, body.length, 3000))
          .then(() => null, (e) => e);
        if (err !== null && !(err instanceof AuthError)) {
          throw new Error(`round=${round}: ${err}`);
        }
      }
    });
  }
});

function pick<T>(rand: () => number, xs: T[]): T {
  return xs[Math.floor(rand() * xs.length)];
}
