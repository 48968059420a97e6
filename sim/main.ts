/**
 * `deno task sim`: runs the seed corpus plus fresh random seeds of cluster
 * schedules; `--seed=S` replays one seed; `--trace` prints its event trace.
 * With `--engine`, the same for the single-node storage engine under crashes
 * (`sim/engine.ts`).
 *
 * Usage:
 *   deno task sim [--fresh=N] [--seed=S] [--trace] [--voters=3|5] [--fault-ms=MS]
 *                 [--membership=true|false]
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

async function main(): Promise<number> {
  if (arg("engine") === "true") return await engineMain();
  const trace = arg("trace") === "true";
  const voters = arg("voters") ? Number(arg("voters")) : undefined;
  const faultMs = arg("fault-ms") ? Number(arg("fault-ms")) : undefined;
  const membership = arg("membership") ? arg("membership") === "true" : undefined;
  const one = arg("seed");
  const seeds: number[] = [];
  if (one !== undefined) seeds.push(Number(one));
  else {
    seeds.push(...CORPUS);
    const fresh = Number(arg("fresh") ?? 100);
    for (let i = 0; i < fresh; i++) {
      seeds.push(crypto.getRandomValues(new Uint32Array(1))[0]);
    }
  }
  const started = performance.now();
  let virtualMs = 0;
  let commits = 0;
  for (const seed of seeds) {
    let options: ClusterOptions = {};
    try {
      options = {
        ...BUG_SEEDS.find((b) => b.seed === seed)?.options,
        ...(voters ? { voters } : {}),
        ...(faultMs ? { faultMs } : {}),
        ...(membership === undefined ? {} : { membership }),
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
