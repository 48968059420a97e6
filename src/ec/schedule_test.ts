import assert from "node:assert/strict";
import { createCodeMatrix, packetSizeBytes } from "./_matrix.ts";
import { planEncode, planReconstruct, type XorProgram } from "./_schedule.ts";

/** Runs a program on one super-block of 1-byte packets, as the kernel would. */
function runBits(program: XorProgram, shards: Uint8Array[]): void {
  const temps: number[] = [];
  const read = (slot: number, packet: number) => slot < 0 ? temps[packet] : shards[slot][packet];
  for (const op of program.ops) {
    let value = 0;
    for (const src of op.srcs) value ^= read(src.slot, src.packet);
    if (op.dst.slot < 0) temps[op.dst.packet] = value;
    else shards[op.dst.slot][op.dst.packet] = value;
  }
}

Deno.test("packetSizeBytes() halves while above 64, even, and (1 + k*w) packets exceed 1 MiB", () => {
  assert.equal(packetSizeBytes(4, 4, 8), 2);
  assert.equal(packetSizeBytes(4, 4, 262144), 32768);
  assert.equal(packetSizeBytes(4, 4, 1048576), 32768);
  assert.equal(packetSizeBytes(4, 4, 1000008), 125001);
  assert.equal(packetSizeBytes(2, 2, 1048576), 131072);
  assert.equal(packetSizeBytes(24, 8, 1048576), 4096);
  assert.equal(packetSizeBytes(24, 8, 24), 3);
});

Deno.test("planEncode() shares partial sums: fewer loads than summing every row for 8+4, 10+4", () => {
  for (const [k, m] of [[8, 4], [10, 4]]) {
    const program = planEncode(createCodeMatrix(k, m));
    assert.ok(
      program.loads < 0.85 * program.naiveLoads,
      `${k}+${m}: ${program.loads} of ${program.naiveLoads}`,
    );
  }
});

Deno.test("planReconstruct() programs rebuild every shard from the first k present", () => {
  // One super-block with w one-bit packets per shard: every program computes the right bits.
  for (const [k, m] of [[4, 2], [8, 4], [10, 4], [12, 4]]) {
    const code = createCodeMatrix(k, m);
    const data = Array.from(
      { length: k },
      (_, i) => Uint8Array.from({ length: code.w }, (_, a) => (i * 7 + a * 3 + 1) & 1),
    );
    const shards = [...data, ...Array.from({ length: m }, () => new Uint8Array(code.w))];
    runBits(planEncode(code), shards);
    for (let lost = 0; lost < k + m - 1; lost++) {
      const present = shards.map((_, i) => i !== lost && i !== lost + 1);
      const program = planReconstruct(code, present);
      assert.deepEqual(
        program.sources,
        shards.map((_, i) => i).filter((i) => present[i]).slice(0, k),
      );
      const copy = shards.map((shard, i) => present[i] ? shard.slice() : new Uint8Array(code.w));
      runBits(program, copy);
      assert.deepEqual(copy, shards, `${k}+${m} lost ${lost}, ${lost + 1}`);
    }
  }
});

Deno.test("planReconstruct() throws RangeError with fewer than k shards present", () => {
  assert.throws(
    () => planReconstruct(createCodeMatrix(4, 2), [true, true, true, false, false, false]),
    RangeError,
  );
});
