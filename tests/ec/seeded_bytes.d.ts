/** Fills `bytes` with the xorshift32 stream started at `seed` (little-endian words). */
export function fillSeeded(bytes: Uint8Array, seed: number): Uint8Array;
/** k data shards of `shardSizeBytes`, cut in order from one seeded stream. */
export function seededDataShards(k: number, shardSizeBytes: number, seed: number): Uint8Array[];
