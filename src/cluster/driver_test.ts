import assert from "node:assert/strict";
import { DenoDisk } from "../io/deno/disk.ts";
import { systemRng } from "../io/deno/clock.ts";
import type { Disk, WriteHandle } from "../io/mod.ts";
import { type Entry, type Message, ProposalDroppedError } from "../raft/mod.ts";
import { DriverStoppedError, type DriverTimers, RaftDriver, type StateMachine } from "./driver.ts";

const timers: DriverTimers = {
  setTimeout: (ms, fn) => {
    const h = setTimeout(fn, ms);
    return () => clearTimeout(h);
  },
};

/** Retries `fn` while no leader is known (the node is still electing itself). */
async function untilLeader<T>(fn: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof ProposalDroppedError)) throw err;
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

/** A list of applied commands, snapshotted as JSON. */
function listMachine(): StateMachine & { applied: string[]; restoredAt: number } {
  const sm = {
    applied: [] as string[],
    restoredAt: -1,
    apply(entries: readonly Entry[]) {
      for (const e of entries) {
        if (e.kind === "normal" && e.data.length > 0) {
          sm.applied.push(new TextDecoder().decode(e.data));
        }
      }
      return Promise.resolve();
    },
    takeSnapshot: () => Promise.resolve(new TextEncoder().encode(JSON.stringify(sm.applied))),
    restoreSnapshot(data: Uint8Array, index: number) {
      sm.applied = data.length === 0 ? [] : JSON.parse(new TextDecoder().decode(data));
      sm.restoredAt = index;
      return Promise.resolve();
    },
  };
  return sm;
}

Deno.test("RaftDriver on a real disk: a lone voter commits, serves ReadIndex, compacts and recovers after a restart (Figure 2, thesis §6.4)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const open = (sm: StateMachine) =>
      RaftDriver.open({
        id: "a",
        disk: new DenoDisk(dir),
        rng: systemRng,
        timers,
        send: () => assert.fail("a lone voter sends nothing"),
        stateMachine: sm,
        raft: { electionTicks: 2 },
        tickMs: 5,
        compactEvery: 3,
        founding: { voters: ["a"], learners: [] },
      });
    const sm1 = listMachine();
    const d1 = await open(sm1);
    const i1 = await untilLeader(() => d1.propose(new TextEncoder().encode("one"), "c1"));
    const i2 = await d1.propose(new TextEncoder().encode("two"));
    assert.ok(i2 > i1);
    assert.deepEqual(sm1.applied, ["one", "two"]);
    const r = await d1.readIndex();
    assert.ok(r >= i2);
    for (let i = 0; i < 4; i++) await d1.propose(new TextEncoder().encode(`x${i}`));
    const st = d1.status();
    assert.equal(st.role, "leader");
    assert.equal(st.leader, "a");
    assert.equal(st.lastApplied, st.commitIndex);
    assert.ok(st.snapshotIndex > 1, "compacted after compactEvery entries");
    assert.deepEqual(st.members, [{ id: "a", role: "voter", matchIndex: st.lastIndex }]);
    d1.stop();
    await assert.rejects(d1.propose(new Uint8Array([1])), DriverStoppedError);

    const sm2 = listMachine();
    const d2 = await open(sm2);
    assert.equal(sm2.restoredAt, st.snapshotIndex);
    await untilLeader(() => d2.readIndex());
    assert.deepEqual(sm2.applied, ["one", "two", "x0", "x1", "x2", "x3"]);
    d2.stop();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A DenoDisk whose fsyncs fail with EIO once `armed`. */
class FailingDisk extends DenoDisk {
  armed = false;
  override async create(path: string): Promise<WriteHandle> {
    const h = await super.create(path);
    return {
      write: (b) => h.write(b),
      sync: () => {
        if (this.armed) return Promise.reject(Object.assign(new Error("EIO"), { code: "EIO" }));
        return h.sync();
      },
      close: () => h.close(),
    };
  }
}

Deno.test("RaftDriver stops on an fsync error before sending what the failed write promised (Figure 2)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const disk = new FailingDisk(dir);
    const sent: Message[] = [];
    let fatal: (err: unknown) => void = () => {};
    const failed = new Promise<unknown>((resolve) => (fatal = resolve));
    const d = await RaftDriver.open({
      id: "a",
      disk: disk as Disk,
      rng: systemRng,
      timers,
      send: (m) => sent.push(m),
      stateMachine: listMachine(),
      raft: { electionTicks: 2, preVote: false },
      tickMs: 5,
      founding: { voters: ["a", "b", "c"], learners: [] },
      onFatal: fatal,
    });
    disk.armed = true;
    const err = await failed;
    assert.equal((err as { code?: string }).code, "EIO");
    assert.ok(d.stopped);
    // The candidate's new term never reached the disk, so no RequestVote may carry it.
    assert.deepEqual(sent.filter((m) => m.type === "RequestVote"), []);
    assert.equal(d.raft.role, "candidate");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
