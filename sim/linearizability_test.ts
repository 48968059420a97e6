import assert from "node:assert/strict";
import { checkRegisters, type ReadOp, type WriteOp } from "./linearizability.ts";

const w = (value: string, invokeMs: number, respMs: number, index?: number): WriteOp => ({
  key: "x",
  value,
  invokeMs,
  respMs,
  index,
});
const r = (value: string | undefined, invokeMs: number, respMs: number): ReadOp => ({
  key: "x",
  value,
  invokeMs,
  respMs,
  node: "n1",
});

Deno.test("checkRegisters() accepts a linearizable history with concurrent operations", () => {
  const writes = [w("a", 0, 10, 2), w("b", 5, 20, 3)];
  const reads = [r(undefined, 0, 1), r("a", 8, 12), r("b", 15, 16), r("b", 21, 22)];
  assert.equal(checkRegisters(writes, reads), null);
});

Deno.test("checkRegisters() rejects a stale read after a completed write", () => {
  const writes = [w("a", 0, 10, 2), w("b", 11, 20, 3)];
  assert.match(checkRegisters(writes, [r("a", 25, 26)])!, /Stale read/);
});

Deno.test("checkRegisters() rejects an acknowledged write missing from the log", () => {
  assert.match(checkRegisters([w("a", 0, 10)], [])!, /not in the log/);
});

Deno.test("checkRegisters() rejects a read of a value before its write began", () => {
  assert.match(checkRegisters([w("a", 50, 60, 2)], [r("a", 0, 10)])!, /before its write started/);
});

Deno.test("checkRegisters() rejects reads going back in time", () => {
  const writes = [w("a", 0, 100, 2), w("b", 0, 100, 3)];
  assert.match(checkRegisters(writes, [r("b", 10, 20), r("a", 30, 40)])!, /older value/);
});

Deno.test("checkRegisters() rejects a log order contradicting real time", () => {
  const writes = [w("a", 50, 60, 3), w("b", 0, 10, 2)];
  assert.equal(checkRegisters(writes, []), null);
  assert.match(checkRegisters([w("a", 50, 60, 2), w("b", 0, 10, 3)], [])!, /finished at 10 before/);
});

Deno.test("checkRegisters() allows an unacknowledged write to take effect or not", () => {
  assert.equal(checkRegisters([w("a", 0, Infinity, 2)], [r("a", 5, 6), r("a", 7, 8)]), null);
  assert.equal(checkRegisters([w("a", 0, Infinity)], [r(undefined, 5, 6)]), null);
});
