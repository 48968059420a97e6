/**
 * One simulated cluster member: the production `RaftDriver`
 * (`src/cluster/driver.ts`) on the World's ports: virtual timers (with this
 * node's clock skew and pauses), the simulated network, a `SimDisk`, and a
 * `KvMachine`. A crash discards the object; a restart builds a new one over
 * the same disk.
 *
 * Pure: all time, I/O and chance come from the World and its ports.
 *
 * @module
 */
import type { SimDisk } from "./disk.ts";
import { KvMachine } from "./kv_machine.ts";
import type { SimNet } from "./net.ts";
import type { RaftChecker } from "./checkers.ts";
import { SimFailure, type World } from "./world.ts";
import { DriverStoppedError, RaftDriver } from "../src/cluster/driver.ts";
import {
  type ConfChange,
  type Membership,
  type Message,
  ProposalDroppedError,
  type Raft,
  type RaftConfig,
} from "../src/raft/mod.ts";

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
  /** Called when the driver stops on a disk error; the harness crashes and restarts the node. */
  readonly onFatal?: (id: string, err: unknown) => void;
}

/** One incarnation of a member process. */
export class SimRaftNode {
  driver: RaftDriver | null = null;
  readonly sm = new KvMachine();
  alive = true;
  /** This node's timers run `rate` times slower than virtual time (clock and tick-rate skew). */
  rate = 1;
  #pausedUntilMs = 0;
  #held: (() => void)[] = [];
  #booted: Promise<RaftDriver | null> | null = null;

  constructor(readonly id: string, readonly disk: SimDisk, readonly env: NodeEnv) {}

  /** The core (read-only use), once booted. */
  get raft(): Raft | null {
    return this.driver?.raft ?? null;
  }

  /**
   * Boots from disk; a founding member with an empty disk bootstraps
   * `founding`. Resolves when the node is running (or never, if it crashes first).
   * @throws {StorageCorruptError} when its disk holds damaged Raft state.
   */
  start(founding: Membership | null): Promise<RaftDriver | null> {
    this.#booted = this.#start(founding);
    return this.#booted;
  }

  async #start(founding: Membership | null): Promise<RaftDriver | null> {
    const { world, net, checker } = this.env;
    this.env.net.attach(this.id, (_from, m) => this.#whenRunning(() => this.driver?.step(m)));
    const driver = await RaftDriver.open({
      id: this.id,
      disk: this.disk,
      rng: world.rng.fork(),
      timers: {
        setTimeout: (ms, fn) => {
          let live = true;
          world.schedule(ms * this.rate, () => live && this.#whenRunning(fn));
          return () => (live = false);
        },
      },
      send: (m) => net.send(this.id, m.to, m),
      stateMachine: {
        apply: (entries) => {
          for (const e of entries) {
            const { duplicate } = this.sm.apply(e);
            checker.onApply(this.id, e.index, this.sm.digest);
            if (e.id !== undefined && !duplicate) this.env.onFirstApply(e.id, e.index);
          }
          return Promise.resolve();
        },
        takeSnapshot: () => Promise.resolve(this.sm.serialize()),
        restoreSnapshot: (data, index) => {
          this.sm.restore(data, index);
          if (this.driver) world.log(() => `${this.id} restored snapshot at ${index}`);
          return Promise.resolve();
        },
      },
      raft: this.env.raftConfig,
      tickMs: this.env.tickMs,
      firstTickMs: world.rng.float() * this.env.tickMs * this.rate,
      compactEvery: this.env.compactEvery,
      founding,
      onFatal: (err) => {
        if (!this.alive) return;
        world.log(() => `${this.id} fatal: ${(err as Error)?.message ?? err}`);
        if (this.env.onFatal && isDiskFault(err)) this.env.onFatal(this.id, err);
        else world.fail(`Node ${this.id} crashed: ${(err as Error)?.stack ?? err}`);
      },
      observer: {
        onBoot: (state) => checker.onBoot(this.id, state),
        afterStep: (r, m) => checker.observe(r, m),
        onPersisted: (r, rd) => checker.onPersisted(r.id, rd),
        onSend: (r, m) => checker.onSend(r, m),
      },
    });
    if (!this.alive) {
      driver.stop();
      return null;
    }
    const rep = driver.recovery;
    world.log(() =>
      `boot ${this.id} gen ${rep.generation} records ${rep.logRecords} torn ${rep.tornBytes}B`
    );
    this.driver = driver;
    const held = this.#held;
    this.#held = [];
    for (const fn of held) fn();
    return driver;
  }

  /** The process dies: nothing more runs; the caller crashes the disk. */
  kill(): void {
    this.alive = false;
    this.driver?.stop();
    this.env.net.attach(this.id, null);
  }

  /** Freezes the process for `ms` of virtual time: timers and messages wait until it resumes. */
  pause(ms: number): void {
    const w = this.env.world;
    this.#pausedUntilMs = Math.max(this.#pausedUntilMs, w.nowMs + ms);
    w.log(() => `pause ${this.id} ${ms}ms`);
    w.schedule(ms, () => {
      if (w.nowMs < this.#pausedUntilMs) return;
      const held = this.#held;
      this.#held = [];
      for (const fn of held) fn();
    });
  }

  #whenRunning(fn: () => void): void {
    if (!this.alive) return;
    if (this.driver && this.env.world.nowMs >= this.#pausedUntilMs) fn();
    else this.#held.push(fn);
  }

  /** Runs `fn` against the Raft core at the next safe point (once booted). */
  call(fn: (r: Raft) => void): void {
    this.#whenRunning(() => this.driver?.call(fn));
  }

  /**
   * Proposes `data` with client id `id`; calls `onApplied` once it is
   * applied here (now, if it already was). Lost or refused proposals are
   * silent: the client retries.
   */
  propose(data: Uint8Array, id: string, onApplied: () => void): void {
    if (this.sm.hasApplied(id)) {
      onApplied();
      return;
    }
    this.#whenRunning(() => {
      this.driver?.propose(data, id).then(onApplied).catch(ignoreDropped(this.env.world));
    });
  }

  /** Proposes a membership change; refusals are silent. */
  changeMembership(cc: ConfChange): void {
    this.#whenRunning(() => {
      this.driver?.changeMembership(cc).catch((err) => {
        if (!(err instanceof RangeError)) ignoreDropped(this.env.world)(err);
      });
    });
  }

  /** Requests a ReadIndex read point; calls `fn(index)` once it is applied here. */
  readIndex(fn: (index: number) => void): void {
    this.#whenRunning(() => {
      this.driver?.readIndex().then(fn).catch(ignoreDropped(this.env.world));
    });
  }
}

/**
 * Handles a client call's rejection: a dropped proposal or stopped node is
 * the client's to retry; a checker's SimFailure is already recorded.
 */
function ignoreDropped(world: World): (err: unknown) => void {
  return (err) => {
    if (
      err instanceof ProposalDroppedError || err instanceof DriverStoppedError ||
      err instanceof SimFailure
    ) {
      return;
    }
    world.fail(`Unexpected error: ${(err as Error)?.stack ?? err}`);
  };
}

/** True for the injected disk errors (EIO, ENOSPC) and detected corruption. */
function isDiskFault(err: unknown): boolean {
  const code = (err as { code?: string })?.code;
  return code === "EIO" || code === "ENOSPC";
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
