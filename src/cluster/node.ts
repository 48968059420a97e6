/**
 * One cluster member at run time: the transport and its listener, the
 * replicated log (`RaftLog`), the join authority (on the node holding the CA
 * key), operator requests, calls between members, remote reads, and the
 * caches of replicated members and credentials the S3 endpoint uses.
 *
 * Everything outside comes through ports (`ClusterNodeDeps`); `main.ts`
 * passes the real ones. No `Deno.*`.
 *
 * @module
 */
import type { Clock, MetaKv, Rng } from "../io/mod.ts";
import type { DialAddr, SecureConn } from "../io/conn.ts";
import type { ConfChange, Message } from "../raft/mod.ts";
import type { ApplyResult, Command, DataRef, MetaLog } from "../meta/mod.ts";
import type { DataPath } from "../data/local.ts";
import { type Frame, FrameType } from "../transport/frame.ts";
import { Transport } from "../transport/peer.ts";
import { answerJoinRequest, type JoinMember, parseAddr } from "./join.ts";
import { caFingerprintSha256, type ClusterCa, verifyNodeCertificate } from "./pki.ts";
import { encodeJoinToken, mintJoinToken, TOKEN_RANDOM_BYTES } from "./token.ts";
import {
  AdminError,
  type AdminRequest,
  type ClusterStatus,
  decodeAdminRequest,
  type MemberStatus,
} from "./admin.ts";
import {
  asCommand,
  type ClusterCommand,
  type MemberRecord,
  readClusterCa,
  readCredentials,
  readJoinToken,
  readMembers,
} from "./records.ts";
import { errorFrameOf, jsonFrame, PeerRpc, RpcError, StreamIds, type Timers } from "./rpc.ts";
import { RemoteData } from "./remote_data.ts";
import { ClusterDataPath } from "./cluster_data.ts";

/** A member's view of one peer, as the replicated log reports it. */
export interface LogPeerStatus {
  readonly id: string;
  readonly role: "voter" | "learner";
  /** Highest index known on the peer (the leader's view), else undefined. */
  readonly matchIndex: number | undefined;
}

/** What the replicated log reports (the Raft driver's status). */
export interface LogStatus {
  readonly id: string;
  readonly role: string;
  readonly term: number;
  readonly leader: string | null;
  readonly commitIndex: number;
  readonly lastApplied: number;
  readonly lastIndex: number;
  readonly members: readonly LogPeerStatus[];
  readonly removed: boolean;
}

/** The replicated log as the node drives it (`RaftLog` in `raft_log.ts`). */
export interface ClusterLog extends MetaLog {
  /** A Raft message from a peer. */
  step(m: Message): void;
  /** Proposes a membership change (on the leader). */
  changeMembership(cc: ConfChange): Promise<void>;
  /** The log's state. */
  status(): LogStatus;
  /** True once this node committed its own removal. */
  readonly removed: boolean;
  /** Stops the log. */
  close(): Promise<void>;
}

/** Hooks the node gives the log when it opens it. */
export interface LogHooks {
  /** Sends a Raft message to its `to`. */
  send(m: Message): void;
  /** Data released by an applied command (on every node). */
  onGarbage(refs: DataRef[]): void;
  /** Each applied command, after it applied. */
  onApplied(cmd: Command, index: number): void;
}

/** The ports of a member. */
export interface ClusterNodeDeps {
  /** This node's id. */
  selfId: string;
  /** This node's cluster port as members dial it, `host:port`. */
  listenAddr: string;
  /** The cluster CA certificate, PEM. */
  caCertPem: string;
  /** The CA key, only on the node that holds it. */
  ca: ClusterCa | null;
  /** The local replica. */
  kv: MetaKv;
  clock: Clock;
  rng: Rng;
  timers: Timers;
  /** This node's own data (its disk). */
  localData: DataPath;
  /** Members to dial at start (a joiner's list from its join answer). */
  seeds: JoinMember[];
  /** Dials a member with this node's certificate. */
  dial(addr: DialAddr): Promise<SecureConn>;
  /** Starts listening; `onConn` gets every connection whose handshake finished. */
  listen(onConn: (conn: SecureConn) => void): Promise<{ close(): Promise<void> }>;
  /** Opens the replicated log with these hooks. */
  openLog(hooks: LogHooks): Promise<ClusterLog>;
  /** Raft message codec (`wire.ts`). */
  encodeMessage(m: Message): Uint8Array;
  /** @throws for a damaged frame (dropped like a lost message) */
  decodeMessage(bytes: Uint8Array): Message;
  /** A pair from HAMSTER_* to add to replicated metadata when absent. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Called once when this node learns it was removed: the process stops. */
  onRemoved(): void;
  /** Logs a line for the operator. */
  log(line: string): void;
  /** Members `cluster recover` dropped: their records are marked removed once a leader is known. */
  recoveredDropped?: string[];
}

/** How long an operator request waits for a member's answer. */
const PEER_CALL_TIMEOUT_MS = 5000;

/**
 * A running member.
 *
 * @example
 * ```ts
 * const node = await ClusterNode.start(deps);
 * const app = createS3App({ kv, log: node.log, data: node.data, secretFor: (id) => node.secretFor(id), ... });
 * ```
 */
export class ClusterNode {
  readonly transport: Transport;
  readonly rpc: PeerRpc;
  readonly remote: RemoteData;
  /** The data path S3 uses: local writes, remote reads. */
  readonly data: ClusterDataPath;
  #log: ClusterLog | null = null;
  #listener: { close(): Promise<void> } | null = null;
  #members = new Map<string, MemberRecord>();
  #creds = new Map<string, string>();
  #connected = new Set<string>();
  #closed = false;
  #removedNotified = false;
  #cancelTimer: (() => void) | null = null;
  #garbage: (refs: DataRef[]) => void = () => {};

  private constructor(readonly deps: ClusterNodeDeps) {
    const ids = new StreamIds(deps.selfId);
    this.transport = new Transport({
      selfId: deps.selfId,
      clock: deps.clock,
      rng: deps.rng,
      dial: (addr) => deps.dial(addr),
      identify: (der) => this.#identify(der),
      onMessage: (peerId, frame) => this.#onMessage(peerId, frame),
      onJoinRequest: (frame) => this.#onJoinRequest(frame),
      onPeerChange: (peerId, up) => {
        if (up) this.#connected.add(peerId);
        else {
          this.#connected.delete(peerId);
          this.rpc.peerLost(peerId);
          this.remote.peerLost(peerId);
        }
      },
      onLocalRequest: (frame) => this.#onLocalRequest(frame),
    });
    const send = (peerId: string, frame: Frame) => this.transport.send(peerId, frame);
    this.rpc = new PeerRpc(
      ids,
      send,
      deps.timers,
      (peerId, body) => this.#onPeerCall(peerId, body),
    );
    this.remote = new RemoteData(ids, send, deps.localData, deps.timers);
    this.data = new ClusterDataPath(
      deps.selfId,
      deps.localData,
      this.remote,
      () => this.founderId,
    );
  }

  /** Opens the log, starts the transport and the listener, and begins upkeep. */
  static async start(deps: ClusterNodeDeps): Promise<ClusterNode> {
    const node = new ClusterNode(deps);
    await node.#reloadCaches();
    for (const s of deps.seeds) {
      if (!node.#members.has(s.id)) node.#members.set(s.id, { id: s.id, addr: s.addr });
    }
    node.#log = await deps.openLog({
      send: (m) => node.#sendRaft(m),
      onGarbage: (refs) => node.#garbage(refs),
      onApplied: (cmd) => node.#onApplied(cmd),
    });
    node.#dialMembers();
    node.#listener = await deps.listen((conn) => node.transport.accept(conn));
    node.#upkeep(0);
    return node;
  }

  /** The replicated log (the S3 endpoint's `MetaLog`). */
  get log(): ClusterLog {
    return this.#log!;
  }

  /** Sets where data released on this node goes (the reclaimer). */
  set onGarbage(fn: (refs: DataRef[]) => void) {
    this.#garbage = fn;
  }

  /** The member whose refs carry no `node`: the founder (marked in its record). */
  get founderId(): string | null {
    for (const m of this.#members.values()) {
      if (m.founder) return m.id;
    }
    return null;
  }

  /** The secret of `accessKeyId` in replicated metadata (cached). */
  secretFor(accessKeyId: string): string | undefined {
    return this.#creds.get(accessKeyId);
  }

  /** Members known from replicated metadata. */
  get members(): ReadonlyMap<string, MemberRecord> {
    return this.#members;
  }

  /** Stops upkeep, the listener, the transport and the log. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#cancelTimer?.();
    await this.#listener?.close();
    await this.transport.close();
    await this.#log?.close();
  }

  // ---- transport ----

  async #identify(der: Uint8Array): Promise<string> {
    const id = await verifyNodeCertificate(der, this.deps.caCertPem, this.deps.clock.nowMs());
    if (this.#members.get(id)?.removed) throw new Error(`Node ${id} was removed`);
    return id;
  }

  #sendRaft(m: Message): void {
    if (this.#closed) return;
    this.transport.send(m.to, {
      type: FrameType.Raft,
      streamId: 0,
      payload: this.deps.encodeMessage(m),
    });
  }

  #onMessage(peerId: string, frame: Frame): void {
    try {
      if (frame.type === FrameType.Raft) {
        let m: Message;
        try {
          m = this.deps.decodeMessage(frame.payload);
        } catch {
          return; // damaged: dropped like a lost message
        }
        if (m.from !== peerId || m.to !== this.deps.selfId) return; // identity is the certificate's
        this.#log?.step(m);
        return;
      }
      if (this.rpc.onFrame(peerId, frame)) return;
      this.remote.onFrame(peerId, frame);
    } catch (err) {
      this.deps.log(`cluster: frame from ${peerId} failed: ${(err as Error).message}`);
    }
  }

  // ---- join ----

  #onJoinRequest(frame: Frame): Promise<Frame> {
    const ca = this.deps.ca;
    if (!ca) {
      return Promise.resolve(
        errorFrameOf(0, new AdminError("NoCaKey", "This member does not hold the cluster CA key")),
      );
    }
    return answerJoinRequest(frame, {
      ca,
      clock: this.deps.clock,
      rng: this.deps.rng,
      lookupToken: async (tokenId) => {
        await this.log.readBarrier();
        return await readJoinToken(this.deps.kv, tokenId);
      },
      nodeIdTaken: async (nodeId) => {
        await this.log.readBarrier();
        return (await readMembers(this.deps.kv)).has(nodeId);
      },
      burnToken: async (tokenId, nodeId, nowMs) => {
        try {
          const result = await this.#propose({ type: "BurnJoinToken", tokenId, nodeId, nowMs });
          return (result as { burned?: boolean }).burned === true;
        } catch (err) {
          if ((err as { name?: string }).name === "MetaError") return false;
          throw err;
        }
      },
      admit: async (req) => {
        const addr = req.addr;
        if (!addr) throw new AdminError("BadRequest", "The join request names no cluster address");
        await this.#propose({ type: "PutMember", member: { id: req.nodeId, addr } });
        await this.#changeMembership({ type: "addLearner", nodeId: req.nodeId });
        return [...this.#members.values()].filter((m) => !m.removed && m.id !== req.nodeId)
          .map((m) => ({ id: m.id, addr: m.addr }));
      },
    });
  }

  // ---- operator and member calls ----

  async #onLocalRequest(frame: Frame): Promise<Frame> {
    try {
      const body = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(frame.payload));
      const answer = await this.#admin(decodeAdminRequest(body));
      return jsonFrame(FrameType.Response, frame.streamId, answer);
    } catch (err) {
      return errorFrameOf(frame.streamId, err);
    }
  }

  async #onPeerCall(peerId: string, body: unknown): Promise<unknown> {
    const v = body as { op?: string; request?: unknown } | null;
    switch (v?.op) {
      case "progress":
        return this.#localStatus();
      case "admin":
        return await this.#admin(decodeAdminRequest(v.request));
      case "removed":
        // The leader tells a member it removed; only a member can send this.
        this.#removedSelf(`removed from the cluster (told by ${peerId})`);
        return null;
      default:
        throw new RpcError("BadRequest", `Unknown call ${JSON.stringify(v?.op)}`);
    }
  }

  async #admin(req: AdminRequest): Promise<unknown> {
    switch (req.op) {
      case "status":
        return await this.#clusterStatus();
      case "token":
        return await this.#mintToken(req.ttlMs);
      case "remove":
        return await this.#remove(req.nodeId);
    }
  }

  async #mintToken(ttlMs: number): Promise<{ token: string; expiresAtMs: number }> {
    if (!this.deps.ca) {
      throw new AdminError(
        "NoCaKey",
        `This member (${this.deps.selfId}) does not hold the cluster CA key; run "hamster cluster token" with the data dir of the member that has cluster/ca.key${
          this.founderId ? ` (${this.founderId})` : ""
        }`,
      );
    }
    const { token, record } = await mintJoinToken({
      addr: this.deps.listenAddr,
      caSha256: await caFingerprintSha256(this.deps.caCertPem),
      nowMs: this.deps.clock.nowMs(),
      ttlMs,
      random: this.deps.rng.fill(new Uint8Array(TOKEN_RANDOM_BYTES)),
    });
    await this.#propose({ type: "IssueJoinToken", record });
    return { token: encodeJoinToken(token), expiresAtMs: record.expiresAtMs };
  }

  async #remove(nodeId: string): Promise<unknown> {
    const leader = this.log.status().leader;
    if (leader !== null && leader !== this.deps.selfId) {
      return await this.rpc.call(
        leader,
        { op: "admin", request: { op: "remove", nodeId } },
        PEER_CALL_TIMEOUT_MS * 2,
      );
    }
    if (leader === null) throw new AdminError("SlowDown", "No leader is known; try again");
    await this.log.readBarrier();
    const member = (await readMembers(this.deps.kv)).get(nodeId);
    const inConfig = this.log.status().members.some((m) => m.id === nodeId);
    if (!member && !inConfig) {
      throw new AdminError("NoSuchMember", `Node "${nodeId}" is not a member of this cluster`);
    }
    if (nodeId === this.deps.selfId) {
      throw new AdminError(
        "CannotRemoveLeader",
        `Node "${nodeId}" is the leader; stop it, or remove it from another member once another leads`,
      );
    }
    if (inConfig) await this.#changeMembership({ type: "remove", nodeId });
    // Tell it while its certificate is still accepted; then refuse it everywhere.
    await this.rpc.call(nodeId, { op: "removed" }, 1000).catch(() => {});
    await this.#propose({ type: "RemoveMember", id: nodeId });
    return { removed: nodeId };
  }

  #localStatus(): ClusterStatus {
    const s = this.log.status();
    const members: MemberStatus[] = s.members.map((m) => ({
      id: m.id,
      addr: this.#members.get(m.id)?.addr ?? null,
      role: m.role,
      reachable: m.id === this.deps.selfId || this.#connected.has(m.id),
      matchIndex: m.matchIndex ?? null,
      lag: m.matchIndex === undefined ? null : Math.max(0, s.lastIndex - m.matchIndex),
    }));
    return {
      nodeId: this.deps.selfId,
      addr: this.deps.listenAddr,
      role: s.removed ? "removed" : s.role,
      leader: s.leader,
      term: s.term,
      commitIndex: s.commitIndex,
      appliedIndex: s.lastApplied,
      members,
    };
  }

  /** This node's status, with members as the leader sees them when it answers. */
  async #clusterStatus(): Promise<ClusterStatus> {
    const own = this.#localStatus();
    if (own.leader === null || own.leader === this.deps.selfId) return own;
    try {
      const lead = await this.rpc.call(own.leader, { op: "progress" }, PEER_CALL_TIMEOUT_MS) as
        | ClusterStatus
        | null;
      if (lead && Array.isArray(lead.members)) return { ...own, members: lead.members };
    } catch {
      // the leader did not answer: this node's own view
    }
    return own;
  }

  // ---- replicated state ----

  async #propose(cmd: ClusterCommand): Promise<ApplyResult> {
    return await this.log.propose(asCommand(cmd));
  }

  async #changeMembership(cc: ConfChange): Promise<void> {
    await this.log.changeMembership(cc);
  }

  #onApplied(cmd: Command): void {
    const c = cmd as unknown as ClusterCommand;
    switch (c.type) {
      case "PutMember": {
        const prev = this.#members.get(c.member.id);
        this.#members.set(c.member.id, { ...prev, ...c.member });
        this.#dialMembers();
        break;
      }
      case "RemoveMember": {
        const prev = this.#members.get(c.id);
        this.#members.set(c.id, { id: c.id, addr: prev?.addr ?? "", ...prev, removed: true });
        if (c.id === this.deps.selfId) this.#removedSelf("removed from the cluster");
        else this.transport.removePeer(c.id);
        break;
      }
      case "PutCredential":
        if (!this.#creds.has(c.accessKeyId)) this.#creds.set(c.accessKeyId, c.secretAccessKey);
        break;
    }
  }

  async #reloadCaches(): Promise<void> {
    const members = await readMembers(this.deps.kv);
    for (const [id, m] of this.#members) if (!members.has(id) && !m.removed) members.set(id, m);
    this.#members = members;
    this.#creds = await readCredentials(this.deps.kv);
  }

  #dialMembers(): void {
    for (const m of this.#members.values()) {
      if (m.id === this.deps.selfId) continue;
      if (m.removed) {
        this.transport.removePeer(m.id);
        continue;
      }
      try {
        this.transport.setPeerAddr(m.id, parseAddr(m.addr));
      } catch {
        // a member record without a usable address: it dials us
      }
    }
  }

  #removedSelf(why: string): void {
    if (this.#removedNotified) return;
    this.#removedNotified = true;
    this.deps.log(`cluster: node ${this.deps.selfId} was ${why}; stopping`);
    this.deps.onRemoved();
  }

  /**
   * Every second: refresh the caches from the replica (a snapshot install
   * replaces it wholesale), notice our own removal, and once a leader is
   * known make sure the records this node is responsible for exist.
   */
  #upkeep(round: number): void {
    if (this.#closed) return;
    this.#cancelTimer = this.deps.timers.setTimeout(round === 0 ? 200 : 1000, async () => {
      try {
        if (this.log.removed) return this.#removedSelf("removed from the cluster");
        await this.#reloadCaches();
        this.#dialMembers();
        if (this.log.status().leader !== null) await this.#ensureRecords();
      } catch (err) {
        if (!this.#closed) this.deps.log(`cluster: upkeep: ${(err as Error).message}`);
      }
      this.#upkeep(round + 1);
    });
  }

  #ensured = false;

  async #ensureRecords(): Promise<void> {
    if (this.#ensured) return;
    const { selfId, listenAddr, credentials, kv } = this.deps;
    await this.log.readBarrier();
    await this.#reloadCaches();
    const self = this.#members.get(selfId);
    if (this.deps.ca && (await readClusterCa(kv)) === null) {
      await this.#propose({ type: "PutClusterCa", pem: this.deps.caCertPem });
    }
    if (!self || self.addr !== listenAddr) {
      const member: MemberRecord = { ...self, id: selfId, addr: listenAddr };
      await this.#propose({ type: "PutMember", member });
    }
    for (const id of this.deps.recoveredDropped ?? []) {
      const m = this.#members.get(id);
      if (m && !m.removed && id !== selfId) {
        await this.#propose({ type: "RemoveMember", id });
      }
    }
    if (credentials && !this.#creds.has(credentials.accessKeyId)) {
      await this.#propose({ type: "PutCredential", ...credentials });
    }
    this.#ensured = true;
  }
}

/**
 * Founds the cluster records in a freshly bootstrapped one-voter log (used
 * by `cluster init`): the CA certificate, the founder's member record and
 * the first S3 key pair. Waits for the log to elect itself first.
 * @throws when no leader emerges within `timeoutMs`.
 */
export async function foundCluster(
  log: ClusterLog,
  opts: {
    selfId: string;
    listenAddr: string;
    caCertPem: string;
    credentials: { accessKeyId: string; secretAccessKey: string };
    clock: Clock;
    timeoutMs: number;
  },
): Promise<void> {
  const deadline = opts.clock.nowMs() + opts.timeoutMs;
  while (log.status().leader !== opts.selfId) {
    if (opts.clock.nowMs() > deadline) {
      throw new Error(`The one-voter log did not elect ${opts.selfId} within ${opts.timeoutMs} ms`);
    }
    await opts.clock.sleep(50);
  }
  const cmds: ClusterCommand[] = [
    { type: "PutClusterCa", pem: opts.caCertPem },
    {
      type: "PutMember",
      member: { id: opts.selfId, addr: opts.listenAddr, founder: true },
    },
    { type: "PutCredential", ...opts.credentials },
  ];
  for (const cmd of cmds) await log.propose(asCommand(cmd));
}
