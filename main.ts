/**
 * `hamster`: the composition root. Parses the command line, opens Deno KV and
 * the data directory, wires the real adapters into the S3 endpoint, and runs
 * it until SIGINT or SIGTERM.
 *
 * Commands: `serve`, `version`; `--help` on each.
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
import { LocalLog, sweepMetadata } from "./src/meta/mod.ts";
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

function parseServeArgs(args: string[]) {
  let parsed;
  try {
    parsed = parseArgs({
      args: normaliseArgs(args),
      options: {
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
  const live = await sweepMetadata(kv);
  const removed = await data.sweep(live);
  if (removed > 0) console.log(`Startup sweep removed ${removed} orphaned file(s)`);
  const log = await LocalLog.open(kv);
  // MD5 and checksums of large bodies run beside the event loop, one worker per spare core.
  const hashPool = workerHashPool(Math.max(1, navigator.hardwareConcurrency - 1));
  const logError = (requestId: string, err: unknown) => console.error(`request ${requestId}:`, err);
  const reclaimer = new Reclaimer((ref) => {
    data.remove(ref).catch((err) => logError("reclaim", err));
  });
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
    kv.close();
    lock.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await listener.finished;
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
