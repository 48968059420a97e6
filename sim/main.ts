/**
 * `deno task sim`: runs the seed corpus plus fresh random seeds of cluster
 * schedules; `--seed=S` replays one seed; `--trace` prints its event trace.
 *
 * Usage:
 *   deno task sim [--fresh=N] [--seed=S] [--trace] [--voters=3|5] [--fault-ms=MS]
 *                 [--membership=true|false]
 *
 * On a failure it prints the seed and the command that replays it, and
 * exits with status 1.
 *
 * @module
 */
import { type ClusterOptions, runCluster } from "./cluster.ts";
import { BUG_SEEDS, CORPUS } from "./corpus.ts";
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

async function main(): Promise<number> {
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
