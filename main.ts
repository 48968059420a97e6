/**
 * `hamster`: the composition root. Parses the command line, opens Deno KV and
 * the data directory, wires the real adapters into the S3 endpoint, and runs
 * it until SIGINT or SIGTERM.
 *
 * Commands: `serve`, `cluster init|run|token|status|remove|recover`, `version`;
 * `--help` on each.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { DenoDisk, openDenoKv, systemClock, systemRng } from "./src/io/deno/mod.ts";
import { workerHashPool } from "./src/io/deno/hash_worker.ts";
import { listenS3 } from "./src/io/deno/listener.ts";
import { raiseFdLimit } from "./src/io/deno/fdlimit.ts";
import { LocalDataPath } from "./src/data/local.ts";
import { compactSegments } from "./src/data/compactor.ts";
import { Reclaimer } from "./src/data/reclaim.ts";
import {
  type Command,
  type DataRef,
  LocalLog,
  type MetaLog,
  sweepCommands,
  sweepMetadata,
} from "./src/meta/mod.ts";
import { RaftLog } from "./src/cluster/raft_log.ts";
import type { MetaKv } from "./src/io/mod.ts";
import { dialCluster, dialForJoin, listenCluster } from "./src/io/deno/tls.ts";
import {
  caFingerprintSha256,
  createClusterCa,
  createCsr,
  issueNodeCertificate,
  isValidNodeId,
} from "./src/cluster/pki.ts";
import { JoinError, parseAddr, requestJoin } from "./src/cluster/join.ts";
import {
  AdminError,
  type AdminRequest,
  callAdmin,
  type ClusterStatus,
  formatStatus,
  type TokenAnswer,
} from "./src/cluster/admin.ts";
import { ClusterNode, foundCluster } from "./src/cluster/node.ts";
import { liveLocalRefs } from "./src/cluster/cluster_data.ts";
import { recoverOneVoter, storedMembers } from "./src/cluster/recover.ts";
import { decodeRaftMessage, encodeRaftMessage, openRaftLog } from "./src/cluster/open_log.ts";
import { createS3App } from "./src/s3/app.ts";
import { newId } from "./src/s3/context.ts";
import denoJson from "./deno.json" with { type: "json" };

const VERSION = denoJson.version;
/** How long SIGINT / SIGTERM wait for in-flight requests before exiting. */
const SHUTDOWN_GRACE_MS = 10_000;
/** The default -max-connections, lowered to the descriptor limit less {@link FD_RESERVE}. */
const DEFAULT_MAX_CONNECTIONS = 4096;
/** Descriptors kept for everything but connections: KV, data files, workers, the listener. */
const FD_RESERVE = 256;

const USAGE = `hamster: a self-hosted, S3-compatible object store

Usage:
  hamster serve [flags]     run a single node serving S3
  hamster cluster <verb>    run a cluster: init, run, token, status, remove, recover
  hamster version           print the version
  hamster <command> --help  help for a command
`;

const SERVE_USAGE = `Usage: hamster serve [flags]

Runs one node: S3 on -s3, metadata in Deno KV and object data under -data-dir.

Flags:
  -data-dir DIR   where data and metadata live (default ./data)
  -s3 ADDR        S3 listen address host:port (default 127.0.0.1:9000)
  -domain NAME    base domain for virtual-hosted addressing (bucket.NAME)
  -region NAME    the region reported and signed for (default us-east-1)
  -tls-cert FILE  serve HTTPS with this PEM certificate chain (needs -tls-key)
  -tls-key FILE   the PEM private key of -tls-cert
  -compaction-interval DURATION
                  how often small-object segments are checked for
                  compaction: 500ms, 30s, 5m (default 30s)
  -max-connections N
                  S3 connections open at once; more are accepted and closed
                  at once, and logged (default 4096, or the descriptor limit
                  less 256 when that is lower)
  -header-timeout DURATION
                  a new connection must send a whole request head within
                  this, or it is closed (default 10s)
  -idle-timeout DURATION
                  a connection with no request in flight for this long is
                  closed (default 30s)

Credentials: HAMSTER_ACCESS_KEY_ID and HAMSTER_SECRET_ACCESS_KEY. With neither
set, a key pair is generated on first start, stored in DIR/credentials.json
(mode 0600) and printed once.
`;

/** A usage error: printed as one line, exit code 2. */
class UsageError extends Error {}

/** Accepts Go-style single-dash long flags (`-data-dir x`) as well as `--data-dir x`. */
function normaliseArgs(args: string[]): string[] {
  return args.map((a) => (/^-[a-z][a-z0-9-]+(=.*)?$/.test(a) ? `-${a}` : a));
}

type StringFlags = Record<string, { type: "string" }>;

function parseServeArgs(args: string[], extra: StringFlags = {}) {
  let parsed;
  try {
    parsed = parseArgs({
      args: normaliseArgs(args),
      options: {
        ...extra,
        "data-dir": { type: "string", default: "./data" },
        s3: { type: "string", default: "127.0.0.1:9000" },
        domain: { type: "string" },
        region: { type: "string", default: "us-east-1" },
        "tls-cert": { type: "string" },
        "tls-key": { type: "string" },
        "compaction-interval": { type: "string", default: "30s" },
        "max-connections": { type: "string" },
        "header-timeout": { type: "string", default: "10s" },
        "idle-timeout": { type: "string", default: "30s" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    throw new UsageError((err as Error).message.split("\n")[0].replace(/'--/g, "'-"));
  }
  const v = parsed.values;
  const m = /^(.*):(\d+)$/.exec(v.s3!);
  if (!m || Number(m[2]) > 65535) {
    throw new UsageError(`Bad -s3 address "${v.s3}": want host:port`);
  }
  if (!/^[a-z0-9-]+$/.test(v.region!)) throw new UsageError(`Bad -region "${v.region}"`);
  if (v.domain !== undefined && !/^[a-z0-9.-]+$/.test(v.domain)) {
    throw new UsageError(`Bad -domain "${v.domain}"`);
  }
  if ((v["tls-cert"] === undefined) !== (v["tls-key"] === undefined)) {
    throw new UsageError("Give both -tls-cert and -tls-key, or neither");
  }
  const compactionIntervalMs = parseDuration("compaction-interval", v["compaction-interval"]!);
  const headerTimeoutMs = parseDuration("header-timeout", v["header-timeout"]!);
  const idleTimeoutMs = parseDuration("idle-timeout", v["idle-timeout"]!);
  let maxConnections: number | undefined;
  if (v["max-connections"] !== undefined) {
    maxConnections = Number(v["max-connections"]);
    if (!/^\d+$/.test(v["max-connections"]) || maxConnections < 1 || maxConnections > 1e7) {
      throw new UsageError(
        `Bad -max-connections "${v["max-connections"]}": want a whole number from 1`,
      );
    }
  }
  return {
    tlsCertFile: v["tls-cert"],
    tlsKeyFile: v["tls-key"],
    help: v.help === true,
    dataDir: v["data-dir"]!,
    hostname: m[1].replace(/^\[(.*)\]$/, "$1"),
    port: Number(m[2]),
    domain: v.domain,
    region: v.region!,
    compactionIntervalMs,
    headerTimeoutMs,
    idleTimeoutMs,
    maxConnections,
    extra: v as Record<string, string | boolean | undefined>,
  };
}

/** Parses a duration flag (`500ms`, `30s`, `5m`) into ms. */
function parseDuration(flag: string, text: string): number {
  const m = /^(\d+)(ms|s|m)$/.exec(text);
  const ms = m ? Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[m[2] as "ms" | "s" | "m"] : NaN;
  if (!(ms > 0 && ms <= 2 ** 31 - 1)) {
    throw new UsageError(`Bad -${flag} "${text}": want a duration such as 30s`);
  }
  return ms;
}

interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

/** Reads credentials from the environment, or the data dir, or makes and stores a new pair. */
async function loadCredentials(dataDir: string): Promise<Credentials> {
  const id = Deno.env.get("HAMSTER_ACCESS_KEY_ID");
  const secret = Deno.env.get("HAMSTER_SECRET_ACCESS_KEY");
  if (id !== undefined || secret !== undefined) {
    if (!id || !secret) {
      throw new UsageError(
        "Set both HAMSTER_ACCESS_KEY_ID and HAMSTER_SECRET_ACCESS_KEY, or neither",
      );
    }
    return { accessKeyId: id, secretAccessKey: secret };
  }
  const path = `${dataDir}/credentials.json`;
  try {
    return JSON.parse(await Deno.readTextFile(path)) as Credentials;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const creds: Credentials = {
    accessKeyId: `HM${newId(systemRng, 9).toUpperCase()}`,
    secretAccessKey: btoa(String.fromCharCode(...systemRng.fill(new Uint8Array(30)))),
  };
  await Deno.writeTextFile(path, JSON.stringify(creds, null, 2) + "\n", {
    mode: 0o600,
    createNew: true,
  });
  console.log(`Generated credentials (stored in ${path}). Use them with any S3 client:
  export AWS_ACCESS_KEY_ID=${creds.accessKeyId}
  export AWS_SECRET_ACCESS_KEY='${creds.secretAccessKey}'`);
  return creds;
}

/** Takes an exclusive lock on the data dir, or fails at once if another process holds it. */
async function lockDataDir(dataDir: string): Promise<Deno.FsFile> {
  const file = await Deno.open(`${dataDir}/LOCK`, { read: true, write: true, create: true });
  const locked = file.lock(true).then(() => true);
  const timedOut = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 300));
  if (!await Promise.race([locked, timedOut])) {
    console.error(`hamster: data dir "${dataDir}" is in use by another hamster process`);
    Deno.exit(1);
  }
  return file;
}

async function serve(args: string[]): Promise<void> {
  const opts = parseServeArgs(args);
  if (opts.help) {
    console.log(SERVE_USAGE);
    return;
  }
  let tls: { cert: string; key: string } | undefined;
  if (opts.tlsCertFile && opts.tlsKeyFile) {
    try {
      tls = {
        cert: await Deno.readTextFile(opts.tlsCertFile),
        key: await Deno.readTextFile(opts.tlsKeyFile),
      };
    } catch (err) {
      throw new UsageError(`Cannot read the TLS certificate or key: ${(err as Error).message}`);
    }
  }
  // Every connection costs a descriptor: take all the hard limit allows (Deno does already).
  const fd = await raiseFdLimit();
  if (fd.problem) console.error(`hamster: cannot raise the open-file limit: ${fd.problem}`);
  const fdSoft = fd.after?.soft ?? Infinity;
  const maxConnections = opts.maxConnections ??
    Math.max(1, Math.min(DEFAULT_MAX_CONNECTIONS, fdSoft - FD_RESERVE));
  if (maxConnections > fdSoft - FD_RESERVE) {
    console.error(
      `hamster: -max-connections ${maxConnections} is over the open-file limit ${fdSoft} ` +
        `less ${FD_RESERVE}; past it new connections wait until descriptors free up`,
    );
  }
  await Deno.mkdir(opts.dataDir, { recursive: true });
  const lock = await lockDataDir(opts.dataDir);
  const creds = await loadCredentials(opts.dataDir);
  await Deno.mkdir(`${opts.dataDir}/meta`, { recursive: true });
  const kv = await openDenoKv(`${opts.dataDir}/meta/kv.sqlite3`);
  const data = new LocalDataPath(new DenoDisk(opts.dataDir));
  await data.init();
  const found = await sweepMetadata(kv);
  const removed = await data.sweep(found.live);
  if (removed > 0) console.log(`Startup sweep removed ${removed} orphaned file(s)`);
  // MD5 and checksums of large bodies run beside the event loop, one worker per spare core.
  const hashPool = workerHashPool(Math.max(1, navigator.hardwareConcurrency - 1));
  const logError = (requestId: string, err: unknown) => console.error(`request ${requestId}:`, err);
  const reclaimer = new Reclaimer((ref) => {
    data.remove(ref).catch((err) => logError("reclaim", err));
  });
  const log = await openServeLog(opts.dataDir, kv, (refs) => reclaimer.retire(refs));
  for (const cmd of sweepCommands(found.orphans)) await log.propose(cmd);
  const compactionTimer = setInterval(async () => {
    try {
      const r = await compactSegments({ segments: data.segments, kv, log, reclaimer });
      if (r.compacted + r.kept > 0) {
        console.log(
          `Compaction: ${r.compacted} segment(s) emptied, ${r.relocated} object(s) moved` +
            (r.kept > 0 ? `, ${r.kept} kept whole because of damage` : ""),
        );
      }
    } catch (err) {
      console.error("compaction:", err);
    }
  }, opts.compactionIntervalMs);
  const app = createS3App({
    kv,
    log,
    data,
    clock: systemClock,
    rng: systemRng,
    secretFor: (id) => (id === creds.accessKeyId ? creds.secretAccessKey : undefined),
    region: opts.region,
    domain: opts.domain,
    hashPool,
    reclaimer,
    logError,
  });
  const listener = listenS3({
    hostname: opts.hostname,
    port: opts.port,
    tls,
    maxConnections,
    headerTimeoutMs: opts.headerTimeoutMs,
    idleTimeoutMs: opts.idleTimeoutMs,
    log: (line) => console.error(line),
    onError: (err) => {
      console.error("unhandled:", err);
      return new Response("Internal error", { status: 500 });
    },
  }, app.fetch);
  {
    const { hostname, port } = listener.addr;
    const host = hostname.includes(":") ? `[${hostname}]` : hostname;
    const scheme = tls ? "https" : "http";
    console.log(`hamster ${VERSION}: S3 on ${scheme}://${host}:${port}, data in ${opts.dataDir}`);
  }
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    console.log("hamster: shutting down");
    // In-flight requests get SHUTDOWN_GRACE_MS to finish; a stalled client must not hold the exit.
    // Writes cut off here were never committed: the startup sweep removes what they left.
    await Promise.race([listener.shutdown(), new Promise((r) => setTimeout(r, SHUTDOWN_GRACE_MS))]);
    clearInterval(compactionTimer);
    hashPool.close();
    await log.close();
    kv.close();
    lock.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await listener.finished;
}

/** The node id of `serve`'s one-voter Raft log. */
const SERVE_NODE_ID = "local";

/**
 * `serve`'s metadata log: the LocalLog, or with `HAMSTER_SERVE_LOG=raft` a
 * cluster of one voter on the Raft path (state in DATA/raft; an existing data
 * directory is adopted at its applied index). LocalLog stays the default
 * until the Raft path is within 10% of it (docs/BENCHMARKS.md).
 */
async function openServeLog(
  dataDir: string,
  kv: MetaKv,
  onGarbage: (refs: DataRef[]) => void,
): Promise<MetaLog & { close(): Promise<void> }> {
  if (Deno.env.get("HAMSTER_SERVE_LOG") !== "raft") {
    const local = await LocalLog.open(kv, { onGarbage });
    return Object.assign(local, { close: () => Promise.resolve() });
  }
  const log = await RaftLog.open({
    id: SERVE_NODE_ID,
    kv,
    disk: new DenoDisk(dataDir),
    dir: "raft",
    rng: systemRng,
    clock: systemClock,
    timers: {
      setTimeout: (ms, fn) => {
        const h = setTimeout(fn, ms);
        return () => clearTimeout(h);
      },
    },
    send: () => {}, // one voter: nobody to talk to
    founding: { voters: [SERVE_NODE_ID], learners: [] },
    adoptAppliedIndex: true,
    onGarbage,
    raft: { electionTicks: 2 },
    onFatal: (err) => {
      console.error("hamster: the metadata log stopped:", err);
      Deno.exit(1);
    },
  });
  return log;
}

// ---- hamster cluster ------------------------------------------------------

const CLUSTER_USAGE = `Usage: hamster cluster <verb> [flags]

Runs Hamster as a cluster: Raft-replicated metadata over mutual TLS, S3 on
every node. Verbs (each takes --help):
  init     found a cluster in -data-dir (mints the cluster CA and this node's certificate)
  run      run a node: serves S3 on -s3 and the cluster port; joins with -token once
  token    print a single-use join token (on the node holding the CA key)
  status   show members, leader, term, commit and applied indexes
  remove   remove a member
  recover  rebuild a one-voter cluster from this node's log after losing a quorum

Quick start:
  hamster cluster init -data-dir ./n1 -node n1 -listen 127.0.0.1:7946
  hamster cluster run  -data-dir ./n1 -s3 127.0.0.1:9000
  TOKEN=$(hamster cluster token -data-dir ./n1)
  hamster cluster run  -data-dir ./n2 -node n2 -listen 127.0.0.1:7956 -token "$TOKEN" -s3 127.0.0.1:9001
`;

const CLUSTER_INIT_USAGE = `Usage: hamster cluster init -data-dir DIR -node ID -listen ADDR

Founds a cluster: mints the cluster CA (ECDSA P-256; its key stays in
DIR/cluster/ca.key, mode 0600) and this node's certificate, and records the
first S3 key pair in replicated metadata. On a directory that "hamster serve"
used, the data is adopted in place: objects stay where they are.

Flags:
  -data-dir DIR   the node's data directory (required)
  -node ID        this node's id: a-z, 0-9 and -, up to 63 characters (required)
  -listen ADDR    the cluster port, host:port, as other nodes reach it (required)

Credentials: HAMSTER_ACCESS_KEY_ID and HAMSTER_SECRET_ACCESS_KEY, else those in
DIR/credentials.json, else a new pair (printed once).
`;

const CLUSTER_RUN_USAGE =
  `Usage: hamster cluster run -data-dir DIR -s3 ADDR [-node ID -listen ADDR -token TOKEN] [flags]

Runs a cluster node: the cluster port (mutual TLS) and S3 on -s3. The first
run of a new node joins with -token (and needs -node and -listen); later runs
of the same command resume from DIR, and -token is then ignored.

Flags:
  -data-dir DIR   the node's data directory (required)
  -s3 ADDR        S3 listen address host:port (default 127.0.0.1:9000)
  -node ID        this node's id (first run of a joining node)
  -listen ADDR    the cluster port host:port (first run; later runs may move it)
  -token TOKEN    a join token from "hamster cluster token" (first run only)
  -domain NAME    base domain for virtual-hosted addressing (bucket.NAME)
  -region NAME    the region reported and signed for (default us-east-1)
  -tls-cert FILE  serve S3 over HTTPS with this PEM certificate chain (needs -tls-key)
  -tls-key FILE   the PEM private key of -tls-cert
  -compaction-interval DURATION
                  how often small-object segments are checked for compaction (default 30s)
  -max-connections N, -header-timeout DURATION, -idle-timeout DURATION
                  S3 connection limits, as for "hamster serve"

Credentials: a node started with HAMSTER_ACCESS_KEY_ID and
HAMSTER_SECRET_ACCESS_KEY adds that pair to the cluster if it is absent.
`;

const CLUSTER_TOKEN_USAGE = `Usage: hamster cluster token -data-dir DIR [-ttl 24h]

Prints a single-use join token for a new node. Asks the running node of DIR
over its cluster port with the node's own certificate; that node must hold the
cluster CA key (the founding node).

Flags:
  -data-dir DIR   the running node's data directory (required)
  -ttl DURATION   how long the token works: 90s, 30m, 24h (default 24h)
`;

const CLUSTER_STATUS_USAGE = `Usage: hamster cluster status -data-dir DIR [-json]

Prints every member (id, cluster address, voter or learner, reachable,
replication lag), the leader, the term, the commit index and this node's
applied index, as the running node of DIR sees them (members and lag in the
leader's view when the leader answers).

Flags:
  -data-dir DIR   the running node's data directory (required)
  -json           machine-readable output (shape in the README)
`;

const CLUSTER_REMOVE_USAGE = `Usage: hamster cluster remove -data-dir DIR NODE

Removes member NODE from the cluster (asked through the running node of DIR).
The removed node stops itself; its certificate is refused from then on and it
cannot rejoin with its old identity. A voter's seat is refilled from the learners.

Flags:
  -data-dir DIR   a running member's data directory (required)
`;

const CLUSTER_RECOVER_USAGE = `Usage: hamster cluster recover -data-dir DIR -force

For permanent loss of a quorum only. With the node stopped, rewrites its Raft
state into a one-voter cluster of itself, keeping its whole log. Entries the
lost majority committed but this node never received are lost. Then start it
with "hamster cluster run" and grow the cluster again with tokens.

Flags:
  -data-dir DIR   the stopped node's data directory (required)
  -force          confirm (required)
`;

/** The voter id of `serve`'s one-voter Raft log, when `serve` runs on Raft. */
const SERVE_LOG_NODE_ID = "local";

/** `DIR/cluster/node.json`. */
interface NodeJson {
  nodeId: string;
  listen: string;
  clusterId: string;
  /** Members the join answer listed (dialled first on the first run). */
  seeds?: { id: string; addr: string }[];
  /** Set when this node learnt it was removed: it never runs again. */
  removed?: boolean;
}

/** A node's files: identity and cluster facts. */
interface NodeFiles {
  node: NodeJson;
  caCertPem: string;
  caKeyPem: string | null;
  certPem: string;
  keyPem: string;
}

async function readTextOrNull(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

/** Writes `text` to `path` durably: temp file, fsync, rename, directory fsync. */
async function writeFileDurably(path: string, text: string, mode = 0o644): Promise<void> {
  const tmp = `${path}.tmp`;
  const f = await Deno.open(tmp, { write: true, create: true, truncate: true, mode });
  try {
    await f.write(new TextEncoder().encode(text));
    await f.sync();
  } finally {
    f.close();
  }
  await Deno.rename(tmp, path);
  const dir = await Deno.open(path.slice(0, path.lastIndexOf("/")) || ".", { read: true });
  try {
    await dir.sync();
  } catch {
    // some systems cannot fsync a directory
  } finally {
    dir.close();
  }
}

async function readNodeFiles(dataDir: string): Promise<NodeFiles | null> {
  const dir = `${dataDir}/cluster`;
  const nodeText = await readTextOrNull(`${dir}/node.json`);
  if (nodeText === null) return null;
  const node = JSON.parse(nodeText) as NodeJson;
  const [caCertPem, caKeyPem, certPem, keyPem] = await Promise.all(
    ["ca.pem", "ca.key", "node.pem", "node.key"].map((f) => readTextOrNull(`${dir}/${f}`)),
  );
  if (caCertPem === null || certPem === null || keyPem === null) {
    throw new UsageError(`${dir} is incomplete: ca.pem, node.pem and node.key must be there`);
  }
  return { node, caCertPem, caKeyPem, certPem, keyPem };
}

async function writeNodeFiles(dataDir: string, f: NodeFiles): Promise<void> {
  const dir = `${dataDir}/cluster`;
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFileDurably(`${dir}/ca.pem`, f.caCertPem);
  if (f.caKeyPem !== null) await writeFileDurably(`${dir}/ca.key`, f.caKeyPem, 0o600);
  await writeFileDurably(`${dir}/node.pem`, f.certPem);
  await writeFileDurably(`${dir}/node.key`, f.keyPem, 0o600);
  // node.json last: its presence says the node's identity is complete.
  await writeFileDurably(`${dir}/node.json`, JSON.stringify(f.node, null, 2) + "\n");
}

/** Parses verb flags; `-data-dir` is required for every verb. */
function parseClusterFlags(
  args: string[],
  options: Record<string, { type: "string" | "boolean"; default?: string }>,
  allowPositionals = false,
) {
  let parsed;
  try {
    parsed = parseArgs({
      args: normaliseArgs(args),
      options: {
        ...options,
        "data-dir": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals,
    });
  } catch (err) {
    throw new UsageError((err as Error).message.split("\n")[0].replace(/'--/g, "'-"));
  }
  const v = parsed.values as Record<string, string | boolean | undefined>;
  return { v, positionals: parsed.positionals, help: v.help === true };
}

function requireFlag(v: Record<string, string | boolean | undefined>, name: string): string {
  const value = v[name];
  if (typeof value !== "string" || value === "") throw new UsageError(`-${name} is required`);
  return value;
}

function checkNodeId(id: string): string {
  if (!isValidNodeId(id)) {
    throw new UsageError(`Bad -node "${id}": use a-z, 0-9 and -, 1 to 63 characters`);
  }
  return id;
}

function checkListen(addr: string): string {
  try {
    parseAddr(addr);
  } catch {
    throw new UsageError(`Bad -listen address "${addr}": want host:port`);
  }
  return addr;
}

/** Timers on the real clock, for the ports that take them. */
const systemTimers = {
  setTimeout(delayMs: number, fn: () => void): () => void {
    const h = setTimeout(fn, delayMs);
    return () => clearTimeout(h);
  },
};

/** Takes the data dir lock for an offline verb, or explains that the node runs. */
async function lockOffline(dataDir: string, verb: string): Promise<Deno.FsFile> {
  const file = await Deno.open(`${dataDir}/LOCK`, { read: true, write: true, create: true });
  const locked = file.lock(true).then(() => true);
  const timedOut = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 300));
  if (!await Promise.race([locked, timedOut])) {
    throw new UsageError(
      `The node of "${dataDir}" is running: stop it before "hamster cluster ${verb}"`,
    );
  }
  return file;
}

async function clusterInit(args: string[]): Promise<void> {
  const { v, help } = parseClusterFlags(args, {
    node: { type: "string" },
    listen: { type: "string" },
  });
  if (help) return console.log(CLUSTER_INIT_USAGE);
  const dataDir = requireFlag(v, "data-dir");
  const nodeId = checkNodeId(requireFlag(v, "node"));
  const listen = checkListen(requireFlag(v, "listen"));
  await Deno.mkdir(dataDir, { recursive: true });
  const lock = await lockOffline(dataDir, "init");
  try {
    if (await readTextOrNull(`${dataDir}/cluster/node.json`) !== null) {
      throw new UsageError(
        `"${dataDir}" already belongs to a cluster; start it with "hamster cluster run"`,
      );
    }
    const serveVoters = (await Deno.stat(`${dataDir}/raft`).catch(() => null)) === null
      ? null
      : await storedMembers(new DenoDisk(dataDir), "raft");
    if (serveVoters !== null && serveVoters.join() === SERVE_LOG_NODE_ID) {
      // `serve`'s one-voter log: the same log, its voter renamed to this node.
      await recoverOneVoter(new DenoDisk(dataDir), "raft", nodeId);
    } else if (serveVoters !== null) {
      throw new UsageError(
        `"${dataDir}/raft" exists without "${dataDir}/cluster/node.json" (an interrupted init?): ` +
          `remove "${dataDir}/raft" and "${dataDir}/cluster" and run init again`,
      );
    }
    const creds = await loadCredentials(dataDir);
    const nowMs = Date.now();
    const clusterId = newId(systemRng, 8);
    const ca = await createClusterCa({
      clusterId,
      nowMs,
      serial: systemRng.fill(new Uint8Array(16)),
    });
    const csr = await createCsr(nodeId);
    const certPem = await issueNodeCertificate(ca, nodeId, csr.csrPem, {
      nowMs,
      serial: systemRng.fill(new Uint8Array(16)),
    });
    await Deno.mkdir(`${dataDir}/meta`, { recursive: true });
    const kv = await openDenoKv(`${dataDir}/meta/kv.sqlite3`);
    try {
      const applied = (await kv.get<number>(["sys", "applied"]))?.value ?? 0;
      const log = await openRaftLog({
        id: nodeId,
        kv,
        disk: new DenoDisk(dataDir),
        rng: systemRng,
        clock: systemClock,
        timers: systemTimers,
        send: () => {},
        founding: { voters: [nodeId], learners: [] },
        adoptAppliedIndex: true,
        onGarbage: () => {},
      });
      try {
        await foundCluster(log, {
          selfId: nodeId,
          listenAddr: listen,
          caCertPem: ca.certPem,
          credentials: creds,
          clock: systemClock,
          timeoutMs: 30_000,
        });
      } finally {
        await log.close();
      }
      await writeNodeFiles(dataDir, {
        node: { nodeId, listen, clusterId },
        caCertPem: ca.certPem,
        caKeyPem: ca.keyPem,
        certPem,
        keyPem: csr.keyPem,
      });
      if (applied > 0) {
        console.log(`Adopted the existing data in ${dataDir} (metadata at index ${applied}).`);
      }
      console.log(
        `Cluster ${clusterId} founded in ${dataDir}: node ${nodeId}, cluster port ${listen}. ` +
          `The CA key is in ${dataDir}/cluster/ca.key; keep it private.\n` +
          `Start it with: hamster cluster run -data-dir ${dataDir} -s3 127.0.0.1:9000`,
      );
    } finally {
      kv.close();
    }
  } finally {
    lock.close();
  }
}

/** Dials the running node of `dataDir` with its own certificate and sends `request`. */
async function askNode(dataDir: string, request: AdminRequest): Promise<unknown> {
  const files = await readNodeFiles(dataDir);
  if (!files) throw new UsageError(`"${dataDir}" is not a cluster node (no cluster/node.json)`);
  const addr = parseAddr(files.node.listen);
  if (addr.hostname === "0.0.0.0") addr.hostname = "127.0.0.1";
  if (addr.hostname === "::" || addr.hostname === "[::]") addr.hostname = "::1";
  let conn;
  try {
    conn = await dialCluster(addr, {
      caCertPem: files.caCertPem,
      certPem: files.certPem,
      keyPem: files.keyPem,
    }, 5000);
  } catch (err) {
    throw new UsageError(
      `Cannot reach the node of "${dataDir}" at ${files.node.listen}: ${(err as Error).message}. ` +
        `Is "hamster cluster run -data-dir ${dataDir}" running?`,
    );
  }
  try {
    return await callAdmin(conn, request);
  } catch (err) {
    if (err instanceof AdminError) throw new UsageError(`${err.code}: ${err.message}`);
    throw err;
  }
}

async function clusterToken(args: string[]): Promise<void> {
  const { v, help } = parseClusterFlags(args, { ttl: { type: "string", default: "24h" } });
  if (help) return console.log(CLUSTER_TOKEN_USAGE);
  const dataDir = requireFlag(v, "data-dir");
  const m = /^(\d+)(s|m|h)$/.exec(v.ttl as string);
  const ttlMs = m
    ? Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000 }[m[2] as "s" | "m" | "h"]
    : 0;
  if (!(ttlMs >= 1000 && ttlMs <= 365 * 24 * 3_600_000)) {
    throw new UsageError(`Bad -ttl "${v.ttl}": want a duration such as 90s, 30m or 24h`);
  }
  const answer = await askNode(dataDir, { op: "token", ttlMs }) as TokenAnswer;
  console.log(answer.token);
}

async function clusterStatus(args: string[]): Promise<void> {
  const { v, help } = parseClusterFlags(args, { json: { type: "boolean" } });
  if (help) return console.log(CLUSTER_STATUS_USAGE);
  const dataDir = requireFlag(v, "data-dir");
  const status = await askNode(dataDir, { op: "status" }) as ClusterStatus;
  console.log(v.json ? JSON.stringify(status, null, 2) : formatStatus(status));
}

async function clusterRemove(args: string[]): Promise<void> {
  const { v, help, positionals } = parseClusterFlags(args, {}, true);
  if (help) return console.log(CLUSTER_REMOVE_USAGE);
  const dataDir = requireFlag(v, "data-dir");
  if (positionals.length !== 1) throw new UsageError("Name exactly one NODE to remove");
  const nodeId = checkNodeId(positionals[0]);
  await askNode(dataDir, { op: "remove", nodeId });
  console.log(`Removed ${nodeId}.`);
}

async function clusterRecover(args: string[]): Promise<void> {
  const { v, help } = parseClusterFlags(args, { force: { type: "boolean" } });
  if (help) return console.log(CLUSTER_RECOVER_USAGE);
  const dataDir = requireFlag(v, "data-dir");
  if (v.force !== true) {
    throw new UsageError(
      "recover rewrites this node into a one-voter cluster and may lose committed writes; " +
        "it runs only with -force",
    );
  }
  const files = await readNodeFiles(dataDir);
  if (!files) throw new UsageError(`"${dataDir}" is not a cluster node (no cluster/node.json)`);
  const lock = await lockOffline(dataDir, "recover");
  try {
    const selfId = files.node.nodeId;
    const out = await recoverOneVoter(new DenoDisk(dataDir), "raft", selfId);
    const dropped = out.previousMembers.filter((id) => id !== selfId);
    await writeFileDurably(
      `${dataDir}/cluster/recovered.json`,
      JSON.stringify({ dropped, atIndex: out.lastIndex, term: out.term }, null, 2) + "\n",
    );
    console.log(
      `Recovered ${selfId} as the only voter of its cluster (term ${out.term}).\n` +
        `Kept its log through index ${out.lastIndex}; every entry in it now counts as committed.\n` +
        `MAY BE LOST: anything the lost members committed after index ${out.lastIndex} ` +
        `(this node never received it).\n` +
        (out.uncertainEntries > 0
          ? `MAY REAPPEAR: ${out.uncertainEntries} entr${
            out.uncertainEntries === 1 ? "y" : "ies"
          } after index ${out.knownCommit} that this node held without knowing them committed ` +
            `(their writers may have been told they failed).\n`
          : "") +
        (dropped.length > 0
          ? `Dropped members: ${dropped.join(", ")}; they are removed when this node next runs ` +
            `and must not be started again with their old data.\n`
          : "") +
        `Start it with "hamster cluster run -data-dir ${dataDir} -s3 ...", then add nodes with tokens.`,
    );
    if (files.caKeyPem === null) {
      console.log(
        `WARNING: the cluster CA key is not on this node (${dataDir}/cluster/ca.key is missing), ` +
          `so it cannot mint join tokens. Copy ca.key from the founding node's data directory if ` +
          `it survives; otherwise this cluster cannot admit new nodes.`,
      );
    }
  } finally {
    lock.close();
  }
}

async function clusterRun(args: string[]): Promise<void> {
  const opts = parseServeArgs(args, {
    node: { type: "string" },
    listen: { type: "string" },
    token: { type: "string" },
    // Hidden, for tests: snapshot after this many applied entries.
    "snapshot-every": { type: "string" },
  });
  if (opts.help) return console.log(CLUSTER_RUN_USAGE);
  if (!args.some((a) => /^--?data-dir(=|$)/.test(a))) throw new UsageError("-data-dir is required");
  const dataDir = opts.dataDir;
  const flagNode = opts.extra.node as string | undefined;
  const flagListen = opts.extra.listen as string | undefined;
  const token = opts.extra.token as string | undefined;
  if (flagNode !== undefined) checkNodeId(flagNode);
  if (flagListen !== undefined) checkListen(flagListen);
  const snapshotEvery = opts.extra["snapshot-every"] === undefined
    ? undefined
    : Number(opts.extra["snapshot-every"]);
  if (snapshotEvery !== undefined && !(Number.isSafeInteger(snapshotEvery) && snapshotEvery > 0)) {
    throw new UsageError("Bad -snapshot-every: want a whole number from 1");
  }
  let tls: { cert: string; key: string } | undefined;
  if (opts.tlsCertFile && opts.tlsKeyFile) {
    tls = {
      cert: await Deno.readTextFile(opts.tlsCertFile),
      key: await Deno.readTextFile(opts.tlsKeyFile),
    };
  }
  await Deno.mkdir(dataDir, { recursive: true });
  const lock = await lockDataDir(dataDir);
  let files = await readNodeFiles(dataDir);
  if (files?.node.removed) {
    throw new UsageError(
      `Node ${files.node.nodeId} was removed from its cluster and cannot rejoin with its old ` +
        `identity; use a new data directory and a new token`,
    );
  }
  if (files && flagNode !== undefined && flagNode !== files.node.nodeId) {
    throw new UsageError(`"${dataDir}" is node ${files.node.nodeId}, not ${flagNode}`);
  }
  if (!files) {
    if (token === undefined) {
      throw new UsageError(
        `"${dataDir}" is not a cluster node yet: found a cluster with "hamster cluster init", ` +
          `or join one with -token (and -node, -listen)`,
      );
    }
    if (flagNode === undefined || flagListen === undefined) {
      throw new UsageError("Joining with -token needs -node and -listen");
    }
    let joined;
    try {
      joined = await requestJoin(token, flagNode, {
        dial: (addr) => dialForJoin(addr),
        clock: systemClock,
        addr: flagListen,
      });
    } catch (err) {
      if (err instanceof JoinError) {
        throw new UsageError(`Cannot join (${err.code}): ${err.message}`);
      }
      throw err;
    }
    files = {
      node: {
        nodeId: flagNode,
        listen: flagListen,
        clusterId: (await caFingerprintSha256(joined.caCertPem)).slice(0, 16),
        seeds: joined.members,
      },
      caCertPem: joined.caCertPem,
      caKeyPem: null,
      certPem: joined.certPem,
      keyPem: joined.keyPem,
    };
    await writeNodeFiles(dataDir, files);
    console.log(`Joined the cluster as ${flagNode}.`);
  } else if (token !== undefined) {
    console.log(`Node ${files.node.nodeId} has already joined; -token is ignored.`);
  }
  const nodeFiles = files;
  const selfId = nodeFiles.node.nodeId;
  const listen = flagListen ?? nodeFiles.node.listen;
  if (listen !== nodeFiles.node.listen) {
    nodeFiles.node.listen = listen;
    await writeNodeFiles(dataDir, nodeFiles);
  }
  const identity = {
    caCertPem: nodeFiles.caCertPem,
    certPem: nodeFiles.certPem,
    keyPem: nodeFiles.keyPem,
  };
  const envId = Deno.env.get("HAMSTER_ACCESS_KEY_ID");
  const envSecret = Deno.env.get("HAMSTER_SECRET_ACCESS_KEY");
  if ((envId === undefined) !== (envSecret === undefined) || envId === "" || envSecret === "") {
    throw new UsageError(
      "Set both HAMSTER_ACCESS_KEY_ID and HAMSTER_SECRET_ACCESS_KEY, or neither",
    );
  }
  const fd = await raiseFdLimit();
  const fdSoft = fd.after?.soft ?? Infinity;
  const maxConnections = opts.maxConnections ??
    Math.max(1, Math.min(DEFAULT_MAX_CONNECTIONS, fdSoft - FD_RESERVE));
  await Deno.mkdir(`${dataDir}/meta`, { recursive: true });
  const kv = await openDenoKv(`${dataDir}/meta/kv.sqlite3`);
  const localData = new LocalDataPath(new DenoDisk(dataDir));
  await localData.init();
  const hashPool = workerHashPool(Math.max(1, navigator.hardwareConcurrency - 1));
  const logError = (requestId: string, err: unknown) => console.error(`request ${requestId}:`, err);
  let stop: (code: number) => Promise<void> = () => Promise.resolve();
  const listenAddr = parseAddr(listen);
  const node = await ClusterNode.start({
    selfId,
    listenAddr: listen,
    caCertPem: nodeFiles.caCertPem,
    ca: nodeFiles.caKeyPem === null
      ? null
      : { certPem: nodeFiles.caCertPem, keyPem: nodeFiles.caKeyPem },
    kv,
    clock: systemClock,
    rng: systemRng,
    timers: systemTimers,
    localData,
    seeds: nodeFiles.node.seeds ?? [],
    dial: (addr) => dialCluster(addr, identity),
    listen: (onConn) =>
      listenCluster({ hostname: listenAddr.hostname, port: listenAddr.port, identity, onConn }),
    openLog: (hooks) =>
      openRaftLog({
        id: selfId,
        kv,
        disk: new DenoDisk(dataDir),
        rng: systemRng,
        clock: systemClock,
        timers: systemTimers,
        send: hooks.send,
        founding: null,
        onGarbage: hooks.onGarbage,
        onApplied: hooks.onApplied,
        noLeaderWaitMs: 5000,
        compactEvery: snapshotEvery,
      }),
    encodeMessage: encodeRaftMessage,
    decodeMessage: decodeRaftMessage,
    credentials: envId && envSecret
      ? { accessKeyId: envId, secretAccessKey: envSecret }
      : undefined,
    onRemoved: () => {
      nodeFiles.node.removed = true;
      writeNodeFiles(dataDir, nodeFiles).finally(() => stop(3));
    },
    log: (line) => console.error(line),
    recoveredDropped: await readRecovered(dataDir),
  });
  // Startup sweep of this node's data: only once the replica has every committed write
  // (a read barrier), so no referenced file is taken for an orphan.
  for (let attempt = 1;; attempt++) {
    try {
      await node.log.readBarrier();
      break;
    } catch (err) {
      if (attempt % 5 === 1) {
        console.error(`hamster: waiting for the cluster before serving: ${(err as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  const swept = await localData.sweep(await liveLocalRefs(kv, selfId, node.founderId));
  if (swept > 0) console.log(`Startup sweep removed ${swept} orphaned file(s)`);
  const reclaimer = new Reclaimer((ref) => {
    node.data.remove(ref).catch((err) => logError("reclaim", err));
  });
  node.onGarbage = (refs) => reclaimer.retire(refs);
  // Compaction moves this node's packed records; the new place names this node.
  const compactionLog = {
    propose: (cmd: Command) =>
      node.log.propose(
        cmd.type === "RelocateData" ? { ...cmd, to: { ...cmd.to, node: selfId } } : cmd,
      ),
    readBarrier: () => node.log.readBarrier(),
  };
  const compactionTimer = setInterval(async () => {
    try {
      const r = await compactSegments({
        segments: localData.segments,
        kv,
        log: compactionLog,
        reclaimer,
      });
      if (r.compacted + r.kept > 0) {
        console.log(
          `Compaction: ${r.compacted} segment(s) emptied, ${r.relocated} object(s) moved`,
        );
      }
    } catch (err) {
      console.error("compaction:", err);
    }
  }, opts.compactionIntervalMs);
  const app = createS3App({
    kv,
    log: node.log,
    data: node.data,
    clock: systemClock,
    rng: systemRng,
    secretFor: (id) => node.secretFor(id),
    region: opts.region,
    domain: opts.domain,
    hashPool,
    reclaimer,
    logError,
  });
  const listener = listenS3({
    hostname: opts.hostname,
    port: opts.port,
    tls,
    maxConnections,
    headerTimeoutMs: opts.headerTimeoutMs,
    idleTimeoutMs: opts.idleTimeoutMs,
    log: (line) => console.error(line),
    onError: (err) => {
      console.error("unhandled:", err);
      return new Response("Internal error", { status: 500 });
    },
  }, app.fetch);
  {
    const { hostname, port } = listener.addr;
    const host = hostname.includes(":") ? `[${hostname}]` : hostname;
    console.log(
      `hamster ${VERSION}: cluster node ${selfId} on ${listen}, S3 on ${
        tls ? "https" : "http"
      }://${host}:${port}, data in ${dataDir}`,
    );
  }
  let stopping = false;
  stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    console.log("hamster: shutting down");
    await Promise.race([listener.shutdown(), new Promise((r) => setTimeout(r, SHUTDOWN_GRACE_MS))]);
    clearInterval(compactionTimer);
    await node.close().catch(() => {});
    hashPool.close();
    kv.close();
    lock.close();
    Deno.exit(code);
  };
  Deno.addSignalListener("SIGINT", () => stop(0));
  Deno.addSignalListener("SIGTERM", () => stop(0));
  await listener.finished;
}

/** Members `recover` dropped, still to be removed from metadata (`cluster/recovered.json`). */
async function readRecovered(dataDir: string): Promise<string[]> {
  const text = await readTextOrNull(`${dataDir}/cluster/recovered.json`);
  return text === null ? [] : (JSON.parse(text) as { dropped: string[] }).dropped;
}

async function cluster(args: string[]): Promise<void> {
  const [verb, ...rest] = args;
  switch (verb) {
    case "init":
      return await clusterInit(rest);
    case "run":
      return await clusterRun(rest);
    case "token":
      return await clusterToken(rest);
    case "status":
      return await clusterStatus(rest);
    case "remove":
      return await clusterRemove(rest);
    case "recover":
      return await clusterRecover(rest);
    case undefined:
    case "help":
    case "-h":
    case "-help":
    case "--help":
      console.log(CLUSTER_USAGE);
      if (verb === undefined) throw new UsageError("Name a cluster verb");
      return;
    default:
      throw new UsageError(`Unknown cluster verb "${verb}"; try "hamster cluster --help"`);
  }
}

/** The git commit of the source tree this runs from, or "unknown" (a compiled binary, no git). */
async function sourceCommit(): Promise<string> {
  try {
    const dir = new URL(".", import.meta.url);
    if (dir.protocol !== "file:") return "unknown";
    const out = await new Deno.Command("git", {
      args: ["-C", dir.pathname, "rev-parse", "--short=12", "HEAD"],
      stdout: "piped",
      stderr: "null",
    }).output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : "unknown";
  } catch {
    return "unknown";
  }
}

async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  try {
    switch (command) {
      case "serve":
        await serve(rest);
        return 0;
      case "cluster":
        await cluster(rest);
        return 0;
      case "version":
        console.log(
          `hamster ${VERSION} (commit ${await sourceCommit()}, deno ${Deno.version.deno}, ${Deno.build.target})`,
        );
        return 0;
      case undefined:
      case "help":
      case "-h":
      case "--help":
      case "-help":
        console.log(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`Unknown command "${command}"; try "hamster --help"`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`hamster: ${err.message}`);
      return 2;
    }
    throw err;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
