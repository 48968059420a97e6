/**
 * End to end with the aws CLI (Debian's v2 at /usr/bin/aws): `s3 mb/cp/ls/rm/sync`,
 * `s3api` for head, range and conditional requests, and a 100 MiB file through multipart.
 * Skips, saying why, when the CLI is not installed (CI installs it).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { type ServerProcess, startServer } from "./_server.ts";
import { assertStoreClean, md5Hex, randomBytes } from "./_client.ts";

const AWS = "/usr/bin/aws";
const available = await Deno.stat(AWS).then(() => true, () => false);
if (!available) {
  console.log(`aws_cli_test: skipped, ${AWS} is not installed (apt-get install awscli)`);
}

const MIB = 1024 * 1024;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `aws <args> --endpoint-url <server>` with only the test credentials in its env. */
async function aws(
  server: ServerProcess,
  home: string,
  args: string[],
  cwd?: string,
): Promise<Run> {
  const out = await new Deno.Command(AWS, {
    args: [...args, "--endpoint-url", server.url],
    cwd,
    clearEnv: true,
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: home,
      AWS_ACCESS_KEY_ID: server.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: server.credentials.secretAccessKey,
      AWS_DEFAULT_REGION: "us-east-1",
      AWS_CONFIG_FILE: "/dev/null",
      AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
      AWS_EC2_METADATA_DISABLED: "true",
      AWS_PAGER: "",
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

function ok(run: Run, what: string): Run {
  assert.equal(run.code, 0, `${what} exited ${run.code}:\n${run.stdout}\n${run.stderr}`);
  return run;
}

async function md5OfFile(path: string): Promise<string> {
  const h = createHash("md5");
  using file = await Deno.open(path);
  for await (const chunk of file.readable) h.update(chunk);
  return h.digest("hex");
}

/** Writes `sizeBytes` random bytes to `path` in 1 MiB pieces. */
async function writeRandomFile(path: string, sizeBytes: number): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  for (let done = 0; done < sizeBytes; done += MIB) {
    const piece = randomBytes(Math.min(MIB, sizeBytes - done));
    let off = 0;
    while (off < piece.length) off += await file.write(piece.subarray(off));
  }
}

async function filesUnder(root: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(`${root}/${rel}`)) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory) out.push(...await filesUnder(root, p));
    else out.push(p);
  }
  return out.sort();
}

/** The keys named by `upload: ... to s3://...` lines. */
function uploadedKeys(stdout: string, bucket: string): string[] {
  return [...stdout.matchAll(new RegExp(`upload: .* to s3://${bucket}/(\\S+)`, "g"))].map((m) =>
    m[1]
  ).sort();
}

Deno.test({
  name: "aws CLI v2 s3 and s3api against hamster serve",
  ignore: !available,
  fn: async (t) => {
    const server = await startServer();
    const work = await Deno.makeTempDir({ prefix: "hamster-e2e-aws-" });
    const run = (args: string[], cwd?: string) => aws(server, work, args, cwd);
    const bucket = "cli-bucket";
    try {
      await t.step("aws s3 mb creates a bucket that aws s3 ls lists", async () => {
        const mb = ok(await run(["s3", "mb", `s3://${bucket}`]), "s3 mb");
        assert.match(mb.stdout, new RegExp(`make_bucket: ${bucket}`));
        const ls = ok(await run(["s3", "ls"]), "s3 ls");
        assert.match(ls.stdout, new RegExp(`\\s${bucket}\\n`));
        const again = await run(["s3", "mb", `s3://${bucket}`]);
        assert.notEqual(again.code, 0);
        assert.match(again.stderr, /BucketAlreadyOwnedByYou/);
      });

      const small = randomBytes(MIB + 123);
      await t.step(
        "aws s3 cp uploads a file and downloads the same bytes; aws s3 ls shows its size",
        async () => {
          await Deno.writeFile(`${work}/small.bin`, small);
          ok(
            await run([
              "s3",
              "cp",
              "--no-progress",
              `${work}/small.bin`,
              `s3://${bucket}/dir/small.bin`,
            ]),
            "s3 cp up",
          );
          ok(
            await run([
              "s3",
              "cp",
              "--no-progress",
              `s3://${bucket}/dir/small.bin`,
              `${work}/small.down`,
            ]),
            "s3 cp down",
          );
          assert.deepEqual(await Deno.readFile(`${work}/small.down`), small);
          const ls = ok(await run(["s3", "ls", `s3://${bucket}/dir/`]), "s3 ls prefix");
          assert.match(ls.stdout, new RegExp(`\\s${small.length} small\\.bin\\n`));
          const top = ok(await run(["s3", "ls", `s3://${bucket}/`]), "s3 ls bucket");
          assert.match(top.stdout, /PRE dir\//);
        },
      );

      await t.step("aws s3api head-object returns the size, ETag and metadata", async () => {
        ok(
          await run([
            "s3api",
            "put-object",
            "--bucket",
            bucket,
            "--key",
            "api/meta",
            "--body",
            `${work}/small.bin`,
            "--content-type",
            "application/x-test",
            "--metadata",
            "owner=hamster",
          ]),
          "s3api put-object",
        );
        const head = JSON.parse(
          ok(
            await run(["s3api", "head-object", "--bucket", bucket, "--key", "api/meta"]),
            "head-object",
          ).stdout,
        );
        assert.equal(head.ContentLength, small.length);
        assert.equal(head.ETag, `"${md5Hex(small)}"`);
        assert.equal(head.ContentType, "application/x-test");
        assert.deepEqual(head.Metadata, { owner: "hamster" });
        const missing = await run([
          "s3api",
          "head-object",
          "--bucket",
          bucket,
          "--key",
          "api/missing",
        ]);
        assert.notEqual(missing.code, 0);
        assert.match(missing.stderr, /404|Not Found/);
      });

      await t.step("aws s3api get-object --range bytes=0-9 writes the first 10 bytes", async () => {
        const out = JSON.parse(
          ok(
            await run([
              "s3api",
              "get-object",
              "--bucket",
              bucket,
              "--key",
              "api/meta",
              "--range",
              "bytes=0-9",
              `${work}/range.out`,
            ]),
            "get-object --range",
          ).stdout,
        );
        assert.equal(out.ContentRange, `bytes 0-9/${small.length}`);
        assert.equal(out.ContentLength, 10);
        assert.deepEqual(await Deno.readFile(`${work}/range.out`), small.slice(0, 10));
        const tail = JSON.parse(
          ok(
            await run([
              "s3api",
              "get-object",
              "--bucket",
              bucket,
              "--key",
              "api/meta",
              "--range",
              "bytes=-7",
              `${work}/tail.out`,
            ]),
            "get-object --range suffix",
          ).stdout,
        );
        assert.equal(tail.ContentLength, 7);
        assert.deepEqual(await Deno.readFile(`${work}/tail.out`), small.slice(small.length - 7));
        const bad = await run([
          "s3api",
          "get-object",
          "--bucket",
          bucket,
          "--key",
          "api/meta",
          "--range",
          `bytes=${small.length}-`,
          `${work}/bad.out`,
        ]);
        assert.notEqual(bad.code, 0);
        assert.match(bad.stderr, /InvalidRange/);
      });

      await t.step(
        "aws s3api get-object --if-none-match with the current ETag fails with 304 Not Modified",
        async () => {
          const etag = `"${md5Hex(small)}"`;
          const res = await run([
            "s3api",
            "get-object",
            "--bucket",
            bucket,
            "--key",
            "api/meta",
            "--if-none-match",
            etag,
            `${work}/cond.out`,
          ]);
          assert.notEqual(res.code, 0);
          assert.match(res.stderr, /304|Not Modified/);
          const other = await run([
            "s3api",
            "get-object",
            "--bucket",
            bucket,
            "--key",
            "api/meta",
            "--if-none-match",
            '"0123456789abcdef0123456789abcdef"',
            `${work}/cond.out`,
          ]);
          ok(other, "get-object --if-none-match other etag");
          assert.deepEqual(await Deno.readFile(`${work}/cond.out`), small);
          const failing = await run([
            "s3api",
            "get-object",
            "--bucket",
            bucket,
            "--key",
            "api/meta",
            "--if-match",
            '"0123456789abcdef0123456789abcdef"',
            `${work}/cond2.out`,
          ]);
          assert.notEqual(failing.code, 0);
          assert.match(failing.stderr, /PreconditionFailed|412/);
        },
      );

      await t.step(
        "aws s3api put-object --if-none-match * on an existing key fails with 412 (when the CLI has the flag)",
        async () => {
          const res = await run([
            "s3api",
            "put-object",
            "--bucket",
            bucket,
            "--key",
            "api/meta",
            "--body",
            `${work}/range.out`,
            "--if-none-match",
            "*",
          ]);
          if (/Unknown options/.test(res.stderr)) {
            console.log("  skipped: this aws CLI has no put-object --if-none-match");
            return;
          }
          assert.notEqual(res.code, 0);
          assert.match(res.stderr, /PreconditionFailed|412/);
        },
      );

      await t.step(
        "aws s3 sync uploads a 50-file tree, then nothing, then only the modified file",
        async () => {
          const tree = `${work}/tree`;
          const names: string[] = [];
          for (let i = 0; i < 50; i++) {
            const dir = `d${i % 3}/sub${i % 5}${i % 2 ? "/deeper" : ""}`;
            await Deno.mkdir(`${tree}/${dir}`, { recursive: true });
            const name = `${dir}/file-${i}.txt`;
            await Deno.writeFile(`${tree}/${name}`, randomBytes(100 + i * 97));
            names.push(name);
          }
          names.sort();
          const first = ok(
            await run(["s3", "sync", "--no-progress", tree, `s3://${bucket}/tree`]),
            "first sync",
          );
          assert.deepEqual(uploadedKeys(first.stdout, bucket), names.map((n) => `tree/${n}`));
          const second = ok(
            await run(["s3", "sync", "--no-progress", tree, `s3://${bucket}/tree`]),
            "second sync",
          );
          assert.deepEqual(
            uploadedKeys(second.stdout, bucket),
            [],
            `second sync uploaded:\n${second.stdout}`,
          );
          const changed = names[17];
          await Deno.writeFile(`${tree}/${changed}`, randomBytes(5000));
          const third = ok(
            await run(["s3", "sync", "--no-progress", tree, `s3://${bucket}/tree`]),
            "third sync",
          );
          assert.deepEqual(uploadedKeys(third.stdout, bucket), [`tree/${changed}`]);
          const down = `${work}/tree-down`;
          ok(
            await run([
              "s3",
              "sync",
              "--no-progress",
              "--only-show-errors",
              `s3://${bucket}/tree`,
              down,
            ]),
            "sync down",
          );
          assert.deepEqual(await filesUnder(down), names);
          for (const n of names) {
            assert.deepEqual(
              await Deno.readFile(`${down}/${n}`),
              await Deno.readFile(`${tree}/${n}`),
              n,
            );
          }
        },
      );

      await t.step("aws s3 rm removes one object, and --recursive a whole prefix", async () => {
        const rm = ok(await run(["s3", "rm", `s3://${bucket}/dir/small.bin`]), "s3 rm");
        assert.match(rm.stdout, /delete: s3:\/\/cli-bucket\/dir\/small\.bin/);
        const gone = await run([
          "s3api",
          "head-object",
          "--bucket",
          bucket,
          "--key",
          "dir/small.bin",
        ]);
        assert.notEqual(gone.code, 0);
        ok(
          await run(["s3", "rm", "--recursive", "--only-show-errors", `s3://${bucket}/tree`]),
          "s3 rm --recursive",
        );
        const ls = await run(["s3", "ls", "--recursive", `s3://${bucket}/tree/`]);
        assert.equal(ls.stdout.trim(), "");
        await assertStoreClean(server);
      });

      await t.step(
        "aws s3 cp of a 100 MiB file goes through multipart and downloads with the same MD5",
        async () => {
          const big = `${work}/big.bin`;
          await writeRandomFile(big, 100 * MIB);
          const want = await md5OfFile(big);
          ok(
            await run([
              "s3",
              "cp",
              "--no-progress",
              "--only-show-errors",
              big,
              `s3://${bucket}/big.bin`,
            ]),
            "cp up 100 MiB",
          );
          const head = JSON.parse(
            ok(
              await run(["s3api", "head-object", "--bucket", bucket, "--key", "big.bin"]),
              "head big",
            ).stdout,
          );
          assert.equal(head.ContentLength, 100 * MIB);
          // The CLI's default part size is 8 MiB: 13 parts.
          assert.match(head.ETag, /^"[0-9a-f]{32}-13"$/);
          await Deno.remove(big);
          ok(
            await run([
              "s3",
              "cp",
              "--no-progress",
              "--only-show-errors",
              `s3://${bucket}/big.bin`,
              `${work}/big.down`,
            ]),
            "cp down 100 MiB",
          );
          assert.equal(await md5OfFile(`${work}/big.down`), want);
          await Deno.remove(`${work}/big.down`);
          ok(await run(["s3", "rm", "--only-show-errors", `s3://${bucket}/big.bin`]), "rm big");
          await assertStoreClean(server);
        },
      );

      await t.step("aws s3 rb removes the emptied bucket", async () => {
        ok(
          await run(["s3", "rm", "--recursive", "--only-show-errors", `s3://${bucket}`]),
          "empty bucket",
        );
        ok(await run(["s3", "rb", `s3://${bucket}`]), "s3 rb");
        const ls = ok(await run(["s3", "ls"]), "s3 ls");
        assert.doesNotMatch(ls.stdout, new RegExp(bucket));
      });
    } finally {
      await Deno.remove(work, { recursive: true }).catch(() => {});
      await server.stop();
    }
  },
});
