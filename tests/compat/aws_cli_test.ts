/**
 * Compatibility with the aws CLI v2 (Debian's `awscli`, /usr/bin/aws) used as a user
 * would, with default settings: `s3 mb/cp/mv/ls/rm/sync`, a 200 MiB multipart round trip,
 * `s3api` copy, tagging and multipart listing, and `s3 presign` fetched with plain HTTP.
 */
import assert from "node:assert/strict";
import { type ServerProcess, startServer } from "../e2e/_server.ts";
import {
  assertClient,
  assertSameTree,
  awsEnv,
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

const AWS = "/usr/bin/aws";
const REASON = `${AWS} is not installed (apt-get install awscli)`;
const gate = clientGate("aws_cli_test", has(AWS), REASON);

function aws(server: ServerProcess, home: string, args: string[], cwd?: string): Promise<Run> {
  return run(AWS, [...args, "--endpoint-url", server.url], {
    env: awsEnv(server.credentials, home),
    cwd,
    timeoutMs: 240_000,
  });
}

/** Keys of `aws s3 ls --recursive` output (size-sorted columns: date time size key). */
function listedKeys(stdout: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of stdout.split("\n")) {
    const m = /^\S+ \S+\s+(\d+) (.+)$/.exec(line);
    if (m) out.set(m[2], Number(m[1]));
  }
  return out;
}

Deno.test({
  name: "aws CLI: s3 mb/cp/mv/ls/rm --recursive/sync --delete keep bytes and listings right",
  ...gate,
  fn: async (t) => {
    assertClient(has(AWS), REASON);
    const server = await startServer();
    await using work = await tempDir("hamster-compat-aws-");
    const cli = (args: string[], cwd?: string) => aws(server, work.path, args, cwd);
    const b = "aws-compat";
    try {
      await t.step("s3 mb makes a bucket that s3 ls lists", async () => {
        assert.match(
          ok(await cli(["s3", "mb", `s3://${b}`]), "mb").stdout,
          /make_bucket: aws-compat/,
        );
        assert.match(ok(await cli(["s3", "ls"]), "ls").stdout, /\saws-compat\n/);
      });

      const bytes = randomBytes(3 * MIB + 17);
      await Deno.writeFile(`${work.path}/one.bin`, bytes);
      await t.step("s3 cp up and down returns the same bytes; s3 ls shows the size", async () => {
        ok(
          await cli(["s3", "cp", "--no-progress", `${work.path}/one.bin`, `s3://${b}/a/one.bin`]),
          "cp up",
        );
        ok(
          await cli(["s3", "cp", "--no-progress", `s3://${b}/a/one.bin`, `${work.path}/one.down`]),
          "cp down",
        );
        assert.equal(md5Hex(await Deno.readFile(`${work.path}/one.down`)), md5Hex(bytes));
        const ls = listedKeys(
          ok(await cli(["s3", "ls", "--recursive", `s3://${b}/`]), "ls").stdout,
        );
        assert.deepEqual([...ls], [["a/one.bin", bytes.length]]);
      });

      await t.step(
        "s3 cp - streams stdin up through multipart, and s3 cp … - streams it back",
        async () => {
          const streamed = randomBytes(20 * MIB + 3);
          const up = await run(AWS, [
            "s3",
            "cp",
            "-",
            `s3://${b}/stdin.bin`,
            "--endpoint-url",
            server.url,
          ], {
            env: awsEnv(server.credentials, work.path),
            stdin: streamed,
          });
          ok(up, "cp - up");
          const head = JSON.parse(
            ok(await cli(["s3api", "head-object", "--bucket", b, "--key", "stdin.bin"]), "head")
              .stdout,
          );
          assert.equal(head.ContentLength, streamed.length);
          assert.match(head.ETag, /^"[0-9a-f]{32}-3"$/);
          const down = ok(
            await run(AWS, ["s3", "cp", `s3://${b}/stdin.bin`, "-", "--endpoint-url", server.url], {
              env: awsEnv(server.credentials, work.path),
            }),
            "cp - down",
          );
          assert.equal(down.stdoutBytes.length, streamed.length);
          assert.equal(md5Hex(down.stdoutBytes), md5Hex(streamed));
          ok(await cli(["s3", "rm", `s3://${b}/stdin.bin`]), "rm");
        },
      );

      await t.step(
        "s3 mv moves an object: the new key has the bytes, the old key is gone",
        async () => {
          ok(
            await cli([
              "s3",
              "mv",
              "--no-progress",
              `s3://${b}/a/one.bin`,
              `s3://${b}/b/moved.bin`,
            ]),
            "mv",
          );
          const ls = listedKeys(
            ok(await cli(["s3", "ls", "--recursive", `s3://${b}/`]), "ls").stdout,
          );
          assert.deepEqual([...ls], [["b/moved.bin", bytes.length]]);
          ok(
            await cli([
              "s3",
              "cp",
              "--no-progress",
              `s3://${b}/b/moved.bin`,
              `${work.path}/moved.down`,
            ]),
            "cp down",
          );
          assert.equal(md5Hex(await Deno.readFile(`${work.path}/moved.down`)), md5Hex(bytes));
          ok(
            await cli([
              "s3",
              "mv",
              "--no-progress",
              `${work.path}/moved.down`,
              `s3://${b}/c/local-moved.bin`,
            ]),
            "mv up",
          );
          await assert.rejects(Deno.stat(`${work.path}/moved.down`), Deno.errors.NotFound);
        },
      );

      const tree = `${work.path}/tree`;
      let names: string[] = [];
      await t.step(
        "s3 sync uploads a tree, then nothing; a sync down gives the same bytes",
        async () => {
          // Empty files are left to the next test: see there why.
          names = await writeTree(tree, 60, { emptyFiles: false });
          const first = ok(
            await cli(["s3", "sync", "--no-progress", tree, `s3://${b}/tree`]),
            "sync 1",
          );
          assert.equal([...first.stdout.matchAll(/^upload: /gm)].length, names.length);
          const second = ok(
            await cli(["s3", "sync", "--no-progress", tree, `s3://${b}/tree`]),
            "sync 2",
          );
          assert.equal(
            second.stdout.trim(),
            "",
            `the second sync did something:\n${second.stdout}`,
          );
          const ls = listedKeys(
            ok(await cli(["s3", "ls", "--recursive", `s3://${b}/tree/`]), "ls").stdout,
          );
          assert.deepEqual([...ls.keys()].sort(), names.map((n) => `tree/${n}`));
          for (const n of names) {
            assert.equal(ls.get(`tree/${n}`), (await Deno.stat(`${tree}/${n}`)).size, n);
          }
          ok(
            await cli(["s3", "sync", "--no-progress", `s3://${b}/tree`, `${work.path}/down`]),
            "sync down",
          );
          await assertSameTree(tree, `${work.path}/down`);
          // LastModified and sizes as listed match the local files now: nothing to download.
          const again = ok(
            await cli(["s3", "sync", "--no-progress", `s3://${b}/tree`, `${work.path}/down`]),
            "sync down again",
          );
          assert.equal(
            again.stdout.trim(),
            "",
            `the second sync down did something:\n${again.stdout}`,
          );
        },
      );

      await t.step(
        "s3 sync --delete removes keys whose local file is gone and uploads a changed file",
        async () => {
          const removed = names.filter((_, i) => i % 10 === 3);
          for (const n of removed) await Deno.remove(`${tree}/${n}`);
          await Deno.writeFile(`${tree}/${names[0]}`, randomBytes(4321));
          const r = ok(
            await cli(["s3", "sync", "--no-progress", "--delete", tree, `s3://${b}/tree`]),
            "sync --delete",
          );
          const deleted = [...r.stdout.matchAll(/^delete: s3:\/\/aws-compat\/(.+)$/gm)].map((m) =>
            m[1]
          ).sort();
          assert.deepEqual(deleted, removed.map((n) => `tree/${n}`).sort());
          const ls = listedKeys(
            ok(await cli(["s3", "ls", "--recursive", `s3://${b}/tree/`]), "ls").stdout,
          );
          assert.deepEqual([...ls.keys()].sort(), (await filesUnder(tree)).map((n) => `tree/${n}`));
          assert.equal(ls.get(`tree/${names[0]}`), 4321);
        },
      );

      await t.step("s3 rm --recursive removes a prefix and leaves other keys", async () => {
        const r = ok(await cli(["s3", "rm", "--recursive", `s3://${b}/tree/`]), "rm --recursive");
        assert.equal([...r.stdout.matchAll(/^delete: /gm)].length, (await filesUnder(tree)).length);
        const ls = listedKeys(
          ok(await cli(["s3", "ls", "--recursive", `s3://${b}/`]), "ls").stdout,
        );
        assert.deepEqual([...ls.keys()].sort(), ["b/moved.bin", "c/local-moved.bin"]);
        ok(await cli(["s3", "rm", "--recursive", `s3://${b}/`]), "rm all");
        ok(await cli(["s3", "rb", `s3://${b}`]), "rb");
        assert.doesNotMatch(ok(await cli(["s3", "ls"]), "ls").stdout, /aws-compat/);
      });
    } finally {
      await server.stop();
    }
  },
});

Deno.test({
  name:
    "aws CLI: a 200 MiB file goes up through multipart, is copied by UploadPartCopy, and comes down with the same MD5",
  ...gate,
  fn: async () => {
    assertClient(has(AWS), REASON);
    const server = await startServer();
    await using work = await tempDir("hamster-compat-aws-big-");
    const cli = (args: string[]) => aws(server, work.path, args);
    try {
      ok(await cli(["s3", "mb", "s3://big"]), "mb");
      const want = await writeRandomFile(`${work.path}/big.bin`, 200 * MIB);
      ok(
        await cli(["s3", "cp", "--no-progress", `${work.path}/big.bin`, "s3://big/big.bin"]),
        "cp up",
      );
      await Deno.remove(`${work.path}/big.bin`);
      const head = JSON.parse(
        ok(await cli(["s3api", "head-object", "--bucket", "big", "--key", "big.bin"]), "head")
          .stdout,
      );
      assert.equal(head.ContentLength, 200 * MIB);
      // The CLI's default part size is 8 MiB: 25 parts, and an S3 multipart ETag.
      assert.match(head.ETag, /^"[0-9a-f]{32}-25"$/);
      ok(
        await cli(["s3", "cp", "--no-progress", "s3://big/big.bin", `${work.path}/big.down`]),
        "cp down",
      );
      assert.equal(await md5OfFile(`${work.path}/big.down`), want);
      await Deno.remove(`${work.path}/big.down`);
      // A copy inside the store of an object over the multipart threshold: the CLI uses
      // UploadPartCopy with x-amz-copy-source-range, 8 MiB per part.
      ok(
        await cli(["s3", "cp", "--no-progress", "s3://big/big.bin", "s3://big/copy.bin"]),
        "cp s3 to s3",
      );
      const copyHead = JSON.parse(
        ok(await cli(["s3api", "head-object", "--bucket", "big", "--key", "copy.bin"]), "head copy")
          .stdout,
      );
      assert.equal(copyHead.ContentLength, 200 * MIB);
      assert.match(copyHead.ETag, /^"[0-9a-f]{32}-25"$/);
      ok(
        await cli(["s3", "cp", "--no-progress", "s3://big/copy.bin", `${work.path}/copy.down`]),
        "cp copy down",
      );
      assert.equal(await md5OfFile(`${work.path}/copy.down`), want);
      await Deno.remove(`${work.path}/copy.down`);
    } finally {
      await server.stop();
    }
  },
});

Deno.test({
  name: "aws CLI: s3api copy-object, put/get-object-tagging, list-multipart-uploads",
  ...gate,
  fn: async (t) => {
    assertClient(has(AWS), REASON);
    const server = await startServer();
    await using work = await tempDir("hamster-compat-aws-api-");
    const cli = (args: string[]) => aws(server, work.path, args);
    const api = async (args: string[]) => {
      const r = ok(await cli(["s3api", ...args]), `s3api ${args[0]}`);
      return r.stdout.trim() ? JSON.parse(r.stdout) : {};
    };
    const b = "api-compat";
    const bytes = randomBytes(100_000);
    await Deno.writeFile(`${work.path}/src.bin`, bytes);
    try {
      await api(["create-bucket", "--bucket", b]);
      await api([
        "put-object",
        "--bucket",
        b,
        "--key",
        "src",
        "--body",
        `${work.path}/src.bin`,
        "--metadata",
        "k=v",
      ]);

      await t.step(
        "s3api copy-object copies bytes and metadata; get-object returns them",
        async () => {
          const copy = await api([
            "copy-object",
            "--bucket",
            b,
            "--key",
            "dst",
            "--copy-source",
            `${b}/src`,
          ]);
          assert.equal(copy.CopyObjectResult.ETag, `"${md5Hex(bytes)}"`);
          const got = await api([
            "get-object",
            "--bucket",
            b,
            "--key",
            "dst",
            `${work.path}/dst.out`,
          ]);
          assert.deepEqual(got.Metadata, { k: "v" });
          assert.equal(md5Hex(await Deno.readFile(`${work.path}/dst.out`)), md5Hex(bytes));
          const missing = fails(
            await cli([
              "s3api",
              "copy-object",
              "--bucket",
              b,
              "--key",
              "x",
              "--copy-source",
              `${b}/nope`,
            ]),
            "copy missing",
          );
          assert.match(missing.stderr, /NoSuchKey/);
          const etag = `"${md5Hex(bytes)}"`;
          const ifMatch = fails(
            await cli([
              "s3api",
              "copy-object",
              "--bucket",
              b,
              "--key",
              "x",
              "--copy-source",
              `${b}/src`,
              "--copy-source-if-match",
              '"0123456789abcdef0123456789abcdef"',
            ]),
            "copy-source-if-match wrong",
          );
          assert.match(ifMatch.stderr, /PreconditionFailed/);
          const ifNone = fails(
            await cli([
              "s3api",
              "copy-object",
              "--bucket",
              b,
              "--key",
              "x",
              "--copy-source",
              `${b}/src`,
              "--copy-source-if-none-match",
              etag,
            ]),
            "copy-source-if-none-match current",
          );
          assert.match(ifNone.stderr, /PreconditionFailed/);
          const good = await api([
            "copy-object",
            "--bucket",
            b,
            "--key",
            "x",
            "--copy-source",
            `${b}/src`,
            "--copy-source-if-match",
            etag,
          ]);
          assert.equal(good.CopyObjectResult.ETag, etag);
        },
      );

      await t.step(
        "s3api put-object-tagging then get-object-tagging returns the tag set",
        async () => {
          await api([
            "put-object-tagging",
            "--bucket",
            b,
            "--key",
            "dst",
            "--tagging",
            JSON.stringify({
              TagSet: [{ Key: "team", Value: "storage" }, { Key: "tier", Value: "cold data" }],
            }),
          ]);
          const got = await api(["get-object-tagging", "--bucket", b, "--key", "dst"]);
          const tags = (got.TagSet as { Key: string; Value: string }[]).sort((x, y) =>
            x.Key.localeCompare(y.Key)
          );
          assert.deepEqual(tags, [{ Key: "team", Value: "storage" }, {
            Key: "tier",
            Value: "cold data",
          }]);
          await api(["delete-object-tagging", "--bucket", b, "--key", "dst"]);
          assert.deepEqual(
            (await api(["get-object-tagging", "--bucket", b, "--key", "dst"])).TagSet ?? [],
            [],
          );
          await api([
            "put-object",
            "--bucket",
            b,
            "--key",
            "tagged",
            "--body",
            `${work.path}/src.bin`,
            "--tagging",
            "a=1&b=two%20words",
          ]);
          const onPut = await api(["get-object-tagging", "--bucket", b, "--key", "tagged"]);
          assert.deepEqual(
            (onPut.TagSet as { Key: string; Value: string }[]).sort((x, y) =>
              x.Key.localeCompare(y.Key)
            ),
            [{ Key: "a", Value: "1" }, { Key: "b", Value: "two words" }],
          );
        },
      );

      await t.step(
        "s3api list-multipart-uploads lists in-progress uploads by prefix; abort removes them",
        async () => {
          const ids: Record<string, string> = {};
          for (const key of ["up/one", "up/two", "other/three"]) {
            ids[key] =
              (await api(["create-multipart-upload", "--bucket", b, "--key", key])).UploadId;
          }
          await api([
            "upload-part",
            "--bucket",
            b,
            "--key",
            "up/one",
            "--upload-id",
            ids["up/one"],
            "--part-number",
            "1",
            "--body",
            `${work.path}/src.bin`,
          ]);
          const all = await api(["list-multipart-uploads", "--bucket", b]);
          assert.deepEqual(
            (all.Uploads as { Key: string; UploadId: string }[]).map((u) => [u.Key, u.UploadId]),
            [["other/three", ids["other/three"]], ["up/one", ids["up/one"]], [
              "up/two",
              ids["up/two"],
            ]],
          );
          const some = await api(["list-multipart-uploads", "--bucket", b, "--prefix", "up/"]);
          assert.deepEqual((some.Uploads as { Key: string }[]).map((u) => u.Key), [
            "up/one",
            "up/two",
          ]);
          // A second upload of one key, then pages of one: the CLI follows NextKeyMarker and
          // NextUploadIdMarker and must see each upload once.
          ids["up/two#2"] =
            (await api(["create-multipart-upload", "--bucket", b, "--key", "up/two"])).UploadId;
          const paged = await api(["list-multipart-uploads", "--bucket", b, "--page-size", "1"]);
          const pagedIds = (paged.Uploads as { Key: string; UploadId: string }[]).map((u) =>
            `${u.Key} ${u.UploadId}`
          );
          assert.equal(pagedIds.length, 4, JSON.stringify(paged));
          assert.deepEqual(pagedIds.slice(0, 2), [
            `other/three ${ids["other/three"]}`,
            `up/one ${ids["up/one"]}`,
          ]);
          assert.deepEqual(
            new Set(pagedIds.slice(2)),
            new Set([`up/two ${ids["up/two"]}`, `up/two ${ids["up/two#2"]}`]),
          );
          const folded = await api(["list-multipart-uploads", "--bucket", b, "--delimiter", "/"]);
          assert.deepEqual((folded.CommonPrefixes as { Prefix: string }[]).map((p) => p.Prefix), [
            "other/",
            "up/",
          ]);
          assert.equal(folded.Uploads, undefined);
          const parts = await api([
            "list-parts",
            "--bucket",
            b,
            "--key",
            "up/one",
            "--upload-id",
            ids["up/one"],
          ]);
          assert.deepEqual(
            (parts.Parts as { PartNumber: number; Size: number }[]).map((
              p,
            ) => [p.PartNumber, p.Size]),
            [[1, bytes.length]],
          );
          for (const [name, id] of Object.entries(ids)) {
            await api([
              "abort-multipart-upload",
              "--bucket",
              b,
              "--key",
              name.split("#")[0],
              "--upload-id",
              id,
            ]);
          }
          assert.equal((await api(["list-multipart-uploads", "--bucket", b])).Uploads, undefined);
        },
      );
    } finally {
      await server.stop();
    }
  },
});

Deno.test({
  name: "aws CLI: s3 presign gives a URL plain HTTP can GET until it expires, then 403",
  ...gate,
  fn: async (t) => {
    assertClient(has(AWS), REASON);
    const server = await startServer();
    await using work = await tempDir("hamster-compat-aws-presign-");
    const cli = (args: string[]) => aws(server, work.path, args);
    const bytes = randomBytes(12_345);
    await Deno.writeFile(`${work.path}/p.bin`, bytes);
    try {
      ok(await cli(["s3", "mb", "s3://presign"]), "mb");
      ok(
        await cli(["s3", "cp", "--no-progress", `${work.path}/p.bin`, "s3://presign/dir/p q.bin"]),
        "cp",
      );

      await t.step(
        "GET of the presigned URL returns the object's bytes with no credentials",
        async () => {
          const url = ok(await cli(["s3", "presign", "s3://presign/dir/p q.bin"]), "presign").stdout
            .trim();
          assert.match(url, /X-Amz-Signature=[0-9a-f]{64}/);
          const res = await fetch(url);
          const body = new Uint8Array(await res.arrayBuffer());
          assert.equal(res.status, 200, new TextDecoder().decode(body));
          assert.equal(md5Hex(body), md5Hex(bytes));
          const tampered = await fetch(url.replace("dir/p", "dir/P"));
          assert.equal(tampered.status, 403, "a URL for another key must not verify");
          await tampered.body?.cancel();
        },
      );

      await t.step(
        "a URL made with --expires-in 1 answers 403 AccessDenied after 3 s",
        async () => {
          const url = ok(
            await cli(["s3", "presign", "--expires-in", "1", "s3://presign/dir/p q.bin"]),
            "presign",
          ).stdout.trim();
          assert.match(url, /X-Amz-Expires=1(&|$)/);
          await new Promise((r) => setTimeout(r, 3000));
          const res = await fetch(url);
          const text = await res.text();
          assert.equal(res.status, 403, text);
          assert.match(text, /<Code>AccessDenied<\/Code>/);
          assert.match(text, /Request has expired/);
        },
      );
    } finally {
      await server.stop();
    }
  },
});

Deno.test({
  name: "aws CLI: s3 sync of an empty file then a non-empty one on one connection needs no retry",
  ...gate,
  fn: async () => {
    // botocore sends `Expect: 100-continue` even with an empty body. AWS answers it with
    // `100 Continue`; Deno.serve answers the final status at once, which leaves botocore's
    // pooled connection parsing the next 100-continue PUT's response against a stale status
    // line (boto/botocore#3755): a read timeout (60 s by default) and a silent retry, unless
    // the server closes that connection. One transfer thread makes the second PUT reuse the
    // first one's connection; a 5 s read timeout keeps a regression short.
    assertClient(has(AWS), REASON);
    const server = await startServer();
    await using work = await tempDir("hamster-compat-aws-empty-");
    await Deno.writeTextFile(
      `${work.path}/config`,
      "[default]\ns3 =\n  max_concurrent_requests = 1\n",
    );
    await Deno.mkdir(`${work.path}/tree`);
    await Deno.writeFile(`${work.path}/tree/0-empty`, new Uint8Array());
    const data = randomBytes(10_000);
    await Deno.writeFile(`${work.path}/tree/1-data`, data);
    await Deno.writeFile(`${work.path}/tree/2-data`, data);
    const env = {
      ...awsEnv(server.credentials, work.path),
      AWS_CONFIG_FILE: `${work.path}/config`,
    };
    const cli = (args: string[]) =>
      run(AWS, [...args, "--endpoint-url", server.url, "--cli-read-timeout", "5"], { env });
    try {
      ok(await cli(["s3", "mb", "s3://empty-then-data"]), "mb");
      const sync = ok(
        await cli([
          "s3",
          "sync",
          "--no-progress",
          "--debug",
          `${work.path}/tree`,
          "s3://empty-then-data/",
        ]),
        "sync",
      );
      const listing = JSON.parse(
        ok(await cli(["s3api", "list-objects-v2", "--bucket", "empty-then-data"]), "list").stdout,
      );
      assert.deepEqual(
        (listing.Contents as { Key: string; Size: number }[]).map((o) => [o.Key, o.Size]),
        [["0-empty", 0], ["1-data", 10_000], ["2-data", 10_000]],
      );
      const defects = sync.stderr.split("\n").filter((l) =>
        /MissingHeaderBodySeparatorDefect|Retry needed|Read timeout/.test(l)
      );
      assert.deepEqual(
        defects.map((l) => l.slice(0, 300)),
        [],
        "botocore had to time out and retry a PUT",
      );
    } finally {
      await server.stop();
    }
  },
});
