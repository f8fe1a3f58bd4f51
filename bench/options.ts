import { parseArgs } from "node:util";

export interface Options {
  readonly quick: boolean;
  readonly list: boolean;
  /** Jobs per run of the enqueue and drain cases. */
  readonly jobs: number;
  /**
   * Jobs per run of the drains where one side runs at only a few hundred jobs/s: concurrency 1,
   * and worker threads at concurrency 100 (BullMQ's sandbox then runs 100 threads on our cores).
   * A tenth of --jobs: their rate is steady well before that, and N would take many minutes.
   */
  readonly slowJobs: number;
  readonly rounds: number;
  /** The --cases patterns as given (names or prefixes); empty for every case. */
  readonly patterns: readonly string[];
  /** Length of the open-loop load of each latency case, measured. */
  readonly latencySeconds: number;
  /** Length of the same load before it, run but not measured (harness.ts, `LatencyLoad`). */
  readonly latencyWarmupSeconds: number;
  /** Waiting jobs in the memory case: more than --jobs, so that fixed costs vanish in the mean. */
  readonly memoryJobs: number;
  /** Jobs the dying worker holds in the recovery case. */
  readonly recoveryJobs: number;
  /** Lock / lease length of both sides in the recovery case: 5 s, 2 s with --quick (time). */
  readonly leaseMs: number;
  /** python-rq's fork worker forks once per job (~70 jobs/s here): it gets fewer jobs. */
  readonly rqForkJobs: number;
  readonly rqSimpleJobs: number;
}

/** A mistake on the command line: shown as one line with the usage, not as a stack trace. */
export class UsageError extends Error {}

const integerFrom = (least: number, name: string, value: string | undefined, fallback: number): number => {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < least)
    throw new UsageError(
      `--${name} must be ${least === 0 ? "0 or more" : "a positive integer"}, got ${value}`,
    );
  return n;
};
const positiveInteger = (name: string, value: string | undefined, fallback: number) =>
  integerFrom(1, name, value, fallback);

export const USAGE = `npm run bench -- [--quick] [--jobs N] [--rounds R] [--seconds S] [--warmup S] [--cases a,b,...] [--list]`;

/** Node's own parse errors (an unknown option, a missing value) are usage errors too. */
const parseCommandLine = (argv: string[]) => {
  try {
    return parseArgs({
      args: argv,
      options: {
        quick: { type: "boolean", default: false },
        list: { type: "boolean", default: false },
        jobs: { type: "string" },
        rounds: { type: "string" },
        seconds: { type: "string" },
        warmup: { type: "string" },
        cases: { type: "string" },
        help: { type: "boolean", default: false },
      },
    });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
};

export const parseOptions = (argv: string[]): Options => {
  const { values } = parseCommandLine(argv);
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const quick = values.quick;
  const jobs = positiveInteger("jobs", values.jobs, quick ? 5_000 : 50_000);
  // Small runs (--jobs 2000) keep every case small; otherwise memory gets its own, larger count.
  const capped = (n: number) => (values.jobs === undefined ? n : Math.min(n, jobs));
  return {
    quick,
    list: values.list,
    jobs,
    slowJobs: Math.max(1, Math.round(jobs / 10)),
    rounds: positiveInteger("rounds", values.rounds, quick ? 2 : 3),
    patterns: (values.cases ?? "")
      .split(",")
      .map((p) => p.trim())
      .filter((p) => p !== ""),
    latencySeconds: positiveInteger("seconds", values.seconds, quick ? 3 : 10),
    latencyWarmupSeconds: integerFrom(0, "warmup", values.warmup, quick ? 1 : 3),
    memoryJobs: values.jobs === undefined ? (quick ? 20_000 : 100_000) : jobs,
    recoveryJobs: capped(50),
    leaseMs: quick ? 2_000 : 5_000,
    rqForkJobs: capped(quick ? 100 : 500),
    rqSimpleJobs: capped(quick ? 500 : 3_000),
  };
};
