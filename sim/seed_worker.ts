/**
 * Worker body of `sim/pool.ts`: runs one seed per message and posts its
 * `SeedResult` back.
 *
 * @module
 */
import { runCluster } from "./cluster.ts";
import { runEngine } from "./engine.ts";
import type { SeedJob, SeedResult } from "./pool.ts";
import { SimFailure } from "./world.ts";

// deno-lint-ignore no-explicit-any
const scope = self as any;
scope.onmessage = async (e: MessageEvent<SeedJob>) => {
  const job = e.data;
  let result: SeedResult;
  try {
    const r = job.kind === "cluster"
      ? await runCluster(job.seed, job.options)
      : await runEngine(job.seed, job.options);
    const counts: Record<string, number> = {};
    for (const [k, v] of Object.entries(r)) if (typeof v === "number") counts[k] = v;
    result = {
      job,
      failure: null,
      virtualMs: r.virtualMs,
      events: r.events,
      commits: counts.commitIndex ?? 0,
      counts,
    };
  } catch (err) {
    const failure = err instanceof SimFailure
      ? err.message
      : `seed=${job.seed}: ${(err as Error)?.stack ?? err}`;
    result = { job, failure, virtualMs: 0, events: 0, commits: 0 };
  }
  scope.postMessage(result);
};
