/**
 * The simulated world: one event queue in virtual time and one seeded PRNG,
 * from which every node's clock, network, disk and randomness are derived,
 * so a run replays exactly from its seed.
 *
 * Pure: no wall clock, no I/O. Events run in (time, insertion) order; after
 * each event the loop yields to pending promise callbacks a fixed number of
 * times, so asynchronous code under test interleaves deterministically.
 *
 * @module
 */
import type { Clock } from "../src/io/mod.ts";
import { SimRng } from "./rng.ts";

/** Raised when a checker finds a broken invariant; carries the seed. */
export class SimFailure extends Error {
  override name = "SimFailure";
  /** The event trace up to the failure, when tracing. */
  trace: string[] | null = null;
  constructor(readonly seed: number, message: string, readonly atMs: number) {
    super(`seed=${seed} t=${atMs.toFixed(3)}ms: ${message}`);
  }
}

interface Event {
  atMs: number;
  seq: number;
  fn: () => void;
}

/** Virtual epoch of every world: 2025-01-01T00:00:00Z, so timestamps look real. */
export const SIM_EPOCH_MS = 1_735_689_600_000;

/**
 * One simulated world.
 *
 * @example
 * ```ts
 * const w = new World(42);
 * w.schedule(10, () => console.log(w.nowMs));
 * await w.run(1000);
 * ```
 */
export class World {
  readonly rng: SimRng;
  /** Virtual milliseconds since the start of the run. */
  nowMs = 0;
  /** Events processed so far. */
  events = 0;
  #heap: Event[] = [];
  #seq = 0;
  #failure: SimFailure | null = null;
  /** The event trace, when tracing was requested. */
  readonly trace: string[] | null;

  /** Events a run may process before it fails (a message storm or livelock). */
  readonly maxEvents: number;

  constructor(readonly seed: number, options: { trace?: boolean; maxEvents?: number } = {}) {
    this.rng = new SimRng(seed);
    this.trace = options.trace ? [] : null;
    this.maxEvents = options.maxEvents ?? Infinity;
  }

  /** Runs `fn` after `delayMs` of virtual time (0: after everything already due now). */
  schedule(delayMs: number, fn: () => void): void {
    const ev = { atMs: this.nowMs + Math.max(0, delayMs), seq: this.#seq++, fn };
    const h = this.#heap;
    h.push(ev);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(ev, h[p])) break;
      h[i] = h[p];
      i = p;
    }
    h[i] = ev;
  }

  /** A Clock on this world's virtual time. */
  clock(): Clock {
    return {
      nowMs: () => SIM_EPOCH_MS + this.nowMs,
      sleep: (ms) => new Promise((resolve) => this.schedule(ms, resolve)),
    };
  }

  /** Appends to the trace when tracing. */
  log(line: string | (() => string)): void {
    if (this.trace) {
      this.trace.push(
        `${this.nowMs.toFixed(3).padStart(10)} ${typeof line === "string" ? line : line()}`,
      );
    }
  }

  /** Records a broken invariant; `run()` throws it. The first failure wins. */
  fail(message: string): SimFailure {
    const f = new SimFailure(this.seed, message, this.nowMs);
    f.trace = this.trace;
    this.#failure ??= f;
    return f;
  }

  /** Throws at once on a broken invariant (the sim's assertion). */
  assert(cond: unknown, message: string | (() => string)): void {
    if (!cond) throw this.fail(typeof message === "string" ? message : message());
  }

  /** The first recorded failure, if any. */
  get failure(): SimFailure | null {
    return this.#failure;
  }

  /**
   * Processes events up to virtual time `untilMs`, or until `stop()` is true.
   * @throws {SimFailure} as soon as one is recorded.
   */
  async run(untilMs: number, stop?: () => boolean): Promise<void> {
    const h = this.#heap;
    while (h.length > 0 && h[0].atMs <= untilMs) {
      const ev = h[0];
      const last = h.pop()!;
      if (h.length > 0) {
        let i = 0;
        for (;;) {
          const l = 2 * i + 1;
          if (l >= h.length) break;
          const c = l + 1 < h.length && before(h[l + 1], h[l]) ? l + 1 : l;
          if (!before(h[c], last)) break;
          h[i] = h[c];
          i = c;
        }
        h[i] = last;
      }
      this.nowMs = ev.atMs;
      if (++this.events > this.maxEvents) {
        throw this.fail(
          `Event budget of ${this.maxEvents} events exceeded (a message storm or livelock)`,
        );
      }
      try {
        ev.fn();
      } catch (err) {
        if (!(err instanceof SimFailure)) this.fail(`Event threw: ${(err as Error)?.stack ?? err}`);
      }
      for (let i = 0; i < DRAIN_TURNS; i++) await null;
      if (this.#failure) throw this.#failure;
      if (stop?.()) return;
    }
    if (this.#failure) throw this.#failure;
    this.nowMs = Math.max(this.nowMs, untilMs);
  }
}

/** Promise turns granted to async code after each event. */
const DRAIN_TURNS = 24;

function before(a: Event, b: Event): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq);
}
