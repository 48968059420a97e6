import assert from "node:assert/strict";
import {
  decodeRecordHeader,
  decodeRecordOwner,
  decodeSegmentHeader,
  encodeRecord,
  encodeSegmentHeader,
  payloadMatches,
  RECORD_HEADER_SIZE_BYTES,
  type RecordOwner,
  SEGMENT_HEADER_SIZE_BYTES,
} from "./segment_record.ts";

const ID = "0123456789abcdef".repeat(2);

function pattern(size: number): Uint8Array {
  return Uint8Array.from({ length: size }, (_, i) => (i * 31 + 7) & 0xff);
}

/** Splits an encoded record into its header, payload and owner bytes. */
function split(record: Uint8Array, payloadSize: number) {
  return {
    header: record.subarray(0, RECORD_HEADER_SIZE_BYTES),
    payload: record.subarray(RECORD_HEADER_SIZE_BYTES, RECORD_HEADER_SIZE_BYTES + payloadSize),
    owner: record.subarray(RECORD_HEADER_SIZE_BYTES + payloadSize),
  };
}

function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const out = bytes.slice();
  out[bit >> 3] ^= 1 << (bit & 7);
  return out;
}

function assertRoundTrip(payload: Uint8Array, owner: RecordOwner): void {
  const record = encodeRecord(ID, payload, owner);
  const enc = new TextEncoder();
  const ownerSize = enc.encode(owner.bucket).length + enc.encode(owner.key).length;
  assert.equal(record.length, RECORD_HEADER_SIZE_BYTES + payload.length + ownerSize);
  const parts = split(record, payload.length);
  const header = decodeRecordHeader(parts.header);
  assert.ok(header, "the header decodes");
  assert.equal(header.dataId, ID);
  assert.equal(header.payloadSizeBytes, payload.length);
  assert.equal(header.ownerSizeBytes, ownerSize);
  assert.deepEqual(parts.payload, payload);
  assert.ok(payloadMatches(header, parts.payload));
  assert.deepEqual(decodeRecordOwner(parts.header, parts.owner), owner);
}

Deno.test("encodeRecord() round-trips through the decoders with an empty payload", () => {
  assertRoundTrip(new Uint8Array(0), { bucket: "b", key: "k" });
});

Deno.test("encodeRecord() round-trips a unicode key as UTF-8", () => {
  assertRoundTrip(pattern(100), { bucket: "bücket-1", key: "ключ/日本/🐹 x.txt" });
});

Deno.test("encodeRecord() round-trips a 1024-byte key", () => {
  assertRoundTrip(pattern(5000), { bucket: "b".repeat(63), key: "k".repeat(1024) });
});

Deno.test("decodeRecordHeader() returns null for every single flipped header bit", () => {
  const record = encodeRecord(ID, pattern(10), { bucket: "b", key: "k" });
  const header = record.subarray(0, RECORD_HEADER_SIZE_BYTES);
  assert.ok(decodeRecordHeader(header));
  for (let bit = 0; bit < RECORD_HEADER_SIZE_BYTES * 8; bit++) {
    assert.equal(decodeRecordHeader(flipBit(header, bit)), null, `bit ${bit}`);
  }
  assert.equal(decodeRecordHeader(header.subarray(0, RECORD_HEADER_SIZE_BYTES - 1)), null);
});

Deno.test("payloadMatches() is false when one payload bit is flipped", () => {
  const payload = pattern(64);
  const parts = split(encodeRecord(ID, payload, { bucket: "b", key: "k" }), payload.length);
  const header = decodeRecordHeader(parts.header)!;
  for (const bit of [0, 9, 64 * 8 - 1]) {
    assert.equal(payloadMatches(header, flipBit(parts.payload, bit)), false, `bit ${bit}`);
  }
  assert.equal(payloadMatches(header, parts.payload.subarray(1)), false, "a short payload");
});

Deno.test("decodeRecordOwner() returns null when one owner bit is flipped", () => {
  const parts = split(encodeRecord(ID, pattern(8), { bucket: "bb", key: "kkk" }), 8);
  for (let bit = 0; bit < parts.owner.length * 8; bit++) {
    assert.equal(decodeRecordOwner(parts.header, flipBit(parts.owner, bit)), null, `bit ${bit}`);
  }
});

Deno.test("encodeSegmentHeader() and decodeSegmentHeader() round-trip the sequence number", () => {
  for (const sequence of [1, 2, 0xffff_ffff + 5, Number.MAX_SAFE_INTEGER]) {
    const bytes = encodeSegmentHeader(sequence);
    assert.equal(bytes.length, SEGMENT_HEADER_SIZE_BYTES);
    assert.deepEqual([...bytes.subarray(0, 4)], [0x48, 0x4d, 0x53, 0x47]);
    assert.equal(decodeSegmentHeader(bytes), sequence);
  }
});

Deno.test("decodeSegmentHeader() throws RangeError on a bad checksum, magic or length", () => {
  const bytes = encodeSegmentHeader(7);
  assert.throws(() => decodeSegmentHeader(flipBit(bytes, 8 * 8)), RangeError);
  assert.throws(() => decodeSegmentHeader(flipBit(bytes, 8 * 8)), /bad checksum/);
  assert.throws(() => decodeSegmentHeader(flipBit(bytes, 28 * 8)), /bad checksum/);
  assert.throws(() => decodeSegmentHeader(flipBit(bytes, 0)), /bad magic/);
  assert.throws(() => decodeSegmentHeader(bytes.subarray(0, 31)), RangeError);
});

Deno.test("encodeRecord() throws RangeError on a bad data id or an owner name too long", () => {
  const owner = { bucket: "b", key: "k" };
  for (const bad of ["", "xyz", ID.slice(1), ID + "0", ID.toUpperCase(), "g".repeat(32)]) {
    assert.throws(() => encodeRecord(bad, pattern(1), owner), RangeError, `"${bad}"`);
  }
  assert.throws(
    () => encodeRecord(ID, pattern(1), { bucket: "b".repeat(256), key: "k" }),
    RangeError,
  );
  assert.throws(
    () => encodeRecord(ID, pattern(1), { bucket: "b", key: "k".repeat(65536) }),
    RangeError,
  );
});
