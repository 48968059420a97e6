/**
 * The cluster port on real loopback sockets: mutual TLS between nodes, the
 * refusals (plain TCP, a certificate from another CA, no certificate outside
 * the join exchange), and the join exchange itself with its refusals.
 */
import assert from "node:assert/strict";
import tls from "node:tls";
import type { Clock } from "../../src/io/mod.ts";
import type { DialAddr, SecureConn, TlsIdentity } from "../../src/io/conn.ts";
import { systemClock, systemRng } from "../../src/io/deno/clock.ts";
import { dialCluster, dialForJoin, listenCluster } from "../../src/io/deno/tls.ts";
import {
  caFingerprintSha256,
  type ClusterCa,
  createClusterCa,
  createCsr,
  issueNodeCertificate,
  verifyNodeCertificate,
} from "../../src/cluster/pki.ts";
import {
  encodeJoinToken,
  type JoinTokenRecord,
  mintJoinToken,
  TOKEN_RANDOM_BYTES,
} from "../../src/cluster/token.ts";
import { answerJoinRequest, JoinError, requestJoin } from "../../src/cluster/join.ts";
import { decodeFrame, encodeFrame, type Frame, FrameType } from "../../src/transport/frame.ts";
import { Transport } from "../../src/transport/peer.ts";

const serial = () => systemRng.fill(new Uint8Array(16));

async function makeCa(): Promise<ClusterCa> {
  return await createClusterCa({ clusterId: "test", nowMs: Date.now(), serial: serial() });
}

async function identityFor(ca: ClusterCa, nodeId: string): Promise<TlsIdentity> {
  const csr = await createCsr(nodeId);
  const certPem = await issueNodeCertificate(ca, nodeId, csr.csrPem, {
    nowMs: Date.now(),
    serial: serial(),
  });
  return { caCertPem: ca.certPem, certPem, keyPem: csr.keyPem };
}

/** A mailbox: frames delivered to a node, and a way to wait for the next one. */
class Inbox {
  readonly got: { peerId: string; frame: Frame }[] = [];
  #waiters: (() => void)[] = [];
  push(peerId: string, frame: Frame): void {
    this.got.push({ peerId, frame });
    for (const w of this.#waiters.splice(0)) w();
  }
  async next(count = this.got.length + 1): Promise<{ peerId: string; frame: Frame }> {
    while (this.got.length < count) await new Promise<void>((r) => this.#waiters.push(r));
    return this.got[count - 1];
  }
}

interface TokenStore {
  records: Map<string, JoinTokenRecord>;
  lookups: number;
}

/** A running node: listener + transport (+ join authority when `tokens` is given). */
async function startNode(
  ca: ClusterCa,
  nodeId: string,
  opts: {
    tokens?: TokenStore;
    clock?: Clock;
    port?: number;
    onPeerChange?: (peerId: string, connected: boolean) => void;
  } = {},
) {
  const identity = await identityFor(ca, nodeId);
  const inbox = new Inbox();
  const clock = opts.clock ?? systemClock;
  const transport = new Transport({
    selfId: nodeId,
    clock: systemClock,
    rng: systemRng,
    dial: (addr) => dialCluster(addr, identity),
    identify: (der) => verifyNodeCertificate(der, ca.certPem, Date.now()),
    onMessage: (peerId, frame) => inbox.push(peerId, frame),
    onPeerChange: opts.onPeerChange,
    onJoinRequest: opts.tokens
      ? (frame) =>
        answerJoinRequest(frame, {
          ca,
          clock,
          rng: systemRng,
          lookupToken: (id) => {
            opts.tokens!.lookups++;
            return Promise.resolve(opts.tokens!.records.get(id) ?? null);
          },
          nodeIdTaken: () => Promise.resolve(false),
          burnToken: (id, node) => {
            const r = opts.tokens!.records.get(id);
            if (!r || r.usedBy !== null) return Promise.resolve(false);
            r.usedBy = node;
            return Promise.resolve(true);
          },
        })
      : undefined,
  }, { backoffMinMs: 20, backoffMaxMs: 100 });
  const listener = await listenCluster({
    hostname: "127.0.0.1",
    port: opts.port ?? 0,
    identity,
    onConn: (conn) => transport.accept(conn),
  });
  return {
    nodeId,
    identity,
    inbox,
    transport,
    addr: listener.addr,
    async stop() {
      await listener.close();
      await transport.close();
    },
  };
}

function raft(text: string): Frame {
  return { type: FrameType.Raft, streamId: 0, payload: new TextEncoder().encode(text) };
}

const text = (f: Frame) => new TextDecoder().decode(f.payload);

/** Everything a connection receives until the peer closes it. */
async function drain(conn: SecureConn): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  try {
    for await (const c of conn.chunks) parts.push(c.slice());
  } catch {
    // a reset ends it too
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function newToken(
  ca: ClusterCa,
  addr: DialAddr,
  store: TokenStore,
  nowMs: number,
  ttlMs = 60_000,
) {
  const { token, record } = await mintJoinToken({
    addr: `${addr.hostname}:${addr.port}`,
    caSha256: await caFingerprintSha256(ca.certPem),
    nowMs,
    ttlMs,
    random: systemRng.fill(new Uint8Array(TOKEN_RANDOM_BYTES)),
  });
  store.records.set(record.tokenId, record);
  return { token, text: encodeJoinToken(token) };
}

async function joinError(p: Promise<unknown>): Promise<JoinError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof JoinError) return e;
    throw e;
  }
  throw new Error("the join succeeded");
}

Deno.test("two nodes exchange frames over one mTLS connection; the peer id comes from the certificate", async () => {
  const ca = await makeCa();
  const n1 = await startNode(ca, "n1");
  const n2 = await startNode(ca, "n2");
  try {
    n1.transport.setPeerAddr("n2", n2.addr);
    // The payload claims to be from n9; the transport says who sent it from the certificate.
    assert.equal(n1.transport.send("n2", raft('{"from":"n9","type":"AppendEntries"}')), true);
    const first = await n2.inbox.next();
    assert.equal(first.peerId, "n1");
    assert.equal(text(first.frame), '{"from":"n9","type":"AppendEntries"}');
    // n2 knows no address for n1: its answer goes back on the connection n1 dialled.
    n2.transport.send("n1", raft("reply"));
    const reply = await n1.inbox.next();
    assert.equal(reply.peerId, "n2");
    assert.equal(text(reply.frame), "reply");
    for (let i = 0; i < 100; i++) n1.transport.send("n2", raft(`m${i}`));
    assert.equal(text((await n2.inbox.next(101)).frame), "m99");
    assert.deepEqual(
      n2.inbox.got.slice(1).map((m) => text(m.frame)),
      Array.from({ length: 100 }, (_, i) => `m${i}`),
    );
    assert.equal(n1.transport.stats("n2")?.dialAttempts, 1);
  } finally {
    await n1.stop();
    await n2.stop();
  }
});

Deno.test("a plain TCP client gets no frame: the TLS handshake fails and the connection closes", async () => {
  const ca = await makeCa();
  const n1 = await startNode(ca, "n1");
  try {
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port: n1.addr.port });
    await tcp.write(encodeFrame(raft("let me in")));
    const parts: number[] = [];
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await tcp.read(buf).catch(() => null);
      if (n === null) break;
      parts.push(...buf.subarray(0, n));
    }
    tcp.close();
    // At most a TLS alert record (content type 21), never a frame.
    assert.ok(parts.length === 0 || parts[0] === 21, `got ${parts.slice(0, 8)}`);
    assert.throws(() => decodeFrame(Uint8Array.from(parts)));
    assert.equal(n1.inbox.got.length, 0);
  } finally {
    await n1.stop();
  }
});

Deno.test("a TLS 1.2 client is refused, even with a valid node certificate", async () => {
  const ca = await makeCa();
  const n1 = await startNode(ca, "n1");
  try {
    const id = await identityFor(ca, "n2");
    const handshake = new Promise<string>((resolve) => {
      const s = tls.connect({
        host: "127.0.0.1",
        port: n1.addr.port,
        ca: [ca.certPem],
        cert: id.certPem,
        key: id.keyPem,
        maxVersion: "TLSv1.2",
        checkServerIdentity: () => undefined,
      }, () => {
        resolve(`connected with ${s.getProtocol()}`);
        s.destroy();
      });
      s.on("error", (e) => resolve(`refused: ${e.message}`));
    });
    assert.match(await handshake, /^refused/);
    assert.equal(n1.inbox.got.length, 0);
  } finally {
    await n1.stop();
  }
});

Deno.test("a client certificate from another CA is refused: closed, nothing delivered", async () => {
  const ca = await makeCa();
  const other = await makeCa();
  const n1 = await startNode(ca, "n1");
  try {
    // Same node id, right trust anchor for the server, but its own cert is from another CA.
    const stranger = await identityFor(other, "n2");
    const conn = await dialCluster(n1.addr, { ...stranger, caCertPem: ca.certPem });
    await conn.write(encodeFrame(raft("from a stranger"))).catch(() => {});
    assert.equal((await drain(conn)).length, 0);
    conn.close();
    assert.equal(n1.transport.refused.badCertificate, 1);
    assert.equal(n1.inbox.got.length, 0);
    // And our client refuses a server whose certificate is from another CA.
    const mine = await identityFor(ca, "n3");
    const fake = await startNode(other, "n1");
    await assert.rejects(dialCluster(fake.addr, mine));
    await fake.stop();
  } finally {
    await n1.stop();
  }
});

Deno.test("a client without a certificate can make the join exchange and nothing else", async () => {
  const ca = await makeCa();
  const n1 = await startNode(ca, "n1", { tokens: { records: new Map(), lookups: 0 } });
  try {
    const conn = await dialForJoin(n1.addr);
    assert.equal(conn.authorized, false, "the joiner has no trust anchor yet");
    await conn.write(encodeFrame(raft("AppendEntries")));
    assert.equal((await drain(conn)).length, 0, "no answer, just closed");
    conn.close();
    assert.equal(n1.transport.refused.notJoin, 1);
    assert.equal(n1.inbox.got.length, 0);
  } finally {
    await n1.stop();
  }
});

Deno.test("requestJoin() gets a certificate from a CSR that then authenticates on the mTLS path", async () => {
  const ca = await makeCa();
  const tokens: TokenStore = { records: new Map(), lookups: 0 };
  const n1 = await startNode(ca, "n1", { tokens });
  try {
    const { text: tokenText, token } = await newToken(ca, n1.addr, tokens, Date.now());
    const joined = await requestJoin(tokenText, "n3", { dial: dialForJoin, clock: systemClock });
    assert.equal(joined.caCertPem, ca.certPem);
    assert.equal(await verifyNodeCertificate(joined.certPem, ca.certPem, Date.now()), "n3");
    assert.equal(tokens.records.get(token.tokenId)?.usedBy, "n3", "the token is burned");
    // The new identity is a full peer.
    const inbox = new Inbox();
    const n3 = new Transport({
      selfId: "n3",
      clock: systemClock,
      rng: systemRng,
      dial: (addr) => dialCluster(addr, joined),
      identify: (der) => verifyNodeCertificate(der, ca.certPem, Date.now()),
      onMessage: (p, f) => inbox.push(p, f),
    });
    n3.setPeerAddr("n1", n1.addr);
    n3.send("n1", raft("hello from n3"));
    const got = await n1.inbox.next();
    assert.equal(got.peerId, "n3");
    await n3.close();
    // Single use: the same token again is refused.
    const again = await joinError(
      requestJoin(tokenText, "n4", { dial: dialForJoin, clock: systemClock }),
    );
    assert.equal(again.code, "UsedToken");
  } finally {
    await n1.stop();
  }
});

Deno.test("requestJoin() refuses a server of another CA before sending the secret", async () => {
  const ca = await makeCa();
  const other = await makeCa();
  const tokens: TokenStore = { records: new Map(), lookups: 0 };
  const impostor = await startNode(other, "n1", { tokens });
  try {
    // A token pinned to `ca`, pointing at a node of `other`.
    const { text: tokenText } = await newToken(ca, impostor.addr, tokens, Date.now());
    const e = await joinError(
      requestJoin(tokenText, "n3", { dial: dialForJoin, clock: systemClock }),
    );
    assert.equal(e.code, "CaMismatch");
    assert.match(e.message, /CA fingerprint mismatch/);
    assert.equal(tokens.lookups, 0, "the server never saw a JoinRequest");
  } finally {
    await impostor.stop();
  }
});

Deno.test("a wrong secret is refused without burning the token; an expired token is refused saying so", async () => {
  const ca = await makeCa();
  const tokens: TokenStore = { records: new Map(), lookups: 0 };
  let nowMs = Date.now();
  const clock: Clock = { nowMs: () => nowMs, sleep: systemClock.sleep };
  const n1 = await startNode(ca, "n1", { tokens, clock });
  try {
    const { token } = await newToken(ca, n1.addr, tokens, nowMs, 60_000);
    const wrong = { ...token, secret: token.secret.map((b, i) => i === 0 ? b ^ 1 : b) };
    const e = await joinError(
      requestJoin(encodeJoinToken(wrong), "n3", { dial: dialForJoin, clock: systemClock }),
    );
    assert.equal(e.code, "WrongSecret");
    assert.equal(tokens.records.get(token.tokenId)?.usedBy, null, "not burned");
    nowMs += 60_000;
    const expired = await joinError(
      requestJoin(encodeJoinToken(token), "n3", { dial: dialForJoin, clock: systemClock }),
    );
    assert.equal(expired.code, "ExpiredToken");
    assert.match(expired.message, /expired at \d{4}-\d\d-\d\dT/);
    nowMs -= 1;
    const ok = await requestJoin(encodeJoinToken(token), "n3", {
      dial: dialForJoin,
      clock: systemClock,
    });
    assert.equal(await verifyNodeCertificate(ok.certPem, ca.certPem, Date.now()), "n3");
  } finally {
    await n1.stop();
  }
});

Deno.test("a peer redials with backoff after its connection drops, and queued frames arrive", async () => {
  const ca = await makeCa();
  let lost!: () => void;
  const disconnected = new Promise<void>((r) => lost = r);
  const n1 = await startNode(ca, "n1", { onPeerChange: (_, up) => up || lost() });
  let n2 = await startNode(ca, "n2");
  try {
    n1.transport.setPeerAddr("n2", n2.addr);
    n1.transport.send("n2", raft("before"));
    await n2.inbox.next();
    const port = n2.addr.port;
    await n2.stop();
    await disconnected;
    n1.transport.send("n2", raft("while down"));
    assert.equal(n1.transport.stats("n2")?.queuedFrames, 1);
    n2 = await startNode(ca, "n2", { port });
    assert.equal(text((await n2.inbox.next()).frame), "while down");
    assert.ok(n1.transport.stats("n2")!.dialAttempts >= 2);
  } finally {
    await n1.stop();
    await n2.stop();
  }
});
