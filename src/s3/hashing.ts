/**
 * Body hashing for the write path: the MD5 that becomes the ETag and the
 * `x-amz-checksum-*` a request asks for, computed over the same blocks that
 * go to disk.
 *
 * A {@link HashPool} decides where the hashing runs. `inlineHashPool` hashes
 * on the calling thread (tests, `sim/`); `main.ts` wires a worker-backed pool
 * (`src/io/deno/hash_worker.ts`) so that MD5 does not share the event loop
 * with receiving the body.
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { ChecksumAlgorithm } from "../meta/records.ts";
import { createChecksummer, toBase64 } from "./checksums.ts";

/** What hashing a body produced. */
export interface BodyDigest {
  /** Hex MD5 of the body. */
  md5Hex: string;
  /** Base64 of the requested checksum, when one was asked for. */
  checksum?: string;
}

/** One body being hashed. */
export interface BodyHasher {
  /**
   * Adds bytes. The bytes may be reused by the caller as soon as the call
   * returns; the promise resolves when the hasher can take more (backpressure).
   */
  update(bytes: Uint8Array): Promise<void>;
  /** The digests of everything added. */
  digest(): Promise<BodyDigest>;
  /** Drops the session without a digest (the body was rejected). */
  discard(): void;
}

/** Where body hashing runs. */
export interface HashPool {
  open(algorithm?: ChecksumAlgorithm): Promise<BodyHasher>;
  close(): void;
}

/** Hashes on the calling thread. */
export const inlineHashPool: HashPool = {
  async open(algorithm) {
    const md5 = createHash("md5");
    const checksummer = algorithm ? await createChecksummer(algorithm) : undefined;
    return {
      update(bytes) {
        md5.update(bytes);
        checksummer?.update(bytes);
        return Promise.resolve();
      },
      async digest() {
        const md5Hex = md5.digest("hex");
        return checksummer
          ? { md5Hex, checksum: toBase64(await checksummer.digest()) }
          : { md5Hex };
      },
      discard() {},
    };
  },
  close() {},
};
