/**
 * Real adapters for the ports in `src/io/mod.ts`: Deno files, Deno KV, the
 * system clock and random source. Only this folder and `main.ts` touch `Deno.*`.
 *
 * @module
 */
export { systemClock, systemRng } from "./clock.ts";
export { DenoDisk } from "./disk.ts";
export { openDenoKv } from "./kv.ts";
