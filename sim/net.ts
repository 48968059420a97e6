/**
 * The simulated network: latency with jitter (hence reordering), random
 * drops and duplicates, and one-way or two-way partitions, all applied when
 * a message is due for delivery.
 *
 * Pure: time and chance come from the World.
 *
 * @module
 */
import type { Net, NetHandler } from "../src/io/net.ts";
import type { World } from "./world.ts";

/** Fault rates and latencies of the network. */
export interface NetFaults {
  /** Base one-way latency, milliseconds. */
  latencyMs: number;
  /** Extra uniformly random latency, milliseconds; messages overtake each other within it. */
  jitterMs: number;
  /** Probability a message is lost. */
  dropRate: number;
  /** Probability a message is delivered twice. */
  duplicateRate: number;
  /** Probability a message's frame has one byte flipped on the way (needs a codec). */
  corruptRate: number;
}

/** How messages travel as bytes, for corruption faults. */
export interface FrameCodec<M> {
  encode(m: M): Uint8Array;
  /** @throws on a damaged frame (the receiver drops it). */
  decode(frame: Uint8Array): M;
}

/** Counters for figures. */
export interface NetStats {
  sent: number;
  delivered: number;
  dropped: number;
  duplicated: number;
  /** Corrupted frames the receiver's codec rejected. */
  corrupted: number;
}

/** A network between named endpoints inside one World. */
export class SimNet<M> {
  readonly faults: NetFaults = {
    latencyMs: 1,
    jitterMs: 2,
    dropRate: 0,
    duplicateRate: 0,
    corruptRate: 0,
  };
  readonly stats: NetStats = { sent: 0, delivered: 0, dropped: 0, duplicated: 0, corrupted: 0 };
  #handlers = new Map<string, NetHandler<M>>();
  #blocked = new Set<string>();

  constructor(
    readonly world: World,
    readonly describe: (m: M) => string = () => "msg",
    readonly codec: FrameCodec<M> | null = null,
  ) {}

  /** Attaches (or with null, detaches) the receiver of messages for `id`. */
  attach(id: string, handler: NetHandler<M> | null): void {
    if (handler) this.#handlers.set(id, handler);
    else this.#handlers.delete(id);
  }

  /** The `Net` port as seen by node `from`. */
  endpoint(from: string): Net<M> {
    return { send: (to, m) => this.send(from, to, m) };
  }

  /** Blocks delivery from `from` to `to` (one way). */
  block(from: string, to: string): void {
    this.#blocked.add(`${from}\u0000${to}`);
  }

  /** Blocks both directions between `a` and every node in `others`. */
  isolate(a: string, others: readonly string[]): void {
    for (const b of others) {
      if (b === a) continue;
      this.block(a, b);
      this.block(b, a);
    }
  }

  /** Removes every partition. */
  heal(): void {
    this.#blocked.clear();
  }

  /** True when `from` can currently reach `to`. */
  reachable(from: string, to: string): boolean {
    return !this.#blocked.has(`${from}\u0000${to}`);
  }

  send(from: string, to: string, m: M): void {
    this.stats.sent++;
    const w = this.world;
    const f = this.faults;
    if (w.rng.chance(f.dropRate)) {
      this.stats.dropped++;
      w.log(() => `drop ${from}->${to} ${this.describe(m)}`);
      return;
    }
    if (this.codec && w.rng.chance(f.corruptRate)) {
      const frame = this.codec.encode(m);
      frame[w.rng.int(frame.length)] ^= 1 + w.rng.int(255);
      let decoded: M;
      try {
        decoded = this.codec.decode(frame);
      } catch {
        this.stats.corrupted++;
        w.log(() => `corrupt ${from}->${to} ${this.describe(m)} (rejected)`);
        return;
      }
      throw w.fail(`A corrupted frame passed the codec: ${this.describe(decoded)}`);
    }
    const copies = w.rng.chance(f.duplicateRate) ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    for (let i = 0; i < copies; i++) {
      w.schedule(f.latencyMs + w.rng.float() * f.jitterMs, () => this.#deliver(from, to, m));
    }
  }

  #deliver(from: string, to: string, m: M): void {
    const h = this.#handlers.get(to);
    if (!h || !this.reachable(from, to)) {
      this.stats.dropped++;
      return;
    }
    this.stats.delivered++;
    this.world.log(() => `recv ${from}->${to} ${this.describe(m)}`);
    h(from, m);
  }
}
