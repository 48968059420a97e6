/**
 * The replicated metadata under simulation: three members each run the
 * production `RaftLog` (`src/cluster/raft_log.ts`: the RaftDriver, the
 * replay-safe `apply()` into KV, forwarding, ReadIndex, KV snapshots) on a
 * simulated disk and a simulated Deno KV (`sim/kv.ts`), over a simulated
 * network with partitions, while clients issue PUT, GET and DELETE of a few
 * keys on random members and members crash (losing unsynced writes and
 * in-flight KV commits) and restart from disk.
 *
 * Checks, per seed:
 * - the history is linearizable (`sim/linearizability.ts`): GETs run after
 *   `readBarrier()` on whichever member they reach, writes are acknowledged
 *   by `propose()` there;
 * - once healed, every member's KV (all keys but the local group-commit
 *   counter) is identical at the same applied index.
 *
 * A DELETE is `DeleteObjects` of the key and a unique marker key, so each
 * delete is a write of a unique tombstone value the checker can rank.
 *
 * @module
 */
import type { MetaKv } from "../src/io/mod.ts";
import { RaftLog } from "../src/cluster/raft_log.ts";
import { type Command, keys, MetaError, type ObjectRecord } from "../src/meta/mod.ts";
import type { Message } from "../src/raft/mod.ts";
import { SimDisk } from "./disk.ts";
import { SimKv } from "./kv.ts";
import { checkRegisters, type ReadOp, type WriteOp } from "./linearizability.ts";
import { SimNet } from "./net.ts";
import type { SimRng } from "./rng.ts";
import { SimFailure, World } from "./world.ts";

const IDS = ["n1", "n2", "n3"];
const KEYS = ["a", "b", "c"];

interface Member {
  id: string;
  disk: SimDisk;
  kv: SimKv;
  handle: MetaKv | null;
  log: RaftLog | null;
  /** Bumped on every crash: timers and callbacks of a dead generation do nothing. */
  gen: number;
}

/** What one seed did. */
export interface MetaClusterReport {
  writes: number;
  acknowledged: number;
  reads: number;
  crashes: number;
  appliedIndex: number;
}

/** Runs one seed; throws {@link SimFailure} naming the seed on a violation. */
export async function runMetaCluster(
  seed: number,
  opts: { durationMs?: number; crashes?: boolean } = {},
): Promise<MetaClusterReport> {
  const world = new World(seed, { maxEvents: 2_000_000 });
  const rng: SimRng = world.rng;
  const net = new SimNet<Message>(world, (m) => `${m.type} ${m.from}->${m.to}`);
  const firstIndex = new Map<string, number>();
  const writes: { -readonly [K in keyof WriteOp]: WriteOp[K] }[] = [];
  const reads: ReadOp[] = [];
  let crashes = 0;
  const durationMs = opts.durationMs ?? 20_000;

  const members: Member[] = IDS.map((id) => ({
    id,
    disk: new SimDisk({
      rng: rng.fork(),
      schedule: (ms, fn) => world.schedule(ms, fn),
      nowMs: () => world.nowMs,
    }),
    kv: new SimKv({ schedule: (ms, fn) => world.schedule(ms, fn) }),
    handle: null,
    log: null,
    gen: 0,
  }));
  /** Every applied DELETE per key, by log index (the same log on every member). */
  const deletes = new Map<string, { index: number; value: string }[]>();
  /** The tombstone a member whose KV is at `applied` holds for `key`, if any. */
  const tombstoneAt = (key: string, applied: number): string | undefined => {
    let best: { index: number; value: string } | undefined;
    for (const d of deletes.get(key) ?? []) {
      if (d.index <= applied && (!best || d.index > best.index)) best = d;
    }
    return best?.value;
  };

  const boot = async (m: Member) => {
    const gen = m.gen;
    const handle = m.kv.open();
    const log = await RaftLog.open({
      id: m.id,
      kv: handle,
      disk: m.disk,
      rng: rng.fork(),
      clock: world.clock(),
      timers: {
        setTimeout: (ms, fn) => {
          let live = true;
          world.schedule(ms, () => {
            if (live && m.gen === gen) fn();
          });
          return () => {
            live = false;
          };
        },
      },
      send: (msg) => {
        if (m.gen === gen) net.send(msg.from, msg.to, msg);
      },
      founding: { voters: IDS, learners: [] },
      onGarbage: () => {},
      onApplied: (cmd, index) => {
        if (m.gen !== gen) return;
        if (cmd.type === "PutObject") {
          if (!firstIndex.has(cmd.record.etag)) firstIndex.set(cmd.record.etag, index);
        } else if (cmd.type === "DeleteObjects" && cmd.keys.length === 2) {
          const value = cmd.keys[1].slice(1);
          if (!firstIndex.has(value)) {
            firstIndex.set(value, index);
            const list = deletes.get(cmd.keys[0]) ?? [];
            list.push({ index, value });
            deletes.set(cmd.keys[0], list);
          }
        }
      },
      tickMs: 100,
      retryMs: 500,
      noLeaderWaitMs: 2000,
      commitTimeoutMs: 5000,
      compactEvery: 25,
      onFatal: (err) => {
        if (m.gen === gen) world.fail(`${m.id} stopped: ${(err as Error)?.stack ?? err}`);
      },
    });
    if (m.gen !== gen) return;
    m.handle = handle;
    m.log = log;
    net.attach(m.id, (_from: string, msg: Message) => log.step(msg));
  };

  const crash = (m: Member) => {
    if (!m.log) return;
    crashes++;
    m.gen++;
    // The process dies: its driver stops at once (nothing more reaches the disk or the network).
    void m.log.close();
    net.attach(m.id, null);
    m.disk.crash();
    m.kv.crash();
    m.log = null;
    m.handle = null;
    world.schedule(500 + rng.int(2000), () => void boot(m));
  };

  for (const m of members) world.schedule(rng.int(50), () => void boot(m));

  // Faults: partitions and crashes, at most one member down or cut at a time.
  const faultLoop = () => {
    if (world.nowMs > durationMs) return;
    net.heal();
    const victim = members[rng.int(members.length)];
    const r = rng.int(3);
    if (r === 0) net.isolate(victim.id, IDS);
    else if (r === 1 && opts.crashes !== false) crash(victim);
    world.schedule(1000 + rng.int(3000), faultLoop);
  };
  world.schedule(2000, faultLoop);

  // Clients: each issues one operation at a time on a random live member.
  let seq = 0;
  /** Client operations not yet answered: the members converge only once none is left. */
  let inflight = 0;
  const client = async (c: number) => {
    while (world.nowMs < durationMs) {
      await world.clock().sleep(10 + rng.int(200));
      const m = members[rng.int(members.length)];
      const log = m.log;
      const kv = m.handle;
      if (!log || !kv) continue;
      const key = KEYS[rng.int(KEYS.length)];
      const invokeMs = world.nowMs;
      const op = rng.int(5);
      if (op < 2) {
        try {
          await log.readBarrier();
          // One read of the record and the applied index it belongs to.
          const [rec, at] = await kv.getMany<unknown>([keys.object("b", key), keys.applied()]);
          reads.push({
            key,
            value: rec
              ? (rec.value as ObjectRecord).etag
              : tombstoneAt(key, (at?.value as number | undefined) ?? 0),
            invokeMs,
            respMs: world.nowMs,
            node: m.id,
          });
        } catch {
          // no read point (no leader, or the member crashed): no answer, nothing to check
        }
        continue;
      }
      const value = `${op < 4 ? "v" : "d"}${c}-${++seq}`;
      const cmd: Command = op < 4
        ? {
          type: "PutObject",
          bucket: "b",
          key,
          record: { sizeBytes: 1, etag: value, lastModifiedMs: 1, userMeta: {} },
        }
        : { type: "DeleteObjects", bucket: "b", keys: [key, `~${value}`] };
      const w = { key, value, invokeMs, respMs: Infinity, index: undefined as number | undefined };
      writes.push(w);
      inflight++;
      try {
        await log.propose(cmd);
        w.respMs = world.nowMs;
      } catch {
        // refused (no leader) or outcome unknown: not acknowledged
      } finally {
        inflight--;
      }
    }
  };

  // The bucket first, through whichever member leads.
  const setup = async () => {
    for (;;) {
      await world.clock().sleep(100);
      const log = members[0].log;
      if (!log) continue;
      try {
        await log.propose({
          type: "CreateBucket",
          bucket: { name: "b", createdMs: 1, region: "r" },
        });
        break;
      } catch (err) {
        if (err instanceof MetaError && err.code === "BucketAlreadyOwnedByYou") break;
      }
    }
    for (let c = 0; c < 3; c++) void client(c);
  };
  void setup();

  await world.run(durationMs + 1000);
  // Heal: every member up and connected, then let them converge.
  net.heal();
  for (const m of members) if (!m.log) void boot(m);
  const settle = async () => {
    for (;;) {
      await world.clock().sleep(200);
      const logs = members.map((m) => m.log);
      if (logs.some((l) => !l) || inflight > 0) continue;
      const st = logs.map((l) => l!.status());
      const top = Math.max(...st.map((s) => s.commitIndex));
      if (st.every((s) => s.lastApplied === top && s.commitIndex === top)) return;
    }
  };
  const dumpOf = async (m: Member): Promise<{ applied: unknown; text: string }> => {
    const out: unknown[] = [];
    let applied: unknown = 0;
    for await (const e of m.handle!.list({ prefix: [] })) {
      if (e.key[0] === "sys" && e.key[1] === "flush") continue;
      if (e.key[0] === "sys" && e.key[1] === "applied") applied = e.value;
      out.push([e.key, e.value]);
    }
    return { applied, text: JSON.stringify(out) };
  };
  // Converge, then dump every member; a late entry (a new leader's no-op) may land in between:
  // then converge again. Only dumps at the same applied index are compared.
  let dumps: string[] | null = null;
  for (let attempt = 0; attempt < 10 && dumps === null; attempt++) {
    let got: { applied: unknown; text: string }[] | null = null;
    const round = async () => {
      await settle();
      got = await Promise.all(members.map(dumpOf));
    };
    void round();
    await world.run(world.nowMs + 60_000, () => got !== null);
    if (got === null) throw world.fail("The members did not converge within 60 s of healing");
    const g = got as { applied: unknown; text: string }[];
    if (g.every((d) => d.applied === g[0].applied)) dumps = g.map((d) => d.text);
  }
  if (dumps === null) throw world.fail("The members never held the same applied index at once");
  for (let i = 1; i < dumps.length; i++) {
    if (dumps[i] !== dumps[0]) {
      const a = JSON.parse(dumps[0]) as unknown[];
      const b = JSON.parse(dumps[i]) as unknown[];
      const at = a.findIndex((e, j) => JSON.stringify(e) !== JSON.stringify(b[j]));
      throw world.fail(
        `KV of ${IDS[i]} differs from ${IDS[0]} at the same applied index: ` +
          `${JSON.stringify(a[at])} vs ${JSON.stringify(b[at])}`,
      );
    }
  }
  for (const w of writes) w.index = firstIndex.get(w.value);
  const violation = checkRegisters(writes, reads);
  if (violation) throw world.fail(violation);
  const appliedIndex = members[0].log!.status().lastApplied;
  for (const m of members) await m.log!.close();
  return {
    writes: writes.length,
    acknowledged: writes.filter((w) => w.respMs !== Infinity).length,
    reads: reads.length,
    crashes,
    appliedIndex,
  };
}

export { SimFailure };
