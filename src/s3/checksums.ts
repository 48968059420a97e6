/**
 * Incremental checksums for `Content-MD5` and `x-amz-checksum-*`: CRC32
 * (node:zlib, native), CRC32C (hash-wasm), CRC64NVME (@aws-sdk/crc64-nvme),
 * SHA-1 and SHA-256 (node:crypto).
 *
 * Pure: no clock, no I/O.
 *
 * @see https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html
 * @module
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { createCRC32 } from "hash-wasm";
import { Crc64Nvme } from "@aws-sdk/crc64-nvme";
import type { ChecksumAlgorithm } from "../meta/records.ts";
import { S3Error } from "./errors.ts";

/** An incremental checksum over a byte stream. */
export interface Checksummer {
  readonly algorithm: ChecksumAlgorithm;
  update(bytes: Uint8Array): void;
  /** The checksum's bytes, big-endian. */
  digest(): Promise<Uint8Array>;
}

/** Base64 of `bytes`. */
export function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

/** The checksum algorithms by their header suffix (`x-amz-checksum-crc32` → `CRC32`). */
export const CHECKSUM_HEADERS: Record<string, ChecksumAlgorithm> = {
  "x-amz-checksum-crc32": "CRC32",
  "x-amz-checksum-crc32c": "CRC32C",
  "x-amz-checksum-crc64nvme": "CRC64NVME",
  "x-amz-checksum-sha1": "SHA1",
  "x-amz-checksum-sha256": "SHA256",
};

/** The header that carries `algorithm`'s value. */
export function checksumHeader(algorithm: ChecksumAlgorithm): string {
  return `x-amz-checksum-${algorithm.toLowerCase()}`;
}

/** The digest size of each algorithm, in bytes. */
const DIGEST_SIZE_BYTES: Record<ChecksumAlgorithm, number> = {
  CRC32: 4,
  CRC32C: 4,
  CRC64NVME: 8,
  SHA1: 20,
  SHA256: 32,
};

/**
 * Parses an algorithm name as sent in `x-amz-checksum-algorithm` or `x-amz-sdk-checksum-algorithm`.
 *
 * @throws {S3Error} `InvalidRequest` for an unknown algorithm
 */
export function parseChecksumAlgorithm(name: string): ChecksumAlgorithm {
  const upper = name.toUpperCase();
  if (upper in DIGEST_SIZE_BYTES) return upper as ChecksumAlgorithm;
  throw new S3Error("InvalidRequest", `Checksum algorithm "${name}" is not supported`);
}

/**
 * Checks that `value` is base64 of the right length for `algorithm`.
 *
 * @throws {S3Error} `InvalidRequest` when it is not
 */
export function validateChecksumValue(algorithm: ChecksumAlgorithm, value: string): void {
  let raw: string;
  try {
    raw = atob(value);
  } catch {
    raw = "";
  }
  if (raw.length !== DIGEST_SIZE_BYTES[algorithm]) {
    throw new S3Error(
      "InvalidRequest",
      `Value for ${checksumHeader(algorithm)} header is invalid`,
    );
  }
}

/** Creates an incremental checksummer for `algorithm`. */
export async function createChecksummer(algorithm: ChecksumAlgorithm): Promise<Checksummer> {
  switch (algorithm) {
    case "CRC32": {
      let value = 0;
      return {
        algorithm,
        update: (bytes) => {
          value = crc32(bytes, value);
        },
        digest: () => Promise.resolve(u32be(value)),
      };
    }
    case "CRC32C": {
      const h = await createCRC32(0x82f63b78);
      h.init();
      return {
        algorithm,
        update: (bytes) => {
          h.update(bytes);
        },
        digest: () => Promise.resolve(u32be(parseInt(h.digest("hex"), 16))),
      };
    }
    case "CRC64NVME": {
      const h = new Crc64Nvme();
      return {
        algorithm,
        update: (bytes) => h.update(bytes),
        digest: () => h.digest(),
      };
    }
    case "SHA1":
    case "SHA256": {
      const h = createHash(algorithm === "SHA1" ? "sha1" : "sha256");
      return {
        algorithm,
        update: (bytes) => {
          h.update(bytes);
        },
        digest: () => Promise.resolve(new Uint8Array(h.digest())),
      };
    }
  }
}

function u32be(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n >>> 0);
  return out;
}

/**
 * The composite checksum of a multipart object: the checksum of the
 * concatenated binary part checksums, then `-N`.
 */
export async function compositeChecksum(
  algorithm: ChecksumAlgorithm,
  partValues: string[],
): Promise<string> {
  const c = await createChecksummer(algorithm);
  for (const v of partValues) {
    c.update(Uint8Array.from(atob(v), (ch) => ch.charCodeAt(0)));
  }
  return `${toBase64(await c.digest())}-${partValues.length}`;
}
