/**
 * Ratatoskr's side of bench/main.ts: the engine (Queue + Worker, handlers in the main thread)
 * for most cases, the full runtime (`start()`, Piscina threads) for drain-threads.
 */
import { spawn } from "node:child_process";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Worker as Thread } from "node:worker_threads";
import { Effect } from "effect";
import { loadConfig, queueOptionsFrom } from "../../config/schema.js";
import { PRIORITIES, type Priority } from "../../src/domain/priority.js";
import { QueueAdmin } from "../../src/queue/admin.js";
import { type ClaimedJob, type NewJob, Queue, type QueueOptions } from "../../src/queue/queue.js";
import { type JobHandler, Worker, type WorkerEvent } from "../../src/queue/worker.js";
import { codeCacheTaken, writeCodeCache } from "../../src/pool/code-cache.js";
import { bundleThreadCode } from "../../src/pool/thread-bundle.js";
import { connectRedis } from "../../src/redis/connection.js";
import { start } from "../../src/runtime.js";
import {
  CompletionCount,
  BULK_CHUNK,
  type CpuMark,
  cpuFigures,
  markCpu,
  drainFigures,
  type Figures,
  IN_FLIGHT,
  inLanes,
  type LatencyLoad,
  LatencySamples,
  loadJobs,
  runLoad,
  payload,
  dataMemory,
  waitFor,
} from "../harness.js";
import type { ConsumerData, ConsumerReport } from "../thread-consumer.js";
import { lineFrom, REPO_ROOT } from "./child.js";
import type { System, Target } from "./system.js";

const DATA = JSON.stringify(payload());
/** The runtime's envelope for the `noop` kind of bench/noop-jobs.ts. */
const NOOP_ENVELOPE = JSON.stringify({ v: 1, kind: "noop", body: {} });
const noop: JobHandler = async () => undefined;
/** The job registry of the drain-threads cases. */
const NOOP_REGISTRY = new URL("../noop-jobs.ts", import.meta.url).href;

/**
 * Builds the drain-threads cases' worker-thread code and its V8 code cache, as
 * `ratatoskr threads bundle` does at install; a start then finds them built. Without this the
 * first round after a change of the code (or an `npm ci`) timed that one-time build, 1-2 s
 * here. A cache already there is kept where this process's V8 takes it (`writeCodeCache` waits 2
 * s for a thread to make it); one made under other node flags, which V8 refuses, is made again.
 * Returns the seconds it took.
 */
export const prepareThreadCode = async (): Promise<number> => {
  const began = performance.now();
  const bundle = await bundleThreadCode(NOOP_REGISTRY);
  if (!codeCacheTaken(bundle)) await writeCodeCache(NOOP_REGISTRY, bundle);
  return (performance.now() - began) / 1000;
};

const randomPriority = (): Priority => PRIORITIES[Math.floor(Math.random() * PRIORITIES.length)]!;

/** Every job completed: nothing waiting, running, delayed or dead, and nothing failed or retried. */
const verifyCompleted = async (queue: Queue, jobs: number, what: string) => {
  const stats = await Effect.runPromise(new QueueAdmin(queue).stats());
  const sum = (f: (s: (typeof stats)[number]) => number) => stats.reduce((n, s) => n + f(s), 0);
  const completed = sum((s) => s.completedLastHour);
  const leftOver = sum((s) => s.waiting + s.running + s.delayed + s.dead);
  const failed = sum((s) => s.failedLastHour + s.retriedLastHour);
  if (completed !== jobs || leftOver !== 0 || failed !== 0) {
    throw new Error(
      `ratatoskr ${what}: ${completed}/${jobs} completed, ${leftOver} left over, ${failed} failed or retried`,
    );
  }
};

/**
 * Attempts ended since `fromMinute`, from the queue's per-minute counters (the scripts keep
 * them): a few commands, where `stats()` sends 77 (every stream's groups, an hour of minutes).
 * Polled every 20 ms, `stats()` sent Redis about 3,800 commands a second of its own during a
 * drain, a load BullMQ's side, which counts its worker's events, does not carry.
 */
const endedSince = async (queue: Queue, fromMinute: number) => {
  const pipeline = queue.redis.pipeline();
  for (let m = fromMinute; m <= Math.floor(Date.now() / 60_000); m++) pipeline.hgetall(queue.keys.metrics(m));
  const buckets = ((await pipeline.exec()) ?? []).map(([, h]) => (h ?? {}) as Record<string, string>);
  const sum = (outcome: string) =>
    buckets.reduce((n, h) => n + PRIORITIES.reduce((k, p) => k + Number(h[`${outcome}:${p}`] ?? 0), 0), 0);
  return { completed: sum("completed"), failed: sum("failed") + sum("retried") };
};

const verifyWaiting = async (queue: Queue, jobs: number, what: string) => {
  const stats = await Effect.runPromise(new QueueAdmin(queue).stats());
  const waiting = stats.reduce((n, s) => n + s.waiting, 0);
  if (waiting !== jobs) throw new Error(`ratatoskr ${what}: ${waiting}/${jobs} waiting`);
};

/** Counts an engine worker's completions and remembers the first problem it reports. */
class Completions extends CompletionCount {
  constructor(
    expected: number,
    private readonly onCompleted?: (job: ClaimedJob) => void,
  ) {
    super(expected);
  }

  readonly onEvent = (event: WorkerEvent) => {
    if (event.type === "completed") {
      this.onCompleted?.(event.job);
      this.completed();
    } else if (event.type !== "released") {
      this.problem ??= "error" in event ? `${event.type}: ${event.error}` : event.type;
    }
  };
}

export class Ratatoskr implements System {
  readonly name = "ratatoskr";

  constructor(private readonly target: Target) {}

  /** A queue on a connection of its own (from `connectRedis`, as the runtime's), scripts loaded. */
  private async open(options: QueueOptions = {}) {
    const redis = connectRedis(this.target.url, { name: "bench" });
    const queue = new Queue(redis, options);
    await Effect.runPromise(queue.prepare());
    return { queue, close: () => redis.disconnect() };
  }

  private async prequeue(queue: Queue, jobs: number, job: (i: number) => NewJob) {
    for (let from = 0; from < jobs; from += BULK_CHUNK) {
      const chunk = Array.from({ length: Math.min(BULK_CHUNK, jobs - from) }, (_, k) => job(from + k));
      const outcomes = await Effect.runPromise(queue.enqueueMany(chunk));
      const refused = outcomes.find((o) => o.outcome !== "ok");
      if (refused) throw new Error(`ratatoskr: enqueueMany refused ${refused.id}: ${refused.outcome}`);
    }
  }

  private worker(queue: Queue, concurrency: number, handler: JobHandler, completions: Completions) {
    return new Worker({
      queue,
      consumer: "bench-worker",
      priorities: PRIORITIES,
      concurrency,
      handler,
      onEvent: completions.onEvent,
    });
  }

  async enqueueSingle(jobs: number): Promise<Figures> {
    const { queue, close } = await this.open();
    try {
      const started = performance.now();
      await inLanes(jobs, IN_FLIGHT, async (i) => {
        await queue.enqueueNow({ id: `j${i}`, priority: "normal", data: DATA });
      });
      const seconds = (performance.now() - started) / 1000;
      await verifyWaiting(queue, jobs, "enqueue-single");
      return { jobsPerSecond: jobs / seconds };
    } finally {
      close();
    }
  }

  async enqueueBulk(jobs: number): Promise<Figures> {
    const { queue, close } = await this.open();
    try {
      const started = performance.now();
      await this.prequeue(queue, jobs, (i) => ({ id: `j${i}`, priority: "normal", data: DATA }));
      const seconds = (performance.now() - started) / 1000;
      await verifyWaiting(queue, jobs, "enqueue-bulk");
      return { jobsPerSecond: jobs / seconds };
    } finally {
      close();
    }
  }

  async drainMain(
    jobs: number,
    concurrency: number,
    priorities: "single" | "mixed",
    queued?: () => Promise<void>,
  ): Promise<Figures> {
    const { queue, close } = await this.open();
    try {
      const priority = priorities === "mixed" ? randomPriority : () => "normal" as const;
      await this.prequeue(queue, jobs, (i) => ({ id: `j${i}`, priority: priority(), data: DATA }));
      await queued?.();
      const completions = new Completions(jobs);
      const cpuFrom = await markCpu(this.target.admin);
      const started = performance.now();
      const worker = this.worker(queue, concurrency, noop, completions).start();
      let cpuTo: CpuMark;
      try {
        await completions.wait("ratatoskr drain");
        cpuTo = await markCpu(this.target.admin);
      } finally {
        await worker.stop();
      }
      await verifyCompleted(queue, jobs, "drain");
      return {
        ...drainFigures(jobs, started, completions.firstAt, completions.lastAt),
        ...cpuFigures(cpuFrom, cpuTo, jobs),
      };
    } finally {
      close();
    }
  }

  drainThreads(jobs: number, concurrency: number, claims: "main" | "thread" = "main"): Promise<Figures> {
    return this.drainThreadsWith(
      jobs,
      concurrency,
      claims === "thread" ? { RT_CLAIM_IN: "threads", RT_POOL_THREADS: "1" } : {},
    );
  }

  /**
   * As a deployment runs: start() with a registry, a pool of 2 threads and one worker group;
   * `settings` over those defaults (RT_CLAIM_IN, RT_POOL_THREADS).
   */
  async drainThreadsWith(
    jobs: number,
    concurrency: number,
    settings: Record<string, string>,
  ): Promise<Figures> {
    const config = loadConfig({
      REDIS_URL: this.target.url,
      RT_PROFILE: "test",
      RT_JOBS_MODULE: NOOP_REGISTRY,
      // The machine's two cores; the pool's default (one per CPU) would be the same here.
      RT_POOL_THREADS: "2",
      RT_LOG_LEVEL: "error",
      ...settings,
    });
    const { queue, close } = await this.open(queueOptionsFrom(config));
    try {
      await this.prequeue(queue, jobs, (i) => ({ id: `j${i}`, priority: "normal", data: NOOP_ENVELOPE }));
      const fromMinute = Math.floor(Date.now() / 60_000);
      let completed = 0;
      let firstAt = Number.NaN;
      let finishedAt = Number.NaN;
      let problem: string | undefined;
      const cpuFrom = await markCpu(this.target.admin);
      const started = performance.now();
      const runtime = await start({
        config,
        groups: [{ name: "bench", queues: PRIORITIES, concurrency }],
      });
      let cpuTo: CpuMark;
      try {
        // The runtime reports no per-job events outward: the queue's own counters, polled every
        // 20 ms, say when the N-th job is done (so this clock can stop up to 20 ms late).
        await waitFor("ratatoskr drain-threads", {
          pollMs: 20,
          progress: () => completed,
          failure: () => problem,
          done: async () => {
            const ended = await endedSince(queue, fromMinute);
            completed = ended.completed;
            if (ended.failed > 0) problem = `${ended.failed} jobs failed or retried`;
            if (completed > 0 && Number.isNaN(firstAt)) firstAt = performance.now();
            if (completed >= jobs) finishedAt = performance.now();
            return completed >= jobs;
          },
        });
        cpuTo = await markCpu(this.target.admin);
      } finally {
        await runtime.stop();
      }
      await verifyCompleted(queue, jobs, "drain-threads");
      return { ...drainFigures(jobs, started, firstAt, finishedAt), ...cpuFigures(cpuFrom, cpuTo, jobs) };
    } finally {
      close();
    }
  }

  /**
   * bench/thread-consumers.ts's stand-in, not a case of bench/main.ts: the same jobs as
   * drain-threads, run by `threads` worker threads that each claim for themselves (the engine
   * `Worker` in the thread: `bundle`, made by `bundleThreadConsumer`), each at
   * `concurrency / threads` slots (rounded up). The threads report every 10 ms, so this clock
   * stops up to 10 ms late (drain-threads' polling: up to 20 ms).
   */
  async drainThreadConsumers(
    jobs: number,
    concurrency: number,
    threads: number,
    bundle: string,
  ): Promise<Figures> {
    const { queue, close } = await this.open();
    const started: Array<{ thread: Thread; exited: Promise<void> }> = [];
    let stopping = false;
    try {
      await this.prequeue(queue, jobs, (i) => ({ id: `j${i}`, priority: "normal", data: NOOP_ENVELOPE }));
      let completed = 0;
      let firstAt = Number.NaN;
      let finishedAt = Number.NaN;
      let problem: string | undefined;
      const startedAt = performance.now();
      for (let i = 0; i < threads; i++) {
        const data: ConsumerData = {
          url: this.target.url,
          consumer: `bench-thread-${i}`,
          concurrency: Math.ceil(concurrency / threads),
        };
        // No execArgv: the bundle needs no TypeScript loader, which the thread would inherit.
        const thread = new Thread(bundle, { workerData: data, execArgv: [] });
        thread.on("message", (report: ConsumerReport) => {
          completed += report.completed;
          problem ??= report.problem;
          if (completed > 0 && Number.isNaN(firstAt)) firstAt = performance.now();
          if (completed >= jobs && Number.isNaN(finishedAt)) finishedAt = performance.now();
        });
        thread.on("error", (error) => (problem ??= `thread ${i}: ${error.message}`));
        // Not events.once: it rejects on the thread's 'error', which the listener above reports.
        const exited = new Promise<void>((resolve) =>
          thread.once("exit", (code) => {
            if (!stopping) problem ??= `thread ${i} exited (code ${code}) before the drain ended`;
            resolve();
          }),
        );
        started.push({ thread, exited });
      }
      await waitFor("ratatoskr thread consumers", {
        pollMs: 5,
        progress: () => completed,
        failure: () => problem,
        done: () => completed >= jobs,
      });
      stopping = true;
      await Promise.all(started.map((s) => this.stopThread(s.thread, s.exited)));
      if (problem !== undefined) throw new Error(`ratatoskr thread consumers: ${problem}`);
      await verifyCompleted(queue, jobs, "thread consumers");
      return drainFigures(jobs, startedAt, firstAt, finishedAt);
    } finally {
      stopping = true;
      for (const { thread } of started) void thread.terminate();
      close();
    }
  }

  /** Asks a thread to stop its worker and waits for it to exit; past 10 s, terminates it. */
  private async stopThread(thread: Thread, exited: Promise<void>): Promise<void> {
    thread.postMessage("stop");
    const timer = setTimeout(() => void thread.terminate(), 10_000);
    try {
      await exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * With `apart`, the jobs are enqueued through a queue (and connection) of their own, as from
   * another process: the worker is woken and claims each, where an enqueue through its own queue
   * hands the job over, claimed (docs/architecture.md, "Handoffs").
   */
  async latency(load: LatencyLoad, options: { apart?: boolean } = {}): Promise<Figures> {
    const { queue, close } = await this.open();
    const producer = options.apart ? await this.open() : { queue, close: () => {} };
    try {
      const dueOf = (job: ClaimedJob) => JSON.parse(job.data) as { i: number; sentAt: number };
      const samples = new LatencySamples(load);
      const total = loadJobs(load);
      const completions = new Completions(total, (job) => {
        const { i, sentAt } = dueOf(job);
        samples.completed(i, sentAt);
      });
      const handler: JobHandler = async (job) => {
        const { i, sentAt } = dueOf(job);
        samples.started(i, sentAt);
        return undefined;
      };
      const worker = this.worker(queue, 16, handler, completions).start();
      try {
        // Both sides get the same moment to connect and block for work before the load starts.
        await sleep(200);
        await runLoad(load, (i, due) => {
          const data = JSON.stringify(payload({ sentAt: due, i }));
          producer.queue
            .enqueueNow({ id: `j${i}`, priority: "normal", data })
            .catch((error: unknown) => (completions.problem ??= `enqueue: ${String(error)}`));
        });
        await completions.wait("ratatoskr latency");
      } finally {
        await worker.stop();
      }
      await verifyCompleted(queue, total, "latency");
      return samples.figures();
    } finally {
      producer.close();
      close();
    }
  }

  async memory(jobs: number): Promise<Figures> {
    const { queue, close } = await this.open();
    try {
      // After FLUSHALL and the script load: the difference is the jobs alone.
      const empty = await dataMemory(this.target.admin);
      await this.prequeue(queue, jobs, (i) => ({ id: `j${i}`, priority: "normal", data: DATA }));
      const waitingBytesPerJob = ((await dataMemory(this.target.admin)) - empty) / jobs;
      const completions = new Completions(jobs);
      const worker = this.worker(queue, 100, noop, completions).start();
      try {
        await completions.wait("ratatoskr memory drain");
      } finally {
        await worker.stop();
      }
      // Completed jobs are kept for the default retention (RT_KEEP_COMPLETED_S, 24 h).
      const completedBytesPerJob = ((await dataMemory(this.target.admin)) - empty) / jobs;
      await verifyCompleted(queue, jobs, "memory");
      return { waitingBytesPerJob, completedBytesPerJob };
    } finally {
      close();
    }
  }

  /**
   * A child process claims every job with a handler that never returns; we SIGKILL it and time
   * until a worker here has started all of them, with the parent reclaiming as the runtime's
   * reclaimer actor does (actors/services.ts): a pass, then a sleep of max(250 ms, lease / 2).
   */
  async recovery(jobs: number, leaseMs: number): Promise<Figures> {
    const { queue, close } = await this.open();
    // Ends the reclaim loop, its sleep included, once the run is over.
    const stopReclaiming = new AbortController();
    let child: ReturnType<typeof spawn> | undefined;
    try {
      await this.prequeue(queue, jobs, (i) => ({ id: `j${i}`, priority: "normal", data: DATA }));
      const script = fileURLToPath(new URL("./ratatoskr-recovery-child.ts", import.meta.url));
      child = spawn(process.execPath, ["--import", "tsx", script, this.target.url, `${jobs}`, `${leaseMs}`], {
        cwd: REPO_ROOT,
        stdio: ["ignore", "pipe", "inherit"],
      });
      await lineFrom(child, "active", "ratatoskr recovery child");

      let restarted = 0;
      let allRestartedAt = Number.NaN;
      const completions = new Completions(jobs);
      const worker = new Worker({
        queue,
        consumer: "bench-rescuer",
        priorities: PRIORITIES,
        concurrency: jobs,
        leaseMs,
        handler: async () => {
          if (++restarted === jobs) allRestartedAt = performance.now();
          return undefined;
        },
        onEvent: completions.onEvent,
      }).start();
      const reclaimer = (async () => {
        const { signal } = stopReclaiming;
        let cursors: readonly string[] = [];
        while (!signal.aborted) {
          const result = await Effect.runPromise(queue.reclaim("bench/reclaimer", { leaseMs, cursors }));
          cursors = result.cursors;
          if (!result.more) await sleep(Math.max(250, leaseMs / 2), undefined, { signal }).catch(() => {});
        }
      })().catch((error: unknown) => (completions.problem ??= `reclaim: ${String(error)}`));
      // The kill falls anywhere in the periodic checks' cycle, as a real crash would: killing
      // as the checker starts would favour whichever side checks first after a start.
      await sleep(Math.random() * leaseMs);
      const killedAt = performance.now();
      child.kill("SIGKILL");
      try {
        await completions.wait("ratatoskr recovery");
      } finally {
        stopReclaiming.abort();
        await reclaimer;
        await worker.stop();
      }
      await verifyCompleted(queue, jobs, "recovery");
      return { recoverySeconds: (allRestartedAt - killedAt) / 1000 };
    } finally {
      stopReclaiming.abort();
      child?.kill("SIGKILL");
      close();
    }
  }
}
