import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { KERNEL_BUILD, SCALAR_WASM_BASE64, SIMD_WASM_BASE64 } from "./_xor_kernel_wasm.ts";
import { XorKernel } from "./_xor_kernel.ts";

const REBUILD =
  "rebuild with `deno task build:wasm` and commit wasm/ and src/ec/_xor_kernel_wasm.ts";

function sha256Hex(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

Deno.test("KERNEL_BUILD records the committed kernel source and build script", async () => {
  const source = await Deno.readTextFile(new URL("../../wasm/xor_kernel.ts", import.meta.url));
  const script = await Deno.readTextFile(new URL("../../wasm/build.ts", import.meta.url));
  assert.equal(
    sha256Hex(source),
    KERNEL_BUILD.sourceSha256,
    `wasm/xor_kernel.ts changed: ${REBUILD}`,
  );
  assert.equal(
    sha256Hex(script),
    KERNEL_BUILD.buildScriptSha256,
    `wasm/build.ts changed: ${REBUILD}`,
  );
  assert.ok(
    script.includes(`"${KERNEL_BUILD.compiler}`),
    "the compiler pin differs from wasm/build.ts",
  );
});

Deno.test("the embedded kernels are the committed .wasm files and match KERNEL_BUILD", async () => {
  const simd = fromBase64(SIMD_WASM_BASE64);
  const scalar = fromBase64(SCALAR_WASM_BASE64);
  assert.equal(sha256Hex(simd), KERNEL_BUILD.simdSha256, REBUILD);
  assert.equal(sha256Hex(scalar), KERNEL_BUILD.scalarSha256, REBUILD);
  const simdFile = await Deno.readFile(new URL("../../wasm/xor_kernel_simd.wasm", import.meta.url));
  const scalarFile = await Deno.readFile(
    new URL("../../wasm/xor_kernel_scalar.wasm", import.meta.url),
  );
  assert.equal(sha256Hex(simdFile), KERNEL_BUILD.simdSha256, REBUILD);
  assert.equal(sha256Hex(scalarFile), KERNEL_BUILD.scalarSha256, REBUILD);
});

Deno.test("XorKernel.create() uses SIMD where the runtime has it, and scalar on request", () => {
  assert.equal(XorKernel.create().simd, WebAssembly.validate(fromBase64(SIMD_WASM_BASE64)));
  assert.equal(XorKernel.create(true).simd, false);
});
