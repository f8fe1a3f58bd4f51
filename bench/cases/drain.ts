import type { Figures } from "../harness.js";
import { JOBS_PER_SECOND, type ComparedCase, type Metric } from "./case.js";

/** Main-thread drains with a goal against BullMQ: the targets. */
const MAIN_GOALS: Record<number, number> = { 16: 3, 100: 4 };

const drainMain = (concurrency: number): ComparedCase => ({
  kind: "compared",
  name: `drain-main-c${concurrency}`,
  what: `${concurrency === 1 ? "N/10" : "N"} pre-queued no-op jobs, one worker at concurrency ${concurrency}, handler in the main thread`,
  metrics: [JOBS_PER_SECOND, CPU_PER_JOB],
  ...(MAIN_GOALS[concurrency] === undefined
    ? {}
    : { goals: [{ kind: "vs-bullmq", metric: "jobsPerSecond", atLeast: MAIN_GOALS[concurrency] }] }),
  run: (system, options) =>
    system.drainMain(concurrency === 1 ? options.slowJobs : options.jobs, concurrency, "single"),
});

/**
 * Priorities should cost us little: within 10 % of the same drain without them. Each round
 * drains both ways twice, in mirrored order (mixed, single, single, mixed; the reverse in even
 * rounds), so that a pace drifting steadily through the round weighs on both alike: the
 * machine's pace drifts by more than the 10 % between cases (in one full run ours' CPU a job was
 * a third higher here than in drain-main-c16 a minute before, where the two alternated in one
 * process differ by about 5 %), and within a round too (with one drain each way, ours' rounds
 * of one full run gave 1.52, 0.84 and 0.72, the CPU a job of both sides up by half in the last
 * two), so the baseline is the drains of the same moment.
 */
const drainMainPriorities = (concurrency: number): ComparedCase => ({
  kind: "compared",
  name: `drain-main-prio-c${concurrency}`,
  what: `as drain-main-c${concurrency}, jobs spread at random over four priorities; each round also drains them all at one priority, as the baseline, in mirrored order (A B B A)`,
  metrics: [JOBS_PER_SECOND, ONE_PRIORITY, CPU_PER_JOB],
  goals: [
    {
      kind: "vs-ours",
      metric: "jobsPerSecond",
      baseline: ONE_PRIORITY.key,
      baselineText: "one priority, same rounds",
      atLeast: 0.9,
    },
  ],
  run: async (system, options, { round, fresh }) => {
    const order = round % 2 === 1 ? MIRRORED : MIRRORED.map(other);
    const runs: Record<Spread, Figures[]> = { mixed: [], single: [] };
    for (const [i, spread] of order.entries()) {
      if (i > 0) await fresh();
      runs[spread].push(await system.drainMain(options.jobs, concurrency, spread));
    }
    const mixed = together(runs.mixed);
    return { ...mixed, [ONE_PRIORITY.key]: together(runs.single).jobsPerSecond ?? Number.NaN };
  },
});

type Spread = "single" | "mixed";
const MIRRORED: readonly Spread[] = ["mixed", "single", "single", "mixed"];
const other = (spread: Spread): Spread => (spread === "mixed" ? "single" : "mixed");

/**
 * Drains of the same N as one: a rate is the jobs over the summed time (the harmonic mean), any
 * other figure (CPU a job, the first job's time) the mean.
 */
const together = (drains: readonly Figures[]): Figures => {
  const keys = new Set(drains.flatMap((figures) => Object.keys(figures)));
  const combined: Record<string, number> = {};
  for (const key of keys) {
    const values = drains.map((figures) => figures[key] ?? Number.NaN);
    combined[key] = key.endsWith("PerSecond")
      ? values.length / values.reduce((sum, rate) => sum + 1 / rate, 0)
      : values.reduce((sum, value) => sum + value, 0) / values.length;
  }
  return combined;
};

/** The prio cases' baseline: the same jobs at one priority, drained in the same round. */
const ONE_PRIORITY: Metric = {
  key: "onePriorityJobsPerSecond",
  label: "throughput at one priority (same rounds)",
  unit: "jobs/s",
  better: "higher",
};

const CPU_PER_JOB: Metric = {
  key: "cpuMicrosPerJob",
  label: "CPU per job (process + Redis)",
  unit: "µs",
  better: "lower",
};

const FIRST_JOB: Metric = { key: "firstJobSeconds", label: "first job", unit: "s", better: "lower" };
const AFTER_FIRST: Metric = {
  key: "afterFirstJobsPerSecond",
  label: "throughput after first job",
  unit: "jobs/s",
  better: "higher",
};

const drainThreads = (concurrency: number): ComparedCase => ({
  kind: "compared",
  name: `drain-threads-c${concurrency}`,
  what: `${concurrency === 16 ? "N" : "N/10"} pre-queued no-op jobs run in worker threads at concurrency ${concurrency} (ours: the full runtime)`,
  fullOnly: concurrency !== 16,
  threadCode: true,
  metrics: [JOBS_PER_SECOND, FIRST_JOB, AFTER_FIRST, CPU_PER_JOB],
  ...(concurrency === 16 ? { goals: [{ kind: "vs-bullmq", metric: "jobsPerSecond", atLeast: 5 }] } : {}),
  run: (system, options) =>
    system.drainThreads(concurrency === 16 ? options.jobs : options.slowJobs, concurrency),
});

/** Ours with one worker thread claiming for itself (RT_CLAIM_IN=threads): no job crosses threads. */
const drainThreadClaims: ComparedCase = {
  kind: "compared",
  name: "drain-thread-claims-c16",
  what: "as drain-threads-c16, ours with one worker thread claiming for itself at concurrency 16 (RT_CLAIM_IN=threads, RT_POOL_THREADS=1); BullMQ's sandbox as there",
  threadCode: true,
  metrics: [JOBS_PER_SECOND, FIRST_JOB, AFTER_FIRST, CPU_PER_JOB],
  goals: [{ kind: "vs-bullmq", metric: "jobsPerSecond", atLeast: 5 }],
  run: (system, options) => system.drainThreads(options.jobs, 16, "thread"),
};

export const drainCases: ComparedCase[] = [
  drainMain(1),
  drainMain(16),
  drainMain(100),
  drainMainPriorities(16),
  drainMainPriorities(100),
  drainThreads(1),
  drainThreads(16),
  drainThreadClaims,
  drainThreads(100),
];
