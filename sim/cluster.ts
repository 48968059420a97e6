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
import type { Message } from "../src/raft/mod.ts";
import { RaftChecker, sameBytes } from "./checkers.ts";
import { SimDisk } from "./disk.ts";
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
  const world = new World(seed, { trace: options.trace });
  const rng = world.rng;
  const voters = options.voters ?? (rng.chance(0.5) ? 3 : 5);
  const faultMs = options.faultMs ?? 3000;
  const livenessMs = options.livenessMs ?? 6000;
  const faults = options.faults ?? true;
  const membership = options.membership ?? rng.chance(0.7);
  const net = new SimNet<Message>(world, describeMessage);
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
      electionTicks: 10,
      heartbeatTicks: 2,
      snapshotChunkBytes: rng.pick([256, 1024, 4096]),
      retainEntries: rng.pick([0, 16, 200]),
      maxEntriesPerMessage: rng.pick([1, 4, 64]),
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

  const maxDown = Math.floor((voters - 1) / 2);
  const crashPerOp = faults ? rng.pick([0, 0.002, 0.01]) : 0;
  const downCount = () => [...nodes.values()].filter((n) => !n.alive && !removed.has(n.id)).length;
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
      disk.afterOp = () => {
        if (world.nowMs < faultMs && rng.chance(crashPerOp) && downCount() < maxDown) {
          crash(id);
          world.schedule(rng.range(20, 600), () => restart(id));
        }
      };
    }
    const node = new SimRaftNode(id, disk, env);
    nodes.set(id, node);
    void node.start(founding ? { voters: founders, learners: [] } : null).catch((err) =>
      world.fail(`Boot of ${id} failed: ${(err as Error)?.stack ?? err}`)
    );
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
    const rep = disks.get(id)!.crash();
    crashes++;
    world.log(() =>
      `crash ${id} lost ${rep.lostBytes}B torn ${rep.tornFiles} lostDirOps ${rep.lostDirOps}`
    );
  };
  const restart = (id: string) => {
    const n = nodes.get(id);
    if (!n || n.alive || removed.has(id)) return;
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
      if (r < 0.3 && downCount() < maxDown) {
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
        if (rng.chance(0.6) && m.voters.length + m.learners.length < 7) {
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

  // Track removals (the node stopped itself) so it is never restarted.
  const watchRemoved = () => {
    for (const n of nodes.values()) {
      if (n.raft?.removed && !removed.has(n.id)) {
        removed.add(n.id);
        n.kill();
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
    trace: world.trace,
  };
}
