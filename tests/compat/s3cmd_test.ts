/**
 * Compatibility with s3cmd (Debian's package) with a generated config file (path style,
 * SigV4, plain HTTP): `mb`, `put`, `get`, `sync`, `ls`, `del`, `rb`, and a 12 MiB file
 * through multipart with 5 MiB chunks.
 */
import assert from "node:assert/strict";
import { type ServerProcess, startServer } from "../e2e/_server.ts";
import { signedFetch } from "../e2e/_client.ts";
import {
  assertClient,
  assertSameTree,
  clientGate,
  fails,
  has,
  md5Hex,
  md5OfFile,
  MIB,
  ok,
  randomBytes,
  type Run,
  run,
  tempDir,
  writeRandomFile,
  writeTree,
} from "./_support.ts";

const S3CMD = "/usr/bin/s3cmd";
const REASON = `${S3CMD} is not installed (apt-get install s3cmd)`;
const gate = clientGate("s3cmd_test", has(S3CMD), REASON);

/** Writes an s3cmd config for `server` and returns its path. */
async function writeConfig(server: ServerProcess, dir: string): Promise<string> {
  const path = `${dir}/s3cfg`;
  await Deno.writeTextFile(
    path,
    [
      "[default]",
      `access_key = ${server.credentials.accessKeyId}`,
      `secret_key = ${server.credentials.secretAccessKey}`,
      `host_base = ${server.host}`,
      `host_bucket = ${server.host}`,
      "bucket_location = us-east-1",
      "use_https = False",
      "signature_v2 = False",
      "",
    ].join("\n"),
  );
  return path;
}

/** `s3cmd ls` lines as key to size. */
function listed(stdout: string, bucket: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of stdout.split("\n")) {
    const m = new RegExp(`^\\S+ \\S+\\s+(\\d+)\\s+s3://${bucket}/(.+)$`).exec(line);
    if (m) out.set(m[2], Number(m[1]));
  }
  return out;
}

Deno.test({
  name:
    "s3cmd: mb, put, get, sync, ls, del, rb and a 5 MiB-chunk multipart upload keep bytes and listings right",
  ...gate,
  fn: async (t) => {
    assertClient(has(S3CMD), REASON);
    const server = await startServer();
    await using work = await tempDir("hamster-compat-s3cmd-");
    const config = await writeConfig(server, work.path);
    const s3cmd = (args: string[]): Promise<Run> =>
      run(S3CMD, ["-c", config, "--no-progress", ...args], {
        env: { HOME: work.path },
        timeoutMs: 240_000,
      });
    const b = "s3cmd-compat";
    try {
      await t.step("mb makes a bucket that ls lists", async () => {
        ok(await s3cmd(["mb", `s3://${b}`]), "mb");
        assert.match(ok(await s3cmd(["ls"]), "ls").stdout, /\ss3:\/\/s3cmd-compat\n/);
      });

      const bytes = randomBytes(300_001);
      await t.step("put then get returns the same bytes; ls shows the size", async () => {
        await Deno.writeFile(`${work.path}/one.bin`, bytes);
        ok(await s3cmd(["put", `${work.path}/one.bin`, `s3://${b}/dir/one.bin`]), "put");
        ok(await s3cmd(["get", `s3://${b}/dir/one.bin`, `${work.path}/one.down`]), "get");
        assert.equal(md5Hex(await Deno.readFile(`${work.path}/one.down`)), md5Hex(bytes));
        const ls = listed(ok(await s3cmd(["ls", `s3://${b}/dir/`]), "ls").stdout, b);
        assert.deepEqual([...ls], [["dir/one.bin", bytes.length]]);
        const missing = fails(
          await s3cmd(["get", `s3://${b}/dir/none`, `${work.path}/none`]),
          "get missing",
        );
        assert.match(missing.stderr, /does not exist|404|NoSuchKey/);
      });

      await t.step(
        "sync uploads a tree, a second sync uploads nothing, and sync down gives the same bytes",
        async () => {
          const tree = `${work.path}/tree`;
          const names = await writeTree(tree, 40);
          ok(await s3cmd(["sync", `${tree}/`, `s3://${b}/tree/`]), "sync");
          const ls = listed(
            ok(await s3cmd(["ls", "--recursive", `s3://${b}/tree/`]), "ls -r").stdout,
            b,
          );
          assert.deepEqual([...ls.keys()].sort(), names.map((n) => `tree/${n}`));
          for (const n of names) {
            assert.equal(ls.get(`tree/${n}`), (await Deno.stat(`${tree}/${n}`)).size, n);
          }
          const again = ok(
            await s3cmd(["sync", "--stats", `${tree}/`, `s3://${b}/tree/`]),
            "sync again",
          );
          assert.match(again.stdout, /Done\. Uploaded 0 bytes/);
          ok(await s3cmd(["sync", `s3://${b}/tree/`, `${work.path}/down/`]), "sync down");
          await assertSameTree(tree, `${work.path}/down`);
        },
      );

      await t.step(
        "put with --multipart-chunk-size-mb=5 of a 12 MiB file makes 3 parts; get gives the same MD5",
        async () => {
          const want = await writeRandomFile(`${work.path}/big.bin`, 12 * MIB);
          ok(
            await s3cmd([
              "put",
              "--multipart-chunk-size-mb=5",
              `${work.path}/big.bin`,
              `s3://${b}/big.bin`,
            ]),
            "put multipart",
          );
          const head = await signedFetch(server, { method: "HEAD", path: `/${b}/big.bin` });
          await head.body?.cancel();
          assert.equal(head.headers.get("content-length"), String(12 * MIB));
          assert.match(head.headers.get("etag") ?? "", /^"[0-9a-f]{32}-3"$/);
          ok(await s3cmd(["get", `s3://${b}/big.bin`, `${work.path}/big.down`]), "get multipart");
          assert.equal(await md5OfFile(`${work.path}/big.down`), want);
          const info = ok(await s3cmd(["info", `s3://${b}/big.bin`]), "info").stdout;
          assert.match(info, new RegExp(`MD5 sum:\\s+${want}`));
        },
      );

      await t.step(
        "del removes one key, del --recursive a prefix, and rb the emptied bucket",
        async () => {
          ok(await s3cmd(["del", `s3://${b}/dir/one.bin`]), "del");
          ok(await s3cmd(["del", "--recursive", "--force", `s3://${b}/tree/`]), "del --recursive");
          const ls = listed(ok(await s3cmd(["ls", "--recursive", `s3://${b}`]), "ls -r").stdout, b);
          assert.deepEqual([...ls.keys()], ["big.bin"]);
          const notEmpty = fails(await s3cmd(["rb", `s3://${b}`]), "rb of a non-empty bucket");
          assert.match(notEmpty.stderr, /BucketNotEmpty/);
          ok(await s3cmd(["del", `s3://${b}/big.bin`]), "del big");
          ok(await s3cmd(["rb", `s3://${b}`]), "rb");
          assert.doesNotMatch(ok(await s3cmd(["ls"]), "ls").stdout, /s3cmd-compat/);
        },
      );
    } finally {
      await server.stop();
    }
  },
});
