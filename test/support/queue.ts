import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Priority } from "../../src/domain/priority.js";
import { Queue, type QueueOptions } from "../../src/queue/queue.js";
import { Worker, type WorkerEvent, type WorkerOptions } from "../../src/queue/worker.js";
import { type RedisFixture, run } from "./redis.js";

export const ALL: Priority[] = ["urgent", "high", "normal", "low"];

export const makeQueue = async (redis: RedisFixture, options: QueueOptions = {}) => {
  const queue = new Queue(redis.client(), options);
  await run(queue.prepare());
  return queue;
};

export const newJob = (
  priority: Priority = "normal",
  extra: { userId?: string; maxAttempts?: number; delayMs?: number } = {},
) => ({
  id: randomUUID(),
  priority,
  data: JSON.stringify({ n: Math.random() }),
  ...extra,
});

/** Waits until `predicate` holds, polling every 10 ms; fails the test after `timeoutMs`. */
export const eventually = async (
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  what = "condition",
) => {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
};

/** Collects worker events by type, for assertions. */
export const eventLog = () => {
  const events: WorkerEvent[] = [];
  return {
    events,
    onEvent: (e: WorkerEvent) => events.push(e),
    ids: (type: WorkerEvent["type"]) =>
      events.filter((e) => e.type === type).map((e) => ("job" in e ? e.job.id : "")),
    count: (type: WorkerEvent["type"]) => events.filter((e) => e.type === type).length,
  };
};

/** A worker on all priorities with one slot and a handler that succeeds, unless told otherwise. */
export const testWorker = (queue: Queue, options: Partial<WorkerOptions> = {}) =>
  new Worker({
    consumer: "w",
    priorities: ALL,
    concurrency: 1,
    handler: async () => "ok",
    ...options,
    queue,
  });

/**
 * Counts the claim scripts a worker sends, and the jobs they bring back, through the real queue
 * (the worker calls `claimNow`, the promise form of `claim`).
 */
export const countClaims = (queue: Queue) => {
  /**
   * `out`: claims sent and not yet answered; `mostOut` the most at once; `wants` what each asked,
   * `wantsBeside` what those sent while another was out asked.
   */
  const counts = {
    claims: 0,
    claimed: 0,
    completes: 0,
    out: 0,
    mostOut: 0,
    wants: [] as number[],
    wantsBeside: [] as number[],
  };
  const claimNow = queue.claimNow.bind(queue);
  queue.claimNow = async (...args) => {
    counts.claims++;
    counts.wants.push(args[2]);
    if (counts.out > 0) counts.wantsBeside.push(args[2]);
    counts.mostOut = Math.max(counts.mostOut, ++counts.out);
    try {
      const claim = await claimNow(...args);
      counts.claimed += claim.jobs.length;
      return claim;
    } finally {
      counts.out--;
    }
  };
  const completeNow = queue.completeNow.bind(queue);
  queue.completeNow = (...args) => {
    counts.completes++;
    return completeNow(...args);
  };
  return counts;
};

/** A gate a test opens when it likes: a handler that awaits `closed` holds its job until then. */
export const makeGate = () => {
  let open: () => void = () => {};
  const closed = new Promise<void>((resolve) => (open = resolve));
  return { closed, open };
};
