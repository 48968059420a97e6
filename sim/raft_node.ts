/**
 * One simulated cluster member: a Raft core, its `RaftStorage` on a
 * `SimDisk`, a `KvMachine`, and the loop that turns `ready()` into fsynced
 * writes, sent messages, applied entries and served reads. A crash discards
 * the object; a restart builds a new one over the same disk.
 *
 * Pure: all time, I/O and chance come from the World and its ports.
 *
 * @module
 */
import type { SimDisk } from "./disk.ts";
import { KvMachine } from "./kv_machine.ts";
import type { SimNet } from "./net.ts";
import type { NodeView, RaftChecker } from "./checkers.ts";
import type { World } from "./world.ts";
import { type Membership, type Message, Raft, type RaftConfig } from "../src/raft/mod.ts";
import { RaftStorage } from "../src/raft/storage.ts";

/** Everything a member needs from its world. */
export interface NodeEnv {
  readonly world: World;
  readonly net: SimNet<Message>;
  readonly checker: RaftChecker;
  readonly raftConfig: Partial<RaftConfig>;
  /** Virtual milliseconds per Raft tick. */
  readonly tickMs: number;
  /** Take a snapshot once this many entries were applied since the last one. */
  readonly compactEvery: number;
  /** Called once per first application of a client id, with its index. */
  readonly onFirstApply: (id: string, index: number) => void;
}

type Input = { kind: "tick" } | { kind: "msg"; m: Message } | {
  kind: "call";
  fn: (r: Raft) => void;
};

/** One incarnation of a member process. */
export class SimRaftNode {
  raft: Raft | null = null;
  readonly sm = new KvMachine();
  alive = true;
  #inbox: Input[] = [];
  #busy = false;
  #view: NodeView = { commit: 0, leaderTerm: -1 };
  #applyWaiters = new Map<string, (() => void)[]>();
  #readWaiters = new Map<string, (index: number) => void>();
  #appliedWaiters: { index: number; fn: () => void }[] = [];

  constructor(readonly id: string, readonly disk: SimDisk, readonly env: NodeEnv) {}

  /**
   * Boots from disk; a founding member with an empty disk bootstraps
   * `founding`. Resolves when the node is running (or never, if it crashes first).
   */
  async start(founding: Membership | null): Promise<void> {
    const { world } = this.env;
    const storage = await RaftStorage.open(this.disk, "raft");
    if (!this.alive) return;
    if (storage.isEmpty && founding) await storage.bootstrap(founding);
    if (!this.alive) return;
    const rep = storage.report;
    world.log(() =>
      `boot ${this.id} gen ${rep.generation} records ${rep.logRecords} torn ${rep.tornBytes}B`
    );
    const state = storage.state;
    this.env.checker.onBoot(this.id, state);
    const raft = new Raft({ ...this.env.raftConfig, id: this.id, rng: world.rng.fork() }, state);
    this.sm.restore(state.snapshot?.data ?? new Uint8Array(0), raft.snapshotMeta.index);
    this.#view.commit = raft.snapshotMeta.index;
    this.raft = raft;
    this.#storage = storage;
    this.env.net.attach(this.id, (_from, m) => this.#push({ kind: "msg", m }));
    const tick = () => {
      if (!this.alive || raft.removed) return;
      this.#push({ kind: "tick" });
      world.schedule(this.env.tickMs, tick);
    };
    world.schedule(world.rng.float() * this.env.tickMs, tick);
    if (this.#inbox.length > 0 && !this.#busy) void this.#loop();
  }

  #storage: RaftStorage | null = null;

  /** The process dies: nothing more runs; the caller crashes the disk. */
  kill(): void {
    this.alive = false;
    this.env.net.attach(this.id, null);
  }

  /** Runs `fn` against the Raft core at the next safe point (between ready cycles). */
  call(fn: (r: Raft) => void): void {
    this.#push({ kind: "call", fn });
  }

  /** Calls `fn` once an entry with client id `id` is applied here (now, if it already was). */
  whenApplied(id: string, fn: () => void): void {
    if (this.sm.hasApplied(id)) {
      fn();
      return;
    }
    const list = this.#applyWaiters.get(id) ?? [];
    list.push(fn);
    this.#applyWaiters.set(id, list);
  }

  /** Calls `fn(index)` when the read point for `ctx` arrives. */
  whenReadIndex(ctx: string, fn: (index: number) => void): void {
    this.#readWaiters.set(ctx, fn);
  }

  /** Calls `fn` once lastApplied reaches `index`. */
  whenAppliedIndex(index: number, fn: () => void): void {
    if (this.sm.lastApplied >= index) fn();
    else this.#appliedWaiters.push({ index, fn });
  }

  #push(i: Input): void {
    if (!this.alive) return;
    this.#inbox.push(i);
    if (!this.#busy && this.raft) void this.#loop();
  }

  async #loop(): Promise<void> {
    const { world, net, checker } = this.env;
    const raft = this.raft!;
    this.#busy = true;
    try {
      while (this.alive) {
        const inbox = this.#inbox;
        this.#inbox = [];
        for (const i of inbox) {
          if (i.kind === "tick") raft.tick();
          else if (i.kind === "msg") raft.step(i.m);
          else i.fn(raft);
        }
        checker.observe(raft, this.#view);
        if (!raft.hasReady()) {
          if (this.#inbox.length > 0) continue;
          break;
        }
        const rd = raft.ready();
        await this.#storage!.save(rd);
        if (!this.alive) return;
        if (rd.snapshot?.restore) {
          this.sm.restore(rd.snapshot.data, rd.snapshot.meta.index);
          world.log(() => `${this.id} restored snapshot at ${rd.snapshot!.meta.index}`);
        }
        for (const m of rd.messages) net.send(this.id, m.to, m);
        checker.onSent(raft, rd.messages);
        for (const e of rd.committedEntries) {
          const { duplicate } = this.sm.apply(e);
          checker.onApply(this.id, e.index, this.sm.digest);
          if (e.id !== undefined) {
            if (!duplicate) this.env.onFirstApply(e.id, e.index);
            const ws = this.#applyWaiters.get(e.id);
            if (ws) {
              this.#applyWaiters.delete(e.id);
              for (const fn of ws) fn();
            }
          }
        }
        for (const rs of rd.readStates) {
          const fn = this.#readWaiters.get(rs.ctx);
          if (fn) {
            this.#readWaiters.delete(rs.ctx);
            fn(rs.index);
          }
        }
        raft.advance(rd);
        if (this.#appliedWaiters.length > 0) {
          const due = this.#appliedWaiters.filter((x) => x.index <= this.sm.lastApplied);
          this.#appliedWaiters = this.#appliedWaiters.filter((x) => x.index > this.sm.lastApplied);
          for (const x of due) x.fn();
        }
        if (raft.lastApplied - raft.snapshotMeta.index >= this.env.compactEvery) {
          raft.compact(raft.lastApplied, this.sm.serialize());
        }
        checker.observe(raft, this.#view);
        if (raft.removed) world.log(() => `${this.id} removed`);
      }
    } catch (err) {
      world.fail(`Node ${this.id} crashed: ${(err as Error)?.stack ?? err}`);
    } finally {
      this.#busy = false;
    }
  }
}

/** A short description of a message for traces. */
export function describeMessage(m: Message): string {
  switch (m.type) {
    case "AppendEntries":
      return `AppendEntries t${m.term} prev=${m.prevLogIndex}/${m.prevLogTerm} n=${m.entries.length} commit=${m.leaderCommit}`;
    case "AppendEntriesResponse":
      return `AppendEntriesResponse t${m.term} ${
        m.success
          ? `ok match=${m.matchIndex}`
          : `reject ${m.rejectedIndex} hint=${m.conflictIndex}/${m.conflictTerm}`
      }`;
    case "InstallSnapshot":
      return `InstallSnapshot t${m.term} idx=${m.meta.index} off=${m.offsetBytes} len=${m.data.length}${
        m.done ? " done" : ""
      }`;
    case "PreVote":
    case "RequestVote":
      return `${m.type} t${m.term} last=${m.lastLogIndex}/${m.lastLogTerm}`;
    case "PreVoteResponse":
    case "RequestVoteResponse":
      return `${m.type} t${m.term} ${m.granted ? "granted" : "rejected"}`;
    default:
      return `${m.type} t${m.term}`;
  }
}
