/**
 * The member wiring (`ClusterNode`) on real loopback mTLS and a real Deno KV,
 * with a one-voter stand-in for the replicated log that applies the cluster
 * commands in order: `token` through the operator path, a join that burns the
 * token, records the member and adds a learner before signing, a reused
 * token refused, `status`, credentials from replicated metadata, and a
 * removed member's certificate refused afterwards.
 */
import assert from "node:assert/strict";
import { DenoDisk, openDenoKv, systemClock, systemRng } from "../../src/io/deno/mod.ts";
import { dialCluster, dialForJoin, listenCluster } from "../../src/io/deno/tls.ts";
import type { MetaKv } from "../../src/io/mod.ts";
import { LocalDataPath } from "../../src/data/local.ts";
import type { ApplyResult, Command } from "../../src/meta/mod.ts";
import type { ConfChange } from "../../src/raft/mod.ts";
import { createClusterCa, createCsr, issueNodeCertificate } from "../../src/cluster/pki.ts";
import { JoinError, requestJoin } from "../../src/cluster/join.ts";
import { callAdmin, type ClusterStatus, type TokenAnswer } from "../../src/cluster/admin.ts";
import {
  ClusterNode,
  type LogHooks,
  type LogPeerStatus,
  type LogStatus,
} from "../../src/cluster/node.ts";
import { type ClusterCommand, clusterKeys, type MemberRecord } from "../../src/cluster/records.ts";
import { decodeJoinToken, type JoinTokenRecord } from "../../src/cluster/token.ts";
import { decodeRaftMessage, encodeRaftMessage } from "../../src/cluster/open_log.ts";

/** A one-voter log applying the cluster commands as the plan specifies them. */
class OneVoterLog {
  index = 0;
  members: LogPeerStatus[];
  removed = false;
  constructor(readonly kv: MetaKv, readonly selfId: string, readonly hooks: LogHooks) {
    this.members = [{ id: selfId, role: "voter", matchIndex: undefined }];
  }
  async propose(cmd: Command): Promise<ApplyResult> {
    const c = cmd as unknown as ClusterCommand;
    const result: ApplyResult & { burned?: boolean } = { garbage: [] };
    switch (c.type) {
      case "PutMember":
        await this.kv.atomic().set(clusterKeys.member(c.member.id), c.member).commit();
        break;
      case "RemoveMember": {
        const m = (await this.kv.get<MemberRecord>(clusterKeys.member(c.id)))?.value;
        await this.kv.atomic().set(clusterKeys.member(c.id), { ...m, removed: true }).commit();
        break;
      }
      case "PutClusterCa":
        await this.kv.atomic().set(clusterKeys.ca(), c.pem).commit();
        break;
      case "IssueJoinToken":
        await this.kv.atomic().set(clusterKeys.token(c.record.tokenId), c.record).commit();
        break;
      case "BurnJoinToken": {
        const t = (await this.kv.get<JoinTokenRecord>(clusterKeys.token(c.tokenId)))?.value;
        result.burned = !!t && t.usedBy === null && c.nowMs < t.expiresAtMs;
        if (result.burned) {
          await this.kv.atomic().set(clusterKeys.token(c.tokenId), { ...t, usedBy: c.nodeId })
            .commit();
        }
        break;
      }
      case "PutCredential":
        if (!(await this.kv.get(clusterKeys.credential(c.accessKeyId)))) {
          await this.kv.atomic().set(clusterKeys.credential(c.accessKeyId), {
            secretAccessKey: c.secretAccessKey,
          }).commit();
        }
        break;
    }
    this.hooks.onApplied(cmd, ++this.index);
    return result;
  }
  readBarrier(): Promise<void> {
    return Promise.resolve();
  }
  step(): void {}
  changeMembership(cc: ConfChange): Promise<void> {
    if (cc.type === "addLearner") {
      this.members.push({ id: cc.nodeId, role: "learner", matchIndex: 0 });
    }
    if (cc.type === "remove") this.members = this.members.filter((m) => m.id !== cc.nodeId);
    return Promise.resolve();
  }
  status(): LogStatus {
    return {
      id: this.selfId,
      role: "leader",
      term: 1,
      leader: this.selfId,
      commitIndex: this.index,
      lastApplied: this.index,
      lastIndex: this.index,
      members: this.members,
      removed: this.removed,
    };
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const timers = {
  setTimeout(ms: number, fn: () => void) {
    const h = setTimeout(fn, ms);
    return () => clearTimeout(h);
  },
};

Deno.test("a member mints tokens, admits a joiner by CSR, refuses reuse, reports status", async () => {
  const dir = await Deno.makeTempDir();
  const kv = await openDenoKv(`${dir}/kv.sqlite3`);
  const ca = await createClusterCa({
    clusterId: "t",
    nowMs: Date.now(),
    serial: systemRng.fill(new Uint8Array(16)),
  });
  const csr = await createCsr("a");
  const certPem = await issueNodeCertificate(ca, "a", csr.csrPem, {
    nowMs: Date.now(),
    serial: systemRng.fill(new Uint8Array(16)),
  });
  const identity = { caCertPem: ca.certPem, certPem, keyPem: csr.keyPem };
  const local = new LocalDataPath(new DenoDisk(dir));
  await local.init();
  let log: OneVoterLog | null = null;
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const node = await ClusterNode.start({
    selfId: "a",
    listenAddr: `127.0.0.1:${port}`,
    caCertPem: ca.certPem,
    ca,
    kv,
    clock: systemClock,
    rng: systemRng,
    timers,
    localData: local,
    seeds: [],
    dial: (addr) => dialCluster(addr, identity),
    listen: (onConn) => listenCluster({ hostname: "127.0.0.1", port, identity, onConn }),
    openLog: (hooks) => Promise.resolve(log = new OneVoterLog(kv, "a", hooks)),
    encodeMessage: encodeRaftMessage,
    decodeMessage: decodeRaftMessage,
    credentials: { accessKeyId: "AKID", secretAccessKey: "s3cret" },
    onRemoved: () => {},
    log: () => {},
  });
  try {
    const admin = () => dialCluster({ hostname: "127.0.0.1", port }, identity);
    // Upkeep records this node, the CA and the HAMSTER_* pair once a leader is known.
    for (let i = 0; i < 100 && node.secretFor("AKID") === undefined; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(node.secretFor("AKID"), "s3cret");
    assert.equal((await kv.get(clusterKeys.ca()))?.value, ca.certPem);

    const { token } = await callAdmin(await admin(), { op: "token", ttlMs: 60_000 }) as TokenAnswer;
    assert.match(token, /^hamster-join-v1\./);

    const joined = await requestJoin(token, "b", {
      dial: (addr) => dialForJoin(addr),
      clock: systemClock,
      addr: "127.0.0.1:7999",
    });
    assert.equal(joined.nodeId, "b");
    assert.deepEqual(joined.members, [{ id: "a", addr: `127.0.0.1:${port}` }]);
    // Burned, recorded, and a learner before the certificate was handed out.
    assert.equal(
      (await kv.get<JoinTokenRecord>(clusterKeys.token(tokenIdOf(token))))?.value.usedBy,
      "b",
    );
    assert.deepEqual((await kv.get(clusterKeys.member("b")))?.value, {
      id: "b",
      addr: "127.0.0.1:7999",
    });
    assert.ok(log!.members.some((m) => m.id === "b" && m.role === "learner"));

    await assert.rejects(
      requestJoin(token, "c", { dial: (addr) => dialForJoin(addr), clock: systemClock }),
      (err: unknown) => err instanceof JoinError && err.code === "UsedToken",
    );

    const st = await callAdmin(await admin(), { op: "status" }) as ClusterStatus;
    assert.equal(st.leader, "a");
    assert.deepEqual(st.members.map((m) => [m.id, m.role, m.addr]), [
      ["a", "voter", `127.0.0.1:${port}`],
      ["b", "learner", "127.0.0.1:7999"],
    ]);

    // b's certificate is a peer until b is removed; then it is refused.
    const bIdentity = { caCertPem: ca.certPem, certPem: joined.certPem, keyPem: joined.keyPem };
    await callAdmin(await admin(), { op: "remove", nodeId: "b" });
    assert.equal((await kv.get<MemberRecord>(clusterKeys.member("b")))?.value.removed, true);
    const before = node.transport.refused.badCertificate;
    const conn = await dialCluster({ hostname: "127.0.0.1", port }, bIdentity);
    for await (const _ of conn.chunks) {
      // the node closes it
    }
    assert.equal(node.transport.refused.badCertificate, before + 1);
  } finally {
    await node.close();
    kv.close();
    await Deno.remove(dir, { recursive: true });
  }
});

function tokenIdOf(token: string): string {
  return decodeJoinToken(token).tokenId;
}
