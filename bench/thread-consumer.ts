/**
 * One worker thread of bench/thread-consumers.ts: the engine `Worker` claiming for itself on a
 * connection of its own, each job run as a pool thread runs it (`runJob`, the drain-threads
 * registry), so no job crosses to the main thread. It tells the main thread how many jobs
 * completed every 10 ms, and the first problem it meets. Bundled with everything it imports into
 * one file (`bundleThreadConsumer`).
 */
import { parentPort, workerData } from "node:worker_threads";
import { Effect } from "effect";
import { PRIORITIES } from "../src/domain/priority.js";
import type { JobRegistry } from "../src/jobs/definition.js";
import { LazyAbort } from "../src/jobs/lazy-abort.js";
import { threadClaimsInFlight } from "../src/pool/hosted-thread.js";
import { type JobLines, preloadRegistry, runJob } from "../src/pool/job-runner.js";
import { JobFailure } from "../src/queue/failures.js";
import { Queue } from "../src/queue/queue.js";
import { Worker } from "../src/queue/worker.js";
import { connectRedis } from "../src/redis/connection.js";
import jobs from "./noop-jobs.js";

export interface ConsumerData {
  readonly url: string;
  readonly consumer: string;
  readonly concurrency: number;
}

/** What a thread tells the main thread: jobs completed since its last word, and any problem. */
export interface ConsumerReport {
  readonly completed: number;
  readonly problem?: string;
}

const { url, consumer, concurrency } = workerData as ConsumerData;
const port = parentPort!;
const REGISTRY = "bench:noop-jobs";
// The registry has no scope, so the handler's resources are `undefined`, as `unknown` allows.
preloadRegistry(REGISTRY, () => Promise.resolve({ default: jobs as JobRegistry<unknown> }));
// A job's progress and log lines (the no-op job has none) go nowhere.
const jobLines: JobLines = { progress: () => {}, log: () => {} };
const redis = connectRedis(url, { name: consumer });
const queue = new Queue(redis);
await Effect.runPromise(queue.prepare());

let completed = 0;
let problem: string | undefined;
const report = () => {
  if (completed === 0 && problem === undefined) return;
  port.postMessage({ completed, ...(problem === undefined ? {} : { problem }) } satisfies ConsumerReport);
  completed = 0;
  problem = undefined;
};
const reporting = setInterval(report, 10);

const worker = new Worker({
  queue,
  consumer,
  priorities: PRIORITIES,
  concurrency,
  // As many claims out as a pool thread hosting a group keeps.
  claimsInFlight: threadClaimsInFlight(concurrency),
  // As a pool thread runs a job (decoded against its kind's schema, its scope opened and closed),
  // only here rather than after a message from the main thread.
  handler: async (job, context) => {
    const info = {
      id: job.id,
      attempt: job.attempt,
      runAttempt: job.runAttempt,
      priority: job.priority,
      userId: job.userId,
    };
    const outcome = await runJob(
      REGISTRY,
      { seq: 0, job: info, data: job.data },
      LazyAbort.of(context),
      jobLines,
    );
    if (outcome.ok) return outcome.result;
    throw new JobFailure(outcome.kind, outcome.message);
  },
  onEvent: (event) => {
    if (event.type === "completed") completed++;
    else if (event.type !== "released")
      problem ??= "error" in event ? `${event.type}: ${event.error}` : event.type;
  },
}).start();

port.once("message", () => {
  void worker.stop().then(() => {
    clearInterval(reporting);
    report();
    redis.disconnect();
    port.close();
  });
});
