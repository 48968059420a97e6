import assert from "node:assert/strict";
import { dumpReplicatedState as dump } from "../meta/_testing.ts";
import { systemClock, systemRng } from "../io/deno/clock.ts";
import { DenoDisk } from "../io/deno/disk.ts";
import { openDenoKv } from "../io/deno/kv.ts";
import type { MetaKv } from "../io/mod.ts";
import {
  type Command,
  type DataRef,
  keys,
  LocalLog,
  MetaError,
  type ObjectRecord,
} from "../meta/mod.ts";
import type { Message } from "../raft/mod.ts";
import type { DriverTimers } from "./driver.ts";
import { RaftLog } from "./raft_log.ts";

const timers: DriverTimers = {
  setTimeout: (ms, fn) => {
    const h = setTimeout(fn, ms);
    return () => clearTimeout(h);
  },
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it holds (no timing assertion: the test fails only on the step budget). */
async function until(what: string, fn: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (await fn()) return;
    await sleep(10);
  }
  assert.fail(`never: ${what}`);
}

/** An in-memory network: messages are delivered asynchronously; links can be cut. */
class Net {
  nodes = new Map<string, RaftLog>();
  cut = new Set<string>();
  /** Deliver every forwarded proposal a second time, later (a retry racing the first). */
  duplicateProposals = false;
  /** Forwarded membership changes still to lose on the way to the leader. */
  dropConfProposals = 0;
  send(m: Message): void {
    if (this.cut.has(m.from) || this.cut.has(m.to)) return;
    if (m.type === "Propose" && m.kind === "conf" && this.dropConfProposals > 0) {
      this.dropConfProposals--;
      return;
    }
    queueMicrotask(() => this.nodes.get(m.to)?.step(m));
    if (this.duplicateProposals && m.type === "Propose") {
      setTimeout(() => this.nodes.get(m.to)?.step(m), 100);
    }
  }
}

interface Member {
  id: string;
  dir: string;
  kv: MetaKv;
  log: RaftLog;
  applied: Command[];
  garbage: DataRef[];
}

async function startMember(
  net: Net,
  id: string,
  dir: string,
  voters: string[],
  extra: { compactEvery?: number } = {},
): Promise<Member> {
  const kv = await openDenoKv(`${dir}/kv.sqlite3`);
  const m: Member = { id, dir, kv, log: null!, applied: [], garbage: [] };
  m.log = await RaftLog.open({
    id,
    kv,
    disk: new DenoDisk(dir),
    rng: systemRng,
    clock: systemClock,
    timers,
    send: (msg) => net.send(msg),
    founding: { voters, learners: [] },
    onGarbage: (refs) => m.garbage.push(...refs),
    onApplied: (cmd) => m.applied.push(cmd),
    tickMs: 10,
    retryMs: 200,
    noLeaderWaitMs: 3000,
    compactEvery: extra.compactEvery,
  });
  net.nodes.set(id, m.log);
  return m;
}

async function withCluster(
  fn: (net: Net, members: Member[]) => Promise<void>,
  extra: { compactEvery?: number } = {},
): Promise<void> {
  const root = await Deno.makeTempDir();
  const net = new Net();
  const ids = ["n1", "n2", "n3"];
  const members: Member[] = [];
  try {
    for (const id of ids) {
      await Deno.mkdir(`${root}/${id}`);
      members.push(await startMember(net, id, `${root}/${id}`, ids, extra));
    }
    await fn(net, members);
  } finally {
    for (const m of members) {
      await m.log.close();
      m.kv.close();
    }
    await Deno.remove(root, { recursive: true });
  }
}

let nextId = 0;
function record(etag: string): ObjectRecord {
  const data = { dataId: (nextId++).toString(16).padStart(32, "0"), k: 1, m: 0, sizeBytes: 3 };
  return { sizeBytes: 3, etag, lastModifiedMs: 1, userMeta: {}, data };
}
const bucket: Command = { type: "CreateBucket", bucket: { name: "b", createdMs: 1, region: "r" } };
const put = (key: string, rec: ObjectRecord): Command => ({
  type: "PutObject",
  bucket: "b",
  key,
  record: rec,
});

/** Retries while the cluster has no leader yet. */
async function propose(log: RaftLog, cmd: Command) {
  for (;;) {
    try {
      return await log.propose(cmd);
    } catch (err) {
      if (!(err instanceof MetaError && err.code === "SlowDown")) throw err;
    }
  }
}

async function leaderOf(members: Member[]): Promise<Member> {
  let leader: Member | undefined;
  await until("a leader", () => {
    leader = members.find((m) => m.log.status().role === "leader");
    return leader !== undefined;
  });
  return leader!;
}

async function sameState(members: Member[]): Promise<void> {
  const index = Math.max(...members.map((m) => m.log.status().commitIndex));
  await until(
    "every member applied the same index",
    () => members.every((m) => m.log.status().lastApplied >= index),
  );
  const dumps = await Promise.all(members.map((m) => dump(m.kv)));
  for (const d of dumps.slice(1)) assert.equal(d, dumps[0]);
}

Deno.test("RaftLog: writes on followers, linearizable read on another node, identical KV", async () => {
  await withCluster(async (_net, members) => {
    const leader = await leaderOf(members);
    const [f1, f2] = members.filter((m) => m !== leader);
    await propose(f1.log, bucket);
    for (let i = 0; i < 20; i++) {
      const writer = i % 2 === 0 ? f1 : f2;
      const reader = i % 2 === 0 ? f2 : f1;
      const rec = record(`e${i}`);
      await propose(writer.log, put("k", rec));
      // Acknowledged on one follower: a read on the other after its barrier sees it.
      await reader.log.readBarrier();
      assert.equal((await reader.kv.get<ObjectRecord>(keys.object("b", "k")))?.value.etag, `e${i}`);
    }
    await assert.rejects(
      f2.log.propose(bucket),
      (e) => e instanceof MetaError && e.code === "BucketAlreadyOwnedByYou",
    );
    await sameState(members);
    // Garbage is reported on every node, not only the proposer's.
    for (const m of members) assert.equal(m.garbage.length, 19);
  });
});

Deno.test("RaftLog: a proposal delivered twice to the leader applies once", async () => {
  await withCluster(async (net, members) => {
    const leader = await leaderOf(members);
    const follower = members.find((m) => m !== leader)!;
    await propose(follower.log, bucket);
    net.duplicateProposals = true;
    const a = record("a");
    await propose(follower.log, put("k", a));
    await propose(follower.log, put("k", record("b")));
    await sleep(300); // the duplicates arrive and commit
    await propose(leader.log, put("other", record("c")));
    await sameState(members);
    for (const m of members) {
      assert.deepEqual(m.applied.map((c) => c.type), [
        "CreateBucket",
        "PutObject",
        "PutObject",
        "PutObject",
      ]);
      assert.equal((await m.kv.get<ObjectRecord>(keys.object("b", "k")))?.value.etag, "b");
      assert.deepEqual(m.garbage, [a.data]);
    }
  });
});

Deno.test("RaftLog: the leader stops, a new one is elected, writes resume", async () => {
  await withCluster(async (net, members) => {
    const old = await leaderOf(members);
    const rest = members.filter((m) => m !== old);
    await propose(rest[0].log, bucket);
    net.cut.add(old.id);
    await until("a new leader", () => rest.some((m) => m.log.status().role === "leader"));
    await propose(rest[1].log, put("after", record("x")));
    await rest[0].log.readBarrier();
    assert.notEqual(await rest[0].kv.get(keys.object("b", "after")), null);
    net.cut.delete(old.id);
    await sameState(members);
  });
});

Deno.test("RaftLog: a lagging node catches up from a snapshot of the KV state", async () => {
  await withCluster(async (net, members) => {
    const leader = await leaderOf(members);
    const lagging = members.find((m) => m !== leader)!;
    await propose(leader.log, bucket);
    net.cut.add(lagging.id);
    for (let i = 0; i < 30; i++) await propose(leader.log, put(`k${i}`, record(`e${i}`)));
    await until("the leader compacted", () => leader.log.status().snapshotIndex > 10);
    net.cut.delete(lagging.id);
    await sameState(members);
    assert.ok(lagging.log.status().snapshotIndex > 10, "installed a snapshot");
    assert.equal(lagging.applied.filter((c) => c.type === "PutObject").length < 30, true);
  }, { compactEvery: 5 });
});

Deno.test("RaftLog adopts a serve data dir at its applied index; refuses it without adopting", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const kv = await openDenoKv(`${dir}/kv.sqlite3`);
    const local = await LocalLog.open(kv);
    await local.propose(bucket);
    await local.propose(put("k", record("old")));
    const opts = {
      id: "n1",
      kv,
      disk: new DenoDisk(dir),
      rng: systemRng,
      clock: systemClock,
      timers,
      send: () => assert.fail("a lone voter sends nothing"),
      founding: { voters: ["n1"], learners: [] },
      onGarbage: () => {},
      tickMs: 10,
    };
    await assert.rejects(RaftLog.open(opts), /adopt/);
    const log = await RaftLog.open({ ...opts, adoptAppliedIndex: true });
    try {
      await propose(log, put("k2", record("new")));
      await log.readBarrier();
      assert.equal((await kv.get<ObjectRecord>(keys.object("b", "k")))?.value.etag, "old");
      assert.equal((await kv.get<number>(keys.applied()))?.value, log.status().lastApplied);
      assert.ok(log.status().lastApplied > 2);
    } finally {
      await log.close();
      kv.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("RaftLog: a membership change on a follower goes to the leader, again when lost", async () => {
  await withCluster(async (net, members) => {
    const leader = await leaderOf(members);
    const [f1, f2] = members.filter((m) => m !== leader);
    const hasN4 = (m: Member) => m.log.status().members.some((p) => p.id === "n4");
    await f1.log.changeMembership({ type: "addLearner", nodeId: "n4" });
    for (const m of [f1, leader]) assert.ok(hasN4(m));
    // The forwarded change is lost once: the follower sends it again (same id).
    net.dropConfProposals = 1;
    await f2.log.changeMembership({ type: "remove", nodeId: "n4" });
    assert.equal(net.dropConfProposals, 0);
    for (const m of [f2, leader]) assert.ok(!hasN4(m));
  });
});
