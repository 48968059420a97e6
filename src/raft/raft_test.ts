import assert from "node:assert/strict";
import type { Rng } from "../io/mod.ts";
import {
  bootstrapState,
  type Entry,
  type Message,
  ProposalDroppedError,
  quorum,
  Raft,
  type RaftConfig,
  RaftInvariantError,
  type ReadState,
  type StoredState,
} from "./mod.ts";

/** A tiny deterministic Rng for unit tests (a 32-bit LCG). */
function lcg(seed: number): Rng {
  let s = seed >>> 0;
  const nextU32 = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s ^ (s >>> 15)) >>> 0;
  };
  return {
    nextU32,
    fill: (b) => {
      for (let i = 0; i < b.length; i++) b[i] = nextU32() & 0xff;
      return b;
    },
  };
}

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/**
 * A synchronous test network: drains every node's ready, "persists" by
 * doing nothing (the core keeps its own log), delivers messages FIFO and
 * drops those crossing a cut.
 */
class TestNet {
  nodes = new Map<string, Raft>();
  applied = new Map<string, Entry[]>();
  reads = new Map<string, ReadState[]>();
  cut = new Set<string>();
  sent: Message[] = [];
  queue: Message[] = [];
  filter: (m: Message) => boolean = () => true;

  constructor(ids: string[], opts: Partial<RaftConfig> = {}, learners: string[] = []) {
    const boot = bootstrapState({ voters: ids, learners });
    [...ids, ...learners].forEach((id, i) => this.add(id, boot, { ...opts, rng: lcg(i + 1) }));
  }

  add(id: string, stored: StoredState, opts: Partial<RaftConfig> = {}): Raft {
    const r = new Raft({ id, rng: lcg(id.charCodeAt(0)), electionTicks: 10, ...opts }, stored);
    this.nodes.set(id, r);
    this.applied.set(id, []);
    this.reads.set(id, []);
    return r;
  }

  get(id: string): Raft {
    return this.nodes.get(id)!;
  }

  isolate(id: string): void {
    this.cut.add(id);
  }

  heal(): void {
    this.cut.clear();
  }

  /** Drains readies and delivers messages until quiet. */
  settle(maxRounds = 10000): void {
    for (let round = 0; round < maxRounds; round++) {
      let busy = false;
      for (const [id, r] of this.nodes) {
        while (r.hasReady()) {
          busy = true;
          const rd = r.ready();
          this.queue.push(...rd.messages);
          this.sent.push(...rd.messages);
          this.applied.get(id)!.push(...rd.committedEntries);
          this.reads.get(id)!.push(...rd.readStates);
          r.advance(rd);
        }
      }
      const q = this.queue;
      this.queue = [];
      for (const m of q) {
        busy = true;
        if (this.cut.has(m.from) || this.cut.has(m.to) || !this.filter(m)) continue;
        this.nodes.get(m.to)?.step(m);
      }
      if (!busy) return;
    }
    throw new Error("Network did not settle");
  }

  /** Ticks every node `n` times, settling after each tick. */
  tick(n = 1): void {
    for (let i = 0; i < n; i++) {
      for (const r of this.nodes.values()) r.tick();
      this.settle();
    }
  }

  leaders(): Raft[] {
    return [...this.nodes.values()].filter((r) => r.role === "leader");
  }

  /** Ticks until exactly one leader exists among non-cut nodes. */
  elect(maxTicks = 200): Raft {
    for (let i = 0; i < maxTicks; i++) {
      this.tick();
      const ls = this.leaders().filter((r) => !this.cut.has(r.id));
      if (ls.length === 1) return ls[0];
    }
    throw new Error("No leader elected");
  }
}

/** Drives one node by hand: returns the messages of one ready. */
function drain(r: Raft): { messages: Message[]; committed: Entry[] } {
  const messages: Message[] = [];
  const committed: Entry[] = [];
  while (r.hasReady()) {
    const rd = r.ready();
    messages.push(...rd.messages);
    committed.push(...rd.committedEntries);
    r.advance(rd);
  }
  return { messages, committed };
}

/** A stored state with a given log of terms after the bootstrap snapshot at index 1. */
function withLog(voters: string[], terms: number[], term: number): StoredState {
  const boot = bootstrapState({ voters, learners: [] });
  return {
    hardState: { term, vote: null, commit: 1 },
    snapshot: boot.snapshot,
    entries: terms.map((t, i) => ({
      index: i + 2,
      term: t,
      kind: "normal",
      data: enc(`e${i + 2}`),
    })),
  };
}

Deno.test("quorum() is a strict majority", () => {
  assert.deepEqual([1, 2, 3, 4, 5].map(quorum), [1, 2, 2, 3, 3]);
});

Deno.test("tick() starts a PreVote round without raising the term (thesis §9.6)", () => {
  const r = new Raft(
    { id: "a", rng: lcg(1) },
    bootstrapState({ voters: ["a", "b", "c"], learners: [] }),
  );
  for (let i = 0; i < 20 && r.role === "follower"; i++) r.tick();
  assert.equal(r.role, "preCandidate");
  assert.equal(r.term, 1);
  const { messages } = drain(r);
  assert.deepEqual(messages.map((m) => [m.type, m.to, m.term]), [["PreVote", "b", 2], [
    "PreVote",
    "c",
    2,
  ]]);
});

Deno.test("tick() draws election timeouts in [electionTicks, 2*electionTicks) from the Rng (§5.2)", () => {
  const seen = new Set<number>();
  for (let seed = 1; seed <= 40; seed++) {
    const r = new Raft(
      { id: "a", rng: lcg(seed), electionTicks: 10 },
      bootstrapState({ voters: ["a", "b", "c"], learners: [] }),
    );
    let ticks = 0;
    while (r.role === "follower") {
      r.tick();
      ticks++;
    }
    assert.ok(ticks >= 10 && ticks < 20, `timeout ${ticks}`);
    seen.add(ticks);
  }
  assert.ok(seen.size > 3, "timeouts are randomized");
});

Deno.test("step() grants at most one vote per term (§5.2)", () => {
  const r = new Raft(
    { id: "a", rng: lcg(1) },
    bootstrapState({ voters: ["a", "b", "c"], learners: [] }),
  );
  r.step({ type: "RequestVote", from: "b", to: "a", term: 2, lastLogIndex: 1, lastLogTerm: 1 });
  r.step({ type: "RequestVote", from: "c", to: "a", term: 2, lastLogIndex: 1, lastLogTerm: 1 });
  const { messages } = drain(r);
  assert.deepEqual(
    messages.map((m) => m.type === "RequestVoteResponse" && [m.to, m.granted]),
    [["b", true], ["c", false]],
  );
  assert.equal(r.vote, "b");
  // A repeated request from the same candidate is granted again (idempotent).
  r.step({ type: "RequestVote", from: "b", to: "a", term: 2, lastLogIndex: 1, lastLogTerm: 1 });
  assert.equal((drain(r).messages[0] as { granted: boolean }).granted, true);
});

Deno.test("step() persists the vote before the response is sent (§5.2, Figure 2)", () => {
  const r = new Raft(
    { id: "a", rng: lcg(1) },
    bootstrapState({ voters: ["a", "b", "c"], learners: [] }),
  );
  r.step({ type: "RequestVote", from: "b", to: "a", term: 2, lastLogIndex: 1, lastLogTerm: 1 });
  const rd = r.ready();
  assert.deepEqual(rd.hardState, { term: 2, vote: "b", commit: 1 });
  assert.equal(rd.messages.length, 1);
  r.advance(rd);
});

Deno.test("step() refuses a vote to a candidate whose log is less up-to-date (§5.4.1)", () => {
  for (
    const [lastLogIndex, lastLogTerm, granted] of [
      [3, 2, true], // same
      [4, 2, true], // longer
      [9, 1, false], // older last term
      [2, 2, false], // shorter in the same term
      [2, 3, true], // newer last term
    ] as const
  ) {
    const r = new Raft({ id: "a", rng: lcg(1) }, withLog(["a", "b", "c"], [1, 2], 2));
    r.step({ type: "RequestVote", from: "b", to: "a", term: 3, lastLogIndex, lastLogTerm });
    const m = drain(r).messages[0];
    assert.equal(
      m.type === "RequestVoteResponse" && m.granted,
      granted,
      `${lastLogIndex}/${lastLogTerm}`,
    );
  }
});

Deno.test("elect() yields exactly one leader per term in 3- and 5-node clusters (§5.2)", () => {
  for (const n of [3, 5]) {
    for (let seed = 1; seed <= 10; seed++) {
      const ids = ["a", "b", "c", "d", "e"].slice(0, n);
      const net = new TestNet(ids, { rng: lcg(seed) });
      ids.forEach((id, i) =>
        net.add(id, bootstrapState({ voters: ids, learners: [] }), { rng: lcg(seed * 7 + i) })
      );
      const leader = net.elect();
      assert.equal(net.leaders().length, 1);
      for (const r of net.nodes.values()) {
        assert.equal(r.term, leader.term);
        assert.equal(r.leader, leader.id);
      }
    }
  }
});

Deno.test("a single voter elects itself and commits alone (§5.2)", () => {
  const net = new TestNet(["a"]);
  const a = net.elect();
  a.propose(enc("x"));
  net.settle();
  assert.equal(a.commitIndex, a.lastIndex);
  assert.deepEqual(net.applied.get("a")!.filter((e) => e.data.length).map((e) => dec(e.data)), [
    "x",
  ]);
});

Deno.test("step() rejects AppendEntries on a log mismatch with a conflict hint (§5.3)", () => {
  // Follower log terms at 2..6: 1 1 2 2 2; leader probes at prevLogIndex 6 term 3.
  const r = new Raft({ id: "b", rng: lcg(1) }, withLog(["a", "b", "c"], [1, 1, 2, 2, 2], 3));
  r.step({
    type: "AppendEntries",
    from: "a",
    to: "b",
    term: 3,
    prevLogIndex: 6,
    prevLogTerm: 3,
    entries: [],
    leaderCommit: 1,
  });
  const m = drain(r).messages[0];
  assert.ok(m.type === "AppendEntriesResponse");
  assert.equal(m.success, false);
  assert.equal(m.conflictTerm, 2);
  assert.equal(m.conflictIndex, 4, "first index of the conflicting term");
  // Too short a log: the hint is the end of the log.
  r.step({
    type: "AppendEntries",
    from: "a",
    to: "b",
    term: 3,
    prevLogIndex: 20,
    prevLogTerm: 3,
    entries: [],
    leaderCommit: 1,
  });
  const m2 = drain(r).messages[0];
  assert.ok(m2.type === "AppendEntriesResponse");
  assert.deepEqual([m2.success, m2.conflictIndex, m2.conflictTerm], [false, 7, 0]);
});

Deno.test("step() truncates a conflicting uncommitted suffix and appends (log matching, §5.3)", () => {
  const r = new Raft({ id: "b", rng: lcg(1) }, withLog(["a", "b", "c"], [1, 1, 2, 2], 3));
  const entries: Entry[] = [
    { index: 4, term: 3, kind: "normal", data: enc("x") },
    { index: 5, term: 3, kind: "normal", data: enc("y") },
  ];
  r.step({
    type: "AppendEntries",
    from: "a",
    to: "b",
    term: 3,
    prevLogIndex: 3,
    prevLogTerm: 1,
    entries,
    leaderCommit: 4,
  });
  const rd = r.ready();
  assert.deepEqual(rd.entries.map((e) => [e.index, e.term]), [[4, 3], [5, 3]]);
  assert.deepEqual(rd.committedEntries.map((e) => e.index), [2, 3, 4]);
  const resp = rd.messages[0];
  assert.ok(resp.type === "AppendEntriesResponse" && resp.success && resp.matchIndex === 5);
  r.advance(rd);
  assert.equal(r.lastIndex, 5);
  assert.equal(r.commitIndex, 4);
});

Deno.test("the leader backtracks over a whole conflicting term per round trip (§5.3)", () => {
  // Figure 7 style: follower f holds many entries of a stale term 2.
  const net = new TestNet(["a", "b", "c"]);
  net.nodes.clear();
  net.add("a", withLog(["a", "b", "c"], [1, 1, 3, 3], 3), { rng: lcg(1), electionTicks: 5 });
  net.add("b", withLog(["a", "b", "c"], [1, 1, 3, 3], 3), { rng: lcg(9), electionTicks: 50 });
  net.add("c", withLog(["a", "b", "c"], [1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2], 2), {
    rng: lcg(5),
    electionTicks: 50,
  });
  const leader = net.elect();
  assert.equal(leader.id, "a");
  leader.propose(enc("z"));
  net.settle();
  const rejects = net.sent.filter((m) =>
    m.type === "AppendEntriesResponse" && m.from === "c" && !m.success
  );
  assert.ok(rejects.length <= 2, `${rejects.length} rejections`);
  for (let i = 1; i <= leader.lastIndex; i++) {
    assert.equal(net.get("c").termAt(i), leader.termAt(i));
  }
});

Deno.test("the leader commits a previous-term entry only with one of its own term (§5.4.2, Figure 8)", () => {
  // a is leader of term 4 with an entry of term 2 at index 3 replicated to b; no own entry yet.
  const a = new Raft({ id: "a", rng: lcg(1) }, withLog(["a", "b", "c"], [1, 2], 3));
  a.step({ type: "PreVoteResponse", from: "b", to: "a", term: 4, granted: true }); // ignored: not campaigning
  for (let i = 0; i < 30 && a.role !== "preCandidate"; i++) a.tick();
  drain(a);
  a.step({ type: "PreVoteResponse", from: "b", to: "a", term: 4, granted: true });
  drain(a);
  a.step({ type: "RequestVoteResponse", from: "b", to: "a", term: 4, granted: true });
  assert.equal(a.role, "leader");
  const rd = a.ready();
  a.advance(rd);
  assert.equal(a.lastIndex, 4, "no-op of term 4 appended");
  // b acknowledges only index 3 (the term-2 entry): counting replicas must not commit it.
  a.step({
    type: "AppendEntriesResponse",
    from: "b",
    to: "a",
    term: 4,
    success: true,
    matchIndex: 3,
    rejectedIndex: 0,
    conflictIndex: 0,
    conflictTerm: 0,
  });
  drain(a);
  assert.equal(a.commitIndex, 1);
  a.step({
    type: "AppendEntriesResponse",
    from: "b",
    to: "a",
    term: 4,
    success: true,
    matchIndex: 4,
    rejectedIndex: 0,
    conflictIndex: 0,
    conflictTerm: 0,
  });
  drain(a);
  assert.equal(a.commitIndex, 4, "the term-4 no-op commits, and index 3 with it");
});

Deno.test("a node missing a committed entry cannot become leader (leader completeness, §5.4.1)", () => {
  const net = new TestNet(["a", "b", "c"]);
  const leader = net.elect();
  const lagger = [...net.nodes.values()].find((r) => r !== leader)!;
  net.isolate(lagger.id);
  leader.propose(enc("v"));
  net.settle();
  const committed = leader.commitIndex;
  assert.ok(committed >= 3);
  // Now partition the leader away; the lagger returns.
  net.heal();
  net.isolate(leader.id);
  const next = net.elect();
  assert.notEqual(next.id, lagger.id);
  assert.equal(next.termAt(committed), leader.termAt(committed));
});

Deno.test("every node applies the same entries in the same order (state machine safety, §5.4.3)", () => {
  for (let seed = 1; seed <= 8; seed++) {
    const ids = ["a", "b", "c", "d", "e"];
    const net = new TestNet(ids, { rng: lcg(seed) });
    let k = 0;
    for (let round = 0; round < 6; round++) {
      const l = net.elect();
      for (let i = 0; i < 3; i++) l.propose(enc(`v${k++}`));
      net.settle();
      net.tick(3);
      net.heal();
      net.isolate(ids[(seed + round) % 5]);
    }
    net.heal();
    net.elect();
    net.tick(30);
    const logs = [...net.applied.values()].map((es) =>
      es.map((e) => `${e.index}/${e.term}/${dec(e.data)}`)
    );
    for (const log of logs) {
      const n = Math.min(log.length, logs[0].length);
      assert.deepEqual(log.slice(0, n), logs[0].slice(0, n));
    }
  }
});

Deno.test("CheckQuorum makes a partitioned leader step down (thesis §6.2)", () => {
  const net = new TestNet(["a", "b", "c"]);
  const leader = net.elect();
  net.isolate(leader.id);
  net.tick(25);
  assert.notEqual(leader.role, "leader");
});

Deno.test("PreVote keeps a rejoining partitioned node from disrupting the leader (thesis §9.6)", () => {
  const net = new TestNet(["a", "b", "c"]);
  const leader = net.elect();
  const other = [...net.nodes.values()].find((r) => r !== leader)!;
  net.isolate(other.id);
  net.tick(100);
  assert.equal(other.term, leader.term, "PreVote does not raise the isolated node's term");
  net.heal();
  net.tick(5);
  assert.equal(leader.role, "leader");
  assert.equal(other.leader, leader.id);
});

Deno.test("step() ignores a RequestVote of a higher term while the leader's lease holds (thesis §4.2.3)", () => {
  const net = new TestNet(["a", "b", "c"]);
  const leader = net.elect();
  const f = [...net.nodes.values()].find((r) => r !== leader)!;
  const term = f.term;
  f.step({
    type: "RequestVote",
    from: "x",
    to: f.id,
    term: term + 5,
    lastLogIndex: 99,
    lastLogTerm: 99,
  });
  assert.equal(f.term, term);
  assert.equal(drain(f).messages.length, 0);
});

Deno.test("propose() on a follower forwards to the leader (thesis §6.2)", () => {
  const net = new TestNet(["a", "b", "c"]);
  const leader = net.elect();
  const f = [...net.nodes.values()].find((r) => r !== leader)!;
  assert.equal(f.propose(enc("fw"), "client-1"), "forwarded");
  net.settle();
  const e = net.applied.get(f.id)!.find((e) => e.id === "client-1");
  assert.ok(e && dec(e.data) === "fw");
  const lone = new Raft(
    { id: "z", rng: lcg(1) },
    bootstrapState({ voters: ["z", "y"], learners: [] }),
  );
  assert.throws(() => lone.propose(enc("x")), ProposalDroppedError);
});

Deno.test("readIndex() answers only after a heartbeat quorum in the leader's term (thesis §6.4)", () => {
  const net = new TestNet(["a", "b", "c"]);
  const leader = net.elect();
  leader.propose(enc("w"));
  net.settle();
  const f = [...net.nodes.values()].find((r) => r !== leader)!;
  f.readIndex("r1");
  leader.readIndex("r2");
  net.settle();
  assert.deepEqual(net.reads.get(f.id), [{ ctx: "r1", index: leader.commitIndex }]);
  assert.deepEqual(net.reads.get(leader.id), [{ ctx: "r2", index: leader.commitIndex }]);
  // A leader cut off from its followers cannot confirm a read.
  net.isolate(leader.id);
  leader.readIndex("r3");
  net.settle();
  assert.equal(net.reads.get(leader.id)!.length, 1);
});

Deno.test("a learner replicates but does not vote, then is promoted automatically (thesis §4.2.1)", () => {
  const net = new TestNet(["a", "b", "c"]);
  const leader = net.elect();
  net.add("d", { hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [] });
  leader.proposeConfChange({ type: "addLearner", nodeId: "d" });
  net.settle();
  net.tick(3);
  const d = net.get("d");
  assert.equal(d.lastIndex, leader.lastIndex, "learner caught up");
  assert.ok(leader.membership.voters.includes("d"), "promoted below the cap");
  assert.deepEqual(d.membership.voters, ["a", "b", "c", "d"]);
});

Deno.test("auto-promotion stops at five voters (thesis §4.2.1)", () => {
  const net = new TestNet(["a", "b", "c", "d", "e"]);
  const leader = net.elect();
  net.add("f", { hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [] });
  leader.proposeConfChange({ type: "addLearner", nodeId: "f" });
  net.tick(10);
  assert.deepEqual(leader.membership.voters, ["a", "b", "c", "d", "e"]);
  assert.deepEqual(leader.membership.learners, ["f"]);
  assert.throws(() => leader.proposeConfChange({ type: "promote", nodeId: "f" }), RangeError);
  // Removing a voter makes room; f is promoted.
  leader.proposeConfChange({ type: "remove", nodeId: leader.id === "e" ? "d" : "e" });
  net.tick(10);
  const l2 = net.elect();
  net.tick(10);
  assert.ok(l2.membership.voters.includes("f"));
  assert.equal(l2.membership.voters.length, 5);
});

Deno.test("proposeConfChange() allows one change at a time (thesis §4.1)", () => {
  const net = new TestNet(["a", "b", "c"], { autoPromote: false });
  const leader = net.elect();
  leader.proposeConfChange({ type: "addLearner", nodeId: "d" });
  assert.throws(
    () => leader.proposeConfChange({ type: "addLearner", nodeId: "e" }),
    ProposalDroppedError,
  );
  net.settle();
  leader.proposeConfChange({ type: "addLearner", nodeId: "e" });
  net.settle();
  assert.deepEqual(leader.membership.learners, ["d", "e"]);
});

Deno.test("a removed member stops itself and the rest go on (thesis §4.2.2)", () => {
  const net = new TestNet(["a", "b", "c"]);
  const leader = net.elect();
  const victim = [...net.nodes.values()].find((r) => r !== leader)!;
  leader.proposeConfChange({ type: "remove", nodeId: victim.id });
  net.tick(3);
  assert.equal(victim.removed, true);
  assert.equal(leader.membership.voters.length, 2);
  leader.propose(enc("after"));
  net.settle();
  assert.ok(net.applied.get(leader.id)!.some((e) => dec(e.data) === "after"));
  // The leader can remove itself; a new leader is elected among the rest.
  leader.proposeConfChange({ type: "remove", nodeId: leader.id });
  net.tick(3);
  assert.equal(leader.removed, true);
  const next = net.elect();
  assert.notEqual(next.id, leader.id);
});

Deno.test("compact() and chunked InstallSnapshot bring a lagging follower up to date (§7)", () => {
  const net = new TestNet(["a", "b", "c"], { snapshotChunkBytes: 1000 });
  const leader = net.elect();
  const lag = [...net.nodes.values()].find((r) => r !== leader)!;
  net.isolate(lag.id);
  for (let i = 0; i < 20; i++) leader.propose(enc(`v${i}`));
  net.settle();
  const state = new Uint8Array(4500).fill(7);
  leader.compact(leader.lastApplied, state);
  assert.equal(leader.snapshotMeta.index, leader.lastApplied);
  net.heal();
  net.tick(10);
  const chunks = net.sent.filter((m) => m.type === "InstallSnapshot" && m.to === lag.id);
  assert.ok(chunks.length >= 5);
  for (const c of chunks) assert.ok(c.type === "InstallSnapshot" && c.data.length <= 1000);
  assert.equal(lag.snapshotMeta.index, leader.snapshotMeta.index);
  assert.equal(lag.lastIndex, leader.lastIndex);
  assert.deepEqual(lag.membership, leader.membership);
});

Deno.test("InstallSnapshot chunks fit a Deno KV value by default (§7)", () => {
  const net = new TestNet(["a", "b"]);
  const leader = net.elect();
  const lag = [...net.nodes.values()].find((r) => r !== leader)!;
  net.isolate(lag.id);
  leader.propose(enc("x"));
  net.tick(1);
  net.settle();
  // With b cut off a 2-voter cluster cannot commit; compact what is applied.
  leader.compact(leader.lastApplied, new Uint8Array(200_000));
  net.heal();
  net.tick(20);
  const chunks = net.sent.filter((m) => m.type === "InstallSnapshot");
  for (const c of chunks) assert.ok(c.type === "InstallSnapshot" && c.data.length <= 61440);
});

Deno.test("step() between ready() and advance() throws RaftInvariantError", () => {
  const r = new Raft(
    { id: "a", rng: lcg(1) },
    bootstrapState({ voters: ["a", "b"], learners: [] }),
  );
  r.step({ type: "RequestVote", from: "b", to: "a", term: 2, lastLogIndex: 1, lastLogTerm: 1 });
  const rd = r.ready();
  assert.throws(() => r.tick(), RaftInvariantError);
  r.advance(rd);
  r.tick();
});

Deno.test("a learner never campaigns, however long it waits (thesis §4.2.1)", () => {
  const r = new Raft(
    { id: "d", rng: lcg(1) },
    bootstrapState({ voters: ["a", "b", "c"], learners: ["d"] }),
  );
  for (let i = 0; i < 500; i++) r.tick();
  assert.equal(r.role, "follower");
  assert.equal(drain(r).messages.length, 0);
});

Deno.test("proposeConfChange() on a follower is forwarded to the leader (thesis §4.1)", () => {
  const net = new TestNet(["a", "b", "c"], { autoPromote: false });
  const leader = net.elect();
  const f = [...net.nodes.values()].find((r) => r !== leader)!;
  assert.equal(f.proposeConfChange({ type: "addLearner", nodeId: "z" }), "forwarded");
  net.settle();
  net.tick(2);
  assert.deepEqual(f.membership.learners, ["z"]);
});

Deno.test("a restarted node keeps its term, vote and log, and rejoins (Figure 2)", () => {
  const net = new TestNet(["a", "b", "c"]);
  const leader = net.elect();
  leader.propose(enc("p"));
  net.settle();
  const f = [...net.nodes.values()].find((r) => r !== leader)!;
  const stored = {
    hardState: { term: f.term, vote: f.vote, commit: f.commitIndex },
    snapshot: bootstrapState({ voters: ["a", "b", "c"], learners: [] }).snapshot,
    entries: Array.from({ length: f.lastIndex - 1 }, (_, i) => f.entryAt(i + 2)!),
  };
  const again = net.add(f.id, stored);
  assert.equal(again.term, f.term);
  assert.equal(again.lastIndex, f.lastIndex);
  assert.equal(again.lastApplied, 1, "the state machine is rebuilt from the snapshot");
  net.tick(3);
  assert.equal(again.leader, leader.id);
  assert.equal(again.lastApplied, leader.commitIndex);
});

Deno.test("ready() carries a vote given in an unchanged term (§5.2, Figure 2)", () => {
  const r = new Raft({ id: "a", rng: lcg(1) }, withLog(["a", "b", "c"], [1, 2], 2));
  // A candidate with a stale log moves us to term 3 without our vote...
  r.step({ type: "RequestVote", from: "b", to: "a", term: 3, lastLogIndex: 1, lastLogTerm: 1 });
  assert.deepEqual(r.ready().hardState, { term: 3, vote: null, commit: 1 });
  r.advance({
    hardState: { term: 3, vote: null, commit: 1 },
    entries: [],
    snapshot: null,
    messages: [],
    committedEntries: [],
    readStates: [],
  });
  // ...then a second candidate of term 3 gets it: the vote alone must be persisted.
  r.step({ type: "RequestVote", from: "c", to: "a", term: 3, lastLogIndex: 3, lastLogTerm: 2 });
  const rd = r.ready();
  assert.deepEqual(rd.hardState, { term: 3, vote: "c", commit: 1 });
  assert.ok(rd.messages.some((m) => m.type === "RequestVoteResponse" && m.granted));
  r.advance(rd);
});

Deno.test("the leader drops a retried proposal whose id is still uncommitted in its log (thesis §6.3)", () => {
  const net = new TestNet(["a", "b", "c"]);
  const leader = net.elect();
  const others = [...net.nodes.values()].filter((r) => r !== leader);
  for (const o of others) net.isolate(o.id);
  const before = leader.lastIndex;
  leader.propose(enc("once"), "req-1");
  leader.propose(enc("once"), "req-1");
  net.settle();
  assert.equal(leader.lastIndex, before + 1);
  net.heal();
  net.tick(3);
  // Once committed, a retry is appended again; the applier must drop it.
  leader.propose(enc("once"), "req-1");
  net.settle();
  const applied = net.applied.get(leader.id)!.filter((e) => e.id === "req-1");
  assert.equal(applied.length, 2);
});

Deno.test("a member removed while cut off learns it from the leader's snapshot and stops (thesis §4.2.2)", () => {
  const net = new TestNet(["a", "b", "c", "d"]);
  const leader = net.elect();
  const victim = [...net.nodes.values()].find((r) => r !== leader)!;
  net.isolate(victim.id);
  leader.proposeConfChange({ type: "remove", nodeId: victim.id });
  net.tick(3);
  assert.ok(!leader.membership.voters.includes(victim.id));
  assert.equal(victim.removed, false, "its last append was lost");
  leader.compact(leader.lastApplied, new Uint8Array(10));
  net.heal();
  net.tick(40); // the victim times out and asks for votes; the leader answers with its snapshot
  assert.equal(victim.removed, true);
  assert.equal(leader.role, "leader");
});

Deno.test("a learner's acknowledgement never completes the commit quorum of the voters (thesis §4.2.1, §5.3)", () => {
  const net = new TestNet(["a", "b", "c"], { autoPromote: false }, ["d"]);
  const leader = net.elect();
  net.tick(2);
  const followers = ["a", "b", "c"].filter((v) => v !== leader.id);
  const before = leader.commitIndex;
  // The voters hear nothing; only the learner replicates.
  net.filter = (m) => !followers.includes(m.to) && !followers.includes(m.from);
  leader.propose(enc("x"));
  net.settle();
  const d = net.get("d");
  assert.equal(d.lastIndex, leader.lastIndex, "the learner holds the entry");
  assert.equal(leader.matchOf("d"), leader.lastIndex);
  assert.equal(leader.commitIndex, before, "leader + learner are not a majority of 3 voters");
  net.filter = () => true;
  net.tick(2);
  assert.equal(leader.commitIndex, leader.lastIndex, "committed once a voter acknowledges");
});

Deno.test("a leader steps down when any response carries a higher term (Figure 2, Rules for Servers)", async (t) => {
  const responses = (from: string, to: string, term: number): Message[] => [
    {
      type: "AppendEntriesResponse",
      from,
      to,
      term,
      success: false,
      matchIndex: 0,
      rejectedIndex: -1,
      conflictIndex: 0,
      conflictTerm: 0,
    },
    { type: "HeartbeatResponse", from, to, term, readSeq: 0 },
    {
      type: "InstallSnapshotResponse",
      from,
      to,
      term,
      snapshotIndex: 1,
      offsetBytes: 0,
      done: false,
      matchIndex: 0,
    },
    { type: "RequestVoteResponse", from, to, term, granted: false },
  ];
  for (const opts of [{}, { preVote: false, checkQuorum: false }]) {
    for (let i = 0; i < 4; i++) {
      const net = new TestNet(["a", "b", "c"], opts);
      const leader = net.elect();
      const peer = ["a", "b", "c"].find((v) => v !== leader.id)!;
      const m = responses(peer, leader.id, leader.term + 1)[i];
      await t.step(`${m.type} ${JSON.stringify(opts)}`, () => {
        const term = leader.term;
        leader.step(m);
        assert.equal(leader.role, "follower");
        assert.equal(leader.term, term + 1);
        assert.equal(drain(leader).messages.filter((x) => x.term === term).length, 0);
      });
    }
  }
});
