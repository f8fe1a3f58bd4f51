/**
 * One worker thread of bench/thread-consumers.ts: the engine `Worker` claiming for itself on a
 * connection of its own, its handler the drain-threads registry's (the envelope decoded against
 * the kind's schema, then the kind's handler), so no job crosses to the main thread. It tells
 * the main thread how many jobs completed every 10 ms, and the first problem it meets. Bundled
 * with everything it imports (`bundleThreadConsumer`), as the pool's thread code is.
 */
import { parentPort, workerData } from "node:worker_threads";
import { Effect, Either } from "effect";
import { makeEnvelopeCodec } from "../src/domain/envelope.js";
import { PRIORITIES } from "../src/domain/priority.js";
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
const codec = makeEnvelopeCodec(
  Object.fromEntries(Object.entries(jobs.kinds).map(([k, d]) => [k, d.schema])),
);
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
  handler: async (job, context) => {
    const decoded = codec.decode(job.data);
    if (Either.isLeft(decoded)) throw new Error(decoded.left.message);
    const definition = jobs.kinds[decoded.right.kind]!;
    const result = await definition.handler(decoded.right.body, {
      job: {
        id: job.id,
        attempt: job.attempt,
        runAttempt: job.runAttempt,
        priority: job.priority,
        userId: job.userId,
      },
      get signal() {
        return context.signal;
      },
      resources: undefined,
      progress: () => {},
      log: () => {},
    });
    return result === undefined ? undefined : JSON.stringify(result);
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
