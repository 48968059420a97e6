/**
 * Transport rules on in-memory connections (the same rules run over TLS in
 * tests/cluster/transport_tls_test.ts).
 */
import assert from "node:assert/strict";
import { SimRng } from "../../sim/rng.ts";
import type { Clock } from "../io/mod.ts";
import type { SecureConn } from "../io/conn.ts";
import { type Frame, FrameType } from "./frame.ts";
import { Transport, type TransportDeps } from "./peer.ts";

/** One end of an in-memory connection; `peerCertDer` is the peer's node id as bytes. */
class MemConn implements SecureConn {
  authorized = true;
  readonly peerChainDer: Uint8Array[];
  other!: MemConn;
  closed = false;
  #queue: Uint8Array[] = [];
  #wake: (() => void) | null = null;

  constructor(public peerCertDer: Uint8Array | null, readonly label: string) {
    this.peerChainDer = peerCertDer ? [peerCertDer] : [];
  }

  static pair(dialer: string, acceptor: string, label: string): [MemConn, MemConn] {
    const enc = new TextEncoder();
    const a = new MemConn(enc.encode(acceptor), label);
    const b = new MemConn(enc.encode(dialer), label);
    a.other = b;
    b.other = a;
    return [a, b];
  }

  get chunks(): AsyncIterable<Uint8Array> {
    return { [Symbol.asyncIterator]: () => this.#iterate() };
  }

  async *#iterate(): AsyncGenerator<Uint8Array> {
    for (;;) {
      const c = this.#queue.shift();
      if (c) yield c;
      else if (this.closed) return;
      else await new Promise<void>((r) => this.#wake = r);
    }
  }

  write(bytes: Uint8Array): Promise<void> {
    if (this.closed) return Promise.reject(new Error("closed"));
    this.other.#queue.push(bytes.slice());
    this.other.#wake?.();
    return Promise.resolve();
  }

  close(): void {
    for (const c of [this, this.other]) {
      c.closed = true;
      c.#wake?.();
    }
  }
}

const instantClock: Clock = { nowMs: () => 0, sleep: () => Promise.resolve() };
const settle = async () => {
  for (let i = 0; i < 50; i++) await new Promise((r) => setTimeout(r, 0));
};
const raft = (s: string): Frame => ({
  type: FrameType.Raft,
  streamId: 0,
  payload: new TextEncoder().encode(s),
});

function node(id: string, overrides: Partial<TransportDeps> = {}) {
  const got: [string, string][] = [];
  const t = new Transport({
    selfId: id,
    clock: instantClock,
    rng: new SimRng(1),
    dial: () => Promise.reject(new Error("no network")),
    identify: (der) => Promise.resolve(new TextDecoder().decode(der)),
    onMessage: (peer, f) => got.push([peer, new TextDecoder().decode(f.payload)]),
    ...overrides,
  }, { backoffMinMs: 1, backoffMaxMs: 2 });
  return { t, got };
}

Deno.test("send() drops and counts frames past the queue bound, and never blocks", async () => {
  const { t } = node("a");
  const tight = new Transport({
    selfId: "a",
    clock: instantClock,
    rng: new SimRng(1),
    dial: () => Promise.reject(new Error("down")),
    identify: () => Promise.reject(new Error("none")),
    onMessage: () => {},
  }, { maxQueuedFrames: 3, maxQueuedBytes: 1 << 20 });
  const results = Array.from({ length: 5 }, (_, i) => tight.send("b", raft(`m${i}`)));
  assert.deepEqual(results, [true, true, true, false, false]);
  assert.equal(tight.stats("b")?.droppedFrames, 2);
  assert.equal(tight.stats("b")?.queuedFrames, 3);
  assert.equal(t.send("a", raft("to myself")), false);
  await tight.close();
  await t.close();
});

Deno.test("when both sides dial at once, both keep the connection dialled by the smaller id", async () => {
  const pipes: MemConn[][] = [];
  const nodes: Record<string, Transport> = {};
  const dialFrom = (from: string, to: string) => () => {
    const [mine, theirs] = MemConn.pair(from, to, `${from}->${to}`);
    pipes.push([mine, theirs]);
    queueMicrotask(() => nodes[to].accept(theirs));
    return Promise.resolve(mine as SecureConn);
  };
  const a = node("a", { dial: dialFrom("a", "b") });
  const b = node("b", { dial: dialFrom("b", "a") });
  nodes.a = a.t;
  nodes.b = b.t;
  a.t.setPeerAddr("b", { hostname: "b", port: 1 });
  b.t.setPeerAddr("a", { hostname: "a", port: 1 });
  await settle();
  const open = pipes.filter(([x]) => !x.closed).map(([x]) => x.label);
  assert.deepEqual(open, ["a->b"]);
  a.t.send("b", raft("ping"));
  b.t.send("a", raft("pong"));
  await settle();
  assert.deepEqual(b.got, [["a", "ping"]]);
  assert.deepEqual(a.got, [["b", "pong"]]);
  await a.t.close();
  await b.t.close();
});

Deno.test("a dialled node whose certificate names another id is refused and redialled", async () => {
  let dials = 0;
  const peerSide: Transport[] = [];
  const a = node("a", {
    dial: () => {
      dials++;
      // First an impostor "x" answers at b's address, then the real "b".
      const who = dials === 1 ? "x" : "b";
      const [mine, theirs] = MemConn.pair("a", who, `a->${who}`);
      const t = node(who).t;
      peerSide.push(t);
      queueMicrotask(() => t.accept(theirs));
      return Promise.resolve(mine as SecureConn);
    },
  });
  a.t.setPeerAddr("b", { hostname: "b", port: 1 });
  await settle();
  assert.equal(a.t.stats("b")?.dialFailures, 1);
  assert.equal(a.t.stats("b")?.connected, true);
  assert.equal(dials, 2);
  await a.t.close();
  for (const t of peerSide) await t.close();
});

Deno.test("unauthenticated connections beyond maxJoinConnections are closed on arrival", async () => {
  const t = new Transport({
    selfId: "a",
    clock: instantClock,
    rng: new SimRng(1),
    dial: () => Promise.reject(new Error("none")),
    identify: () => Promise.reject(new Error("none")),
    onMessage: () => {},
    onJoinRequest: () => Promise.reject(new Error("not in this test")),
  }, { maxJoinConnections: 2 });
  const strangers = [0, 1, 2].map((i) => {
    const [mine, theirs] = MemConn.pair(`s${i}`, "a", `s${i}`);
    theirs.authorized = false;
    theirs.peerCertDer = null;
    return { mine, theirs };
  });
  for (const s of strangers) t.accept(s.theirs);
  await settle();
  assert.deepEqual(strangers.map((s) => s.mine.closed), [false, false, true]);
  assert.equal(t.refused.joinBusy, 1);
  strangers[0].mine.close();
  await settle();
  const late = MemConn.pair("s3", "a", "s3")[1];
  late.authorized = false;
  late.peerCertDer = null;
  t.accept(late);
  await settle();
  assert.equal(late.closed, false, "a slot freed up");
  await t.close();
});
