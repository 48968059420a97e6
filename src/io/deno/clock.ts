/**
 * The real Clock and Rng: `Date.now`, timers and `crypto.getRandomValues`.
 * Thin adapters, no decisions.
 *
 * @module
 */
import type { Clock, Rng } from "../mod.ts";

/** The system clock. */
export const systemClock: Clock = {
  nowMs: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/** The operating system's cryptographic random source. */
export const systemRng: Rng = {
  nextU32: () => crypto.getRandomValues(new Uint32Array(1))[0],
  fill: (bytes) => {
    for (let i = 0; i < bytes.length; i += 65536) {
      crypto.getRandomValues(bytes.subarray(i, Math.min(bytes.length, i + 65536)));
    }
    return bytes;
  },
};
