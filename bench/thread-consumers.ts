/**
 * What would close the worker-thread gap (bench/PERFORMANCE.md, "Where the time goes"): the
 * `drain-threads-c16` jobs run four ways in the same rounds, the order reversed every other
 * round. Ours as it is (`start()`: the main thread claims, each job crosses to a pool thread and
 * its outcome back); the engine `Worker` itself in one worker thread, and in two (each claiming
 * for itself at half the concurrency, so no job crosses between threads); BullMQ's sandbox. Not a
 * test, and not part of `npm run bench`.
 *
 *   npm run bench:thread-consumers                          # 50,000 jobs at c16, 3 rounds
 *   npm run bench:thread-consumers -- --jobs 20000 --rounds 2
 */
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { build } from "esbuild";
import { type Figures, median } from "./harness.js";
import { formatNumber } from "./report.js";
import { runStandalone, wholeNumbers } from "./standalone.js";
import { Bullmq } from "./systems/bullmq.js";
import { Ratatoskr } from "./systems/ratatoskr.js";

const CONCURRENCY = 16;

/**
 * bench/thread-consumer.ts with all it imports in one file, so a thread starts as a pool thread
 * does (one file to load, no TypeScript loader; unlike the pool's bundle, packages included and
 * no source map). ioredis is CommonJS: its `require`s of Node's builtins need a `require` in the
 * module. The queue reads its Lua scripts from `./lua/` beside its module, which in the bundle is
 * beside the bundle.
 */
const bundleThreadConsumer = async (dir: string): Promise<string> => {
  const outfile = join(dir, "thread-consumer.mjs");
  symlinkSync(fileURLToPath(new URL("../src/queue/lua/", import.meta.url)), join(dir, "lua"));
  await build({
    entryPoints: [fileURLToPath(new URL("./thread-consumer.ts", import.meta.url))],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    logLevel: "error",
    banner: {
      js: 'import { createRequire } from "node:module"; const require = createRequire(import.meta.url);',
    },
  });
  return outfile;
};

runStandalone(async (target) => {
  const { values } = parseArgs({
    options: { jobs: { type: "string", default: "50000" }, rounds: { type: "string", default: "3" } },
  });
  const [jobs, rounds] = wholeNumbers("--jobs and --rounds", [values.jobs, values.rounds]) as [
    number,
    number,
  ];
  // Every worker thread's stdout and stderr are piped into this process's (BullMQ's sandbox
  // starts one a slot): Node's warning past 10 listeners would be noise, not a leak.
  process.stdout.setMaxListeners(64);
  process.stderr.setMaxListeners(64);
  const dir = mkdtempSync(join(tmpdir(), "thread-consumers-"));
  const bundle = await bundleThreadConsumer(dir).catch((error: unknown) => {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  });
  const ours = new Ratatoskr(target);
  const bullmq = new Bullmq(target);
  const sides: Record<string, () => Promise<Figures>> = {
    "ours, the main thread claims": () => ours.drainThreads(jobs, CONCURRENCY),
    "ours, RT_CLAIM_IN=threads (2 threads)": () =>
      ours.drainThreadsWith(jobs, CONCURRENCY, { RT_CLAIM_IN: "threads" }),
    "ours, RT_CLAIM_IN=threads (1 thread)": () => ours.drainThreads(jobs, CONCURRENCY, "thread"),
    "claims in 1 thread": () => ours.drainThreadConsumers(jobs, CONCURRENCY, 1, bundle),
    "claims in 2 threads": () => ours.drainThreadConsumers(jobs, CONCURRENCY, 2, bundle),
    "BullMQ sandbox": () => bullmq.drainThreads(jobs, CONCURRENCY),
  };
  const names = Object.keys(sides);
  const runs = new Map<string, Figures[]>(names.map((name) => [name, []]));
  try {
    for (let round = 0; round < rounds; round++) {
      for (const name of round % 2 === 0 ? names : [...names].reverse()) {
        await target.admin.flushall();
        runs.get(name)!.push(await sides[name]!());
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const med = (name: string, key: string) => median(runs.get(name)!.map((f) => f[key]!));
  console.log(
    `\n${jobs} no-op jobs at concurrency ${CONCURRENCY}, ${rounds} rounds; medians over the rounds`,
  );
  console.log("| side | jobs/s | ÷ BullMQ | first job (s) | jobs/s after the first | ÷ BullMQ |");
  console.log("|---|---|---|---|---|---|");
  for (const name of names) {
    const ratio = (key: string) => (med(name, key) / med("BullMQ sandbox", key)).toFixed(2);
    const cells = [
      formatNumber(med(name, "jobsPerSecond")),
      ratio("jobsPerSecond"),
      formatNumber(med(name, "firstJobSeconds")),
      formatNumber(med(name, "afterFirstJobsPerSecond")),
      ratio("afterFirstJobsPerSecond"),
    ];
    console.log(`| ${name} | ${cells.join(" | ")} |`);
  }
});
