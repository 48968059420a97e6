/**
 * Join tokens: the single-use, TTL-bound string `hamster cluster token`
 * prints and `hamster cluster run -join` consumes, and the record the cluster
 * keeps of it (a hash of the secret, never the secret).
 *
 * Pure: no clock, no random source; callers pass `nowMs` and random bytes.
 * Hashing uses WebCrypto's SHA-256, which is deterministic.
 *
 * Token text: `hamster-join-v1.` followed by base64url (no padding) of
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 1 | `addrLen`: length of the join address in bytes, 1..255 |
 * | 1 | addrLen | join address, UTF-8 `host:port` |
 * | 1+addrLen | 32 | SHA-256 of the cluster CA certificate (DER) |
 * | 33+addrLen | 16 | token id |
 * | 49+addrLen | 32 | secret |
 *
 * The token id is public (it names the record); the secret is checked against
 * `SHA-256(secret)` in constant time. See docs/adr/0051-join-protocol.md.
 *
 * @module
 */
import type { Command } from "../meta/commands.ts";
import type { JoinTokenRecord } from "../meta/records.ts";

/** Text before the base64url body; the `v1` is the layout version. */
export const JOIN_TOKEN_PREFIX = "hamster-join-v1.";
/** Bytes of the token id. */
export const TOKEN_ID_BYTES = 16;
/** Bytes of the secret. */
export const TOKEN_SECRET_BYTES = 32;
/** Random bytes {@link mintJoinToken} needs: token id, then secret. */
export const TOKEN_RANDOM_BYTES: number = TOKEN_ID_BYTES + TOKEN_SECRET_BYTES;
/** Default time to live of a token: 24 hours. */
export const DEFAULT_TOKEN_TTL_MS = 24 * 3600 * 1000;

const CA_SHA256_BYTES = 32;

/** A decoded join token. */
export interface JoinToken {
  /** Where the joiner dials: `host:port` of a member's cluster port. */
  addr: string;
  /** SHA-256 of the CA certificate's DER bytes, 64 lowercase hex digits. */
  caSha256: string;
  /** 32 lowercase hex digits. */
  tokenId: string;
  /** {@link TOKEN_SECRET_BYTES} random bytes. */
  secret: Uint8Array;
}

export type { JoinTokenRecord };

/**
 * Metadata command that records a new token (`src/meta/commands.ts`). `apply`
 * sets the record with `usedBy: null`; a record with that `tokenId` already
 * present is left as is.
 */
export type IssueJoinTokenCommand = Extract<Command, { type: "IssueJoinToken" }>;

/**
 * Metadata command that burns a token for `nodeId` (`src/meta/commands.ts`).
 * Deterministic `apply`: it burns (sets `usedBy`; the result's `burned` is
 * true) only when the record exists, `usedBy` is `null` and `nowMs` (stamped
 * at propose time) is before `expiresAtMs`, and no other token already burned
 * for the same `nodeId`, so two joiners claiming one node id with two tokens
 * cannot both get a certificate; otherwise it changes nothing. The join
 * authority issues a certificate only after its own burn committed with
 * success, so two joiners racing with one token get one certificate between
 * them, cluster-wide.
 */
export type BurnJoinTokenCommand = Extract<Command, { type: "BurnJoinToken" }>;

/** Why a token was refused; `message` says it for a person. */
export type JoinTokenRefusal =
  | "MalformedToken"
  | "UnknownToken"
  | "ExpiredToken"
  | "WrongSecret"
  | "UsedToken";

/** A token that cannot be used, with the reason as a code. */
export class JoinTokenError extends Error {
  /** Always `"JoinTokenError"`. */
  override name = "JoinTokenError";
  /** The error, with `code`: why the token cannot be used. */
  constructor(readonly code: JoinTokenRefusal, message: string) {
    super(message);
  }
}

/**
 * Makes a token and the record to propose in an `IssueJoinToken` command.
 *
 * @param opts.random {@link TOKEN_RANDOM_BYTES} random bytes: token id, then secret.
 * @param opts.ttlMs time to live, at least 1 ms.
 * @throws {JoinTokenError} `MalformedToken` when an input is out of range.
 */
export async function mintJoinToken(opts: {
  addr: string;
  caSha256: string;
  nowMs: number;
  ttlMs: number;
  random: Uint8Array;
}): Promise<{ token: JoinToken; record: JoinTokenRecord }> {
  if (opts.random.length !== TOKEN_RANDOM_BYTES) {
    throw new JoinTokenError(
      "MalformedToken",
      `Join token needs ${TOKEN_RANDOM_BYTES} random bytes, got ${opts.random.length}`,
    );
  }
  if (!(opts.ttlMs >= 1) || !Number.isSafeInteger(opts.ttlMs)) {
    throw new JoinTokenError(
      "MalformedToken",
      `Join token TTL must be at least 1 ms: ${opts.ttlMs}`,
    );
  }
  const token: JoinToken = {
    addr: opts.addr,
    caSha256: opts.caSha256,
    tokenId: hex(opts.random.subarray(0, TOKEN_ID_BYTES)),
    secret: opts.random.slice(TOKEN_ID_BYTES),
  };
  encodeJoinToken(token); // validates addr and caSha256
  const record: JoinTokenRecord = {
    tokenId: token.tokenId,
    secretSha256: await hashSecret(token.secret),
    createdAtMs: opts.nowMs,
    expiresAtMs: opts.nowMs + opts.ttlMs,
    usedBy: null,
  };
  return { token, record };
}

/**
 * Encodes a token as text (layout in the module doc).
 * @throws {JoinTokenError} `MalformedToken` when a field is out of range.
 */
export function encodeJoinToken(token: JoinToken): string {
  const addr = new TextEncoder().encode(token.addr);
  if (addr.length < 1 || addr.length > 255) {
    throw new JoinTokenError(
      "MalformedToken",
      `Join address must be 1 to 255 bytes: "${token.addr}"`,
    );
  }
  const ca = unhex(token.caSha256, CA_SHA256_BYTES, "CA fingerprint");
  const id = unhex(token.tokenId, TOKEN_ID_BYTES, "token id");
  if (token.secret.length !== TOKEN_SECRET_BYTES) {
    throw new JoinTokenError(
      "MalformedToken",
      `Join token secret must be ${TOKEN_SECRET_BYTES} bytes, got ${token.secret.length}`,
    );
  }
  const out = new Uint8Array(
    1 + addr.length + CA_SHA256_BYTES + TOKEN_ID_BYTES + TOKEN_SECRET_BYTES,
  );
  out[0] = addr.length;
  out.set(addr, 1);
  out.set(ca, 1 + addr.length);
  out.set(id, 1 + addr.length + CA_SHA256_BYTES);
  out.set(token.secret, 1 + addr.length + CA_SHA256_BYTES + TOKEN_ID_BYTES);
  return JOIN_TOKEN_PREFIX + base64url(out);
}

/**
 * Decodes token text; surrounding whitespace is ignored.
 * @throws {JoinTokenError} `MalformedToken` with what is wrong: the prefix,
 *   the base64url, the length, or the address.
 */
export function decodeJoinToken(text: string): JoinToken {
  const s = text.trim();
  if (!s.startsWith(JOIN_TOKEN_PREFIX)) {
    const shown = s.length > 20 ? `${s.slice(0, 20)}...` : s;
    throw new JoinTokenError(
      "MalformedToken",
      `Cannot decode join token: it must start with "${JOIN_TOKEN_PREFIX}", got "${shown}"`,
    );
  }
  const body = s.slice(JOIN_TOKEN_PREFIX.length);
  if (!/^[A-Za-z0-9_-]+$/.test(body)) {
    throw new JoinTokenError("MalformedToken", "Cannot decode join token: body is not base64url");
  }
  let bytes: Uint8Array;
  try {
    bytes = unbase64url(body);
  } catch {
    throw new JoinTokenError("MalformedToken", "Cannot decode join token: body is not base64url");
  }
  const addrLen = bytes[0] ?? 0;
  const want = 1 + addrLen + CA_SHA256_BYTES + TOKEN_ID_BYTES + TOKEN_SECRET_BYTES;
  if (addrLen === 0 || bytes.length !== want) {
    throw new JoinTokenError(
      "MalformedToken",
      `Cannot decode join token: ${bytes.length} bytes where ${want} were expected (truncated or corrupted?)`,
    );
  }
  let addr: string;
  try {
    addr = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(1, 1 + addrLen));
  } catch {
    throw new JoinTokenError("MalformedToken", "Cannot decode join token: address is not UTF-8");
  }
  let p = 1 + addrLen;
  const caSha256 = hex(bytes.subarray(p, p += CA_SHA256_BYTES));
  const tokenId = hex(bytes.subarray(p, p += TOKEN_ID_BYTES));
  const secret = bytes.slice(p, p + TOKEN_SECRET_BYTES);
  return { addr, caSha256, tokenId, secret };
}

/** SHA-256 of a secret as 64 lowercase hex digits: what the record stores. */
export async function hashSecret(secret: Uint8Array): Promise<string> {
  return hex(new Uint8Array(await crypto.subtle.digest("SHA-256", Uint8Array.from(secret))));
}

/**
 * Compares two byte strings in time that depends only on their lengths, never
 * on where they first differ.
 */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

/**
 * Decides whether `secret` may use `record` at `nowMs`. Order: unknown, used,
 * expired, then the secret; a wrong secret changes nothing (the caller must
 * not burn), and the secret's hash is compared in constant time.
 *
 * @param record the committed record for `tokenId`, or `null`.
 * @throws {JoinTokenError} `UnknownToken`, `UsedToken`, `ExpiredToken` (the
 *   message says when it expired) or `WrongSecret`.
 */
export async function checkJoinToken(
  record: JoinTokenRecord | null,
  tokenId: string,
  secret: Uint8Array,
  nowMs: number,
): Promise<void> {
  if (record === null || record.tokenId !== tokenId) {
    throw new JoinTokenError(
      "UnknownToken",
      `Join token "${tokenId}" is not known to this cluster`,
    );
  }
  if (record.usedBy !== null) {
    throw new JoinTokenError("UsedToken", `Join token "${tokenId}" has already been used`);
  }
  if (nowMs >= record.expiresAtMs) {
    throw new JoinTokenError(
      "ExpiredToken",
      `Join token "${tokenId}" expired at ${
        new Date(record.expiresAtMs).toISOString()
      }: mint a new one with "hamster cluster token"`,
    );
  }
  const got = unhex(await hashSecret(secret), 32, "secret hash");
  const want = unhex(record.secretSha256, 32, "stored secret hash");
  if (!constantTimeEqual(got, want)) {
    throw new JoinTokenError("WrongSecret", `Join token "${tokenId}" secret is wrong`);
  }
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function unhex(s: string, sizeBytes: number, what: string): Uint8Array {
  if (s.length !== sizeBytes * 2 || !/^[0-9a-f]*$/.test(s)) {
    throw new JoinTokenError(
      "MalformedToken",
      `Join token ${what} must be ${sizeBytes * 2} lowercase hex digits: "${s}"`,
    );
  }
  const out = new Uint8Array(sizeBytes);
  for (let i = 0; i < sizeBytes; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function base64url(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function unbase64url(s: string): Uint8Array {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}
