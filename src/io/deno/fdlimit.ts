/**
 * The open-file (descriptor) limit of this process; each connection costs one
 * descriptor. Deno 2.9.6 raises the soft limit to the hard one when it starts;
 * should it not, the soft limit is raised here with util-linux `prlimit` on our
 * own pid (Deno has no `setrlimit`).
 *
 * @see docs/adr/0013-connection-control.md
 * @module
 */

/** The soft and hard `RLIMIT_NOFILE` of a process; `Infinity` for unlimited. */
export interface FdLimit {
  soft: number;
  hard: number;
}

/** The most descriptors asked for when the hard limit is unlimited (Linux's default `nr_open`). */
const UNLIMITED_CAP = 1_048_576;

/**
 * Reads this process's descriptor limits from `/proc/self/limits`.
 *
 * @returns null where there is no `/proc` (not Linux)
 */
export async function readFdLimit(): Promise<FdLimit | null> {
  let text: string;
  try {
    text = await Deno.readTextFile("/proc/self/limits");
  } catch {
    return null;
  }
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text);
  if (!m) return null;
  const num = (s: string) => (s === "unlimited" ? Infinity : Number(s));
  return { soft: num(m[1]), hard: num(m[2]) };
}

/**
 * Raises this process's soft descriptor limit to its hard limit (capped at
 * 1,048,576 when the hard limit is unlimited).
 *
 * @returns the limits before and after; `after` equals `before` when raising failed or
 *   was not needed, with `problem` saying why it failed (no `prlimit`, not Linux)
 */
export async function raiseFdLimit(): Promise<
  { before: FdLimit | null; after: FdLimit | null; problem?: string }
> {
  const before = await readFdLimit();
  if (before === null) return { before, after: null, problem: "no /proc/self/limits" };
  const target = Math.min(before.hard, UNLIMITED_CAP);
  if (before.soft >= target) return { before, after: before };
  let problem: string | undefined;
  try {
    const out = await new Deno.Command("prlimit", {
      args: [
        "--pid",
        String(Deno.pid),
        `--nofile=${target}:${before.hard === Infinity ? "unlimited" : before.hard}`,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!out.success) problem = `prlimit failed: ${new TextDecoder().decode(out.stderr).trim()}`;
  } catch (err) {
    problem = `cannot run prlimit (util-linux): ${(err as Error).message}`;
  }
  return { before, after: await readFdLimit(), ...(problem ? { problem } : {}) };
}
