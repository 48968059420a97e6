/**
 * `deno task sim`: runs the seed corpus plus fresh random seeds of cluster
 * schedules (half of them leader-turnover schedules); `--seed=S` replays one seed; `--trace` prints its event trace.
 * With `--engine`, the same for the single-node storage engine under crashes
 * (`sim/engine.ts`).
 *
 * Usage:
 *   deno task sim [--fresh=N] [--seed=S] [--trace] [--voters=3|5] [--fault-ms=MS]
 *                 [--membership=true|false] [--focus=turnover|learners|reads]
 *   deno task sim --seeds=A..B [--keep-going] [--workers=N] [--focus=...]
 *   deno task sim --soak[=N] [--workers=N]   N fresh cluster seeds per focus and N engine
 *                                            seeds (default 2000), on every core
 *   deno task sim --engine [--fresh=N] [--seed=S] [--trace] [--crashes=N]
 *                 [--big-parts=true|false] [--read-races] [--strict-dirs] [--commit-faults]
 *
 * On a failure it prints the seed and the command that replays it, and
 * exits with status 1.
 *
 * @module
 */
import { type ClusterOptions, runCluster } from "./cluster.ts";
import { BUG_SEEDS, CORPUS, ENGINE_BUG_SEEDS, ENGINE_CORPUS } from "./corpus.ts";
import { type EngineOptions, runEngine } from "./engine.ts";
import { runPool, type SeedJob, type SeedResult } from "./pool.ts";
import { SimFailure } from "./world.ts";

function arg(name: string): string | undefined {
  const a = Deno.args.find((x) => x === `--${name}` || x.startsWith(`--${name}=`));
  if (a === undefined) return undefined;
  return a.includes("=") ? a.slice(a.indexOf("=") + 1) : "true";
}

/** The command that replays `seed` run with `options`. */
export function replayCommand(seed: number, trace = false, options: ClusterOptions = {}): string {
  const flags = [
    options.voters !== undefined ? ` --voters=${options.voters}` : "",
    options.faultMs !== undefined ? ` --fault-ms=${options.faultMs}` : "",
    options.membership !== undefined ? ` --membership=${options.membership}` : "",
    options.focus !== undefined ? ` --focus=${options.focus}` : "",
  ].join("");
  return `deno task sim --seed=${seed}${flags}${trace ? " --trace" : ""}`;
}

/** The command that replays engine `seed` run with `options`. */
export function engineReplayCommand(
  seed: number,
  trace = false,
  options: EngineOptions = {},
): string {
  const flags = [
    options.crashes !== undefined ? ` --crashes=${options.crashes}` : "",
    options.bigParts !== undefined ? ` --big-parts=${options.bigParts}` : "",
    options.readRaces ? " --read-races" : "",
    options.strictDirs ? " --strict-dirs" : "",
    options.commitFaults ? " --commit-faults" : "",
  ].join("");
  return `deno task sim --engine --seed=${seed}${flags}${trace ? " --trace" : ""}`;
}

async function engineMain(): Promise<number> {
  const trace = arg("trace") === "true";
  const one = arg("seed");
  const flags: EngineOptions = {
    ...(arg("crashes") ? { crashes: Number(arg("crashes")) } : {}),
    ...(arg("big-parts") ? { bigParts: arg("big-parts") === "true" } : {}),
    ...(arg("read-races") === "true" ? { readRaces: true } : {}),
    ...(arg("strict-dirs") === "true" ? { strictDirs: true } : {}),
    ...(arg("commit-faults") === "true" ? { commitFaults: true } : {}),
  };
  const seeds: { seed: number; options?: EngineOptions }[] = [];
  if (one !== undefined) seeds.push({ seed: Number(one) });
  else {
    seeds.push(...ENGINE_CORPUS);
    const fresh = Number(arg("fresh") ?? 100);
    for (let i = 0; i < fresh; i++) {
      seeds.push({ seed: crypto.getRandomValues(new Uint32Array(1))[0] });
    }
    const open = ENGINE_BUG_SEEDS.filter((b) => b.open);
    if (open.length > 0) {
      console.log(`${open.length} open engine bug seed(s) not run; replay them with:`);
      for (const b of open) console.log(`  ${engineReplayCommand(b.seed, false, b.options)}`);
    }
  }
  const started = performance.now();
  let virtualMs = 0;
  let requests = 0;
  let crashes = 0;
  for (const { seed, options: corpusOptions } of seeds) {
    const options: EngineOptions = { ...corpusOptions, ...flags };
    try {
      const rep = await runEngine(seed, { ...options, trace });
      virtualMs += rep.virtualMs;
      requests += rep.requests;
      crashes += rep.crashes;
      if (one !== undefined) {
        if (rep.trace) console.log(rep.trace.join("\n"));
        const { trace: _t, ...summary } = rep;
        console.log(JSON.stringify(summary));
      }
    } catch (err) {
      if (err instanceof SimFailure && err.trace) console.log(err.trace.join("\n"));
      console.error(
        `FAIL ${err instanceof SimFailure ? err.message : (err as Error)?.stack ?? err}`,
      );
      console.error(`replay: ${engineReplayCommand(seed, false, options)}`);
      console.error(`trace:  ${engineReplayCommand(seed, true, options)}`);
      return 1;
    }
  }
  const realS = (performance.now() - started) / 1000;
  console.log(
    `ok ${seeds.length} engine seeds in ${realS.toFixed(1)}s (${
      (seeds.length / realS).toFixed(1)
    } seeds/s, ${requests} requests, ${crashes} crashes, ` +
      `${(virtualMs / 1000 / realS).toFixed(1)} virtual s per real s)`,
  );
  return 0;
}

/** The command that replays `job`. */
function jobReplay(job: SeedJob): string {
  return job.kind === "cluster"
    ? replayCommand(job.seed, false, job.options)
    : engineReplayCommand(job.seed, false, job.options);
}

/**
 * Runs `jobs` on worker threads, printing each failure with its replay
 * command; with `keepGoing` false, the exit status reflects the first.
 */
async function poolMain(jobs: SeedJob[], workers: number, label: string): Promise<number> {
  const started = performance.now();
  const failures: SeedResult[] = [];
  let virtualMs = 0;
  let maxEvents = 0;
  await runPool(jobs, workers, (r) => {
    virtualMs += r.virtualMs;
    maxEvents = Math.max(maxEvents, r.events);
    if (r.failure) {
      failures.push(r);
      console.error(`FAIL ${r.failure}`);
      console.error(`replay: ${jobReplay(r.job)}`);
    }
  });
  const realS = (performance.now() - started) / 1000;
  console.log(
    `${failures.length === 0 ? "ok" : `FAILED ${failures.length} of`} ${jobs.length} ${label} ` +
      `in ${realS.toFixed(1)}s on ${workers} workers (${
        (jobs.length / realS).toFixed(1)
      } seeds/s, ` +
      `${(virtualMs / 1000 / realS).toFixed(0)} virtual s per real s, at most ${maxEvents} events)`,
  );
  if (failures.length > 0) {
    console.log(
      `failing seeds: ${failures.map((f) => f.job.seed).sort((a, b) => a - b).join(" ")}`,
    );
  }
  return failures.length === 0 ? 0 : 1;
}

function freshSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

async function main(): Promise<number> {
  const workers = Number(arg("workers") ?? navigator.hardwareConcurrency ?? 2);
  const focusArg = arg("focus") as ClusterOptions["focus"] | undefined;
  if (arg("soak") !== undefined) {
    const n = arg("soak") === "true" ? 2000 : Number(arg("soak"));
    const jobs: SeedJob[] = [];
    for (const focus of [undefined, "turnover", "learners", "reads"] as const) {
      for (let i = 0; i < n; i++) {
        jobs.push({ kind: "cluster", seed: freshSeed(), options: focus ? { focus } : {} });
      }
    }
    for (let i = 0; i < n; i++) jobs.push({ kind: "engine", seed: freshSeed() });
    return await poolMain(jobs, workers, "soak seeds (cluster, each focus, and engine)");
  }
  const range = arg("seeds");
  if (range !== undefined) {
    const [a, b] = range.split("..").map(Number);
    const engine = arg("engine") === "true";
    const jobs: SeedJob[] = [];
    for (let seed = a; seed <= b; seed++) {
      if (engine) jobs.push({ kind: "engine", seed });
      else {
        jobs.push({
          kind: "cluster",
          seed,
          options: {
            voters: arg("voters") ? Number(arg("voters")) : seed % 2 === 1 ? 3 : 5,
            ...(focusArg ? { focus: focusArg } : {}),
            ...(arg("fault-ms") ? { faultMs: Number(arg("fault-ms")) } : {}),
          },
        });
      }
    }
    return await poolMain(jobs, workers, `${engine ? "engine" : "cluster"} seeds ${range}`);
  }
  if (arg("engine") === "true") return await engineMain();
  const trace = arg("trace") === "true";
  const voters = arg("voters") ? Number(arg("voters")) : undefined;
  const faultMs = arg("fault-ms") ? Number(arg("fault-ms")) : undefined;
  const membership = arg("membership") ? arg("membership") === "true" : undefined;
  const one = arg("seed");
  const seeds: { seed: number; focus?: ClusterOptions["focus"] }[] = [];
  if (one !== undefined) seeds.push({ seed: Number(one) });
  else {
    seeds.push(...CORPUS.map((seed) => ({ seed })));
    // Fresh seeds alternate between the default and the leader-turnover schedule.
    const fresh = Number(arg("fresh") ?? 100);
    for (let i = 0; i < fresh; i++) {
      seeds.push({ seed: freshSeed(), ...(i % 2 === 1 ? { focus: "turnover" as const } : {}) });
    }
  }
  const started = performance.now();
  let virtualMs = 0;
  let commits = 0;
  for (const { seed, focus } of seeds) {
    let options: ClusterOptions = {};
    try {
      options = {
        ...BUG_SEEDS.find((b) => b.seed === seed)?.options,
        ...(focus ? { focus } : {}),
        ...(voters ? { voters } : {}),
        ...(faultMs ? { faultMs } : {}),
        ...(membership === undefined ? {} : { membership }),
        ...(focusArg ? { focus: focusArg } : {}),
      };
      const rep = await runCluster(seed, { ...options, trace });
      virtualMs += rep.virtualMs;
      commits += rep.commitIndex;
      if (one !== undefined) {
        if (rep.trace) console.log(rep.trace.join("\n"));
        const { trace: _t, ...summary } = rep;
        console.log(JSON.stringify(summary));
      }
    } catch (err) {
      if (err instanceof SimFailure) {
        if (err.trace) console.log(err.trace.join("\n"));
        console.error(`FAIL ${err.message}`);
        console.error(`replay: ${replayCommand(seed, false, options)}`);
        console.error(`trace:  ${replayCommand(seed, true, options)}`);
        return 1;
      }
      console.error(`FAIL seed=${seed}: ${(err as Error)?.stack ?? err}`);
      console.error(`replay: ${replayCommand(seed, false, options)}`);
      return 1;
    }
  }
  const realS = (performance.now() - started) / 1000;
  console.log(
    `ok ${seeds.length} seeds in ${realS.toFixed(1)}s (${
      (seeds.length / realS).toFixed(1)
    } seeds/s, ` +
      `${(virtualMs / 1000 / realS).toFixed(0)} virtual s per real s, ${commits} commits)`,
  );
  return 0;
}

if (import.meta.main) Deno.exit(await main());
