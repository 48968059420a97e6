/**
 * Compatibility with rclone (Debian's package) through an S3 remote with provider Other,
 * configured only by environment variables: `copy`, `sync`, `check --download`,
 * `lsjson`, `delete`, server-side copy and a 150 MiB file through multipart.
 */
import assert from "node:assert/strict";
import { type ServerProcess, startServer } from "../e2e/_server.ts";
import { signedFetch } from "../e2e/_client.ts";
import {
  assertClient,
  assertSameTree,
  clientGate,
  fails,
  filesUnder,
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

const RCLONE = "/usr/bin/rclone";
const REASON = `${RCLONE} is not installed (apt-get install rclone)`;
const gate = clientGate("rclone_test", has(RCLONE), REASON);

/** The environment of an rclone with no config file and the remote `ham:` pointing at `server`. */
function rcloneEnv(server: ServerProcess, home: string): Record<string, string> {
  return {
    HOME: home,
    RCLONE_CONFIG: "/dev/null",
    RCLONE_CONFIG_HAM_TYPE: "s3",
    RCLONE_CONFIG_HAM_PROVIDER: "Other",
    RCLONE_CONFIG_HAM_ACCESS_KEY_ID: server.credentials.accessKeyId,
    RCLONE_CONFIG_HAM_SECRET_ACCESS_KEY: server.credentials.secretAccessKey,
    RCLONE_CONFIG_HAM_ENDPOINT: server.url,
    RCLONE_CONFIG_HAM_REGION: "us-east-1",
  };
}

/** Runs rclone with {@link rcloneEnv}. */
function rclone(server: ServerProcess, home: string, args: string[]): Promise<Run> {
  return run(RCLONE, args, { env: rcloneEnv(server, home), timeoutMs: 240_000 });
}

interface Entry {
  Path: string;
  Size: number;
  IsDir: boolean;
  Hashes?: { md5?: string };
}

Deno.test({
  name:
    "rclone: copy, sync, check --download, lsjson, delete, server-side copy, rcat and cat keep bytes and listings right",
  ...gate,
  fn: async (t) => {
    assertClient(has(RCLONE), REASON);
    const server = await startServer();
    await using work = await tempDir("hamster-compat-rclone-");
    const rc = (args: string[]) => rclone(server, work.path, args);
    const tree = `${work.path}/tree`;
    const lsjson = async (path: string): Promise<Entry[]> =>
      (JSON.parse(
        ok(await rc(["lsjson", "-R", "--files-only", "--hash", path]), "lsjson").stdout,
      ) as Entry[])
        .sort((a, b) => a.Path < b.Path ? -1 : 1);
    try {
      ok(await rc(["mkdir", "ham:rclone-compat"]), "mkdir");
      const names = await writeTree(tree, 80);

      await t.step(
        "copy uploads a tree; lsjson lists every file with its size and MD5",
        async () => {
          ok(await rc(["copy", tree, "ham:rclone-compat/tree"]), "copy");
          const listed = await lsjson("ham:rclone-compat/tree");
          assert.deepEqual(listed.map((e) => e.Path), names);
          for (const e of listed) {
            const bytes = await Deno.readFile(`${tree}/${e.Path}`);
            assert.equal(e.Size, bytes.length, e.Path);
            assert.equal(e.Hashes?.md5, md5Hex(bytes), e.Path);
          }
          ok(await rc(["copy", "ham:rclone-compat/tree", `${work.path}/down`]), "copy down");
          await assertSameTree(tree, `${work.path}/down`);
        },
      );

      await t.step(
        "check --download finds no difference, then exactly the one object changed behind its back",
        async () => {
          ok(await rc(["check", "--download", tree, "ham:rclone-compat/tree"]), "check");
          const changed = names[5];
          const size = (await Deno.stat(`${tree}/${changed}`)).size;
          const other = randomBytes(size);
          const res = await signedFetch(server, {
            method: "PUT",
            path: `/rclone-compat/tree/${changed.split("/").map(encodeURIComponent).join("/")}`,
            body: other,
          });
          assert.equal(res.status, 200, await res.text());
          const differ = `${work.path}/differ.txt`;
          const check = fails(
            await rc(["check", "--download", "--differ", differ, tree, "ham:rclone-compat/tree"]),
            "check after change",
          );
          assert.match(check.stderr, /1 differences found/);
          assert.equal(await Deno.readTextFile(differ), `${changed}\n`);
        },
      );

      await t.step(
        "sync makes the remote equal the local tree: deletes, adds and replaces",
        async () => {
          const removed = names.filter((_, i) => i % 9 === 4);
          for (const n of removed) await Deno.remove(`${tree}/${n}`);
          await Deno.mkdir(`${tree}/new dir`, { recursive: true });
          await Deno.writeFile(`${tree}/new dir/added.bin`, randomBytes(33_333));
          ok(await rc(["sync", tree, "ham:rclone-compat/tree"]), "sync");
          const listed = await lsjson("ham:rclone-compat/tree");
          assert.deepEqual(listed.map((e) => e.Path), await filesUnder(tree));
          // Sizes, MD5s and the modification times rclone keeps in metadata all match now.
          const again = ok(await rc(["sync", "-v", tree, "ham:rclone-compat/tree"]), "sync again");
          assert.match(again.stderr, /There was nothing to transfer/);
          ok(await rc(["check", "--download", tree, "ham:rclone-compat/tree"]), "check after sync");
        },
      );

      await t.step("delete removes the files under a path and nothing else", async () => {
        ok(await rc(["delete", "ham:rclone-compat/tree/d1"]), "delete");
        const listed = await lsjson("ham:rclone-compat/tree");
        assert.deepEqual(
          listed.map((e) => e.Path),
          (await filesUnder(tree)).filter((n) => !n.startsWith("d1/")),
        );
      });

      await t.step(
        "copyto between two keys of the bucket is a server-side copy with the same bytes",
        async () => {
          const bytes = randomBytes(7 * MIB + 5);
          await Deno.writeFile(`${work.path}/x.bin`, bytes);
          ok(await rc(["copyto", `${work.path}/x.bin`, "ham:rclone-compat/x"]), "copyto up");
          const copy = ok(
            await rc(["copyto", "-vv", "ham:rclone-compat/x", "ham:rclone-compat/y"]),
            "copyto server-side",
          );
          assert.match(copy.stderr, /x: Copied \(server-side copy\) to: y/);
          ok(await rc(["copyto", "ham:rclone-compat/y", `${work.path}/y.bin`]), "copyto down");
          assert.equal(md5Hex(await Deno.readFile(`${work.path}/y.bin`)), md5Hex(bytes));
          const top = await lsjson("ham:rclone-compat");
          assert.deepEqual(top.filter((e) => !e.Path.includes("/")).map((e) => [e.Path, e.Size]), [[
            "x",
            bytes.length,
          ], ["y", bytes.length]]);
        },
      );

      await t.step(
        "rcat streams stdin of unknown size through multipart; cat streams it back",
        async () => {
          const streamed = randomBytes(12 * MIB + 11);
          ok(
            await run(RCLONE, ["rcat", "ham:rclone-compat/streamed.bin"], {
              env: rcloneEnv(server, work.path),
              stdin: streamed,
            }),
            "rcat",
          );
          const head = await signedFetch(server, {
            method: "HEAD",
            path: "/rclone-compat/streamed.bin",
          });
          await head.body?.cancel();
          assert.equal(head.headers.get("content-length"), String(streamed.length));
          assert.match(head.headers.get("etag") ?? "", /^"[0-9a-f]{32}-\d+"$/);
          const cat = ok(await rc(["cat", "ham:rclone-compat/streamed.bin"]), "cat");
          assert.equal(cat.stdoutBytes.length, streamed.length);
          assert.equal(md5Hex(cat.stdoutBytes), md5Hex(streamed));
        },
      );

      await t.step("purge empties and removes the bucket", async () => {
        ok(await rc(["purge", "ham:rclone-compat"]), "purge");
        const buckets = JSON.parse(
          ok(await rc(["lsjson", "ham:"]), "lsjson buckets").stdout,
        ) as Entry[];
        assert.deepEqual(buckets, []);
      });
    } finally {
      await server.stop();
    }
  },
});

Deno.test({
  name: "rclone: a 150 MiB file goes up through multipart and comes down with the same MD5",
  ...gate,
  fn: async () => {
    assertClient(has(RCLONE), REASON);
    const server = await startServer();
    await using work = await tempDir("hamster-compat-rclone-big-");
    const rc = (args: string[]) => rclone(server, work.path, args);
    try {
      ok(await rc(["mkdir", "ham:big"]), "mkdir");
      const want = await writeRandomFile(`${work.path}/big.bin`, 150 * MIB);
      // rclone's default upload cutoff is 200 MiB: lower it so the file goes multipart
      // with the default 5 MiB chunks (30 parts).
      ok(
        await rc([
          "copyto",
          "--s3-upload-cutoff",
          "64M",
          `${work.path}/big.bin`,
          "ham:big/big.bin",
        ]),
        "copyto up",
      );
      await Deno.remove(`${work.path}/big.bin`);
      const head = await signedFetch(server, { method: "HEAD", path: "/big/big.bin" });
      await head.body?.cancel();
      assert.equal(head.status, 200);
      assert.equal(head.headers.get("content-length"), String(150 * MIB));
      assert.match(head.headers.get("etag") ?? "", /^"[0-9a-f]{32}-30"$/);
      const listed = JSON.parse(
        ok(await rc(["lsjson", "--hash", "ham:big"]), "lsjson").stdout,
      ) as Entry[];
      assert.equal(listed.length, 1);
      assert.equal(listed[0].Size, 150 * MIB);
      // rclone keeps the whole-file MD5 in metadata for multipart uploads.
      assert.equal(listed[0].Hashes?.md5, want);
      ok(await rc(["copyto", "ham:big/big.bin", `${work.path}/big.down`]), "copyto down");
      assert.equal(await md5OfFile(`${work.path}/big.down`), want);
      await Deno.remove(`${work.path}/big.down`);
    } finally {
      await server.stop();
    }
  },
});
