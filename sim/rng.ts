/**
 * The simulation's pseudo-random generator: xoshiro128** seeded through
 * splitmix32, so a whole run replays exactly from one integer seed. It
 * implements the `Rng` port, so the code under test draws from it too.
 *
 * Pure: no clock, no I/O.
 *
 * @module
 */
import type { Rng } from "../src/io/mod.ts";

/**
 * A seeded xoshiro128** generator.
 * @see Blackman & Vigna, "Scrambled Linear Pseudorandom Number Generators" (2018)
 */
export class SimRng implements Rng {
  #s0: number;
  #s1: number;
  #s2: number;
  #s3: number;

  /** `seed` is any integer; only its low 53 bits matter. */
  constructor(readonly seed: number) {
    let x = (seed >>> 0) ^ Math.floor(seed / 2 ** 32);
    const next = () => {
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.#s0 = next();
    this.#s1 = next();
    this.#s2 = next();
    this.#s3 = next();
    if ((this.#s0 | this.#s1 | this.#s2 | this.#s3) === 0) this.#s0 = 1;
  }

  /** A uniformly random unsigned 32-bit integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.#s1, 5), 7), 9) >>> 0;
    const t = this.#s1 << 9;
    this.#s2 ^= this.#s0;
    this.#s3 ^= this.#s1;
    this.#s1 ^= this.#s2;
    this.#s0 ^= this.#s3;
    this.#s2 ^= t;
    this.#s3 = rotl(this.#s3, 11);
    return result;
  }

  /** Fills `bytes` with random bytes and returns it. */
  fill(bytes: Uint8Array): Uint8Array {
    for (let i = 0; i < bytes.length; i += 4) {
      let v = this.nextU32();
      for (let j = i; j < Math.min(i + 4, bytes.length); j++) {
        bytes[j] = v & 0xff;
        v >>>= 8;
      }
    }
    return bytes;
  }

  /** A float in [0, 1). */
  float(): number {
    return this.nextU32() / 2 ** 32;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /** One element of a non-empty array. */
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }

  /**
   * A shuffled copy of `xs` (Fisher-Yates). Never shuffle with
   * `sort(() => rng.float() - 0.5)`: V8's sort calls an inconsistent
   * comparator a varying number of times, which broke replay (seed 74).
   */
  shuffle<T>(xs: readonly T[]): T[] {
    const out = [...xs];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  }

  /** An independent generator seeded from this one. */
  fork(): SimRng {
    return new SimRng(this.nextU32() * 2 ** 21 + (this.nextU32() >>> 11));
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
