import assert from "node:assert/strict";
import type { Message } from "../raft/mod.ts";
import { decodeMessage, encodeMessage, FrameCorruptError } from "./wire.ts";

const append: Message = {
  type: "AppendEntries",
  from: "n1",
  to: "n2",
  term: 7,
  prevLogIndex: 4,
  prevLogTerm: 6,
  entries: [{ index: 5, term: 7, kind: "normal", data: new Uint8Array([0, 1, 255]), id: "w1" }],
  leaderCommit: 4,
};

Deno.test("encodeMessage() / decodeMessage() round-trip a message with byte strings", () => {
  assert.deepEqual(decodeMessage(encodeMessage(append)), append);
});

Deno.test("decodeMessage() rejects every single flipped byte of a frame", () => {
  const frame = encodeMessage(append);
  for (let i = 0; i < frame.length; i++) {
    for (const mask of [0x01, 0x80, 0xff]) {
      const bad = frame.slice();
      bad[i] ^= mask;
      assert.throws(() => decodeMessage(bad), FrameCorruptError, `byte ${i} mask ${mask}`);
    }
  }
  assert.throws(() => decodeMessage(frame.subarray(0, frame.length - 1)), FrameCorruptError);
});
