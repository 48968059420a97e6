/**
 * Starts the real `hamster serve` as a child process for end-to-end tests: a free
 * loopback port, a fresh temp data dir, the listening line awaited, SIGTERM to stop
 * with exit code 0 asserted.
 *
 * @example
 * ```ts
 * const server = await startServer();
 * try {
 *   await fetch(server.url);
 * } finally {
 *   await server.stop();
 * }
 * ```
 *
 * @module
 */
import assert from "node:assert/strict";

/** An access key pair. */
export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

/** The credentials every test server gets unless told otherwise. */
export const TEST_CREDENTIALS: Credentials = {
  accessKeyId: "HAMSTERTESTKEY",
  secretAccessKey: "hamster-test-secret/with+odd=chars",
};

/** The repository root: the server runs from here, so deno.json and node_modules apply. */
export const REPO_ROOT = new URL("../../", import.meta.url).pathname;
const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const LISTENING = /S3 on (http:\/\/\S+), data in /;
const START_TIMEOUT_MS = 60_000;

/** A loopback port nothing listens on right now. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** The environment a hamster child gets: only what Deno needs, plus `extra`. */
export function childEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const name of ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME", "TMPDIR", "LANG"]) {
    const v = Deno.env.get(name);
    if (v !== undefined) env[name] = v;
  }
  return { ...env, ...extra };
}

function credentialEnv(creds: Credentials | null): Record<string, string> {
  return creds === null ? {} : {
    HAMSTER_ACCESS_KEY_ID: creds.accessKeyId,
    HAMSTER_SECRET_ACCESS_KEY: creds.secretAccessKey,
  };
}

/** The argv of `deno run ... main.ts <args>`. */
export function hamsterArgs(args: string[]): string[] {
  return ["run", "-A", "--unstable-kv", "--no-check", MAIN, ...args];
}

/**
 * Runs `hamster <args>` to completion and returns its exit code and output. A process
 * still running after `timeoutMs` (default 30 s) is killed and reported with `timedOut`.
 */
export async function runHamster(
  args: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string; timedOut: boolean }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: hamsterArgs(args),
    cwd: REPO_ROOT,
    clearEnv: true,
    env: childEnv(opts.env),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // already exited
    }
  }, opts.timeoutMs ?? 30_000);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
    timedOut,
  };
}

/** How to start a server. */
export interface StartOptions {
  /** An existing data dir to serve (the caller removes it); default a fresh temp dir removed on stop. */
  dataDir?: string;
  /** Credentials passed by env; `null` passes none. Default {@link TEST_CREDENTIALS}. */
  credentials?: Credentials | null;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Extra `serve` flags, e.g. `["-domain", "s3.localhost"]`. */
  args?: string[];
  /** A command that runs the server as its last arguments and execs it, e.g. `["prlimit", "--nofile=64:64"]`. */
  wrapper?: string[];
}

/** A running `hamster serve` child process. */
export class ServerProcess {
  #output = "";
  #pumps: Promise<void>[];
  #stopped = false;

  private constructor(
    readonly child: Deno.ChildProcess,
    readonly port: number,
    readonly dataDir: string,
    readonly credentials: Credentials,
    readonly ownsDataDir: boolean,
  ) {
    this.#pumps = [child.stdout, child.stderr].map(async (stream) => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) this.#output += text;
    });
  }

  /** `http://127.0.0.1:PORT` */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** `127.0.0.1:PORT`, the Host header value. */
  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Everything the server printed to stdout and stderr so far. */
  get output(): string {
    return this.#output;
  }

  /**
   * Starts `hamster serve` on a free port and waits for its listening line.
   *
   * @throws {Error} when the process exits or stays silent for 60 s; its output is in the message
   */
  static async start(opts: StartOptions = {}): Promise<ServerProcess> {
    const ownsDataDir = opts.dataDir === undefined;
    const dataDir = opts.dataDir ?? await Deno.makeTempDir({ prefix: "hamster-e2e-" });
    const creds = opts.credentials === undefined ? TEST_CREDENTIALS : opts.credentials;
    let lastError: Error | undefined;
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = freePort();
      const argv = hamsterArgs([
        "serve",
        "-data-dir",
        dataDir,
        "-s3",
        `127.0.0.1:${port}`,
        ...(opts.args ?? []),
      ]);
      const [command, ...wrapperArgs] = [...(opts.wrapper ?? []), Deno.execPath()];
      const child = new Deno.Command(command, {
        args: [...wrapperArgs, ...argv],
        cwd: REPO_ROOT,
        clearEnv: true,
        env: childEnv({ ...credentialEnv(creds), ...opts.env }),
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const server = new ServerProcess(
        child,
        port,
        dataDir,
        creds === null ? { accessKeyId: "", secretAccessKey: "" } : { ...creds },
        ownsDataDir,
      );
      try {
        await server.#waitForListening();
        if (creds === null) await server.#loadGeneratedCredentials();
        return server;
      } catch (err) {
        lastError = err as Error;
        await server.#reap();
        if (!/AddrInUse|address already in use/i.test(server.output)) break;
      }
    }
    if (ownsDataDir) await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    throw lastError;
  }

  async #waitForListening(): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    let exited = false;
    this.child.status.then(() => exited = true);
    while (!LISTENING.test(this.#output)) {
      if (exited) throw new Error(`hamster exited before listening:\n${this.#output}`);
      if (Date.now() > deadline) {
        throw new Error(`hamster did not listen within 60 s:\n${this.#output}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    const url = LISTENING.exec(this.#output)![1];
    assert.equal(url, this.url, `the listening line names ${url}, not ${this.url}`);
  }

  /** Without credentials in the env, the server uses (and may just have written) DIR/credentials.json. */
  async #loadGeneratedCredentials(): Promise<void> {
    try {
      const stored = JSON.parse(await Deno.readTextFile(`${this.dataDir}/credentials.json`));
      Object.assign(this.credentials, {
        accessKeyId: stored.accessKeyId,
        secretAccessKey: stored.secretAccessKey,
      });
    } catch {
      // no stored credentials: the test finds out when it signs
    }
  }

  async #reap(): Promise<Deno.CommandStatus> {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // already exited
    }
    const status = await this.child.status;
    await Promise.all(this.#pumps);
    return status;
  }

  /**
   * Sends `signal` and waits for exit; returns the status without judging it.
   * The temp data dir is kept: call {@link cleanup} (or {@link stop}) after.
   */
  async signal(signal: Deno.Signal): Promise<Deno.CommandStatus> {
    if (this.#stopped) return await this.child.status;
    this.#stopped = true;
    try {
      this.child.kill(signal);
    } catch {
      // already exited
    }
    const timer = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch {
        // already exited
      }
    }, 30_000);
    const status = await this.child.status;
    clearTimeout(timer);
    await Promise.all(this.#pumps);
    return status;
  }

  /** Removes the temp data dir if this server made it. */
  async cleanup(): Promise<void> {
    if (this.ownsDataDir) await Deno.remove(this.dataDir, { recursive: true }).catch(() => {});
  }

  /**
   * Stops the server with SIGTERM, asserts it exits with code 0, and removes its temp data dir.
   *
   * @throws {AssertionError} when the exit code is not 0
   */
  async stop(): Promise<void> {
    const status = await this.signal("SIGTERM");
    await this.cleanup();
    assert.equal(
      status.code,
      0,
      `hamster exited with code ${status.code} (signal ${status.signal}) on SIGTERM:\n${this.#output}`,
    );
  }
}

/** Starts a server; see {@link ServerProcess.start}. */
export function startServer(opts: StartOptions = {}): Promise<ServerProcess> {
  return ServerProcess.start(opts);
}

/**
 * Files under the data dir's `shards/` and `tmp/`, as paths relative to the data dir.
 */
export async function dataFiles(dataDir: string): Promise<{ shards: string[]; tmp: string[] }> {
  const walk = async (rel: string): Promise<string[]> => {
    const out: string[] = [];
    try {
      for await (const e of Deno.readDir(`${dataDir}/${rel}`)) {
        if (e.isDirectory) out.push(...await walk(`${rel}/${e.name}`));
        else out.push(`${rel}/${e.name}`);
      }
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    return out;
  };
  return { shards: (await walk("shards")).sort(), tmp: (await walk("tmp")).sort() };
}
