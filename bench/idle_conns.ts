/**
 * Memory of `serve` under many idle connections: starts Hamster on loopback, opens
 * `--connections` TCP connections (default 5,000) that send nothing, then the same
 * number that each send one signed ListBuckets and stay open (keep-alive), and
 * reports the server's VmRSS and peak VmHWM (`/proc/PID/status`) at each step.
 *
 * Usage: deno run -A --unstable-kv bench/idle_conns.ts [--connections 5000]
 *
 * Only 127.0.0.1; every loop is bounded by the connection count.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { formatAmzDate, signRequest } from "../src/auth/sign.ts";

const args = parseArgs({ args: Deno.args, options: { connections: { type: "string" } } });
const COUNT = Number(args.values.connections ?? 5000);
const CREDS = { accessKeyId: "bench", secretAccessKey: "bench-secret" };
const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function memKiB(pid: number): Promise<{ rss: number; hwm: number }> {
  const s = await Deno.readTextFile(`/proc/${pid}/status`);
  const get = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(s)![1]);
  return { rss: get("VmRSS"), hwm: get("VmHWM") };
}

const mib = (kib: number) => `${(kib / 1024).toFixed(1)} MiB`;

function listBucketsRequest(port: number): Uint8Array {
  const host = `127.0.0.1:${port}`;
  const { headers } = signRequest({
    method: "GET",
    rawPath: "/",
    rawQuery: "",
    headers: { host },
    credentials: CREDS,
    region: "us-east-1",
    amzDate: formatAmzDate(Date.now()),
  }, EMPTY_SHA256);
  let text = "GET / HTTP/1.1\r\n";
  for (const [k, v] of headers) text += `${k}: ${v}\r\n`;
  return new TextEncoder().encode(text + "connection: keep-alive\r\n\r\n");
}

async function main() {
  const dir = await Deno.makeTempDir({ prefix: "hamster-idle-" });
  const port = freePort();
  const root = new URL("..", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-kv",
      `${root}main.ts`,
      "serve",
      "-data-dir",
      dir,
      "-s3",
      `127.0.0.1:${port}`,
      "-max-connections",
      String(2 * COUNT + 100),
      "-header-timeout",
      "5m",
      "-idle-timeout",
      "5m",
    ],
    env: {
      HAMSTER_ACCESS_KEY_ID: CREDS.accessKeyId,
      HAMSTER_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
    },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("S3 on")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`serve exited: ${out}`);
    out += value;
  }
  const conns: Deno.TcpConn[] = [];
  try {
    const pause = () => new Promise((r) => setTimeout(r, 2000));
    await pause();
    const base = await memKiB(child.pid);
    console.log(`baseline: RSS ${mib(base.rss)}, peak ${mib(base.hwm)}`);
    for (let i = 0; i < COUNT; i++) {
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    }
    await pause();
    const idle = await memKiB(child.pid);
    console.log(
      `${COUNT} idle connections (no bytes): RSS ${mib(idle.rss)}, peak ${mib(idle.hwm)}`,
    );
    const req = listBucketsRequest(port);
    const buf = new Uint8Array(16 * 1024);
    for (let i = 0; i < COUNT; i++) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      conns.push(c);
      await c.write(req);
      const n = await c.read(buf);
      if (n === null || !new TextDecoder().decode(buf.subarray(0, 12)).includes("200")) {
        throw new Error(`request ${i} on a kept-alive connection failed`);
      }
    }
    await pause();
    const kept = await memKiB(child.pid);
    console.log(
      `+ ${COUNT} kept-alive connections after one ListBuckets each: RSS ${mib(kept.rss)}, ` +
        `peak ${mib(kept.hwm)}`,
    );
  } finally {
    for (const c of conns) {
      try {
        c.close();
      } catch {
        // already closed
      }
    }
    child.kill("SIGTERM");
    await child.status;
    await reader.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

await main();
