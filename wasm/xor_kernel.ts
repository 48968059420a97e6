// deno-lint-ignore-file
// AssemblyScript, not TypeScript for Deno: built by wasm/build.ts, never imported by Deno.
//
// The XOR kernel of the Reed-Solomon coder (src/ec/). It knows nothing about Galois fields: it
// runs an XOR program that src/ec/_schedule.ts derives from a bit-matrix, over packets that live
// in this module's linear memory. One source, two builds: with SIMD (v128, 64 bytes per step,
// fan-ins of 2..8 specialised) and without (i64, 32 bytes per step) for runtimes that lack SIMD.
//
// Program layout (little-endian i32 words, one op after another):
//
//   op := count, dstBase, dstMask, (srcBase, srcMask) * count
//
// An address is `base + (shift & mask)`, where `shift = superBlock * superBlockStrideBytes +
// stripOffsetBytes`: mask -1 for a packet of a shard (it moves with the super-block and strip),
// mask 0 for a scratch temp (it is reused by every strip). Each op writes
// dst[0..len) = src1 ^ src2 ^ ... ^ srcCount, where len is the strip length; count 1 is a copy.

/** dst[0..len) = the XOR of 2 sources, 64 bytes per step; len is a multiple of 64. */
function xor2(dst: usize, s0: usize, s1: usize, len: usize): void {
  for (let i: usize = 0; i < len; i += 64) {
    const d = dst + i;
    v128.store(d, v128.xor(v128.load(s0 + i, 0), v128.load(s1 + i, 0)), 0);
    v128.store(d, v128.xor(v128.load(s0 + i, 16), v128.load(s1 + i, 16)), 16);
    v128.store(d, v128.xor(v128.load(s0 + i, 32), v128.load(s1 + i, 32)), 32);
    v128.store(d, v128.xor(v128.load(s0 + i, 48), v128.load(s1 + i, 48)), 48);
  }
}
/** dst[0..len) = the XOR of 3 sources, 64 bytes per step; len is a multiple of 64. */
function xor3(dst: usize, s0: usize, s1: usize, s2: usize, len: usize): void {
  for (let i: usize = 0; i < len; i += 64) {
    const d = dst + i;
    v128.store(
      d,
      v128.xor(v128.xor(v128.load(s0 + i, 0), v128.load(s1 + i, 0)), v128.load(s2 + i, 0)),
      0,
    );
    v128.store(
      d,
      v128.xor(v128.xor(v128.load(s0 + i, 16), v128.load(s1 + i, 16)), v128.load(s2 + i, 16)),
      16,
    );
    v128.store(
      d,
      v128.xor(v128.xor(v128.load(s0 + i, 32), v128.load(s1 + i, 32)), v128.load(s2 + i, 32)),
      32,
    );
    v128.store(
      d,
      v128.xor(v128.xor(v128.load(s0 + i, 48), v128.load(s1 + i, 48)), v128.load(s2 + i, 48)),
      48,
    );
  }
}
/** dst[0..len) = the XOR of 4 sources, 64 bytes per step; len is a multiple of 64. */
function xor4(dst: usize, s0: usize, s1: usize, s2: usize, s3: usize, len: usize): void {
  for (let i: usize = 0; i < len; i += 64) {
    const d = dst + i;
    v128.store(
      d,
      v128.xor(
        v128.xor(v128.xor(v128.load(s0 + i, 0), v128.load(s1 + i, 0)), v128.load(s2 + i, 0)),
        v128.load(s3 + i, 0),
      ),
      0,
    );
    v128.store(
      d,
      v128.xor(
        v128.xor(v128.xor(v128.load(s0 + i, 16), v128.load(s1 + i, 16)), v128.load(s2 + i, 16)),
        v128.load(s3 + i, 16),
      ),
      16,
    );
    v128.store(
      d,
      v128.xor(
        v128.xor(v128.xor(v128.load(s0 + i, 32), v128.load(s1 + i, 32)), v128.load(s2 + i, 32)),
        v128.load(s3 + i, 32),
      ),
      32,
    );
    v128.store(
      d,
      v128.xor(
        v128.xor(v128.xor(v128.load(s0 + i, 48), v128.load(s1 + i, 48)), v128.load(s2 + i, 48)),
        v128.load(s3 + i, 48),
      ),
      48,
    );
  }
}
/** dst[0..len) = the XOR of 5 sources, 64 bytes per step; len is a multiple of 64. */
function xor5(dst: usize, s0: usize, s1: usize, s2: usize, s3: usize, s4: usize, len: usize): void {
  for (let i: usize = 0; i < len; i += 64) {
    const d = dst + i;
    v128.store(
      d,
      v128.xor(
        v128.xor(
          v128.xor(v128.xor(v128.load(s0 + i, 0), v128.load(s1 + i, 0)), v128.load(s2 + i, 0)),
          v128.load(s3 + i, 0),
        ),
        v128.load(s4 + i, 0),
      ),
      0,
    );
    v128.store(
      d,
      v128.xor(
        v128.xor(
          v128.xor(v128.xor(v128.load(s0 + i, 16), v128.load(s1 + i, 16)), v128.load(s2 + i, 16)),
          v128.load(s3 + i, 16),
        ),
        v128.load(s4 + i, 16),
      ),
      16,
    );
    v128.store(
      d,
      v128.xor(
        v128.xor(
          v128.xor(v128.xor(v128.load(s0 + i, 32), v128.load(s1 + i, 32)), v128.load(s2 + i, 32)),
          v128.load(s3 + i, 32),
        ),
        v128.load(s4 + i, 32),
      ),
      32,
    );
    v128.store(
      d,
      v128.xor(
        v128.xor(
          v128.xor(v128.xor(v128.load(s0 + i, 48), v128.load(s1 + i, 48)), v128.load(s2 + i, 48)),
          v128.load(s3 + i, 48),
        ),
        v128.load(s4 + i, 48),
      ),
      48,
    );
  }
}
/** dst[0..len) = the XOR of 6 sources, 64 bytes per step; len is a multiple of 64. */
function xor6(
  dst: usize,
  s0: usize,
  s1: usize,
  s2: usize,
  s3: usize,
  s4: usize,
  s5: usize,
  len: usize,
): void {
  for (let i: usize = 0; i < len; i += 64) {
    const d = dst + i;
    v128.store(
      d,
      v128.xor(
        v128.xor(
          v128.xor(
            v128.xor(v128.xor(v128.load(s0 + i, 0), v128.load(s1 + i, 0)), v128.load(s2 + i, 0)),
            v128.load(s3 + i, 0),
          ),
          v128.load(s4 + i, 0),
        ),
        v128.load(s5 + i, 0),
      ),
      0,
    );
    v128.store(
      d,
      v128.xor(
        v128.xor(
          v128.xor(
            v128.xor(v128.xor(v128.load(s0 + i, 16), v128.load(s1 + i, 16)), v128.load(s2 + i, 16)),
            v128.load(s3 + i, 16),
          ),
          v128.load(s4 + i, 16),
        ),
        v128.load(s5 + i, 16),
      ),
      16,
    );
    v128.store(
      d,
      v128.xor(
        v128.xor(
          v128.xor(
            v128.xor(v128.xor(v128.load(s0 + i, 32), v128.load(s1 + i, 32)), v128.load(s2 + i, 32)),
            v128.load(s3 + i, 32),
          ),
          v128.load(s4 + i, 32),
        ),
        v128.load(s5 + i, 32),
      ),
      32,
    );
    v128.store(
      d,
      v128.xor(
        v128.xor(
          v128.xor(
            v128.xor(v128.xor(v128.load(s0 + i, 48), v128.load(s1 + i, 48)), v128.load(s2 + i, 48)),
            v128.load(s3 + i, 48),
          ),
          v128.load(s4 + i, 48),
        ),
        v128.load(s5 + i, 48),
      ),
      48,
    );
  }
}
/** dst[0..len) = the XOR of 7 sources, 64 bytes per step; len is a multiple of 64. */
function xor7(
  dst: usize,
  s0: usize,
  s1: usize,
  s2: usize,
  s3: usize,
  s4: usize,
  s5: usize,
  s6: usize,
  len: usize,
): void {
  for (let i: usize = 0; i < len; i += 64) {
    const d = dst + i;
    v128.store(
      d,
      v128.xor(
        v128.xor(
          v128.xor(
            v128.xor(
              v128.xor(v128.xor(v128.load(s0 + i, 0), v128.load(s1 + i, 0)), v128.load(s2 + i, 0)),
              v128.load(s3 + i, 0),
            ),
            v128.load(s4 + i, 0),
          ),
          v128.load(s5 + i, 0),
        ),
        v128.load(s6 + i, 0),
      ),
      0,
    );
    v128.store(
      d,
      v128.xor(
        v128.xor(
          v128.xor(
            v128.xor(
              v128.xor(
                v128.xor(v128.load(s0 + i, 16), v128.load(s1 + i, 16)),
                v128.load(s2 + i, 16),
              ),
              v128.load(s3 + i, 16),
            ),
            v128.load(s4 + i, 16),
          ),
          v128.load(s5 + i, 16),
        ),
        v128.load(s6 + i, 16),
      ),
      16,
    );
    v128.store(
      d,
      v128.xor(
        v128.xor(
          v128.xor(
            v128.xor(
              v128.xor(
                v128.xor(v128.load(s0 + i, 32), v128.load(s1 + i, 32)),
                v128.load(s2 + i, 32),
              ),
              v128.load(s3 + i, 32),
            ),
            v128.load(s4 + i, 32),
          ),
          v128.load(s5 + i, 32),
        ),
        v128.load(s6 + i, 32),
      ),
      32,
    );
    v128.store(
      d,
      v128.xor(
        v128.xor(
          v128.xor(
            v128.xor(
              v128.xor(
                v128.xor(v128.load(s0 + i, 48), v128.load(s1 + i, 48)),
                v128.load(s2 + i, 48),
              ),
              v128.load(s3 + i, 48),
            ),
            v128.load(s4 + i, 48),
          ),
          v128.load(s5 + i, 48),
        ),
        v128.load(s6 + i, 48),
      ),
      48,
    );
  }
}
/** dst[0..len) = the XOR of 8 sources, 64 bytes per step; len is a multiple of 64. */
function xor8(
  dst: usize,
  s0: usize,
  s1: usize,
  s2: usize,
  s3: usize,
  s4: usize,
  s5: usize,
  s6: usize,
  s7: usize,
  len: usize,
): void {
  for (let i: usize = 0; i < len; i += 64) {
    const d = dst + i;
    v128.store(
      d,
      v128.xor(
        v128.xor(
          v128.xor(
            v128.xor(
              v128.xor(
                v128.xor(
                  v128.xor(v128.load(s0 + i, 0), v128.load(s1 + i, 0)),
                  v128.load(s2 + i, 0),
                ),
                v128.load(s3 + i, 0),
              ),
              v128.load(s4 + i, 0),
            ),
            v128.load(s5 + i, 0),
          ),
          v128.load(s6 + i, 0),
        ),
        v128.load(s7 + i, 0),
      ),
      0,
    );
    v128.store(
      d,
      v128.xor(
        v128.xor(
          v128.xor(
            v128.xor(
              v128.xor(
                v128.xor(
                  v128.xor(v128.load(s0 + i, 16), v128.load(s1 + i, 16)),
                  v128.load(s2 + i, 16),
                ),
                v128.load(s3 + i, 16),
              ),
              v128.load(s4 + i, 16),
            ),
            v128.load(s5 + i, 16),
          ),
          v128.load(s6 + i, 16),
        ),
        v128.load(s7 + i, 16),
      ),
      16,
    );
    v128.store(
      d,
      v128.xor(
        v128.xor(
          v128.xor(
            v128.xor(
              v128.xor(
                v128.xor(
                  v128.xor(v128.load(s0 + i, 32), v128.load(s1 + i, 32)),
                  v128.load(s2 + i, 32),
                ),
                v128.load(s3 + i, 32),
              ),
              v128.load(s4 + i, 32),
            ),
            v128.load(s5 + i, 32),
          ),
          v128.load(s6 + i, 32),
        ),
        v128.load(s7 + i, 32),
      ),
      32,
    );
    v128.store(
      d,
      v128.xor(
        v128.xor(
          v128.xor(
            v128.xor(
              v128.xor(
                v128.xor(
                  v128.xor(v128.load(s0 + i, 48), v128.load(s1 + i, 48)),
                  v128.load(s2 + i, 48),
                ),
                v128.load(s3 + i, 48),
              ),
              v128.load(s4 + i, 48),
            ),
            v128.load(s5 + i, 48),
          ),
          v128.load(s6 + i, 48),
        ),
        v128.load(s7 + i, 48),
      ),
      48,
    );
  }
}
/**
 * The SIMD main loop, with source addresses held in locals rather than re-read per step: sums
 * the first 8 sources into dst, then dst plus up to 7 more, until all `count` are summed. Does the
 * largest multiple of 64 bytes of `len` and returns it; the caller does the tail.
 */
function xorSpecialized(dst: usize, addrs: usize, count: i32, len: i32): i32 {
  const n: usize = <usize> (len & ~63);
  if (n == 0) return 0;
  let p: usize = addrs;
  let left: i32 = count;
  let first = true;
  while (left > 0) {
    const a: usize = first ? <usize> load<i32>(p) : dst;
    if (first) {
      p += 4;
      left--;
    }
    first = false;
    const take: i32 = min(left, 7);
    switch (take) {
      case 1:
        xor2(dst, a, <usize> load<i32>(p), n);
        break;
      case 2:
        xor3(dst, a, <usize> load<i32>(p), <usize> load<i32>(p, 4), n);
        break;
      case 3:
        xor4(dst, a, <usize> load<i32>(p), <usize> load<i32>(p, 4), <usize> load<i32>(p, 8), n);
        break;
      case 4:
        xor5(
          dst,
          a,
          <usize> load<i32>(p),
          <usize> load<i32>(p, 4),
          <usize> load<i32>(p, 8),
          <usize> load<i32>(p, 12),
          n,
        );
        break;
      case 5:
        xor6(
          dst,
          a,
          <usize> load<i32>(p),
          <usize> load<i32>(p, 4),
          <usize> load<i32>(p, 8),
          <usize> load<i32>(p, 12),
          <usize> load<i32>(p, 16),
          n,
        );
        break;
      case 6:
        xor7(
          dst,
          a,
          <usize> load<i32>(p),
          <usize> load<i32>(p, 4),
          <usize> load<i32>(p, 8),
          <usize> load<i32>(p, 12),
          <usize> load<i32>(p, 16),
          <usize> load<i32>(p, 20),
          n,
        );
        break;
      default:
        xor8(
          dst,
          a,
          <usize> load<i32>(p),
          <usize> load<i32>(p, 4),
          <usize> load<i32>(p, 8),
          <usize> load<i32>(p, 12),
          <usize> load<i32>(p, 16),
          <usize> load<i32>(p, 20),
          <usize> load<i32>(p, 24),
          n,
        );
    }
    p += (<usize> take) << 2;
    left -= take;
  }
  return <i32> n;
}

/** Writes `len` bytes at `dst` as the XOR of `count` sources whose addresses are at `addrs`. */
function xorInto(dst: usize, addrs: usize, count: i32, len: i32): void {
  let i: i32 = 0;
  const end: usize = addrs + ((<usize> count) << 2);
  if (ASC_FEATURE_SIMD) {
    i = xorSpecialized(dst, addrs, count, len);
    for (; i + 64 <= len; i += 64) {
      let s: usize = <usize> load<i32>(addrs) + <usize> i;
      let a0 = v128.load(s, 0);
      let a1 = v128.load(s, 16);
      let a2 = v128.load(s, 32);
      let a3 = v128.load(s, 48);
      for (let p: usize = addrs + 4; p < end; p += 4) {
        s = <usize> load<i32>(p) + <usize> i;
        a0 = v128.xor(a0, v128.load(s, 0));
        a1 = v128.xor(a1, v128.load(s, 16));
        a2 = v128.xor(a2, v128.load(s, 32));
        a3 = v128.xor(a3, v128.load(s, 48));
      }
      const d: usize = dst + <usize> i;
      v128.store(d, a0, 0);
      v128.store(d, a1, 16);
      v128.store(d, a2, 32);
      v128.store(d, a3, 48);
    }
    for (; i + 16 <= len; i += 16) {
      let a0 = v128.load(<usize> load<i32>(addrs) + <usize> i);
      for (let p: usize = addrs + 4; p < end; p += 4) {
        a0 = v128.xor(a0, v128.load(<usize> load<i32>(p) + <usize> i));
      }
      v128.store(dst + <usize> i, a0);
    }
  } else {
    for (; i + 32 <= len; i += 32) {
      let s: usize = <usize> load<i32>(addrs) + <usize> i;
      let a0 = load<i64>(s, 0);
      let a1 = load<i64>(s, 8);
      let a2 = load<i64>(s, 16);
      let a3 = load<i64>(s, 24);
      for (let p: usize = addrs + 4; p < end; p += 4) {
        s = <usize> load<i32>(p) + <usize> i;
        a0 ^= load<i64>(s, 0);
        a1 ^= load<i64>(s, 8);
        a2 ^= load<i64>(s, 16);
        a3 ^= load<i64>(s, 24);
      }
      const d: usize = dst + <usize> i;
      store<i64>(d, a0, 0);
      store<i64>(d, a1, 8);
      store<i64>(d, a2, 16);
      store<i64>(d, a3, 24);
    }
  }
  for (; i + 8 <= len; i += 8) {
    let a: i64 = load<i64>(<usize> load<i32>(addrs) + <usize> i);
    for (let p: usize = addrs + 4; p < end; p += 4) {
      a ^= load<i64>(<usize> load<i32>(p) + <usize> i);
    }
    store<i64>(dst + <usize> i, a);
  }
  for (; i < len; i++) {
    let a: u8 = load<u8>(<usize> load<i32>(addrs) + <usize> i);
    for (let p: usize = addrs + 4; p < end; p += 4) a ^= load<u8>(<usize> load<i32>(p) + <usize> i);
    store<u8>(dst + <usize> i, a);
  }
}

/**
 * Runs `opCount` ops of the program at `program` over super-blocks `[superBlockStart,
 * superBlockEnd)` of
 * `superBlockStrideBytes`, each packet `packetBytes` long, in strips of at most `stripBytes` so
 * that every source packet of a strip stays in the L1 cache while the whole program runs on it.
 * `addrs` is scratch for up to 256 resolved source addresses (1 KiB).
 */
export function run(
  program: usize,
  opCount: i32,
  superBlockStart: i32,
  superBlockEnd: i32,
  superBlockStrideBytes: i32,
  packetBytes: i32,
  stripBytes: i32,
  addrs: usize,
): void {
  for (let sb: i32 = superBlockStart; sb < superBlockEnd; sb++) {
    for (let off: i32 = 0; off < packetBytes; off += stripBytes) {
      const len: i32 = min(stripBytes, packetBytes - off);
      const shift: i32 = sb * superBlockStrideBytes + off;
      let p: usize = program;
      for (let op: i32 = 0; op < opCount; op++) {
        const count: i32 = load<i32>(p);
        const dst: usize = <usize> (load<i32>(p, 4) + (shift & load<i32>(p, 8)));
        p += 12;
        for (let j: i32 = 0; j < count; j++) {
          store<i32>(addrs + ((<usize> j) << 2), load<i32>(p) + (shift & load<i32>(p, 4)));
          p += 8;
        }
        if (count == 1) {
          memory.copy(dst, <usize> load<i32>(addrs), <usize> len);
        } else {
          xorInto(dst, addrs, count, len);
        }
      }
    }
  }
}
