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

const drainMainPriorities = (concurrency: number): ComparedCase => ({
  kind: "compared",
  name: `drain-main-prio-c${concurrency}`,
  what: `as drain-main-c${concurrency}, jobs spread at random over four priorities`,
  metrics: [JOBS_PER_SECOND, CPU_PER_JOB],
  // Priorities should cost us little: within 10 % of the same drain without them.
  goals: [{ kind: "vs-ours", metric: "jobsPerSecond", baseline: `drain-main-c${concurrency}`, atLeast: 0.9 }],
  run: (system, options) => system.drainMain(options.jobs, concurrency, "mixed"),
});

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
