/**
 * What both sides of bench/main.ts share: the payload, the clock helpers, percentiles, and the
 * Redis probes (memory, versions). Nothing here knows Ratatoskr or BullMQ.
 */
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { Worker as Thread } from "node:worker_threads";
import type { RedisClient } from "../src/redis/connection.js";

/** Enqueues in flight at once: what a busy web server has outstanding. */
export const IN_FLIGHT = 16;
/** Jobs per bulk call, for enqueue-bulk and every pre-queue. */
export const BULK_CHUNK = 1_000;
/** A run that sees no progress for this long has lost jobs: fail it rather than hang. */
export const STALL_MS = 30_000;

/** Roughly the size of a real caption envelope: about 200 bytes once encoded as JSON. */
export const payload = (extra: Record<string, number> = {}): Record<string, unknown> => {
  const base = { kind: "caption", ...extra, note: "" };
  const pad = 200 - JSON.stringify(base).length;
  return { ...base, note: "x".repeat(Math.max(0, pad)) };
};

/** A figure per name, e.g. `{ jobsPerSecond: 12345 }`: what one run of one case measured. */
export type Figures = Record<string, number>;

/**
 * Resolves once `done()` holds, checking every `pollMs`; throws when `failure()` names one, or
 * when `progress()` has not moved for STALL_MS (jobs lost: better an error than a hang).
 */
export const waitFor = async (
  what: string,
  check: {
    done: () => boolean | Promise<boolean>;
    progress: () => number;
    failure?: () => string | undefined;
    pollMs?: number;
  },
): Promise<void> => {
  let last = check.progress();
  let lastChange = performance.now();
  for (;;) {
    const failure = check.failure?.();
    if (failure !== undefined) throw new Error(`${what}: ${failure}`);
    if (await check.done()) return;
    const now = check.progress();
    if (now !== last) [last, lastChange] = [now, performance.now()];
    if (performance.now() - lastChange > STALL_MS) {
      throw new Error(`${what}: stalled at ${now} for ${STALL_MS / 1000} s`);
    }
    await sleep(check.pollMs ?? 5);
  }
};

/** Runs `task(i)` for i in [0, count), `lanes` at a time, in order of i. */
export const inLanes = async (count: number, lanes: number, task: (i: number) => Promise<void>) => {
  let next = 0;
  const lane = async () => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(lanes, count) }, lane));
};

/**
 * Open loop: call `send(i, due)` for i in [0, rate × seconds) at `due` = start + i / rate, each
 * when it is due whatever the earlier ones did (a slow system shows as latency, not a lower
 * rate). `due` is on the performance.now() clock, so latency counts from it even if sent late.
 *
 * A thread of its own keeps the time: it sleeps in `Atomics.wait` to each due time (the kernel's
 * timer, tens of µs late) and posts the index, which wakes this thread at once. A timer of the
 * event loop wakes on whole milliseconds of the loop's clock: sends were late by 0.56 ms at the
 * median and 1.2 ms at p99 of the job's due time (500 jobs/s, nothing else running), more than
 * ours' whole path from the send (0.35 ms), and that lateness, the same for both sides, was most
 * of what either measured. Late sends still count from the due time: a system that keeps this
 * thread busy is charged for the wait, as before.
 */
export const openLoop = async (rate: number, seconds: number, send: (i: number, due: number) => void) => {
  const total = Math.round(rate * seconds);
  if (total === 0) return 0;
  // The start, on the monotonic clock every thread shares (each thread's performance.now()
  // has an origin of its own), once the thread is ready; 0 until then.
  const start = new BigInt64Array(new SharedArrayBuffer(8));
  const ticker = new Thread(TICKER, {
    eval: true,
    execArgv: [],
    workerData: { start, intervalMs: 1000 / rate, total },
  });
  let startedAt = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      ticker.on("message", (i: number) => {
        if (i < 0) {
          // Job 0 a millisecond from now, on both clocks.
          startedAt = performance.now() + 1;
          Atomics.store(start, 0, process.hrtime.bigint() + 1_000_000n);
          Atomics.notify(start, 0);
          return;
        }
        try {
          send(i, startedAt + (i * 1000) / rate);
        } catch (error) {
          reject(error instanceof Error ? error : new Error(String(error)));
        }
        if (i === total - 1) resolve();
      });
      ticker.once("error", reject);
      ticker.once("exit", (code) => reject(new Error(`open-loop ticker exited (code ${code}) early`)));
    });
  } finally {
    await ticker.terminate();
  }
  return total;
};

/**
 * The ticker's thread, plain JavaScript (no loader in the thread): it says it is ready (-1),
 * waits for the start, then posts each job's index at its due time.
 */
const TICKER = `
const { parentPort, workerData } = require("node:worker_threads");
const { start, intervalMs, total } = workerData;
const cell = new Int32Array(new SharedArrayBuffer(4));
parentPort.postMessage(-1);
Atomics.wait(start, 0, 0n);
const origin = Atomics.load(start, 0);
for (let i = 0; i < total; i++) {
  const wait = i * intervalMs - Number(process.hrtime.bigint() - origin) / 1e6;
  if (wait > 0) Atomics.wait(cell, 0, 0, wait);
  parentPort.postMessage(i);
}
`;

/** The p-th percentile (0-100) of ascending values, nearest rank. */
export const percentile = (sorted: ArrayLike<number>, p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN;

export const latencyFigures = (prefix: string, values: number[]): Figures => {
  const sorted = Float64Array.from(values).sort();
  return {
    [`${prefix}P50Ms`]: percentile(sorted, 50),
    [`${prefix}P95Ms`]: percentile(sorted, 95),
    [`${prefix}P99Ms`]: percentile(sorted, 99),
  };
};

/**
 * One latency run's load: `warmupSeconds` at the rate, whose jobs run and are checked like the
 * rest but not counted, then `seconds` measured. Each run has a queue, connection and worker of
 * its own, and for their first seconds the process was still compiling their path (V8 optimises
 * a function after some thousands of calls, on a thread of its own, which on two cores takes one
 * from the process or from Redis): in a 30 s run at 500 jobs/s, 100 of the slowest 150 jobs fell
 * in the first 5 s, about 2 a second after that. The issue asks for latency at a steady rate.
 */
export interface LatencyLoad {
  readonly rate: number;
  readonly seconds: number;
  readonly warmupSeconds: number;
}

export const loadJobs = (load: LatencyLoad): number =>
  Math.round(load.rate * (load.warmupSeconds + load.seconds));

/** The open loop of a latency run, warm-up and measured seconds in one. */
export const runLoad = (load: LatencyLoad, send: (i: number, due: number) => void) =>
  openLoop(load.rate, load.warmupSeconds + load.seconds, send);

/**
 * A run's enqueue→start and enqueue→completion latencies, of the jobs past the warm-up (job i
 * is due at `due`, both on the performance.now() clock).
 */
export class LatencySamples {
  private readonly start: number[] = [];
  private readonly done: number[] = [];
  private readonly warmJobs: number;

  constructor(load: LatencyLoad) {
    this.warmJobs = Math.round(load.rate * load.warmupSeconds);
  }

  /** From the handler's first line. */
  started(i: number, due: number) {
    if (i >= this.warmJobs) this.start.push(performance.now() - due);
  }

  /** From the worker's completion event. */
  completed(i: number, due: number) {
    if (i >= this.warmJobs) this.done.push(performance.now() - due);
  }

  figures(): Figures {
    return { ...latencyFigures("start", this.start), ...latencyFigures("done", this.done) };
  }
}

export const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/**
 * The rates of a drain, from its clock start, the first completion and the N-th completion:
 * the whole, and the part after the first job (start-up taken out).
 */
export const drainFigures = (jobs: number, started: number, firstAt: number, finishedAt: number): Figures => {
  const seconds = (finishedAt - started) / 1000;
  const firstJobSeconds = (firstAt - started) / 1000;
  return {
    jobsPerSecond: jobs / seconds,
    firstJobSeconds,
    afterFirstJobsPerSecond: jobs > 1 ? (jobs - 1) / (seconds - firstJobSeconds) : Number.NaN,
  };
};

/** CPU time used so far, in µs: this process's, all its threads (both sides run here), and Redis's. */
export interface CpuMark {
  readonly process: number;
  readonly redis: number;
}

export const markCpu = async (redis: RedisClient): Promise<CpuMark> => {
  const info = await redis.info("cpu");
  const { user, system } = process.cpuUsage();
  const redisSeconds = Number(infoFields(info, "used_cpu_user")) + Number(infoFields(info, "used_cpu_sys"));
  return { process: user + system, redis: redisSeconds * 1e6 };
};

/**
 * CPU a job cost, this process and Redis together, between two marks: steadier than a rate on
 * a shared machine, where another tenant's load slows the clock but not the work a job takes.
 */
export const cpuFigures = (from: CpuMark, to: CpuMark, jobs: number): Figures => ({
  cpuMicrosPerJob: (to.process - from.process + (to.redis - from.redis)) / jobs,
});

export const infoField = async (redis: RedisClient, section: string, field: string): Promise<string> =>
  infoFields(await redis.info(section), field);

const infoFields = (info: string, field: string): string => {
  const line = info.split("\r\n").find((l) => l.startsWith(`${field}:`));
  if (line === undefined) throw new Error(`INFO has no ${field}`);
  return line.slice(field.length + 1);
};

/**
 * Redis used_memory less its cache of Lua scripts: BullMQ loads each of its scripts at its first
 * call (ours are loaded before the baseline), and a few dozen KB of script text is not job data.
 */
export const dataMemory = async (redis: RedisClient): Promise<number> => {
  const info = await redis.info("memory");
  return Number(infoFields(info, "used_memory")) - Number(infoFields(info, "used_memory_scripts"));
};

/**
 * A worker's completions as each side's event hooks report them: how many, when the first and
 * last came, and the first problem (which fails the run).
 */
export class CompletionCount {
  count = 0;
  firstAt = Number.NaN;
  lastAt = Number.NaN;
  problem: string | undefined;

  constructor(private readonly expected: number) {}

  protected completed() {
    const now = performance.now();
    if (this.count === 0) this.firstAt = now;
    this.lastAt = now;
    this.count++;
  }

  wait(what: string) {
    return waitFor(what, {
      done: () => this.count >= this.expected,
      progress: () => this.count,
      failure: () => this.problem,
    });
  }
}

/**
 * A full collection of this process's heap, run before each measured run: both systems and
 * every case share the process, and a run otherwise inherits the garbage of the runs before it
 * (the drain cases leave 100-200 MB for the next major collection). Young-generation pauses
 * grew with it, 6-15 ms every 300 ms in the first latency run after the drains where 4 ms once
 * collected, and whichever side ran before the major collection came took them. The flag is set
 * at run time so that `npm run bench` needs no node option.
 */
export const collectGarbage = (): void => {
  exposedGc ??= exposeGc();
  exposedGc();
};
let exposedGc: (() => void) | undefined;
const exposeGc = () => {
  setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as () => void;
};
