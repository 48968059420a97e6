/**
 * Shared helpers for the real-client compatibility suite: finding a client binary (skip
 * with a printed reason on a developer machine, fail on CI), running a client with a
 * clean environment and a time limit, big random files and their MD5, generated trees
 * compared byte for byte, and a server started with extra flags (`-domain`), which
 * tests/e2e/_server.ts does not take.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createHash, randomBytes as nodeRandomBytes } from "node:crypto";
import http from "node:http";
import type { Credentials } from "../e2e/_server.ts";

export const MIB = 1024 * 1024;
export const REGION = "us-east-1";

/** True on CI (`CI=true`): a missing client fails its test instead of skipping it. */
export const ON_CI = Deno.env.get("CI") === "true";

/** With `COMPAT_TRACE=1`, every client run prints its duration and command line. */
const TRACE = Deno.env.get("COMPAT_TRACE") === "1";

/** Whether an executable exists at `path`. */
export function has(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/**
 * Decides whether the tests of a client run: returns `ignore` for `Deno.test`. Off CI a
 * missing client prints why and is skipped; on CI the test runs and
 * {@link assertClient} fails it.
 */
export function clientGate(test: string, ok: boolean, reason: string): { ignore: boolean } {
  if (ok) return { ignore: false };
  if (ON_CI) {
    console.log(`${test}: ${reason}; CI=true, so the test fails`);
    return { ignore: false };
  }
  console.log(`${test}: skipped, ${reason}`);
  return { ignore: true };
}

/** Fails the test (on CI) when the client is missing. */
export function assertClient(ok: boolean, reason: string): void {
  assert.ok(ok, `CI=true and ${reason}`);
}

/** The outcome of a client run. */
export interface Run {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout as bytes, for clients that write object bytes there. */
  stdoutBytes: Uint8Array;
}

/** How to run a client. */
export interface RunOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** Killed after this long (default 180 s); a kill fails the run. */
  timeoutMs?: number;
  stdin?: Uint8Array;
}

/**
 * Runs `cmd args` with a cleared environment: PATH, LANG and `env` only (so no config of
 * the user's is read), and returns its exit code and output.
 */
export async function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<Run> {
  const controller = new AbortController();
  const timeoutMs = opts.timeoutMs ?? 180_000;
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const child = new Deno.Command(cmd, {
      args,
      cwd: opts.cwd,
      clearEnv: true,
      env: {
        PATH: "/usr/local/bin:/usr/bin:/bin",
        LANG: "C.UTF-8",
        NO_COLOR: "1",
        ...opts.env,
      },
      stdin: opts.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
      signal: controller.signal,
    }).spawn();
    const startedMs = Date.now();
    // Written while the output is read, so a child answering as it reads cannot block.
    const writing = opts.stdin
      ? (async () => {
        const w = child.stdin.getWriter();
        await w.write(opts.stdin!);
        await w.close();
      })()
      : Promise.resolve();
    const [out] = await Promise.all([child.output(), writing]);
    if (TRACE) {
      console.log(`  [${Date.now() - startedMs} ms] ${cmd} ${args.join(" ")}`.slice(0, 300));
    }
    const dec = new TextDecoder();
    const result = {
      code: out.code,
      stdout: dec.decode(out.stdout),
      stderr: dec.decode(out.stderr),
      stdoutBytes: out.stdout,
    };
    if (controller.signal.aborted) {
      assert.fail(
        `${cmd} ${
          args.join(" ")
        } was killed after ${timeoutMs} ms:\n${result.stdout}\n${result.stderr}`,
      );
    }
    return result;
  } finally {
    clearTimeout(timer);
  }
}

/** Asserts `r` exited 0 and returns it. */
export function ok(r: Run, what: string): Run {
  assert.equal(r.code, 0, `${what} exited ${r.code}:\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

/** Asserts `r` failed and returns it. */
export function fails(r: Run, what: string): Run {
  assert.notEqual(
    r.code,
    0,
    `${what} should have failed:\nstdout: ${r.stdout}\nstderr: ${r.stderr}`,
  );
  return r;
}

/** `n` random bytes. */
export function randomBytes(n: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(nodeRandomBytes(n));
}

/** Hex MD5 of `bytes`. */
export function md5Hex(bytes: Uint8Array | string): string {
  return createHash("md5").update(bytes).digest("hex");
}

/** Hex MD5 of a file, read in a stream. */
export async function md5OfFile(path: string): Promise<string> {
  const h = createHash("md5");
  using file = await Deno.open(path);
  for await (const chunk of file.readable) h.update(chunk);
  return h.digest("hex");
}

/** Writes `sizeBytes` random bytes to `path` in 1 MiB pieces and returns their hex MD5. */
export async function writeRandomFile(path: string, sizeBytes: number): Promise<string> {
  const h = createHash("md5");
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  for (let done = 0; done < sizeBytes; done += MIB) {
    const piece = randomBytes(Math.min(MIB, sizeBytes - done));
    h.update(piece);
    let off = 0;
    while (off < piece.length) off += await file.write(piece.subarray(off));
  }
  return h.digest("hex");
}

/**
 * Writes a nested tree of `count` files under `root` (directories 3 deep, sizes from 0
 * bytes to about 70 KiB, a few names with spaces and non-ASCII) and returns their relative
 * paths, sorted. With `emptyFiles: false` the smallest file has 1 byte.
 */
export async function writeTree(
  root: string,
  count: number,
  opts: { emptyFiles?: boolean } = {},
): Promise<string[]> {
  const emptyFiles = opts.emptyFiles ?? true;
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    const dir = `d${i % 4}/s${i % 7}${i % 3 === 0 ? "/deep er" : ""}`;
    await Deno.mkdir(`${root}/${dir}`, { recursive: true });
    const name = `${dir}/${i % 11 === 0 ? "fïlé" : "file"}-${i}.bin`;
    const size = i % 13 === 0 ? (emptyFiles ? 0 : 1) : (i * 7919) % 70_000;
    await Deno.writeFile(`${root}/${name}`, randomBytes(size));
    names.push(name);
  }
  return names.sort();
}

/** The files under `root` as sorted relative paths. */
export async function filesUnder(root: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(rel ? `${root}/${rel}` : root)) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory) out.push(...await filesUnder(root, p));
    else out.push(p);
  }
  return out.sort();
}

/** Whether two byte arrays hold the same bytes. */
export function equalBytes(x: Uint8Array, y: Uint8Array): boolean {
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** Asserts the trees at `a` and `b` hold the same file names with the same bytes. */
export async function assertSameTree(a: string, b: string): Promise<void> {
  const names = await filesUnder(a);
  assert.deepEqual(await filesUnder(b), names, `the file lists of ${a} and ${b} differ`);
  for (const n of names) {
    const x = await Deno.readFile(`${a}/${n}`);
    const y = await Deno.readFile(`${b}/${n}`);
    assert.ok(equalBytes(x, y), `${n} differs between ${a} and ${b}`);
  }
}

/** A temp dir removed by `using`'s dispose. */
export async function tempDir(prefix: string): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

/** The environment for an AWS tool (aws CLI, boto3, restic): the credentials and nothing else. */
export function awsEnv(creds: Credentials, home: string): Record<string, string> {
  return {
    HOME: home,
    AWS_ACCESS_KEY_ID: creds.accessKeyId,
    AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
    AWS_DEFAULT_REGION: REGION,
    AWS_REGION: REGION,
    AWS_CONFIG_FILE: "/dev/null",
    AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_PAGER: "",
  };
}

/** A response read whole by {@link sendWithHost}. */
export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Uint8Array;
}

/**
 * Sends one request to 127.0.0.1:`port` with exactly the Host header given (fetch overrides
 * Host, and `*.localhost` does not resolve everywhere), through node:http.
 */
export function sendWithHost(
  port: number,
  req: {
    method: string;
    path: string;
    host: string;
    headers?: Record<string, string>;
    body?: Uint8Array;
  },
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const r = http.request({
      hostname: "127.0.0.1",
      port,
      method: req.method,
      path: req.path,
      headers: { ...req.headers, host: req.host, connection: "close" },
      agent: false,
    }, (res) => {
      const chunks: Uint8Array[] = [];
      res.on("data", (c: Uint8Array) => chunks.push(c));
      res.on("end", () => {
        const body = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
        let at = 0;
        for (const c of chunks) body.set(c, (at += c.length) - c.length);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      });
      res.on("error", reject);
    });
    r.on("error", reject);
    r.end(req.body);
  });
}
