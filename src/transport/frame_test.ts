import assert from "node:assert/strict";
import { SimRng } from "../../sim/rng.ts";
import {
  decodeErrorFrame,
  decodeFrame,
  encodeFrame,
  errorFrame,
  type Frame,
  FRAME_HEADER_BYTES,
  FrameError,
  type FrameErrorCode,
  FrameReader,
  FrameType,
  u32Bytes,
} from "./frame.ts";

function codeOf(fn: () => unknown): FrameErrorCode | "none" {
  try {
    fn();
    return "none";
  } catch (e) {
    if (e instanceof FrameError) return e.code;
    throw e;
  }
}

const ALL_TYPES = Object.values(FrameType);

/** A random valid frame for `type`. */
function randomFrame(rng: SimRng, type: FrameType, maxPayload: number): Frame {
  const connectionLevel = type === FrameType.Raft || type === FrameType.Ping ||
    type === FrameType.Pong || type === FrameType.JoinRequest || type === FrameType.JoinResponse;
  const streamId = connectionLevel ? 0 : 1 + (rng.nextU32() % 0xfffffffe);
  let payload: Uint8Array;
  if (type === FrameType.Ping || type === FrameType.Pong) payload = rng.fill(new Uint8Array(8));
  else if (type === FrameType.StreamCredit) payload = u32Bytes(1 + (rng.nextU32() % 0xfffffffe));
  else if (type === FrameType.StreamReset) payload = rng.fill(new Uint8Array(4));
  else if (type === FrameType.StreamEnd) payload = new Uint8Array(0);
  else {payload = rng.fill(
      new Uint8Array((type === FrameType.StreamOpen ? 4 : 0) + rng.nextU32() % maxPayload),
    );}
  return { type, streamId, payload };
}

Deno.test("encodeFrame() writes the documented header", () => {
  const bytes = encodeFrame({
    type: FrameType.Request,
    streamId: 0x01020304,
    payload: Uint8Array.of(9, 8),
  });
  assert.deepEqual([...bytes], [0, 0, 0, 2, 1, 0x20, 1, 2, 3, 4, 9, 8]);
  assert.equal(FRAME_HEADER_BYTES, 10);
});

Deno.test("decodeFrame() refuses truncated, oversized, wrong-version and unknown-type frames", () => {
  const good = encodeFrame({ type: FrameType.Raft, streamId: 0, payload: new Uint8Array(100) });
  assert.deepEqual(decodeFrame(good).payload, new Uint8Array(100));
  assert.equal(codeOf(() => decodeFrame(good.subarray(0, 5))), "Truncated");
  assert.equal(codeOf(() => decodeFrame(good.subarray(0, 109))), "Truncated");
  assert.equal(codeOf(() => decodeFrame(new Uint8Array(0))), "Truncated");
  assert.equal(codeOf(() => decodeFrame(good, 99)), "TooLarge");
  const v2 = good.slice();
  v2[4] = 2;
  assert.equal(codeOf(() => decodeFrame(v2)), "UnsupportedVersion");
  const unknown = good.slice();
  unknown[5] = 0x7f;
  assert.equal(codeOf(() => decodeFrame(unknown)), "UnknownType");
  const trailing = new Uint8Array(good.length + 1);
  trailing.set(good);
  assert.equal(codeOf(() => decodeFrame(trailing)), "TrailingBytes");
});

Deno.test("decodeFrame() checks stream ids and fixed payload sizes per type", () => {
  const raw = (type: number, streamId: number, payload: Uint8Array) => {
    const out = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
    const v = new DataView(out.buffer);
    v.setUint32(0, payload.length);
    out[4] = 1;
    out[5] = type;
    v.setUint32(6, streamId);
    out.set(payload, FRAME_HEADER_BYTES);
    return out;
  };
  assert.equal(codeOf(() => decodeFrame(raw(FrameType.Raft, 7, new Uint8Array(1)))), "BadStreamId");
  assert.equal(
    codeOf(() => decodeFrame(raw(FrameType.StreamData, 0, new Uint8Array(1)))),
    "BadStreamId",
  );
  assert.equal(codeOf(() => decodeFrame(raw(FrameType.Ping, 0, new Uint8Array(7)))), "BadPayload");
  assert.equal(
    codeOf(() => decodeFrame(raw(FrameType.StreamCredit, 3, u32Bytes(0)))),
    "BadPayload",
  );
  assert.equal(
    codeOf(() => decodeFrame(raw(FrameType.StreamEnd, 3, new Uint8Array(1)))),
    "BadPayload",
  );
  assert.equal(
    codeOf(() => decodeFrame(raw(FrameType.StreamOpen, 3, new Uint8Array(3)))),
    "BadPayload",
  );
  assert.equal(codeOf(() => decodeFrame(raw(FrameType.Error, 0, new Uint8Array(0)))), "none");
});

Deno.test("FrameReader refuses an oversized frame from its header, before the payload arrives", () => {
  const reader = new FrameReader(1024);
  const header = encodeFrame(
    { type: FrameType.Raft, streamId: 0, payload: new Uint8Array(2000) },
    4096,
  )
    .subarray(0, FRAME_HEADER_BYTES);
  assert.equal(codeOf(() => reader.push(header)), "TooLarge");
  assert.equal(codeOf(() => reader.push(new Uint8Array(0))), "TooLarge", "stays failed");
});

Deno.test("errorFrame() round-trips code and message", () => {
  const f = decodeFrame(encodeFrame(errorFrame(5, "ExpiredToken", "Join token expired")));
  assert.deepEqual(decodeErrorFrame(f), { code: "ExpiredToken", message: "Join token expired" });
  assert.equal(f.streamId, 5);
});

Deno.test("FrameReader fuzz: random frames split at random points decode to the same frames", async (t) => {
  for (let seed = 1; seed <= 20; seed++) {
    await t.step(`seed=${seed}`, () => {
      const rng = new SimRng(seed);
      const frames = Array.from(
        { length: 1 + rng.nextU32() % 30 },
        () => randomFrame(rng, ALL_TYPES[rng.nextU32() % ALL_TYPES.length], 3000),
      );
      const wire = new Uint8Array(
        frames.reduce((n, f) => n + FRAME_HEADER_BYTES + f.payload.length, 0),
      );
      let at = 0;
      for (const f of frames) {
        const bytes = encodeFrame(f);
        wire.set(bytes, at);
        at += bytes.length;
      }
      const reader = new FrameReader();
      const got: Frame[] = [];
      for (let i = 0; i < wire.length;) {
        const n = 1 + rng.nextU32() % 700;
        got.push(...reader.push(wire.subarray(i, i + n)));
        i += n;
      }
      reader.finish();
      assert.deepEqual(
        got,
        frames,
        `replay: deno test -A src/transport/frame_test.ts --filter "seed=${seed}"`,
      );
    });
  }
});

Deno.test("decodeFrame() fuzz: truncations, flipped header bytes and oversizes give typed errors, never others", async (t) => {
  for (let seed = 1; seed <= 20; seed++) {
    await t.step(`seed=${seed}`, () => {
      const rng = new SimRng(1000 + seed);
      for (let i = 0; i < 200; i++) {
        const frame = randomFrame(rng, ALL_TYPES[rng.nextU32() % ALL_TYPES.length], 300);
        const bytes = encodeFrame(frame);
        // Every strict prefix is truncated.
        const cut = rng.nextU32() % bytes.length;
        assert.equal(codeOf(() => decodeFrame(bytes.subarray(0, cut))), "Truncated");
        // A wrong version byte is refused, whatever else the frame holds.
        const wrong = bytes.slice();
        wrong[4] = 2 + rng.nextU32() % 254;
        assert.equal(codeOf(() => decodeFrame(wrong)), "UnsupportedVersion");
        // A limit under the payload length is refused as TooLarge.
        if (frame.payload.length > 0) {
          assert.equal(codeOf(() => decodeFrame(bytes, frame.payload.length - 1)), "TooLarge");
        }
        // Random garbage: a typed FrameError or a frame that re-encodes to the same bytes.
        const garbage = bytes.slice();
        garbage[rng.nextU32() % garbage.length] ^= 1 + rng.nextU32() % 255;
        const code = codeOf(() => decodeFrame(garbage));
        if (code === "none") assert.deepEqual(encodeFrame(decodeFrame(garbage)), garbage);
      }
    });
  }
});
