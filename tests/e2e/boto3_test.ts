/**
 * End to end with boto3 at its default settings, driven by _boto3_check.py under
 * Debian's /usr/bin/python3. Skips, saying why, when boto3 is not installed (CI installs it).
 */
import assert from "node:assert/strict";
import { startServer } from "./_server.ts";
import { assertStoreClean } from "./_client.ts";

const PYTHON = "/usr/bin/python3";
const SCRIPT = new URL("./_boto3_check.py", import.meta.url).pathname;
const available = await new Deno.Command(PYTHON, {
  args: ["-c", "import boto3"],
  stdout: "null",
  stderr: "null",
})
  .output().then((o) => o.success, () => false);
if (!available) {
  console.log(`boto3_test: skipped, ${PYTHON} cannot import boto3 (apt-get install python3-boto3)`);
}

const CHECKS = [
  "create_bucket",
  "put_object",
  "get_object",
  "get_object_range",
  "head_object",
  "checksum_sha256",
  "list_objects_v2",
  "copy_object",
  "delete_object",
  "upload_file_download_file",
  "empty_put_then_next_request",
  "control_character_key",
  "delete_objects_delete_bucket",
];

Deno.test({
  name: "boto3 with default settings against hamster serve",
  ignore: !available,
  fn: async (t) => {
    const server = await startServer();
    const work = await Deno.makeTempDir({ prefix: "hamster-e2e-boto3-" });
    let out: { code: number; stdout: string; stderr: string };
    try {
      const res = await new Deno.Command(PYTHON, {
        args: [SCRIPT, server.url, work],
        clearEnv: true,
        env: {
          PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
          HOME: work,
          AWS_ACCESS_KEY_ID: server.credentials.accessKeyId,
          AWS_SECRET_ACCESS_KEY: server.credentials.secretAccessKey,
          AWS_DEFAULT_REGION: "us-east-1",
          AWS_CONFIG_FILE: "/dev/null",
          AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
          AWS_EC2_METADATA_DISABLED: "true",
        },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const dec = new TextDecoder();
      out = { code: res.code, stdout: dec.decode(res.stdout), stderr: dec.decode(res.stderr) };
      const passed = new Set([...out.stdout.matchAll(/^ok (\S+)$/gm)].map((m) => m[1]));
      for (const check of CHECKS) {
        await t.step(`boto3 ${check} works against hamster`, () => {
          assert.ok(
            passed.has(check),
            `boto3 check "${check}" did not pass:\n${out.stdout}\n${out.stderr}`,
          );
        });
      }
      await t.step("the boto3 script exits 0 and leaves a clean store", async () => {
        assert.equal(out.code, 0, `${out.stdout}\n${out.stderr}`);
        await assertStoreClean(server);
      });
    } finally {
      await Deno.remove(work, { recursive: true }).catch(() => {});
      await server.stop();
    }
  },
});
