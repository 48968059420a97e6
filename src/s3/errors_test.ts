import assert from "node:assert/strict";
import { MetaError } from "../meta/mod.ts";
import { toS3Error } from "./errors.ts";

Deno.test("a SlowDown from the metadata log is a 503 SlowDown with Retry-After", () => {
  const e = toS3Error(new MetaError("SlowDown", "No leader is known; retry"));
  assert.equal(e.status, 503);
  assert.equal(e.code, "SlowDown");
  assert.equal(e.headers["Retry-After"], "1");
  assert.equal(e.message, "No leader is known; retry");
});
