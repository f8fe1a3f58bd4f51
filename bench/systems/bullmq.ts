/**
 * BullMQ's side of bench/main.ts, with its defaults unless a case says otherwise. Its Queue and
 * Worker open their own ioredis connections (no auto-pipelining, BullMQ's default).
 */
import { spawn } from "node:child_process";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
// Resolves from bench/node_modules: BullMQ stays out of the root package (see bench/README.md).
import { type Job, type Processor, Queue, Worker, type WorkerOptions } from "bullmq";
import {
  CompletionCount,
  BULK_CHUNK,
  type CpuMark,
  cpuFigures,
  drainFigures,
  markCpu,
  type Figures,
  IN_FLIGHT,
  inLanes,
  type LatencyLoad,
  LatencySamples,
  loadJobs,
  payload,
  runLoad,
  dataMemory,
} from "../harness.js";
import { lineFrom, REPO_ROOT } from "./child.js";
import type { System, Target } from "./system.js";

const NAME = "bench";
const DATA = payload();
/** BullMQ's priorities run from 1 (highest) up; four, as ours. */
const randomPriority = () => 1 + Math.floor(Math.random() * 4);

/** Counts a BullMQ worker's completions and remembers its first failure. */
class Completions extends CompletionCount {
  watch(worker: Worker, onCompleted?: (job: Job) => void): Worker {
    worker.on("completed", (job: Job) => {
      onCompleted?.(job);
      this.completed();
    });
    worker.on("failed", (job: Job | undefined, error: Error) => {
      this.problem ??= `job ${job?.id} failed: ${error.message}`;
    });
    worker.on("error", (error: Error) => {
      this.problem ??= `worker error: ${error.message}`;
    });
    return worker;
  }
}

export class Bullmq implements System {
  readonly name = "bullmq";

  constructor(private readonly target: Target) {}

  private get connection() {
    return { host: "127.0.0.1", port: this.target.port };
  }

  private async open() {
    const queue = new Queue(NAME, { connection: this.connection });
    await queue.waitUntilReady();
    return queue;
  }

  private worker(processor: Processor | URL, options: Partial<WorkerOptions>) {
    return new Worker(NAME, processor, { connection: this.connection, ...options });
  }

  private async prequeue(queue: Queue, jobs: number, job: () => { data: unknown; priority?: number }) {
    for (let from = 0; from < jobs; from += BULK_CHUNK) {
      const chunk = Array.from({ length: Math.min(BULK_CHUNK, jobs - from) }, () => {
        const { data, priority } = job();
        return { name: "noop", data, ...(priority === undefined ? {} : { opts: { priority } }) };
      });
      await queue.addBulk(chunk);
    }
  }

  private async verify(queue: Queue, jobs: number, what: string, state: "completed" | "waiting") {
    const counts = await queue.getJobCounts(
      "completed",
      "failed",
      "wait",
      "prioritized",
      "active",
      "delayed",
      "paused",
    );
    const waiting = (counts.wait ?? 0) + (counts.prioritized ?? 0);
    const ok =
      state === "completed"
        ? counts.completed === jobs && counts.failed === 0 && waiting + (counts.active ?? 0) === 0
        : waiting === jobs && (counts.active ?? 0) + (counts.completed ?? 0) === 0;
    if (!ok) throw new Error(`bullmq ${what}: expected ${jobs} ${state}, counts ${JSON.stringify(counts)}`);
  }

  async enqueueSingle(jobs: number): Promise<Figures> {
    const queue = await this.open();
    try {
      const started = performance.now();
      await inLanes(jobs, IN_FLIGHT, async () => {
        await queue.add("noop", DATA);
      });
      const seconds = (performance.now() - started) / 1000;
      await this.verify(queue, jobs, "enqueue-single", "waiting");
      return { jobsPerSecond: jobs / seconds };
    } finally {
      await queue.close();
    }
  }

  async enqueueBulk(jobs: number): Promise<Figures> {
    const queue = await this.open();
    try {
      const started = performance.now();
      await this.prequeue(queue, jobs, () => ({ data: DATA }));
      const seconds = (performance.now() - started) / 1000;
      await this.verify(queue, jobs, "enqueue-bulk", "waiting");
      return { jobsPerSecond: jobs / seconds };
    } finally {
      await queue.close();
    }
  }

  private async drain(
    jobs: number,
    job: () => { data: unknown; priority?: number },
    worker: () => Worker,
    queued?: () => Promise<void>,
  ) {
    const queue = await this.open();
    try {
      await this.prequeue(queue, jobs, job);
      await queued?.();
      const completions = new Completions(jobs);
      const cpuFrom = await markCpu(this.target.admin);
      const started = performance.now();
      const running = completions.watch(worker());
      let cpuTo: CpuMark;
      try {
        await completions.wait("bullmq drain");
        cpuTo = await markCpu(this.target.admin);
      } finally {
        await running.close();
      }
      await this.verify(queue, jobs, "drain", "completed");
      return {
        ...drainFigures(jobs, started, completions.firstAt, completions.lastAt),
        ...cpuFigures(cpuFrom, cpuTo, jobs),
      };
    } finally {
      await queue.close();
    }
  }

  drainMain(
    jobs: number,
    concurrency: number,
    priorities: "single" | "mixed",
    queued?: () => Promise<void>,
  ): Promise<Figures> {
    const job =
      priorities === "mixed" ? () => ({ data: DATA, priority: randomPriority() }) : () => ({ data: DATA });
    return this.drain(jobs, job, () => this.worker(async () => undefined, { concurrency }), queued);
  }

  /** Its sandbox: a processor file run in worker threads, one thread per concurrency slot. */
  // BullMQ has one way to run jobs in threads: its sandbox (`claims` is ours alone).
  drainThreads(jobs: number, concurrency: number): Promise<Figures> {
    const processor = new URL("./bullmq-noop-processor.js", import.meta.url);
    return this.drain(
      jobs,
      () => ({ data: { v: 1, kind: "noop", body: {} } }),
      () => this.worker(processor, { concurrency, useWorkerThreads: true }),
    );
  }

  async latency(load: LatencyLoad): Promise<Figures> {
    const queue = await this.open();
    try {
      const samples = new LatencySamples(load);
      const total = loadJobs(load);
      const completions = new Completions(total);
      const worker = completions.watch(
        this.worker(
          async (job: Job<{ i: number; sentAt: number }>) => {
            samples.started(job.data.i, job.data.sentAt);
          },
          { concurrency: 16 },
        ),
        (job: Job<{ i: number; sentAt: number }>) => samples.completed(job.data.i, job.data.sentAt),
      );
      try {
        // Both sides get the same moment to connect and block for work before the load starts.
        await sleep(200);
        await runLoad(load, (i, due) => {
          queue
            .add("noop", payload({ sentAt: due, i }))
            .catch((error: unknown) => (completions.problem ??= `add: ${String(error)}`));
        });
        await completions.wait("bullmq latency");
      } finally {
        await worker.close();
      }
      await this.verify(queue, total, "latency", "completed");
      return samples.figures();
    } finally {
      await queue.close();
    }
  }

  async memory(jobs: number): Promise<Figures> {
    const queue = await this.open();
    try {
      const empty = await dataMemory(this.target.admin);
      await this.prequeue(queue, jobs, () => ({ data: DATA }));
      const waitingBytesPerJob = ((await dataMemory(this.target.admin)) - empty) / jobs;
      const completions = new Completions(jobs);
      const worker = completions.watch(this.worker(async () => undefined, { concurrency: 100 }));
      try {
        await completions.wait("bullmq memory drain");
      } finally {
        await worker.close();
      }
      // BullMQ's default keeps every completed job (removeOnComplete off).
      const completedBytesPerJob = ((await dataMemory(this.target.admin)) - empty) / jobs;
      await this.verify(queue, jobs, "memory", "completed");
      return { waitingBytesPerJob, completedBytesPerJob };
    } finally {
      await queue.close();
    }
  }

  /**
   * A child process takes every job with a processor that never returns; we SIGKILL it and time
   * until a worker here has started all of them. Its stalled-job check moves a job back to wait
   * only once the job's lock has expired, and the check runs every `stalledInterval`.
   */
  async recovery(jobs: number, leaseMs: number): Promise<Figures> {
    const queue = await this.open();
    let child: ReturnType<typeof spawn> | undefined;
    try {
      await this.prequeue(queue, jobs, () => ({ data: DATA }));
      const script = fileURLToPath(new URL("./bullmq-recovery-child.js", import.meta.url));
      child = spawn(process.execPath, [script, `${this.target.port}`, `${jobs}`, `${leaseMs}`], {
        cwd: REPO_ROOT,
        stdio: ["ignore", "pipe", "inherit"],
      });
      await lineFrom(child, "active", "bullmq recovery child");

      let restarted = 0;
      let allRestartedAt = Number.NaN;
      const completions = new Completions(jobs);
      const worker = completions.watch(
        this.worker(
          async () => {
            if (++restarted === jobs) allRestartedAt = performance.now();
          },
          { concurrency: jobs, lockDuration: leaseMs, stalledInterval: leaseMs },
        ),
      );
      // The kill falls anywhere in the periodic checks' cycle, as a real crash would: killing
      // as the checker starts would favour whichever side checks first after a start.
      await sleep(Math.random() * leaseMs);
      const killedAt = performance.now();
      child.kill("SIGKILL");
      try {
        await completions.wait("bullmq recovery");
      } finally {
        await worker.close();
      }
      await this.verify(queue, jobs, "recovery", "completed");
      return { recoverySeconds: (allRestartedAt - killedAt) / 1000 };
    } finally {
      child?.kill("SIGKILL");
      await queue.close();
    }
  }
}
