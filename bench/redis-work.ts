/**
 * How much work Redis does for a job, counted rather than timed: the private `redis-server` runs
 * under valgrind's callgrind, which counts every instruction it executes, so the figure does not
 * move with the machine's load the way jobs/s and CPU seconds do here (neighbouring runs of the
 * same code differ by up to 1.5×). Each side bulk-enqueues N no-op jobs and drains them with a
 * main-thread worker (the `drain-main` case of bench/main.ts), once with N jobs and once with 2N,
 * each on a fresh server; the difference over N is one job's life in Redis (enqueue, claim,
 * completion), with start-up and connection set-up cancelled out. Ours and BullMQ at each
 * concurrency. Each run is split where the jobs are all queued (callgrind dumps its counts there),
 * so the enqueue's share and the drain's (claims and completions, what the drain cases time) are
 * reported apart. Not a test, and not part of `npm run bench`: it backs bench/PERFORMANCE.md ("Where
 * the time goes"). Needs valgrind (Debian `valgrind`); without it, says so and measures nothing.
 *
 *   npm run bench:redis-work                         # 2,000 and 4,000 jobs, c16 and c100
 *   npm run bench:redis-work -- --jobs 1000 --concurrency 16
 *   npm run bench:redis-work -- --priorities mixed   # random of the four (drain-main-prio)
 *   npm run bench:redis-work -- --sides ours         # ours alone (an A/B of two commits)
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

/** Instructions a callgrind counts file holds (its `totals:` line). */
const totalOf = (counts: string): number => {
  const line = /^totals: (\d+)$/m.exec(readFileSync(counts, "utf8"));
  if (!line) throw new Error(`no totals in ${counts}`);
  return Number(line[1]);
};

/** Instructions the server executed up to the moment the jobs were queued, and from then to its exit. */
const instructions = async (
  dir: string,
  run: number,
  side: (target: Target) => System,
  jobs: number,
  concurrency: number,
  priorities: "single" | "mixed",
) => {
  // A redis-server under callgrind: a wrapper the private server starts as its binary.
  const counts = join(dir, `callgrind.${run}`);
  const wrapper = join(dir, `redis-server-${run}`);
  writeFileSync(
    wrapper,
    `#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=${counts} redis-server "$@"\n`,
  );
  chmodSync(wrapper, 0o755);
  // The wrapper execs valgrind, which is the process named with the counts file.
  const dump = async () => {
    const pid = spawnSync("pgrep", ["-f", `callgrind-out-file=${counts} `])
      .stdout.toString()
      .trim();
    if (spawnSync("callgrind_control", ["--dump", pid]).status !== 0)
      throw new Error(`callgrind_control could not dump the counts of process ${pid}`);
  };
  await withPrivateRedis({ binary: wrapper }, (target) =>
    side(target).drainMain(jobs, concurrency, priorities, dump),
  );
  // The dump wrote `<counts>.1` (start to queued); the rest is in `<counts>`, written at exit.
  return { enqueue: totalOf(`${counts}.1`), drain: totalOf(counts) };
};

const main = async () => {
  const { values } = parseArgs({
    options: {
      jobs: { type: "string", default: "2000" },
      concurrency: { type: "string", default: "16,100" },
      priorities: { type: "string", default: "single" },
      sides: { type: "string", default: "ours,BullMQ" },
    },
  });
  const priorities = values.priorities;
  if (priorities !== "single" && priorities !== "mixed")
    throw new Error(`--priorities is single or mixed, not ${JSON.stringify(priorities)}`);
  const [jobs, ...levels] = wholeNumbers("--jobs and --concurrency", [
    values.jobs,
    ...values.concurrency.split(","),
  ]) as [number, ...number[]];
  if (spawnSync("valgrind", ["--version"]).status !== 0) {
    console.log("valgrind is not installed (apt-get install -y valgrind): nothing measured");
    return;
  }
  const known: Array<[string, (target: Target) => System]> = [
    ["ours", (target) => new Ratatoskr(target)],
    ["BullMQ", (target) => new Bullmq(target)],
  ];
  const named = values.sides.split(",").map((name) => name.trim().toLowerCase());
  const unknown = named.filter((name) => !known.some(([side]) => side.toLowerCase() === name));
  if (named.length === 0 || unknown.length > 0)
    throw new Error(`--sides names ours and/or BullMQ, not ${JSON.stringify(values.sides)}`);
  const sides = known.filter(([side]) => named.includes(side.toLowerCase()));
  const dir = mkdtempSync(join(tmpdir(), "ratatoskr-redis-work-"));
  let run = 0;
  try {
    for (const concurrency of levels) {
      const perJob = new Map<string, { enqueue: number; drain: number }>();
      for (const [name, side] of sides) {
        const once = await instructions(dir, run++, side, jobs, concurrency, priorities);
        const twice = await instructions(dir, run++, side, 2 * jobs, concurrency, priorities);
        perJob.set(name, {
          enqueue: (twice.enqueue - once.enqueue) / jobs,
          drain: (twice.drain - once.drain) / jobs,
        });
      }
      const theirs = perJob.get("BullMQ");
      // With BullMQ measured, each figure also as a ratio to its own.
      const cell = (n: number, of: number | undefined) =>
        of === undefined ? formatNumber(n) : `${formatNumber(n)} | ${(n / of).toFixed(2)}`;
      const ratio = theirs ? " | ÷ BullMQ" : "";
      console.log(
        `\nconcurrency ${concurrency}, ${formatNumber(jobs)} and ${formatNumber(2 * jobs)} jobs, ${priorities === "mixed" ? "random priorities" : "one priority"}`,
      );
      console.log(
        `| side | Redis instructions per job${ratio} | of which the drain${ratio} | the enqueue${ratio} |`,
      );
      console.log(`|---|---|---|---${theirs ? "|---|---|---" : ""}|`);
      for (const [name, n] of perJob) {
        const all = n.enqueue + n.drain;
        console.log(
          `| ${name} | ${cell(all, theirs && theirs.enqueue + theirs.drain)} | ${cell(n.drain, theirs?.drain)} | ${cell(n.enqueue, theirs?.enqueue)} |`,
        );
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
};

exitAfter(main());
