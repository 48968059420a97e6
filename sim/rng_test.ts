import assert from "node:assert/strict";
import { SimRng } from "./rng.ts";

Deno.test("SimRng replays the same stream from the same seed", () => {
  const a = new SimRng(12345);
  const b = new SimRng(12345);
  for (let i = 0; i < 1000; i++) assert.equal(a.nextU32(), b.nextU32());
  assert.notEqual(new SimRng(1).nextU32(), new SimRng(2).nextU32());
});

Deno.test("SimRng.int() is roughly uniform", () => {
  const rng = new SimRng(7);
  const counts = new Array(10).fill(0);
  for (let i = 0; i < 100_000; i++) counts[rng.int(10)]++;
  for (const c of counts) assert.ok(c > 9_500 && c < 10_500, `${counts}`);
});

Deno.test("SimRng.fill() fills every byte", () => {
  const b = new SimRng(3).fill(new Uint8Array(7));
  assert.equal(b.length, 7);
  assert.ok(b.some((x) => x !== 0));
});
