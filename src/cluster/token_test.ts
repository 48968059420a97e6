import assert from "node:assert/strict";
import {
  checkJoinToken,
  constantTimeEqual,
  decodeJoinToken,
  encodeJoinToken,
  JOIN_TOKEN_PREFIX,
  JoinTokenError,
  type JoinTokenRefusal,
  mintJoinToken,
  TOKEN_RANDOM_BYTES,
} from "./token.ts";

const CA_SHA = "ab".repeat(32);
const NOW = Date.UTC(2026, 11, 4, 12);
const random = (seed: number) =>
  Uint8Array.from({ length: TOKEN_RANDOM_BYTES }, (_, i) => (i * 31 + seed) & 0xff);

async function refusal(
  p: Promise<unknown> | (() => unknown),
): Promise<[JoinTokenRefusal | "none", string]> {
  try {
    await (typeof p === "function" ? p() : p);
    return ["none", ""];
  } catch (e) {
    if (e instanceof JoinTokenError) return [e.code, e.message];
    throw e;
  }
}

Deno.test("encodeJoinToken() / decodeJoinToken() round-trip every field", async () => {
  const { token, record } = await mintJoinToken({
    addr: "10.0.0.5:7946",
    caSha256: CA_SHA,
    nowMs: NOW,
    ttlMs: 3600_000,
    random: random(1),
  });
  const text = encodeJoinToken(token);
  assert.ok(text.startsWith(JOIN_TOKEN_PREFIX));
  assert.match(text.slice(JOIN_TOKEN_PREFIX.length), /^[A-Za-z0-9_-]+$/);
  assert.deepEqual(decodeJoinToken(` ${text}\n`), token);
  assert.equal(record.expiresAtMs, NOW + 3600_000);
  assert.equal(record.usedBy, null);
  const secretHex = Array.from(token.secret, (b) => b.toString(16).padStart(2, "0")).join("");
  assert.ok(!JSON.stringify(record).includes(secretHex), "the record never holds the secret");
  assert.match(record.secretSha256, /^[0-9a-f]{64}$/);
});

Deno.test("decodeJoinToken() says what is wrong with a malformed token", async () => {
  const { token } = await mintJoinToken({
    addr: "h:1",
    caSha256: CA_SHA,
    nowMs: NOW,
    ttlMs: 1,
    random: random(2),
  });
  const text = encodeJoinToken(token);
  const cases: [string, RegExp][] = [
    ["", /must start with "hamster-join-v1\."/],
    ["hamster-join-v2.AAAA", /must start with/],
    [JOIN_TOKEN_PREFIX + "ab$cd", /not base64url/],
    [text.slice(0, -4), /bytes where \d+ were expected/],
    [text + "AAAA", /bytes where \d+ were expected/],
    [JOIN_TOKEN_PREFIX + "AA", /bytes where/],
  ];
  for (const [input, re] of cases) {
    const [code, message] = await refusal(() => decodeJoinToken(input));
    assert.equal(code, "MalformedToken", input);
    assert.match(message, re, input);
  }
});

Deno.test("checkJoinToken() refuses unknown, used, expired (saying so) and wrong-secret tokens", async () => {
  const { token, record } = await mintJoinToken({
    addr: "h:1",
    caSha256: CA_SHA,
    nowMs: NOW,
    ttlMs: 60_000,
    random: random(3),
  });
  assert.deepEqual(
    await refusal(checkJoinToken(record, token.tokenId, token.secret, NOW + 59_999)),
    ["none", ""],
  );
  assert.equal(
    (await refusal(checkJoinToken(null, token.tokenId, token.secret, NOW)))[0],
    "UnknownToken",
  );
  assert.equal(
    (await refusal(checkJoinToken({ ...record, usedBy: "n2" }, token.tokenId, token.secret, NOW)))[
      0
    ],
    "UsedToken",
  );
  const [code, message] = await refusal(
    checkJoinToken(record, token.tokenId, token.secret, NOW + 60_000),
  );
  assert.equal(code, "ExpiredToken");
  assert.match(message, /expired at 2026-12-04T12:01:00\.000Z/);
  const wrong = token.secret.slice();
  wrong[31] ^= 1;
  assert.equal(
    (await refusal(checkJoinToken(record, token.tokenId, wrong, NOW)))[0],
    "WrongSecret",
  );
});

Deno.test("constantTimeEqual() compares whole byte strings", () => {
  assert.equal(constantTimeEqual(Uint8Array.of(1, 2, 3), Uint8Array.of(1, 2, 3)), true);
  assert.equal(constantTimeEqual(Uint8Array.of(1, 2, 3), Uint8Array.of(1, 2, 4)), false);
  assert.equal(constantTimeEqual(Uint8Array.of(1, 2), Uint8Array.of(1, 2, 0)), false);
  assert.equal(constantTimeEqual(new Uint8Array(0), new Uint8Array(0)), true);
});

Deno.test("mintJoinToken() refuses bad inputs", async () => {
  const base = { addr: "h:1", caSha256: CA_SHA, nowMs: NOW, ttlMs: 1, random: random(4) };
  assert.equal(
    (await refusal(mintJoinToken({ ...base, random: new Uint8Array(3) })))[0],
    "MalformedToken",
  );
  assert.equal((await refusal(mintJoinToken({ ...base, ttlMs: 0 })))[0], "MalformedToken");
  assert.equal(
    (await refusal(mintJoinToken({ ...base, caSha256: "AB".repeat(32) })))[0],
    "MalformedToken",
  );
  assert.equal((await refusal(mintJoinToken({ ...base, addr: "" })))[0], "MalformedToken");
});
