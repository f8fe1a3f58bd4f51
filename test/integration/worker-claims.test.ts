import { setTimeout as sleep } from "node:timers/promises";
import { Effect } from "effect";
import { afterEach, describe, expect, it } from "vitest";
import type { Queue } from "../../src/queue/queue.js";
import type { Worker } from "../../src/queue/worker.js";
import { eventLog, eventually, makeQueue, newJob, testWorker } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";

/** Counts the claim scripts a worker sends, and the jobs they bring back, through the real queue. */
const countClaims = (queue: Queue) => {
  const counts = { claims: 0, claimed: 0 };
  const claim = queue.claim.bind(queue);
  queue.claim = (...args) => {
    counts.claims++;
    return claim(...args).pipe(Effect.tap(({ jobs }) => void (counts.claimed += jobs.length)));
  };
  return counts;
};

describe("how a worker claims", () => {
  const redis = useRedis();
  let worker: Worker | undefined;
  afterEach(async () => {
    await worker?.stop({ timeoutMs: 1_000 });
    worker = undefined;
  });

  it("near an empty queue, sends one claim per new job, not one per job that finishes", async () => {
    const queue = await makeQueue(redis);
    const counts = countClaims(queue);
    const log = eventLog();
    // Many slots, one job at a time: every job finds the streams dry and frees a slot when done.
    // A long idle block, so that no wait times out (each timeout is one more claim, rightly).
    worker = testWorker(queue, { concurrency: 16, idleBlockMs: 60_000, onEvent: log.onEvent }).start();
    await eventually(() => counts.claims > 0, 5_000, "the first claim");
    const jobs = 30;
    for (let i = 0; i < jobs; i++) {
      await run(queue.enqueue(newJob("normal")));
      await eventually(() => log.count("completed") === i + 1, 5_000, `job ${i + 1} to complete`);
      // Time for anything the finished job would set off (its slot freeing, its acknowledgement).
      await sleep(20);
    }
    // One claim for each arrival, plus the first one on start. A claim per freed slot (what
    // the worker once did) makes about four per job.
    expect(counts.claims).toBeLessThanOrEqual(jobs + 2);
    expect(counts.claimed).toBe(jobs);
  });

  it("wakes for a job that arrives while another runs, and drains a burst after a dry spell", async () => {
    const queue = await makeQueue(redis);
    const counts = countClaims(queue);
    const log = eventLog();
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    let running = 0;
    let most = 0;
    worker = testWorker(queue, {
      concurrency: 16,
      idleBlockMs: 60_000,
      onEvent: log.onEvent,
      handler: async (job) => {
        most = Math.max(most, ++running);
        if (JSON.parse(job.data).hold) await gate;
        running--;
        return "ok";
      },
    }).start();
    await eventually(() => counts.claims > 0, 5_000, "the first claim");
    await run(queue.enqueue({ ...newJob("normal"), data: JSON.stringify({ hold: true }) }));
    await eventually(() => running === 1, 5_000, "the held job to start");
    await run(queue.enqueue(newJob("normal")));
    await eventually(() => log.count("completed") === 1, 5_000, "the second job, beside the held one");
    expect(most).toBe(2);
    release();
    await eventually(() => log.count("completed") === 2, 5_000, "the held job");

    const before = counts.claims;
    const burst = Array.from({ length: 400 }, () => newJob("normal"));
    await run(queue.enqueueMany(burst));
    await eventually(() => log.count("completed") === 402, 10_000, "the burst");
    expect(counts.claimed).toBe(402);
    // Claims of up to eight jobs (half the slots), not one claim per job.
    expect(counts.claims - before).toBeLessThan(400 / 4);
    expect(log.count("error")).toBe(0);
  });
});
