/**
 * The replicated state machine the cluster simulation drives: a small
 * string-to-string map with duplicate detection by client id, and a rolling
 * digest of everything applied, so replicas can be compared entry by entry.
 *
 * Pure: no clock, no I/O.
 *
 * @module
 */
import type { Entry } from "../src/raft/mod.ts";

/** A command: set `key` to `value`. Encoded as UTF-8 JSON. */
export interface PutCommand {
  readonly key: string;
  readonly value: string;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Encodes a command as entry data. */
export function encodeCommand(cmd: PutCommand): Uint8Array {
  return enc.encode(JSON.stringify(cmd));
}

/** A key-value map applied in log order. */
export class KvMachine {
  #kv = new Map<string, string>();
  #ids = new Set<string>();
  #digest = 0;
  lastApplied = 0;

  /**
   * Applies one committed entry. Entries whose id was already applied change
   * nothing but lastApplied (thesis §6.3).
   * @returns whether the entry was a duplicate.
   * @throws {RangeError} when entries arrive out of order.
   */
  apply(e: Entry): { duplicate: boolean } {
    if (e.index !== this.lastApplied + 1) {
      throw new RangeError(`Apply out of order: ${e.index} after ${this.lastApplied}`);
    }
    this.lastApplied = e.index;
    let duplicate = false;
    if (e.kind === "normal" && e.data.length > 0) {
      if (e.id !== undefined && this.#ids.has(e.id)) duplicate = true;
      else {
        const cmd = JSON.parse(dec.decode(e.data)) as PutCommand;
        this.#kv.set(cmd.key, cmd.value);
        if (e.id !== undefined) this.#ids.add(e.id);
      }
    }
    this.#digest = mix(
      this.#digest,
      `${e.index}|${e.kind}|${e.id ?? ""}|${duplicate}|${dec.decode(e.data)}`,
    );
    return { duplicate };
  }

  get(key: string): string | undefined {
    return this.#kv.get(key);
  }

  /** True when an entry with this client id was applied. */
  hasApplied(id: string): boolean {
    return this.#ids.has(id);
  }

  /** Rolling digest of every entry applied so far (hex). */
  get digest(): string {
    return this.#digest.toString(16);
  }

  /** The canonical bytes of the whole state (keys and ids sorted). */
  serialize(): Uint8Array {
    const kv = [...this.#kv].sort((a, b) => cmp(a[0], b[0]));
    const ids = [...this.#ids].sort(cmp);
    return enc.encode(JSON.stringify({ kv, ids, digest: this.#digest }));
  }

  /** Replaces the state with a snapshot taken at `index`. */
  restore(data: Uint8Array, index: number): void {
    this.lastApplied = index;
    if (data.length === 0) {
      this.#kv = new Map();
      this.#ids = new Set();
      this.#digest = 0;
      return;
    }
    const s = JSON.parse(dec.decode(data)) as {
      kv: [string, string][];
      ids: string[];
      digest: number;
    };
    this.#kv = new Map(s.kv);
    this.#ids = new Set(s.ids);
    this.#digest = s.digest;
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A 32-bit FNV-1a step over `s`, chained from `h`. */
function mix(h: number, s: string): number {
  let x = (h ^ 0x811c9dc5) >>> 0;
  for (let i = 0; i < s.length; i++) {
    x ^= s.charCodeAt(i);
    x = Math.imul(x, 0x01000193) >>> 0;
  }
  return x;
}
