/**
 * Runs seeds of the cluster or engine schedules in parallel Workers, one
 * seed at a time per worker, and collects every result (failures do not
 * stop the others). Used by `deno task sim --workers=N`, `--soak` and the
 * CI test.
 *
 * Not pure: it starts Workers (the CLI and tests only).
 *
 * @module
 */
import type { ClusterOptions } from "./cluster.ts";
import type { EngineOptions } from "./engine.ts";

/** One seed to run. */
export type SeedJob =
  | { readonly kind: "cluster"; readonly seed: number; readonly options?: ClusterOptions }
  | { readonly kind: "engine"; readonly seed: number; readonly options?: EngineOptions };

/** The outcome of one seed. */
export interface SeedResult {
  readonly job: SeedJob;
  /** The failure message (with the seed), or null when the seed passed. */
  readonly failure: string | null;
  readonly virtualMs: number;
  readonly events: number;
  readonly commits: number;
  /** The numeric fields of the run's report (crashes, joins, pauses...). */
  readonly counts?: Readonly<Record<string, number>>;
}

/**
 * Runs `jobs` on `workers` Workers; calls `onResult` as each finishes.
 * @returns every result, in completion order.
 */
export async function runPool(
  jobs: readonly SeedJob[],
  workers: number,
  onResult?: (r: SeedResult) => void,
): Promise<SeedResult[]> {
  const results: SeedResult[] = [];
  let next = 0;
  const n = Math.max(1, Math.min(workers, jobs.length));
  const lane = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const w = new Worker(new URL("./seed_worker.ts", import.meta.url), { type: "module" });
      let current: SeedJob | null = null;
      const feed = () => {
        if (next >= jobs.length) {
          w.terminate();
          resolve();
          return;
        }
        current = jobs[next++];
        w.postMessage(current);
      };
      const done = (r: SeedResult) => {
        results.push(r);
        onResult?.(r);
      };
      w.onmessage = (e: MessageEvent<SeedResult>) => {
        done(e.data);
        feed();
      };
      w.onerror = (e) => {
        // An error escaped the seed (an unhandled rejection): that seed
        // fails, and a fresh worker takes the rest of this lane.
        e.preventDefault();
        w.terminate();
        if (current) {
          done({
            job: current,
            failure: `seed=${current.seed}: worker error: ${e.message}`,
            virtualMs: 0,
            events: 0,
            commits: 0,
          });
        }
        lane().then(resolve);
      };
      feed();
    });
  await Promise.all(Array.from({ length: n }, lane));
  return results;
}
