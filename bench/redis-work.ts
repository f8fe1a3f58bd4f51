/**
 * How much work Redis does for a job, counted rather than timed: the private `redis-server` runs
 * under valgrind's callgrind, which counts every instruction it executes, so the figure does not
 * move with the machine's load the way jobs/s and CPU seconds do here (neighbouring runs of the
 * same code differ by up to 1.5×). Each side bulk-enqueues N no-op jobs and drains them with a
 * main-thread worker (the `drain-main` case of bench/main.ts), once with N jobs and once with 2N,
 * each on a fresh server; the difference over N is one job's life in Redis (enqueue, claim,
 * completion), with start-up and connection set-up cancelled out. Ours and BullMQ at each
 * concurrency. Not a test, and not part of `npm run bench`: it backs bench/README.md ("Where the
 * time goes"). Needs valgrind (Debian `valgrind`); without it, says so and measures nothing.
 *
 *   npm run bench:redis-work                         # 2,000 and 4,000 jobs, c16 and c100
 *   npm run bench:redis-work -- --jobs 1000 --concurrency 16
 */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { formatNumber } from "./report.js";
import { exitAfter, wholeNumbers, withPrivateRedis } from "./standalone.js";
import { Bullmq } from "./systems/bullmq.js";
import { Ratatoskr } from "./systems/ratatoskr.js";
import type { System, Target } from "./systems/system.js";

/** Instructions the server executed from its start to its exit (callgrind's `totals:` line). */
const totalOf = (counts: string): number => {
  const line = /^totals: (\d+)$/m.exec(readFileSync(counts, "utf8"));
  if (!line) throw new Error(`no totals in ${counts}`);
  return Number(line[1]);
};

const instructions = async (
  dir: string,
  run: number,
  side: (target: Target) => System,
  jobs: number,
  concurrency: number,
) => {
  // A redis-server under callgrind: a wrapper the private server starts as its binary.
  const counts = join(dir, `callgrind.${run}`);
  const wrapper = join(dir, `redis-server-${run}`);
  writeFileSync(
    wrapper,
    `#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=${counts} redis-server "$@"\n`,
  );
  chmodSync(wrapper, 0o755);
  await withPrivateRedis({ binary: wrapper }, (target) =>
    side(target).drainMain(jobs, concurrency, "single"),
  );
  return totalOf(counts);
};

const main = async () => {
  const { values } = parseArgs({
    options: {
      jobs: { type: "string", default: "2000" },
      concurrency: { type: "string", default: "16,100" },
    },
  });
  const [jobs, ...levels] = wholeNumbers("--jobs and --concurrency", [
    values.jobs,
    ...values.concurrency.split(","),
  ]) as [number, ...number[]];
  if (spawnSync("valgrind", ["--version"]).status !== 0) {
    console.log("valgrind is not installed (apt-get install -y valgrind): nothing measured");
    return;
  }
  const sides: Array<[string, (target: Target) => System]> = [
    ["ours", (target) => new Ratatoskr(target)],
    ["BullMQ", (target) => new Bullmq(target)],
  ];
  const dir = mkdtempSync(join(tmpdir(), "ratatoskr-redis-work-"));
  let run = 0;
  try {
    for (const concurrency of levels) {
      const perJob = new Map<string, number>();
      for (const [name, side] of sides) {
        const once = await instructions(dir, run++, side, jobs, concurrency);
        const twice = await instructions(dir, run++, side, 2 * jobs, concurrency);
        perJob.set(name, (twice - once) / jobs);
      }
      const theirs = perJob.get("BullMQ")!;
      console.log(`\nconcurrency ${concurrency}, ${formatNumber(jobs)} and ${formatNumber(2 * jobs)} jobs`);
      console.log("| side | Redis instructions per job | ÷ BullMQ |\n|---|---|---|");
      for (const [name, n] of perJob)
        console.log(`| ${name} | ${formatNumber(n)} | ${(n / theirs).toFixed(2)} |`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
};

exitAfter(main());
