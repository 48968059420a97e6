import assert from "node:assert/strict";
import { SimDisk } from "../../sim/disk.ts";
import { SimRng } from "../../sim/rng.ts";
import { bootstrapState, type Entry, type HardState, Raft, type Ready } from "./mod.ts";
import { parseRecords, RaftStorage, StorageCorruptError } from "./storage.ts";

const enc = (s: string) => new TextEncoder().encode(s);

function ready(part: Partial<Ready>): Ready {
  return {
    hardState: null,
    entries: [],
    snapshot: null,
    messages: [],
    committedEntries: [],
    readStates: [],
    ...part,
  };
}

function entry(index: number, term: number, id?: string): Entry {
  return { index, term, kind: "normal", data: enc(`e${index}t${term}`), ...(id ? { id } : {}) };
}

Deno.test("RaftStorage.open() recovers hard state, entries and snapshot after save() (Figure 2)", async () => {
  const disk = new SimDisk({ rng: new SimRng(1) });
  const st = await RaftStorage.open(disk, "raft");
  assert.equal(st.isEmpty, true);
  await st.bootstrap({ voters: ["a", "b", "c"], learners: [] });
  const hs: HardState = { term: 3, vote: "b", commit: 2 };
  await st.save(ready({ hardState: hs, entries: [entry(2, 2), entry(3, 3, "c1")] }));
  const st2 = await RaftStorage.open(disk, "raft");
  assert.deepEqual(st2.state.hardState, hs);
  assert.deepEqual(st2.state.entries, [entry(2, 2), entry(3, 3, "c1")]);
  assert.deepEqual(st2.state.snapshot!.meta, {
    index: 1,
    term: 1,
    membership: { voters: ["a", "b", "c"], learners: [] },
  });
});

Deno.test("RaftStorage.save() overwrites a conflicting suffix (§5.3)", async () => {
  const disk = new SimDisk({ rng: new SimRng(1) });
  const st = await RaftStorage.open(disk, "raft");
  await st.bootstrap({ voters: ["a"], learners: [] });
  await st.save(ready({ entries: [entry(2, 1), entry(3, 1), entry(4, 1)] }));
  await st.save(ready({ entries: [entry(3, 2)] }));
  const st2 = await RaftStorage.open(disk, "raft");
  assert.deepEqual(st2.state.entries.map((e) => [e.index, e.term]), [[2, 1], [3, 2]]);
});

Deno.test("RaftStorage.save() of a snapshot compacts the log, keeping firstIndex on (§7)", async () => {
  const disk = new SimDisk({ rng: new SimRng(1) });
  const st = await RaftStorage.open(disk, "raft");
  await st.bootstrap({ voters: ["a"], learners: [] });
  await st.save(ready({ entries: [2, 3, 4, 5, 6].map((i) => entry(i, 1)) }));
  const meta = { index: 5, term: 1, membership: { voters: ["a"], learners: [] } };
  await st.save(ready({ snapshot: { meta, data: enc("state@5"), restore: false, firstIndex: 4 } }));
  const st2 = await RaftStorage.open(disk, "raft");
  assert.deepEqual(st2.state.entries.map((e) => e.index), [4, 5, 6]);
  assert.equal(new TextDecoder().decode(st2.state.snapshot!.data), "state@5");
  const names = disk.paths().filter((p) => p.startsWith("raft/"));
  assert.equal(names.length, 2, `old generations removed: ${names}`);
});

Deno.test("RaftStorage.open() cuts a torn tail and never returns a partial entry (seeded crashes)", async (t) => {
  for (let seed = 1; seed <= 60; seed++) {
    await t.step(`seed=${seed}`, async () => {
      const rng = new SimRng(seed);
      const disk = new SimDisk({ rng: rng.fork() });
      let st = await RaftStorage.open(disk, "raft");
      await st.bootstrap({ voters: ["a"], learners: [] });
      const acked: Entry[] = [];
      let next = 2;
      for (let round = 0; round < 5; round++) {
        const n = rng.range(1, 4);
        const batch = Array.from({ length: n }, () => entry(next++, 1));
        if (rng.chance(0.7)) {
          await st.save(ready({ entries: batch }));
          acked.push(...batch);
        } else {
          // Crash before the save resolves: the write may be torn at any byte.
          void st.save(ready({ entries: batch }));
          await Promise.resolve();
          disk.crash();
          st = await RaftStorage.open(disk, "raft");
          const got = st.state.entries;
          assert.ok(got.length >= acked.length, `seed=${seed}: lost acknowledged entries`);
          for (let i = 0; i < got.length; i++) {
            const want = i < acked.length ? acked[i] : batch[i - acked.length];
            assert.deepEqual(
              got[i],
              want,
              `seed=${seed}: entry ${i} differs; replay with seed=${seed}`,
            );
          }
          acked.length = 0;
          acked.push(...got);
          next = 2 + got.length;
        }
      }
    });
  }
});

Deno.test("parseRecords() stops at the first short or corrupt record", () => {
  const bytes = new Uint8Array([3, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9]);
  const r = parseRecords(bytes);
  assert.equal(r.records.length, 0);
  assert.equal(r.tornBytes, bytes.length);
});

Deno.test("RaftStorage.save() makes a ready durable whole or not at all under torn writes", async (t) => {
  for (let seed = 1; seed <= 40; seed++) {
    await t.step(`seed=${seed}`, async () => {
      const disk = new SimDisk({ rng: new SimRng(seed) });
      const st = await RaftStorage.open(disk, "raft");
      await st.bootstrap({ voters: ["a", "b", "c"], learners: [] });
      await st.save(
        ready({
          hardState: { term: 2, vote: null, commit: 1 },
          entries: [entry(2, 2), entry(3, 2)],
        }),
      );
      // A new leader of term 5 overwrites index 3 and moves us to term 5; crash mid-write.
      void st.save(
        ready({
          hardState: { term: 5, vote: "b", commit: 1 },
          entries: [entry(3, 5), entry(4, 5)],
        }),
      );
      await Promise.resolve();
      disk.crash();
      const got = (await RaftStorage.open(disk, "raft")).state;
      const terms = got.entries.map((e) => `${e.index}/${e.term}`).join(" ");
      if (got.hardState.term === 5) assert.equal(terms, "2/2 3/5 4/5", `seed=${seed}`);
      else {
        assert.equal(got.hardState.term, 2, `seed=${seed}`);
        assert.equal(terms, "2/2 3/2", `seed=${seed}: entries of term 5 without the term`);
      }
    });
  }
});

Deno.test("RaftStorage.bootstrap() at an index adopts a machine at that index; the log goes on after it", async () => {
  const disk = new SimDisk({ rng: new SimRng(1) });
  const st = await RaftStorage.open(disk, "raft");
  await st.bootstrap({ voters: ["a"], learners: [] }, 41);
  await st.save(ready({ hardState: { term: 2, vote: "a", commit: 42 }, entries: [entry(42, 2)] }));
  const st2 = await RaftStorage.open(disk, "raft");
  assert.equal(st2.state.snapshot!.meta.index, 41);
  assert.equal(st2.state.snapshot!.data.length, 0);
  assert.deepEqual(st2.state.entries.map((e) => e.index), [42]);
  const raft = new Raft({ id: "a", rng: new SimRng(2) }, st2.state);
  assert.equal(raft.lastIndex, 42);
  assert.equal(raft.commitIndex, 42);
  assert.throws(() => bootstrapState({ voters: ["a"], learners: [] }, 0), RangeError);
});

Deno.test("RaftStorage.open() refuses a log damaged before its end instead of cutting acknowledged records (Figure 2)", async (t) => {
  const setup = async () => {
    const disk = new SimDisk({ rng: new SimRng(3) });
    const st = await RaftStorage.open(disk, "raft");
    await st.bootstrap({ voters: ["a", "b", "c"], learners: [] });
    for (let i = 2; i <= 4; i++) {
      await st.save(
        ready({ hardState: { term: 2, vote: "a", commit: 1 }, entries: [entry(i, 2)] }),
      );
    }
    st.close();
    const log = disk.paths().find((p) => /^raft\/log-\d+$/.test(p))!;
    return { disk, log, bytes: disk.peek(log)! };
  };
  await t.step("a flipped byte in the first of three records", async () => {
    const { disk, log } = await setup();
    disk.corrupt(log, 12, 0x40);
    await assert.rejects(RaftStorage.open(disk, "raft"), StorageCorruptError);
  });
  await t.step("a damaged length field in the second record", async () => {
    const { disk, log, bytes } = await setup();
    const first = new DataView(bytes.buffer).getUint32(0, true);
    disk.corrupt(log, 8 + first + 1, 0x01);
    await assert.rejects(RaftStorage.open(disk, "raft"), StorageCorruptError);
  });
  await t.step("a torn last record is still cut off as a torn tail", async () => {
    const { disk, log, bytes } = await setup();
    disk.corrupt(log, bytes.length - 2, 0x10);
    const st = await RaftStorage.open(disk, "raft");
    assert.deepEqual(st.state.entries.map((e) => e.index), [2, 3]);
    assert.ok(st.report.tornBytes > 0);
  });
});
