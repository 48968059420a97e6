/**
 * The `hamster` process: the data-dir lock, SIGTERM during an upload, restart, the
 * command line's exit codes, and generated credentials.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  freePort,
  runHamster,
  type ServerProcess,
  startServer,
  TEST_CREDENTIALS,
} from "./_server.ts";
import {
  assertStoreClean,
  expectError,
  headStatus,
  md5Hex,
  randomBytes,
  signedFetch,
  signRaw,
  xmlText,
} from "./_client.ts";

const MIB = 1024 * 1024;

async function put(server: ServerProcess, path: string, body: Uint8Array | string): Promise<void> {
  const res = await signedFetch(server, { method: "PUT", path, body });
  assert.equal(res.status, 200, await res.text());
}

async function getBytes(
  server: ServerProcess,
  path: string,
): Promise<{ status: number; body: Uint8Array }> {
  const res = await signedFetch(server, { method: "GET", path });
  return { status: res.status, body: new Uint8Array(await res.arrayBuffer()) };
}

async function makeTempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "hamster-e2e-proc-" });
}

Deno.test("hamster serve on a data dir another hamster holds exits non-zero naming the data dir", async () => {
  const first = await startServer();
  try {
    const second = await runHamster(
      ["serve", "-data-dir", first.dataDir, "-s3", `127.0.0.1:${freePort()}`],
      {
        env: {
          HAMSTER_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
          HAMSTER_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
        },
      },
    );
    assert.equal(
      second.timedOut,
      false,
      `the second serve kept running:\n${second.stdout}${second.stderr}`,
    );
    assert.notEqual(second.code, 0);
    assert.ok(
      second.stderr.includes(first.dataDir),
      `stderr does not name the data dir: ${second.stderr}`,
    );
    assert.doesNotMatch(second.stdout, /S3 on http/, "the second serve must not listen");
    // The first one is untouched.
    assert.equal(
      await signedFetch(first, { method: "GET", path: "/" }).then(async (r) => {
        await r.body?.cancel();
        return r.status;
      }),
      200,
    );
  } finally {
    await first.stop();
  }
});

Deno.test("hamster serve restarted on the same data dir (after SIGINT) serves the same objects", async () => {
  const dataDir = await makeTempDir();
  try {
    const plain = randomBytes(3 * MIB + 17);
    const parts = [randomBytes(5 * MIB), randomBytes(1000)];
    let multipartEtag = "";
    const first = await startServer({ dataDir });
    try {
      assert.equal(
        await signedFetch(first, { method: "PUT", path: "/keep" }).then((r) =>
          r.text().then(() => r.status)
        ),
        200,
      );
      await put(first, "/keep/plain", plain);
      await put(first, "/keep/dir/small", "small");
      const created = await signedFetch(first, {
        method: "POST",
        path: "/keep/multi",
        query: "uploads=",
      });
      const uploadId = xmlText(await created.text(), "UploadId")!;
      const etags: string[] = [];
      for (const [i, body] of parts.entries()) {
        const res = await signedFetch(first, {
          method: "PUT",
          path: "/keep/multi",
          query: `partNumber=${i + 1}&uploadId=${uploadId}`,
          body,
        });
        assert.equal(res.status, 200, await res.text());
        etags.push(res.headers.get("etag")!.replaceAll('"', ""));
      }
      const xml = `<CompleteMultipartUpload>${
        etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e}</ETag></Part>`).join(
          "",
        )
      }</CompleteMultipartUpload>`;
      const done = await signedFetch(first, {
        method: "POST",
        path: "/keep/multi",
        query: `uploadId=${uploadId}`,
        body: xml,
      });
      const doneXml = await done.text();
      assert.equal(done.status, 200, doneXml);
      multipartEtag = xmlText(doneXml, "ETag")!.replaceAll("&quot;", "").replaceAll('"', "");
      const h = createHash("md5");
      for (const p of parts) h.update(createHash("md5").update(p).digest());
      assert.equal(multipartEtag, `${h.digest("hex")}-2`);
      // SIGINT, like Ctrl-C: exit 0 too.
      const status = await first.signal("SIGINT");
      assert.equal(status.code, 0, first.output);
    } finally {
      await first.signal("SIGTERM");
    }
    const second = await startServer({ dataDir });
    try {
      assert.doesNotMatch(
        second.output,
        /Startup sweep removed/,
        "a clean shutdown leaves no orphans",
      );
      assert.deepEqual(await getBytes(second, "/keep/plain"), { status: 200, body: plain });
      assert.equal(
        new TextDecoder().decode((await getBytes(second, "/keep/dir/small")).body),
        "small",
      );
      const multi = await signedFetch(second, { method: "GET", path: "/keep/multi" });
      assert.equal(multi.status, 200);
      assert.equal(multi.headers.get("etag"), `"${multipartEtag}"`);
      assert.deepEqual(
        new Uint8Array(await multi.arrayBuffer()),
        new Uint8Array([...parts[0], ...parts[1]]),
      );
      const list = await signedFetch(second, {
        method: "GET",
        path: "/keep",
        query: "list-type=2",
      });
      const listXml = await list.text();
      assert.deepEqual([...listXml.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1]), [
        "dir/small",
        "multi",
        "plain",
      ]);
      await assertStoreClean(second);
    } finally {
      await second.stop();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("after a restart, compaction moves the live small objects out of a mostly overwritten segment and removes it", async () => {
  const dataDir = await makeTempDir();
  const segments = async () =>
    (await Array.fromAsync(Deno.readDir(`${dataDir}/segments`))).map((e) => e.name).sort();
  try {
    const first = await startServer({ dataDir });
    const want = new Map<string, Uint8Array>();
    try {
      await put(first, "/packed", "");
      // 40 keys written five times: 200 records, of which the last 40 stay live.
      for (let round = 0; round < 5; round++) {
        await Promise.all(Array.from({ length: 40 }, async (_, i) => {
          const body = randomBytes(1 + ((round * 40 + i) * 997) % 20_000);
          want.set(`/packed/k${i}`, body);
          await put(first, `/packed/k${i}`, body);
        }));
      }
      // Overwrite 35 of them once more with small bodies: 235 records, 40 of them live,
      // holding well under half of the segment's bytes.
      for (let i = 0; i < 35; i++) {
        const body = randomBytes(100 + i);
        want.set(`/packed/k${i}`, body);
        await put(first, `/packed/k${i}`, body);
      }
      assert.equal((await first.signal("SIGTERM")).code, 0, first.output);
    } finally {
      await first.signal("SIGTERM");
    }
    const before = await segments();
    assert.equal(before.length, 1, `one segment before the restart: ${before}`);
    // The restart seals that segment; the writes below go to a new one, and compaction
    // (every 200 ms here) empties the old one once its records are moved.
    const second = await startServer({ dataDir, args: ["-compaction-interval", "200ms"] });
    try {
      const extra = randomBytes(4096);
      want.set("/packed/after", extra);
      await put(second, "/packed/after", extra);
      const compacted = /Compaction: 1 segment\(s\) emptied, 40 object\(s\) moved/;
      for (
        let i = 0;
        i < 100 && ((await segments()).includes(before[0]) || !compacted.test(second.output));
        i++
      ) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(!(await segments()).includes(before[0]), `segment ${before[0]} was not compacted`);
      assert.match(second.output, compacted);
      for (const [path, body] of want) {
        assert.deepEqual(await getBytes(second, path), { status: 200, body }, path);
      }
      await assertStoreClean(second);
      assert.equal((await second.signal("SIGINT")).code, 0, second.output);
    } finally {
      await second.signal("SIGTERM");
    }
    // A third start finds the relocated records where the metadata says.
    const third = await startServer({ dataDir });
    try {
      for (const [path, body] of want) {
        assert.deepEqual(await getBytes(third, path), { status: 200, body }, path);
      }
    } finally {
      await third.stop();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

/** Opens a raw PUT of `totalBytes` and sends the first `sentBytes` of `body`. */
async function startRawUpload(
  server: ServerProcess,
  path: string,
  body: Uint8Array,
  sentBytes: number,
): Promise<Deno.TcpConn> {
  const { headers } = signRaw(server, {
    method: "PUT",
    path,
    payloadHash: "UNSIGNED-PAYLOAD",
    headers: { "content-length": String(body.length) },
  });
  let head = `PUT ${path} HTTP/1.1\r\n`;
  headers.forEach((v, k) => head += `${k}: ${v}\r\n`);
  head += "\r\n";
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  const first = new Uint8Array([...new TextEncoder().encode(head), ...body.subarray(0, sentBytes)]);
  let off = 0;
  while (off < first.length) off += await conn.write(first.subarray(off));
  return conn;
}

async function writeAll(conn: Deno.TcpConn, bytes: Uint8Array): Promise<boolean> {
  try {
    let off = 0;
    while (off < bytes.length) off += await conn.write(bytes.subarray(off));
    return true;
  } catch {
    return false;
  }
}

/** After a restart: the object is either whole or absent, and nothing is left over. */
async function assertWholeOrAbsent(
  server: ServerProcess,
  path: string,
  body: Uint8Array,
): Promise<string> {
  const got = await getBytes(server, path);
  if (got.status === 200) {
    assert.equal(got.body.length, body.length, "a visible object must be complete");
    assert.equal(md5Hex(got.body), md5Hex(body));
  } else {
    assert.equal(got.status, 404);
  }
  await assertStoreClean(server);
  return got.status === 200 ? "whole" : "absent";
}

Deno.test("SIGTERM during an upload that then completes exits 0, and after restart the object is whole or absent", async () => {
  const dataDir = await makeTempDir();
  try {
    const body = randomBytes(8 * MIB);
    const first = await startServer({ dataDir });
    let status: Deno.CommandStatus;
    try {
      await signedFetch(first, { method: "PUT", path: "/inflight" }).then((r) => r.body?.cancel());
      await put(first, "/inflight/before", "committed before");
      const conn = await startRawUpload(first, "/inflight/object", body, 2 * MIB);
      try {
        // Let the server start ingesting, then stop it while the body is still arriving.
        await new Promise((r) => setTimeout(r, 200));
        const exited = first.signal("SIGTERM");
        await new Promise((r) => setTimeout(r, 100));
        await writeAll(conn, body.subarray(2 * MIB));
        status = await exited;
      } finally {
        conn.close();
      }
    } finally {
      await first.signal("SIGKILL");
    }
    assert.equal(status.code, 0, `exit on SIGTERM:\n${first.output}`);
    const second = await startServer({ dataDir });
    try {
      const outcome = await assertWholeOrAbsent(second, "/inflight/object", body);
      console.log(`  the in-flight object is ${outcome} after restart`);
      assert.equal(
        new TextDecoder().decode((await getBytes(second, "/inflight/before")).body),
        "committed before",
      );
    } finally {
      await second.stop();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("SIGTERM while a client stalls mid-upload still exits 0, and after restart nothing of that upload is left", async () => {
  const dataDir = await makeTempDir();
  try {
    const body = randomBytes(4 * MIB);
    const first = await startServer({ dataDir });
    let status: Deno.CommandStatus;
    let timedOut = false;
    try {
      await signedFetch(first, { method: "PUT", path: "/stall" }).then((r) => r.body?.cancel());
      const conn = await startRawUpload(first, "/stall/object", body, MIB);
      try {
        await new Promise((r) => setTimeout(r, 200));
        // The client never sends the rest. A graceful shutdown may wait a while for it,
        // but must not wait forever: give it 15 s before calling it a hang.
        first.child.kill("SIGTERM");
        const timer = new Promise<"hang">((r) => {
          const id = setTimeout(() => r("hang"), 15_000);
          first.child.status.finally(() => clearTimeout(id));
        });
        if (
          await Promise.race([first.child.status.then(() => "exited" as const), timer]) === "hang"
        ) {
          timedOut = true;
        }
      } finally {
        conn.close();
      }
    } finally {
      status = await first.signal("SIGKILL");
    }
    assert.equal(
      timedOut,
      false,
      "hamster did not exit within 15 s of SIGTERM while a client stalled",
    );
    assert.equal(status.code, 0, `exit on SIGTERM:\n${first.output}`);
    const second = await startServer({ dataDir });
    try {
      assert.equal(await headStatus(second, "/stall/object"), 404);
      await assertStoreClean(second);
    } finally {
      await second.stop();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("hamster serve with only HAMSTER_ACCESS_KEY_ID set exits 2 with one line", async () => {
  const dataDir = await makeTempDir();
  try {
    const envs: Record<string, string>[] = [{ HAMSTER_ACCESS_KEY_ID: "AK" }, {
      HAMSTER_SECRET_ACCESS_KEY: "SK",
    }];
    for (const env of envs) {
      const out = await runHamster([
        "serve",
        "-data-dir",
        dataDir,
        "-s3",
        `127.0.0.1:${freePort()}`,
      ], { env });
      assert.equal(out.timedOut, false);
      assert.equal(out.code, 2, `${JSON.stringify(env)}: ${out.stdout}${out.stderr}`);
      assert.equal(out.stderr.trim().split("\n").length, 1, out.stderr);
      assert.match(out.stderr, /HAMSTER_ACCESS_KEY_ID/);
      assert.match(out.stderr, /HAMSTER_SECRET_ACCESS_KEY/);
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("hamster serve with an unknown flag or a bad value exits 2 with one line", async () => {
  for (
    const args of [
      ["serve", "-bogus"],
      ["serve", "-s3", "nonsense"],
      ["serve", "-compaction-interval", "5x"],
      ["frobnicate"],
    ]
  ) {
    const out = await runHamster(args);
    assert.equal(out.timedOut, false);
    assert.equal(out.code, 2, `${args.join(" ")}: ${out.stdout}${out.stderr}`);
    const lines = out.stderr.trim().split("\n");
    assert.equal(lines.length, 1, `${args.join(" ")} printed:\n${out.stderr}`);
    assert.ok(lines[0].length > 0);
    assert.equal(out.stdout, "");
  }
  assert.match((await runHamster(["serve", "-bogus"])).stderr, /bogus/);
  const help = await runHamster(["serve", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /-data-dir/);
  const version = await runHamster(["version"]);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^hamster \d+\.\d+\.\d+/);
});

Deno.test("hamster serve without credentials generates them once, in credentials.json with mode 0600, and reuses them", async () => {
  const dataDir = await makeTempDir();
  try {
    const first = await startServer({ dataDir, credentials: null });
    let creds;
    try {
      const path = `${dataDir}/credentials.json`;
      const stat = await Deno.stat(path);
      assert.equal(stat.mode! & 0o777, 0o600, `mode ${(stat.mode! & 0o777).toString(8)}`);
      creds = JSON.parse(await Deno.readTextFile(path));
      assert.ok(creds.accessKeyId && creds.secretAccessKey);
      const id = /export AWS_ACCESS_KEY_ID=(\S+)/.exec(first.output);
      const secret = /export AWS_SECRET_ACCESS_KEY='?([^'\s]+)'?/.exec(first.output);
      assert.ok(id && secret, `no export lines printed:\n${first.output}`);
      assert.equal(id[1], creds.accessKeyId);
      assert.equal(secret[1], creds.secretAccessKey);
      const res = await signedFetch(first, { method: "PUT", path: "/gen" });
      assert.equal(res.status, 200, await res.text());
      await expectError(
        await signedFetch(first, { method: "GET", path: "/", credentials: TEST_CREDENTIALS }),
        403,
        "InvalidAccessKeyId",
      );
    } finally {
      await first.stop();
    }
    const second = await startServer({ dataDir, credentials: null });
    try {
      assert.doesNotMatch(
        second.output,
        /export AWS_/,
        "the second start must not print new credentials",
      );
      assert.deepEqual(JSON.parse(await Deno.readTextFile(`${dataDir}/credentials.json`)), creds);
      assert.deepEqual(second.credentials, creds);
      const res = await signedFetch(second, { method: "HEAD", path: "/gen" });
      assert.equal(res.status, 200);
    } finally {
      await second.stop();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
