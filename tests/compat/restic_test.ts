/**
 * Compatibility with restic (Debian's package) on an S3 repository: `init`, `backup` of
 * a generated tree of a few hundred nested files, `check --read-data`, `restore`, and a
 * byte-for-byte comparison of the restored tree with the original.
 */
import assert from "node:assert/strict";
import { startServer } from "../e2e/_server.ts";
import {
  assertClient,
  assertSameTree,
  clientGate,
  filesUnder,
  has,
  ok,
  randomBytes,
  run,
  tempDir,
  writeTree,
} from "./_support.ts";

const RESTIC = "/usr/bin/restic";
const REASON = `${RESTIC} is not installed (apt-get install restic)`;
const gate = clientGate("restic_test", has(RESTIC), REASON);

Deno.test({
  name: "restic: init, backup, check --read-data, restore (byte for byte) and forget --prune",
  ...gate,
  fn: async (t) => {
    assertClient(has(RESTIC), REASON);
    const server = await startServer();
    await using work = await tempDir("hamster-compat-restic-");
    const env = {
      HOME: work.path,
      RESTIC_REPOSITORY: `s3:${server.url}/restic-repo`,
      RESTIC_PASSWORD: "correct horse battery staple",
      RESTIC_CACHE_DIR: `${work.path}/cache`,
      AWS_ACCESS_KEY_ID: server.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: server.credentials.secretAccessKey,
      AWS_DEFAULT_REGION: "us-east-1",
    };
    const restic = (args: string[]) =>
      run(RESTIC, args, { env, cwd: work.path, timeoutMs: 240_000 });
    const tree = `${work.path}/tree`;
    try {
      const names = await writeTree(tree, 300);
      // One bigger file, so a pack holds more than small blobs.
      await Deno.writeFile(`${tree}/d0/big.bin`, randomBytes(6 * 1024 * 1024 + 1));

      await t.step("init creates the repository (and its bucket)", async () => {
        const init = ok(await restic(["init"]), "init");
        assert.match(init.stdout, /created restic repository [0-9a-f]+ at s3:/);
      });

      let snapshotId = "";
      await t.step(
        "backup stores every file; snapshots lists one snapshot of the tree",
        async () => {
          const backup = ok(await restic(["backup", "--json", "tree"]), "backup");
          const summary = backup.stdout.split("\n").filter((l) =>
            l.includes('"message_type":"summary"')
          );
          assert.equal(summary.length, 1, backup.stdout.slice(-2000));
          const s = JSON.parse(summary[0]);
          assert.equal(s.files_new, names.length + 1);
          assert.equal(s.files_changed, 0);
          snapshotId = s.snapshot_id;
          const snaps = JSON.parse(ok(await restic(["snapshots", "--json"]), "snapshots").stdout);
          assert.equal(snaps.length, 1);
          assert.ok(snaps[0].id.startsWith(snapshotId), `${snaps[0].id} is not ${snapshotId}`);
          assert.deepEqual(snaps[0].paths, [tree]);
        },
      );

      await t.step("a second backup after a change stores only the change", async () => {
        await Deno.writeFile(`${tree}/${names[10]}`, randomBytes(12_345));
        const backup = ok(await restic(["backup", "--json", "tree"]), "backup 2");
        const s = JSON.parse(
          backup.stdout.split("\n").find((l) => l.includes('"message_type":"summary"'))!,
        );
        assert.equal(s.files_new, 0);
        assert.equal(s.files_changed, 1);
        assert.equal(s.files_unmodified, names.length);
        snapshotId = s.snapshot_id;
      });

      await t.step("check --read-data reads every pack back and finds no error", async () => {
        const check = ok(await restic(["check", "--read-data"]), "check --read-data");
        assert.match(check.stdout, /no errors were found/);
      });

      await t.step("restore gives back the tree byte for byte", async () => {
        ok(await restic(["restore", snapshotId, "--target", `${work.path}/restored`]), "restore");
        // restic restores a relative backup path under the target as given.
        const restored = `${work.path}/restored/tree`;
        assert.equal((await filesUnder(restored)).length, names.length + 1);
        await assertSameTree(tree, restored);
      });

      await t.step(
        "forget --prune of the first snapshot deletes packs; check --read-data still passes",
        async () => {
          const forget = ok(
            await restic(["forget", "--keep-last", "1", "--prune"]),
            "forget --prune",
          );
          assert.match(forget.stdout, /remove 1 snapshots/);
          const snaps = JSON.parse(ok(await restic(["snapshots", "--json"]), "snapshots").stdout);
          assert.equal(snaps.length, 1);
          assert.ok(snaps[0].id.startsWith(snapshotId));
          assert.match(
            ok(await restic(["check", "--read-data"]), "check after prune").stdout,
            /no errors were found/,
          );
        },
      );
    } finally {
      await server.stop();
    }
  },
});
