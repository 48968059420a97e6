/**
 * Cluster schedules: one seed draws a cluster (3 or 5 founding voters), a
 * fault plan (latency, drops, duplicates, partitions, crashes and restarts
 * with torn disks), membership changes (learners joining, members leaving)
 * and a client workload of writes and ReadIndex reads; runs it; and checks
 * safety continuously, then linearizability and liveness at the end.
 *
 * Pure: everything comes from the World built from the seed.
 *
 * @module
 */
import { decodeMessage, encodeMessage } from "../src/cluster/wire.ts";
import { type Message, StorageCorruptError } from "../src/raft/mod.ts";
import { parseRecords } from "../src/raft/storage.ts";
import { RaftChecker, sameBytes } from "./checkers.ts";
import { SimDisk, SimDiskError } from "./disk.ts";
import { encodeCommand } from "./kv_machine.ts";
import { checkRegisters, type ReadOp, type WriteOp } from "./linearizability.ts";
import { SimNet } from "./net.ts";
import { describeMessage, type NodeEnv, SimRaftNode } from "./raft_node.ts";
import { World } from "./world.ts";

/** Knobs of one cluster run; unset ones are drawn from the seed. */
export interface ClusterOptions {
  /** Founding voters: 3 or 5. Default: drawn. */
  readonly voters?: number;
  /** Virtual milliseconds of faults and workload. Default 3000. */
  readonly faultMs?: number;
  /** Bound on recovery after faults stop, virtual milliseconds. Default 6000. */
  readonly livenessMs?: number;
  /** Inject faults. Default true. */
  readonly faults?: boolean;
  /** Add learners and remove members. Default: drawn (70% of seeds). */
  readonly membership?: boolean;
  /** Record an event trace. Default false. */
  readonly trace?: boolean;
  /**
   * A targeted schedule that makes one class of bug likely (the fault mix of
   * the default, weighted): `turnover` (new leaders crash right after their
   * first append, one entry per message: Figure 8 of the paper), `learners`
   * (learners joining and staying unpromoted while voters lag), `reads`
   * (ReadIndex on isolated and paused leaders). Default: none.
   */
  readonly focus?: "turnover" | "learners" | "reads";
  /** Events the run may process before it fails (a message storm or livelock). Default 20 per virtual ms of the run's bound (faultMs + livenessMs). */
  readonly maxEvents?: number;
}

/** What one run did. */
export interface ClusterReport {
  readonly seed: number;
  readonly voters: number;
  readonly virtualMs: number;
  readonly events: number;
  readonly commitIndex: number;
  readonly elections: number;
  readonly writesAcked: number;
  readonly writesTotal: number;
  readonly readsDone: number;
  readonly crashes: number;
  readonly joins: number;
  readonly removals: number;
  readonly snapshotsInstalled: number;
  readonly messages: number;
  /** Commit advances checked against the disks of the voters. */
  readonly commitChecks: number;
  /** Injected disk errors (EIO, ENOSPC) that stopped a node. */
  readonly diskErrors: number;
  /** Log files corrupted while their node was down, and how many boots detected it. */
  readonly corruptions: number;
  readonly corruptionsDetected: number;
  /** Corrupted messages the receiver's frame checksum rejected. */
  readonly corruptMessages: number;
  readonly pauses: number;
  /** New leaders crashed right after their first append. */
  readonly turnovers: number;
  readonly trace: string[] | null;
}

const TICK_MS = 10;

/**
 * Runs one seeded cluster schedule.
 * @throws {SimFailure} on the first broken invariant, carrying the seed.
 */
export async function runCluster(
  seed: number,
  options: ClusterOptions = {},
): Promise<ClusterReport> {
  const faultMs = options.faultMs ?? 3000;
  const livenessMs = options.livenessMs ?? 6000;
  const world = new World(seed, {
    trace: options.trace,
    maxEvents: options.maxEvents ?? 20 * (faultMs + livenessMs),
  });
  const rng = world.rng;
  const focus = options.focus;
  const voters = options.voters ?? (rng.chance(0.5) ? 3 : 5);
  const faults = options.faults ?? true;
  const membership = options.membership ?? (focus === "learners" || rng.chance(0.7));
  const net = new SimNet<Message>(world, describeMessage, {
    encode: encodeMessage,
    decode: decodeMessage,
  });
  const checker = new RaftChecker(world, 5);
  const firstApply = new Map<string, number>();
  let snapshotsInstalled = 0;
  const env: NodeEnv = {
    world,
    net,
    checker,
    tickMs: TICK_MS,
    compactEvery: rng.range(8, 40),
    raftConfig: {
      electionTicks: rng.pick([5, 10, 10, 20]),
      heartbeatTicks: rng.pick([1, 2, 2]),
      preVote: rng.chance(0.75),
      checkQuorum: rng.chance(0.75),
      snapshotChunkBytes: rng.pick([256, 1024, 4096]),
      retainEntries: rng.pick([0, 16, 200]),
      maxEntriesPerMessage: focus === "turnover" ? 1 : rng.pick([1, 2, 4, 64]),
      maxInflightMessages: rng.pick([1, 4, 16]),
      autoPromote: focus === "learners" ? false : rng.chance(0.8),
      promoteLagEntries: rng.pick([0, 4, 16, 64]),
    },
    onFatal: (id) => {
      diskErrors++;
      crash(id);
      world.schedule(rng.range(20, 300), () => restart(id));
    },
    onFirstApply: (id, index) => {
      const prev = firstApply.get(id);
      world.assert(
        prev === undefined || prev === index,
        () => `Client id ${id} applied at ${prev} and ${index}`,
      );
      firstApply.set(id, index);
    },
  };
  net.faults.latencyMs = rng.range(1, 5);
  net.faults.jitterMs = faults ? rng.range(0, 20) : 1;
  // Fault mix of this seed (all zero without faults).
  const f = (xs: number[]) => (faults ? rng.pick(xs) : 0);
  /** Chance that a new leader crashes right after its first append. */
  const turnoverRate = focus === "turnover" ? rng.pick([0.3, 0.6]) : f([0, 0, 0.1, 0.3]);
  /** Chance per disk write or fsync of EIO, and of a 50-500 ms ENOSPC window. */
  const eioRate = f([0, 0, 0.0005, 0.002]);
  const enospcRate = f([0, 0, 0.0005]);
  /** Chance that a crash also rots a byte of the log written before its tail. */
  const corruptRate = f([0, 0, 0.1]);
  /** Chance of a pause among the fault loop's faults. */
  const pauseRate = focus === "reads" ? 0.3 : f([0, 0.1, 0.2]);
  /** Tick-rate skew: each node's timers run 0.7 to 1.4 times as fast as virtual time. */
  const skew = f([0, 0, 1]) === 1;
  net.faults.corruptRate = f([0, 0, 0.001, 0.01]);
  let diskErrors = 0;
  let corruptions = 0;
  let corruptionsDetected = 0;
  let pauses = 0;
  let turnovers = 0;
  const quarantined = new Set<string>();

  const maxDown = Math.floor((voters - 1) / 2);
  const crashPerOp = faults ? rng.pick([0, 0.002, 0.01]) : 0;
  const downCount = () =>
    [...nodes.values()].filter((n) => (!n.alive || quarantined.has(n.id)) && !removed.has(n.id))
      .length;
  const founders = Array.from({ length: voters }, (_, i) => `n${i + 1}`);
  const disks = new Map<string, SimDisk>();
  const nodes = new Map<string, SimRaftNode>();
  const removed = new Set<string>();
  let crashes = 0;
  let joins = 0;
  let removals = 0;
  let nextId = voters + 1;

  const boot = (id: string, founding: boolean) => {
    let disk = disks.get(id);
    if (!disk) {
      disk = new SimDisk({
        rng: rng.fork(),
        schedule: (ms, fn) => world.schedule(ms, fn),
        nowMs: () => world.nowMs,
        latency: { syncMs: rng.float() * 2 },
      });
      disks.set(id, disk);
    }
    if (faults) {
      const d = disk;
      let fullUntilMs = 0;
      disk.afterOp = () => {
        if (world.nowMs < faultMs && rng.chance(crashPerOp) && downCount() < maxDown) {
          crash(id);
          world.schedule(rng.range(20, 600), () => restart(id));
        }
      };
      d.failOp = (kind) => {
        if (world.nowMs >= faultMs) return null;
        if (world.nowMs < fullUntilMs && kind !== "sync") return new SimDiskError("ENOSPC", kind);
        if (kind !== "create" && rng.chance(enospcRate)) {
          fullUntilMs = world.nowMs + rng.range(50, 500);
          return new SimDiskError("ENOSPC", kind);
        }
        return rng.chance(eioRate) ? new SimDiskError("EIO", kind) : null;
      };
    }
    const node = new SimRaftNode(id, disk, env);
    node.rate = skew ? 0.7 + rng.float() * 0.7 : 1;
    nodes.set(id, node);
    void node.start(founding ? { voters: founders, learners: [] } : null).catch((err) => {
      if (err instanceof SimDiskError) {
        diskErrors++;
        crash(id);
        world.schedule(rng.range(20, 300), () => restart(id));
      } else if (err instanceof StorageCorruptError) {
        // Detected: the node must not rejoin with this disk. An operator
        // removes it; the harness does so through the leader.
        corruptionsDetected++;
        quarantined.add(id);
        world.log(() => `quarantine ${id}: ${err.message}`);
      } else world.fail(`Boot of ${id} failed: ${(err as Error)?.stack ?? err}`);
    });
  };
  for (const id of founders) boot(id, true);

  const alive = () => [...nodes.values()].filter((n) => n.alive && n.raft && !n.raft.removed);
  /**
   * Where a client sends a request: a live member of the membership known to
   * the node with the highest commit index (clients learn the member list
   * from the cluster),
   * or, one time in ten, any live node, members removed unawares included.
   */
  const liveMembers = () => {
    const l = leader();
    if (!l) return alive();
    const m = l.raft!.membership;
    return alive().filter((n) => m.voters.includes(n.id) || m.learners.includes(n.id));
  };
  const clientTargets = () => {
    const live = alive();
    if (live.length === 0 || rng.chance(0.1)) return live;
    const newest = live.reduce((a, b) => (a.raft!.commitIndex >= b.raft!.commitIndex ? a : b));
    const m = newest.raft!.membership;
    const members = live.filter((n) => m.voters.includes(n.id) || m.learners.includes(n.id));
    return members.length > 0 ? members : live;
  };
  const leader = () => {
    const ls = alive().filter((n) => n.raft!.role === "leader");
    return ls.length > 0 ? ls.reduce((a, b) => (a.raft!.term >= b.raft!.term ? a : b)) : null;
  };
  const crash = (id: string) => {
    const n = nodes.get(id);
    if (!n || !n.alive) return;
    n.kill();
    const disk = disks.get(id)!;
    const rep = disk.crash();
    crashes++;
    world.log(() =>
      `crash ${id} lost ${rep.lostBytes}B torn ${rep.tornFiles} lostDirOps ${rep.lostDirOps}`
    );
    if (
      world.nowMs < faultMs && quarantined.size === 0 && downCount() < maxDown &&
      rng.chance(corruptRate) && rotLog(disk)
    ) {
      corruptions++;
    }
  };
  /** Flips a byte of a log record that has a successor (never the tail a crash may tear). */
  const rotLog = (disk: SimDisk): boolean => {
    const log = disk.paths().filter((p) => /^raft\/log-\d+$/.test(p)).at(-1);
    const bytes = log ? disk.peek(log) : null;
    if (!log || !bytes) return false;
    const { validBytes } = parseRecords(bytes);
    const view = new DataView(bytes.buffer);
    const starts: number[] = [];
    for (let pos = 0; pos < validBytes; pos += 8 + view.getUint32(pos, true)) starts.push(pos);
    if (starts.length < 2) return false;
    const i = rng.int(starts.length - 1);
    const at = starts[i] + rng.int(starts[i + 1] - starts[i]);
    disk.corrupt(log, at, 1 + rng.int(255));
    world.log(() => `rot ${log} byte ${at}`);
    return true;
  };
  const restart = (id: string) => {
    const n = nodes.get(id);
    if (!n || n.alive || removed.has(id) || quarantined.has(id)) return;
    world.log(`restart ${id}`);
    boot(id, founders.includes(id));
  };

  // ---- client workload -------------------------------------------------------
  const writes: { key: string; value: string; id: string; invokeMs: number; respMs: number }[] = [];
  const reads: ReadOp[] = [];
  const keys = ["x", "y", "z"];
  let opSeq = 0;
  /**
   * Issues one write and retries it with the same client id until acked.
   * `probe` writes (the liveness check) go to members of the current
   * membership every 100 ms instead of backing off.
   */
  const write = (deadlineMs: number, onDone?: () => void, probe = false) => {
    const n = opSeq++;
    const op = {
      key: rng.pick(keys),
      value: `v${n}`,
      id: `w${n}`,
      invokeMs: world.nowMs,
      respMs: Infinity,
    };
    writes.push(op);
    const data = encodeCommand({ key: op.key, value: op.value });
    const attempt = () => {
      if (op.respMs !== Infinity || world.nowMs > deadlineMs) return;
      const candidates = probe ? liveMembers() : clientTargets();
      if (candidates.length > 0) {
        const node = rng.pick(candidates);
        world.log(() => `client ${op.id} ${op.key}=${op.value} via ${node.id}`);
        node.propose(data, op.id, () => {
          if (op.respMs === Infinity) {
            op.respMs = world.nowMs;
            world.log(() => `client ${op.id} acked by ${node.id}`);
            onDone?.();
          }
        });
      }
      // Exponential backoff with jitter, 100 ms doubling up to 1.6 s.
      world.schedule(probe ? 100 : rng.range(100, 200) * 2 ** Math.min(tries++, 4), attempt);
    };
    let tries = 0;
    attempt();
  };
  const read = (at?: SimRaftNode) => {
    const candidates = clientTargets();
    if (candidates.length === 0) return;
    const node = at?.alive ? at : rng.pick(candidates);
    const key = rng.pick(keys);
    const invokeMs = world.nowMs;
    const floor = checker.maxCommitted;
    node.readIndex((index) => {
      checker.readFloor(node.id, floor, index);
      reads.push({ key, value: node.sm.get(key), invokeMs, respMs: world.nowMs, node: node.id });
    });
  };
  const clientLoop = () => {
    if (world.nowMs >= faultMs) return;
    if (rng.chance(0.6)) write(faultMs + livenessMs);
    else read();
    world.schedule(rng.range(5, 40), clientLoop);
  };
  world.schedule(50, clientLoop);

  // ---- faults --------------------------------------------------------------
  checker.onLeader = (id) => {
    if (world.nowMs >= faultMs || !rng.chance(turnoverRate)) return;
    // Crash it once its first append (the no-op, maybe more) is on its disk
    // and on the wire: a log with an entry of its term nobody else may hold.
    world.schedule(rng.float() * 3, () => {
      if (downCount() >= maxDown || nodes.get(id)?.raft?.role !== "leader") return;
      turnovers++;
      world.log(`turnover: crash new leader ${id}`);
      crash(id);
      world.schedule(rng.range(20, 300), () => restart(id));
    });
  };
  if (faults) {
    const dropRate = rng.pick([0, 0.01, 0.05, 0.15]);
    const dupRate = rng.pick([0, 0.02, 0.1]);
    net.faults.dropRate = dropRate;
    net.faults.duplicateRate = dupRate;
    const faultLoop = () => {
      if (world.nowMs >= faultMs) return;
      const members = [...nodes.keys()].filter((id) => !removed.has(id));
      const l = leader();
      // Half the faults aim at the leader: elections with entries in flight.
      const target = (
        ids: string[],
      ) => (l && ids.includes(l.id) && rng.chance(0.5) ? l.id : rng.pick(ids));
      const r = rng.float();
      if (rng.chance(pauseRate)) {
        const id = target(members.filter((x) => nodes.get(x)!.alive));
        const n = nodes.get(id);
        if (n) {
          pauses++;
          n.pause(rng.range(20, 800));
          if (l?.id === id) {
            for (let t = 0; t < 300; t += 20) world.schedule(t, () => read(n));
          }
        }
      } else if (r < 0.3 && downCount() < maxDown) {
        const id = target(members.filter((x) => nodes.get(x)!.alive));
        crash(id);
        world.schedule(rng.range(20, 600), () => restart(id));
      } else if (r < 0.5) {
        const id = target(members);
        net.isolate(id, members);
        world.log(`isolate ${id}`);
        if (l?.id === id) {
          // A deposed leader must not serve stale reads: read on it while the
          // majority elects another leader and writes.
          for (let t = 0; t < 300; t += 10) {
            world.schedule(t, () => {
              read(nodes.get(id));
              write(faultMs + livenessMs);
            });
          }
        }
        world.schedule(rng.range(50, 800), () => {
          net.heal();
          world.log("heal");
        });
      } else if (r < 0.6) {
        const a = rng.pick(members);
        const b = rng.pick(members);
        net.block(a, b);
        world.log(`block ${a}->${b}`);
        world.schedule(rng.range(50, 800), () => net.heal());
      } else if (r < 0.7 && members.length >= 2) {
        // Split into a random minority and majority.
        const shuffled = rng.shuffle(members);
        const cut = rng.range(1, Math.floor(members.length / 2));
        const minority = shuffled.slice(0, cut);
        for (const a of minority) net.isolate(a, shuffled.slice(cut));
        world.log(`split ${minority.join(",")}`);
        world.schedule(rng.range(100, 800), () => net.heal());
      }
      world.schedule(rng.range(50, 300), faultLoop);
    };
    world.schedule(rng.range(100, 400), faultLoop);
  }

  // ---- membership ----------------------------------------------------------
  if (membership) {
    const confLoop = () => {
      if (world.nowMs >= faultMs * 0.8) return;
      const l = leader();
      if (l) {
        const m = l.raft!.membership;
        const promotable = m.learners.filter((x) => !quarantined.has(x));
        if (
          !env.raftConfig.autoPromote && promotable.length > 0 && m.voters.length < 5 &&
          rng.chance(focus === "learners" ? 0.25 : 0.5)
        ) {
          // Promotion after a delay the harness chooses (autoPromote is off).
          const id = rng.pick(promotable);
          world.log(`promote ${id}`);
          l.changeMembership({ type: "promote", nodeId: id });
        } else if (rng.chance(0.6) && m.voters.length + m.learners.length < 7) {
          const id = `n${nextId++}`;
          joins++;
          boot(id, false);
          world.log(`join ${id}`);
          l.changeMembership({ type: "addLearner", nodeId: id });
        } else if (m.voters.length > 3 || m.learners.length > 0) {
          const victim = rng.pick(
            [...m.voters, ...m.learners].filter((x) => x !== l.id || rng.chance(0.3)),
          );
          if (victim && (m.voters.length > 3 || !m.voters.includes(victim))) {
            removals++;
            world.log(`remove ${victim}`);
            l.changeMembership({ type: "remove", nodeId: victim });
          }
        }
      }
      world.schedule(rng.range(150, 600), confLoop);
    };
    world.schedule(rng.range(200, 600), confLoop);
  }

  // Track removals (the node stopped itself) so it is never restarted, and
  // remove members whose disk was found corrupt.
  const watchRemoved = () => {
    for (const n of nodes.values()) {
      if (n.raft?.removed && !removed.has(n.id)) {
        removed.add(n.id);
        n.kill();
      }
    }
    const l = leader();
    if (l) {
      const m = l.raft!.membership;
      for (const id of quarantined) {
        if (removed.has(id)) continue;
        if (!m.voters.includes(id) && !m.learners.includes(id)) {
          if (l.raft!.commitIndex === l.raft!.lastIndex) removed.add(id);
        } else l.changeMembership({ type: "remove", nodeId: id });
      }
    }
    world.schedule(50, watchRemoved);
  };
  world.schedule(50, watchRemoved);

  // ---- run: faults, then heal, then liveness -------------------------------
  await world.run(faultMs);
  net.heal();
  net.faults.dropRate = 0;
  net.faults.duplicateRate = 0;
  net.faults.corruptRate = 0;
  for (const id of nodes.keys()) restart(id);
  world.log("faults stop");

  const healedAt = world.nowMs;
  let finalDone = false;
  const finalId = `w${opSeq}`;
  write(healedAt + livenessMs, () => (finalDone = true), true);
  const converged = () => {
    if (!finalDone) return false;
    const l = leader();
    if (!l) return false;
    const idx = firstApply.get(finalId);
    if (idx === undefined) return false;
    const members = [...l.raft!.membership.voters, ...l.raft!.membership.learners];
    return members.every((id) => {
      const n = nodes.get(id);
      return n !== undefined && n.alive && n.raft !== null && n.sm.lastApplied >= idx;
    });
  };
  await world.run(healedAt + livenessMs, converged);
  if (!converged()) {
    const l = leader();
    const m = l?.raft?.membership;
    const lag = m
      ? [...m.voters, ...m.learners].map((id) => {
        const n = nodes.get(id);
        return `${id}:${n?.alive ? n.sm.lastApplied : "down"}`;
      }).join(" ")
      : "";
    throw world.fail(
      `Liveness: not converged ${livenessMs}ms after faults stopped (leader ${l?.id ?? "none"}, ` +
        `final write ${finalId} ${
          finalDone ? `acked at ${firstApply.get(finalId)}` : "pending"
        }, ` +
        `applied ${lag})`,
    );
  }

  // ---- end-of-run checks -----------------------------------------------------
  const wops: WriteOp[] = writes.map((w) => ({ ...w, index: firstApply.get(w.id) }));
  const violation = checkRegisters(wops, reads);
  if (violation) throw world.fail(`Linearizability: ${violation}`);
  const l = leader()!;
  const members = [...l.raft!.membership.voters, ...l.raft!.membership.learners];
  const target = Math.max(...members.map((id) => nodes.get(id)!.sm.lastApplied));
  await world.run(
    world.nowMs + 500,
    () => members.every((id) => nodes.get(id)!.sm.lastApplied >= target),
  );
  const states = members.map((id) => nodes.get(id)!).filter((n) => n.sm.lastApplied === target);
  for (const n of states) {
    world.assert(
      sameBytes(n.sm.serialize(), states[0].sm.serialize()),
      () => `Applied states differ between ${states[0].id} and ${n.id} at index ${target}`,
    );
  }
  for (const n of nodes.values()) if (n.raft && n.raft.snapshotMeta.index > 1) snapshotsInstalled++;

  return {
    seed,
    voters,
    virtualMs: world.nowMs,
    events: world.events,
    commitIndex: checker.maxCommitted,
    elections: checker.elections,
    writesAcked: writes.filter((w) => w.respMs !== Infinity).length,
    writesTotal: writes.length,
    readsDone: reads.length,
    crashes,
    joins,
    removals,
    snapshotsInstalled,
    messages: net.stats.sent,
    commitChecks: checker.commitChecks,
    diskErrors,
    corruptions,
    corruptionsDetected,
    corruptMessages: net.stats.corrupted,
    pauses,
    turnovers,
    trace: world.trace,
  };
}
