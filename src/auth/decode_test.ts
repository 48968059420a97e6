import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { decodeBody, MAX_CHUNK_BYTES } from "./decode.ts";
import { AuthError } from "./errors.ts";
import { scopeOf, sha256Hex, signingKey } from "./_sigv4.ts";
import { encodeSignedChunks, encodeUnsignedChunks, signedChunkFrames } from "./sign.ts";
import type { Payload, StreamingSignedPayload } from "./types.ts";
import {
  aBytes,
  AWS_EXAMPLE,
  prng,
  randomCuts,
  readAll,
  rejectsWith,
  streamOf,
  throwsWith,
} from "./_test_util.ts";

const utf8 = new TextEncoder();
const AMZ_DATE = "20130524T000000Z";

function concat(...parts: (Uint8Array | string)[]): Uint8Array {
  const bytes = parts.map((p) => typeof p === "string" ? utf8.encode(p) : p);
  const out = new Uint8Array(bytes.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of bytes) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function examplePayload(seedSignature: string, trailer: boolean): StreamingSignedPayload {
  return {
    kind: "streaming-signed",
    trailer,
    signingKey: signingKey(AWS_EXAMPLE.secretAccessKey, "20130524", "us-east-1"),
    scope: scopeOf("20130524", "us-east-1"),
    amzDate: AMZ_DATE,
    seedSignature,
  };
}

async function decodeAll(
  body: Uint8Array,
  payload: Payload,
  headers: HeadersInit = {},
  cuts: number[] = [],
): Promise<{ bytes: Uint8Array; trailers: Headers }> {
  const decoded = decodeBody(streamOf(body, cuts), payload, new Headers(headers));
  const bytes = await readAll(decoded.stream);
  return { bytes, trailers: await decoded.trailers };
}

// AWS example: "Transferring Payload in Multiple Chunks (Chunked Upload)",
// https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html
const AWS_CHUNKED_BODY = concat(
  "10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n",
  aBytes(65536),
  "\r\n400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n",
  aBytes(1024),
  "\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n",
);
const AWS_CHUNKED_PAYLOAD = examplePayload(
  "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
  false,
);

Deno.test("decodeBody() decodes the AWS example chunked upload, however the reads split it", async (t) => {
  assert.equal(AWS_CHUNKED_BODY.length, 66824);
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    await t.step(`seed=${seed}`, async () => {
      const rand = prng(seed);
      const cuts = randomCuts(rand, AWS_CHUNKED_BODY.length, seed % 2 === 0 ? 7 : 9000);
      const { bytes, trailers } = await decodeAll(
        AWS_CHUNKED_BODY,
        AWS_CHUNKED_PAYLOAD,
        { "x-amz-decoded-content-length": "66560" },
        cuts,
      );
      assert.deepEqual(bytes, aBytes(66560));
      assert.deepEqual([...trailers], []);
    });
  }
});

Deno.test("decodeBody() encodeSignedChunks() reproduces the AWS example chunk signatures", () => {
  const body = encodeSignedChunks([aBytes(65536), aBytes(1024)], {
    secretAccessKey: AWS_EXAMPLE.secretAccessKey,
    region: "us-east-1",
    amzDate: AMZ_DATE,
    seedSignature: AWS_CHUNKED_PAYLOAD.seedSignature,
  });
  assert.deepEqual(body, AWS_CHUNKED_BODY);
});

// AWS example: "Signature calculations for trailing headers (chunked uploads)",
// https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html
const AWS_TRAILER_CHUNKS = concat(
  "10000;chunk-signature=b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2\r\n",
  aBytes(65536),
  "\r\n400;chunk-signature=1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7\r\n",
  aBytes(1024),
  "\r\n0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n",
);
const AWS_TRAILER_LINES = "x-amz-checksum-crc32c:sOO8/Q==\r\n" +
  "x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n";
const AWS_TRAILER_PAYLOAD = examplePayload(
  "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
  true,
);
const AWS_TRAILER_HEADERS = {
  "x-amz-decoded-content-length": "66560",
  "x-amz-trailer": "x-amz-checksum-crc32c",
};

Deno.test("decodeBody() decodes the AWS example chunked upload with a signed trailer", async (t) => {
  const bodies = {
    "as specified": concat(AWS_TRAILER_CHUNKS, AWS_TRAILER_LINES, "\r\n"),
    "with CRLF after the last chunk": concat(AWS_TRAILER_CHUNKS, "\r\n", AWS_TRAILER_LINES, "\r\n"),
    "without the final CRLF": concat(AWS_TRAILER_CHUNKS, AWS_TRAILER_LINES),
  };
  for (const [name, body] of Object.entries(bodies)) {
    await t.step(name, async () => {
      for (const seed of [11, 12, 13]) {
        const cuts = randomCuts(prng(seed), body.length, 5000);
        const { bytes, trailers } = await decodeAll(
          body,
          AWS_TRAILER_PAYLOAD,
          AWS_TRAILER_HEADERS,
          cuts,
        );
        assert.deepEqual(bytes, aBytes(66560));
        assert.deepEqual([...trailers], [["x-amz-checksum-crc32c", "sOO8/Q=="]]);
      }
    });
  }
});

Deno.test("decodeBody() encodeSignedChunks() reproduces the AWS example trailer signature", () => {
  const body = encodeSignedChunks(
    [aBytes(65536), aBytes(1024)],
    {
      secretAccessKey: AWS_EXAMPLE.secretAccessKey,
      region: "us-east-1",
      amzDate: AMZ_DATE,
      seedSignature: AWS_TRAILER_PAYLOAD.seedSignature,
    },
    [["x-amz-checksum-crc32c", "sOO8/Q=="]],
  );
  assert.deepEqual(body, concat(AWS_TRAILER_CHUNKS, AWS_TRAILER_LINES, "\r\n"));
});

Deno.test("decodeBody() rejects a tampered trailer value or trailer signature", async () => {
  const tampered = [
    AWS_TRAILER_LINES.replace("sOO8/Q==", "sOO8/A=="),
    AWS_TRAILER_LINES.replace("d81f82fc", "d81f82fd"),
    AWS_TRAILER_LINES.replace(/:d81f.*\r\n/, ":\r\n"),
  ];
  for (const lines of tampered) {
    const body = concat(AWS_TRAILER_CHUNKS, lines, "\r\n");
    const decoded = decodeBody(
      streamOf(body),
      AWS_TRAILER_PAYLOAD,
      new Headers(AWS_TRAILER_HEADERS),
    );
    await rejectsWith(() => readAll(decoded.stream), "SignatureDoesNotMatch");
    await rejectsWith(() => decoded.trailers, "SignatureDoesNotMatch");
  }
});

Deno.test("decodeBody() rejects signed trailers without their signature", async () => {
  const body = concat(AWS_TRAILER_CHUNKS, "x-amz-checksum-crc32c:sOO8/Q==\r\n\r\n");
  await rejectsWith(
    () => decodeAll(body, AWS_TRAILER_PAYLOAD, AWS_TRAILER_HEADERS),
    "InvalidRequest",
  );
});

Deno.test("decodeBody() rejects a tampered chunk byte and never releases that chunk", async () => {
  for (const at of [100, 65535, 65536 + 200]) {
    const body = AWS_CHUNKED_BODY.slice();
    const offset = 88 + at + (at >= 65536 ? 88 : 0);
    assert.equal(body[offset], 0x61);
    body[offset] = 0x62;
    const released: Uint8Array[] = [];
    const decoded = decodeBody(
      streamOf(body, [1000, 65000, 500]),
      AWS_CHUNKED_PAYLOAD,
      new Headers(),
    );
    const err = await rejectsWith(async () => {
      for await (const piece of decoded.stream) released.push(piece);
    }, "SignatureDoesNotMatch");
    assert.match(err.message, new RegExp(`chunk ${at >= 65536 ? 2 : 1}\\b`));
    // Only whole verified chunks are released: chunk 1 completes in the second read.
    const total = released.reduce((n, p) => n + p.length, 0);
    assert.equal(total, at >= 65536 ? 65536 : 0);
    assert.ok(released.every((p) => p.every((b) => b === 0x61)));
  }
});

Deno.test("decodeBody() rejects a tampered chunk signature, each in turn", async () => {
  const text = new TextDecoder("latin1").decode(AWS_CHUNKED_BODY);
  for (const sig of ["ad80c730", "0055627c", "b6c6ea8a"]) {
    const body = utf8.encode(text.replace(sig, sig.slice(0, 7) + (sig[7] === "0" ? "1" : "0")));
    // latin1 round trip is exact here: the body is ASCII.
    assert.equal(body.length, AWS_CHUNKED_BODY.length);
    await rejectsWith(() => decodeAll(body, AWS_CHUNKED_PAYLOAD), "SignatureDoesNotMatch");
  }
});

Deno.test("decodeBody() rejects chunks swapped or replayed", async () => {
  const signing = {
    secretAccessKey: "s",
    region: "us-east-1",
    amzDate: AMZ_DATE,
    seedSignature: "0".repeat(64),
  };
  const payload: StreamingSignedPayload = {
    kind: "streaming-signed",
    trailer: false,
    signingKey: signingKey("s", "20130524", "us-east-1"),
    scope: scopeOf("20130524", "us-east-1"),
    amzDate: AMZ_DATE,
    seedSignature: signing.seedSignature,
  };
  const one = aBytes(10);
  const two = new Uint8Array(20).fill(0x62);
  const frames = [...signedChunkFrames([one, two], signing)];
  // frames: size1, one, CRLF, size2, two, CRLF, final, CRLF
  const swapped = concat(...frames.slice(3, 6), ...frames.slice(0, 3), ...frames.slice(6));
  await rejectsWith(() => decodeAll(swapped, payload), "SignatureDoesNotMatch");
  const replayed = concat(...frames.slice(0, 3), ...frames.slice(0, 3), ...frames.slice(6));
  await rejectsWith(() => decodeAll(replayed, payload), "SignatureDoesNotMatch");
  const dropped = concat(...frames.slice(0, 3), ...frames.slice(6));
  await rejectsWith(() => decodeAll(dropped, payload), "SignatureDoesNotMatch");
  const { bytes } = await decodeAll(concat(...frames), payload);
  assert.deepEqual(bytes, concat(one, two));
});

Deno.test("decodeBody() round-trips signed chunks, with and without trailers, split anywhere", async (t) => {
  const secret = "hamster-secret";
  const payloadOf = (trailer: boolean, seed: string): StreamingSignedPayload => ({
    kind: "streaming-signed",
    trailer,
    signingKey: signingKey(secret, "20261122", "us-east-1"),
    scope: scopeOf("20261122", "us-east-1"),
    amzDate: "20261122T030000Z",
    seedSignature: seed,
  });
  for (const seed of [21, 22, 23, 24, 25, 26]) {
    await t.step(`seed=${seed}`, async () => {
      const rand = prng(seed);
      const chunks: Uint8Array[] = [];
      const count = Math.floor(rand() * 5);
      for (let i = 0; i < count; i++) {
        const chunk = new Uint8Array(1 + Math.floor(rand() * 70000));
        for (let j = 0; j < chunk.length; j += 97) chunk[j] = Math.floor(rand() * 256);
        chunks.push(chunk);
      }
      const data = concat(...chunks);
      const trailer = seed % 2 === 0;
      const trailers: [string, string][] = [["x-amz-checksum-crc32", "AAAAAA=="]];
      const seedSignature = sha256Hex(String(seed));
      const body = encodeSignedChunks(
        chunks,
        {
          secretAccessKey: secret,
          region: "us-east-1",
          amzDate: "20261122T030000Z",
          seedSignature,
        },
        trailer ? trailers : undefined,
      );
      const cuts = randomCuts(rand, body.length, 1 + Math.floor(rand() * 20000));
      const out = await decodeAll(
        body,
        payloadOf(trailer, seedSignature),
        {
          "x-amz-decoded-content-length": String(data.length),
          ...(trailer ? { "x-amz-trailer": "x-amz-checksum-crc32" } : {}),
        },
        cuts,
      );
      assert.deepEqual(out.bytes, data);
      assert.deepEqual([...out.trailers], trailer ? trailers : []);
    });
  }
});

Deno.test("decodeBody() round-trips unsigned chunks with trailers, split anywhere", async (t) => {
  for (const seed of [31, 32, 33, 34]) {
    await t.step(`seed=${seed}`, async () => {
      const rand = prng(seed);
      const chunks = Array.from(
        { length: 1 + Math.floor(rand() * 4) },
        () => new Uint8Array(1 + Math.floor(rand() * 40000)).fill(seed),
      );
      const trailers: [string, string][] = [
        ["x-amz-checksum-crc64nvme", "AAAAAAAAAAA="],
        ["x-amz-meta-x", "1"],
      ];
      const body = encodeUnsignedChunks(chunks, trailers);
      const out = await decodeAll(
        body,
        { kind: "streaming-unsigned-trailer" },
        { "x-amz-trailer": "x-amz-checksum-crc64nvme" },
        randomCuts(rand, body.length, 1 + Math.floor(rand() * 3000)),
      );
      assert.deepEqual(out.bytes, concat(...chunks));
      assert.deepEqual([...out.trailers], trailers);
    });
  }
});

Deno.test("decodeBody() accepts chunk extensions and an empty unsigned body", async () => {
  const body = concat("3;ext=1\r\nabc\r\n0\r\n\r\n");
  const out = await decodeAll(body, { kind: "streaming-unsigned-trailer" });
  assert.deepEqual(out.bytes, utf8.encode("abc"));
  const empty = await decodeAll(concat("0\r\n\r\n"), { kind: "streaming-unsigned-trailer" });
  assert.equal(empty.bytes.length, 0);
});

Deno.test("decodeBody() rejects a trailer named by x-amz-trailer but not sent", async () => {
  const body = encodeUnsignedChunks([aBytes(5)], []);
  await rejectsWith(
    () =>
      decodeAll(body, { kind: "streaming-unsigned-trailer" }, {
        "x-amz-trailer": "x-amz-checksum-crc32",
      }),
    "InvalidRequest",
  );
});

Deno.test("decodeBody() rejects malformed aws-chunked framing", async () => {
  const unsigned: Payload = { kind: "streaming-unsigned-trailer" };
  const cases: [string, Uint8Array, Payload, string][] = [
    ["bad hex size", concat("zz\r\nabc\r\n0\r\n\r\n"), unsigned, "InvalidRequest"],
    ["empty size", concat("\r\nabc\r\n0\r\n\r\n"), unsigned, "InvalidRequest"],
    ["size line without CR", concat("3\nabc\r\n0\r\n\r\n"), unsigned, "InvalidRequest"],
    ["chunk longer than announced", concat("3\r\nabcd\r\n0\r\n\r\n"), unsigned, "InvalidRequest"],
    ["chunk shorter than announced", concat("5\r\nabc\r\n0\r\n\r\n"), unsigned, "InvalidRequest"],
    ["no CRLF after data", concat("3\r\nabc0\r\n\r\n"), unsigned, "InvalidRequest"],
    [
      "size line too long",
      concat("3;" + "x".repeat(5000) + "\r\nabc\r\n0\r\n\r\n"),
      unsigned,
      "InvalidRequest",
    ],
    ["endless size line", concat("3" + "0".repeat(5000)), unsigned, "InvalidRequest"],
    [
      "chunk over the limit",
      concat((MAX_CHUNK_BYTES + 1).toString(16) + "\r\n"),
      unsigned,
      "InvalidRequest",
    ],
    ["huge hex size", concat("ffffffffffffffffff\r\n"), unsigned, "InvalidRequest"],
    ["body ends in data", concat("5\r\nabc"), unsigned, "IncompleteBody"],
    ["body ends before the last chunk", concat("3\r\nabc\r\n"), unsigned, "IncompleteBody"],
    ["body ends in a size line", concat("3\r\nabc\r\n0"), unsigned, "IncompleteBody"],
    ["empty body", new Uint8Array(0), unsigned, "IncompleteBody"],
    ["malformed trailer", concat("0\r\nno-colon-here\r\n\r\n"), unsigned, "InvalidRequest"],
    [
      "trailer signature on an unsigned payload",
      concat("0\r\nx-amz-trailer-signature:abc\r\n\r\n"),
      unsigned,
      "InvalidRequest",
    ],
    ["bytes after the end", concat("0\r\n\r\n\r\nextra"), unsigned, "InvalidRequest"],
    [
      "signed chunk without signature",
      concat("400\r\n", aBytes(1024), "\r\n"),
      AWS_CHUNKED_PAYLOAD,
      "InvalidRequest",
    ],
    [
      "trailers on a payload without trailers",
      concat(AWS_CHUNKED_BODY.subarray(0, AWS_CHUNKED_BODY.length - 2), "x-amz-meta-a:b\r\n\r\n"),
      AWS_CHUNKED_PAYLOAD,
      "InvalidRequest",
    ],
  ];
  for (const [name, body, payload, code] of cases) {
    const err = await decodeAll(body, payload).then(
      () => new Error(`${name}: accepted`),
      (e) => e,
    );
    assert.ok(err instanceof AuthError, `${name}: ${err}`);
    assert.equal(err.code, code, `${name}: ${err.message}`);
  }
});

Deno.test("decodeBody() checks the decoded length against x-amz-decoded-content-length", async () => {
  for (const announced of ["66559", "66561", "0"]) {
    await rejectsWith(
      () =>
        decodeAll(AWS_CHUNKED_BODY, AWS_CHUNKED_PAYLOAD, {
          "x-amz-decoded-content-length": announced,
        }),
      "IncompleteBody",
    );
  }
  throwsWith(
    () =>
      decodeBody(
        streamOf(AWS_CHUNKED_BODY),
        AWS_CHUNKED_PAYLOAD,
        new Headers({
          "x-amz-decoded-content-length": "12ab",
        }),
      ),
    "InvalidArgument",
  );
});

Deno.test("decodeBody() passes a signed payload through and checks its SHA-256 at the end", async () => {
  const data = utf8.encode("Welcome to Amazon S3.");
  const payload: Payload = { kind: "signed", sha256Hex: sha256Hex(data) };
  for (const seed of [41, 42]) {
    const out = await decodeAll(data, payload, {}, randomCuts(prng(seed), data.length, 5));
    assert.deepEqual(out.bytes, data);
  }
  const wrong = data.slice();
  wrong[3] ^= 1;
  const err = await rejectsWith(() => decodeAll(wrong, payload), "XAmzContentSHA256Mismatch");
  assert.equal(err.extra.ClientComputedContentSHA256, payload.sha256Hex);
  await rejectsWith(() => decodeAll(data.subarray(0, 20), payload), "XAmzContentSHA256Mismatch");
});

Deno.test("decodeBody() reads a null body as empty", async () => {
  const empty = { kind: "signed", sha256Hex: sha256Hex("") } as const;
  assert.equal((await readAll(decodeBody(null, empty, new Headers()).stream)).length, 0);
  await rejectsWith(
    () => readAll(decodeBody(null, { kind: "streaming-unsigned-trailer" }, new Headers()).stream),
    "IncompleteBody",
  );
});

Deno.test("decodeBody() returns an unsigned body as it is", async () => {
  const data = utf8.encode("anything");
  const out = await decodeAll(data, { kind: "unsigned" });
  assert.deepEqual(out.bytes, data);
  assert.deepEqual([...out.trailers], []);
});

Deno.test("decodeBody() cancelling the decoded stream cancels the body and rejects trailers", async () => {
  let cancelled: unknown = null;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      c.enqueue(utf8.encode("3\r\nabc\r\n"));
    },
    cancel(reason) {
      cancelled = reason;
    },
  });
  const decoded = decodeBody(body, { kind: "streaming-unsigned-trailer" }, new Headers());
  const reader = decoded.stream.getReader();
  await reader.read();
  await reader.cancel("client went away");
  assert.equal(cancelled, "client went away");
  await assert.rejects(decoded.trailers);
});

Deno.test("decodeBody() decodes a 64 MiB signed chunked body as a stream", async () => {
  const chunkBytes = 64 * 1024;
  const count = 1024;
  const signing = {
    secretAccessKey: "big",
    region: "us-east-1",
    amzDate: "20261122T030000Z",
    seedSignature: "1".repeat(64),
  };
  const payload: StreamingSignedPayload = {
    kind: "streaming-signed",
    trailer: true,
    signingKey: signingKey("big", "20261122", "us-east-1"),
    scope: scopeOf("20261122", "us-east-1"),
    amzDate: signing.amzDate,
    seedSignature: signing.seedSignature,
  };
  const expected = createHash("sha256");
  function* chunks() {
    for (let i = 0; i < count; i++) {
      const chunk = new Uint8Array(chunkBytes).fill(i & 0xff);
      expected.update(chunk);
      yield chunk;
    }
  }
  const frames = signedChunkFrames(chunks(), signing, [["x-amz-checksum-crc32", "AAAAAA=="]]);
  const rand = prng(64);
  let carry: Uint8Array | null = null;
  // Re-cut the frames at random so reads straddle chunk boundaries.
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      const next = carry ?? frames.next().value;
      carry = null;
      if (next === undefined) return c.close();
      const cut = Math.min(next.length, 1 + Math.floor(rand() * 100000));
      c.enqueue(next.subarray(0, cut));
      if (cut < next.length) carry = next.subarray(cut);
    },
  }, { highWaterMark: 0 });
  const decoded = decodeBody(
    body,
    payload,
    new Headers({ "x-amz-decoded-content-length": String(chunkBytes * count) }),
  );
  const actual = createHash("sha256");
  let total = 0;
  let largest = 0;
  for await (const piece of decoded.stream) {
    actual.update(piece);
    total += piece.length;
    largest = Math.max(largest, piece.length);
  }
  assert.equal(total, 64 * 1024 * 1024);
  assert.ok(largest <= chunkBytes);
  assert.equal(actual.digest("hex"), expected.digest("hex"));
  assert.equal((await decoded.trailers).get("x-amz-checksum-crc32"), "AAAAAA==");
});
