/**
 * Helpers shared by the data path's tests.
 *
 * @module
 */
import assert from "node:assert/strict";

/** Flips every bit of the byte at `offset` of a file in place (simulated bit rot). */
export async function corruptByte(path: string, offset: number): Promise<void> {
  const file = await Deno.open(path, { read: true, write: true });
  try {
    const b = new Uint8Array(1);
    await file.seek(offset, Deno.SeekMode.Start);
    assert.equal(await file.read(b), 1);
    b[0] ^= 0xff;
    await file.seek(offset, Deno.SeekMode.Start);
    await file.write(b);
  } finally {
    file.close();
  }
}
