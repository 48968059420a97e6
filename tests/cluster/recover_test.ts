/**
 * `cluster recover -force` on a real Raft directory: a three-voter node's
 * stored state becomes a one-voter cluster that keeps its whole log, elects
 * itself, and commits every entry it held.
 */
import assert from "node:assert/strict";
import { DenoDisk, systemRng } from "../../src/io/deno/mod.ts";
import { encodeConfChange, type Entry, Raft, RaftStorage } from "../../src/raft/mod.ts";
import { recoverOneVoter } from "../../src/cluster/recover.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

Deno.test("recover rewrites a three-voter node into a one-voter cluster keeping its log", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const disk = new DenoDisk(dir);
    const st = await RaftStorage.open(disk, "raft");
    await st.bootstrap({ voters: ["n1", "n2", "n3"], learners: [] });
    const entries: Entry[] = [
      { term: 2, index: 2, kind: "normal", data: bytes("a"), id: "n1.1.1" },
      { term: 2, index: 3, kind: "normal", data: bytes("b"), id: "n1.1.2" },
      {
        term: 2,
        index: 4,
        kind: "conf",
        data: encodeConfChange({ type: "addLearner", nodeId: "n4" }),
      },
      { term: 2, index: 5, kind: "normal", data: bytes("c"), id: "n2.1.1" },
    ];
    await st.save({
      hardState: { term: 2, vote: "n2", commit: 3 },
      entries,
      snapshot: null,
      messages: [],
      committedEntries: [],
      readStates: [],
    });
    st.close();

    const out = await recoverOneVoter(disk, "raft", "n1");
    assert.deepEqual(out.previousMembers.sort(), ["n1", "n2", "n3", "n4"]);
    assert.equal(out.knownCommit, 3);
    assert.equal(out.lastIndex, 5);
    assert.equal(out.uncertainEntries, 2);
    assert.equal(out.confEntriesDropped, 1);
    assert.equal(out.term, 3);

    const again = await RaftStorage.open(disk, "raft");
    const state = again.state;
    again.close();
    assert.deepEqual(state.snapshot?.meta.membership, { voters: ["n1"], learners: [] });
    assert.equal(state.hardState.commit, 5);
    assert.deepEqual(state.entries.map((e) => [e.index, e.kind]), [
      [2, "normal"],
      [3, "normal"],
      [4, "normal"],
      [5, "normal"],
    ]);
    assert.deepEqual(state.entries[3].data, bytes("c"));

    // The node alone elects itself and goes on committing.
    const raft = new Raft({ id: "n1", rng: systemRng }, state);
    assert.deepEqual(raft.membership, { voters: ["n1"], learners: [] });
    for (let i = 0; i < 100 && raft.role !== "leader"; i++) {
      raft.tick();
      while (raft.hasReady()) raft.advance(raft.ready());
    }
    assert.equal(raft.role, "leader");
    assert.ok(raft.lastIndex > 5, "the new leader appended its no-op");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("recover refuses a directory without Raft state", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(recoverOneVoter(new DenoDisk(dir), "raft", "n1"), /nothing to recover/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
