import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { PRIORITIES, type Priority } from "../../src/domain/priority.js";
import { QueueAdmin } from "../../src/queue/admin.js";
import { Worker } from "../../src/queue/worker.js";
import { ALL, eventLog, eventually, makeQueue, newJob } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";

const TOTAL = 10_000;

describe("soak", () => {
  const redis = useRedis();

  it(`${TOTAL} jobs through racing producers, flaky handlers and a worker that dies: none lost, none done twice`, async () => {
    const leaseMs = 500;
    const ids: string[] = [];
    const producers = [0, 1, 2, 3].map(async (p) => {
      const queue = await makeQueue(redis);
      const pending: Array<Promise<unknown>> = [];
      for (let i = p; i < TOTAL; i += 4) {
        const job = newJob(PRIORITIES[i % 4] as Priority, { maxAttempts: 5 });
        ids.push(job.id);
        pending.push(run(queue.enqueue(job)));
        if (pending.length >= 32) await Promise.all(pending.splice(0));
      }
      await Promise.all(pending);
    });

    const log = eventLog();
    const runs = new Map<string, number>();
    const flaky = (id: string) => id.charCodeAt(0) % 7 === 0;
    const makeWorker = async (consumer: string, handler?: (job: { id: string }) => Promise<string>) =>
      new Worker({
        queue: await makeQueue(redis),
        consumer,
        priorities: ALL,
        concurrency: 16,
        leaseMs,
        onEvent: log.onEvent,
        handler:
          handler ??
          (async (job) => {
            runs.set(job.id, (runs.get(job.id) ?? 0) + 1);
            if (flaky(job.id) && job.runAttempt === 1) throw new Error("flaky first attempt");
            return job.id;
          }),
      }).start();
    const workers = [await makeWorker("w1"), await makeWorker("w2")];
    // This worker takes jobs and never finishes them; it is then stopped without waiting, as a
    // crashed process would leave them: pending, with nobody renewing.
    const heldByDoomed = new Set<string>();
    const doomed = await makeWorker("doomed", (job) => {
      heldByDoomed.add(job.id);
      return new Promise<string>(() => {});
    });

    const reclaimerQueue = await makeQueue(redis);
    let reclaiming = true;
    const reclaimed = (async () => {
      let total = 0;
      while (reclaiming) {
        total += (await run(reclaimerQueue.reclaim("reclaimer", { leaseMs }))).requeued;
        await sleep(100);
      }
      return total;
    })();

    await producers;
    await eventually(() => doomed.active === 16, 10_000, "the doomed worker to hold jobs");
    const abandoned = await doomed.stop({ timeoutMs: 0 });
    expect(abandoned.abandoned).toBe(16);

    await eventually(() => log.count("completed") >= TOTAL, 60_000, `${TOTAL} completions`);
    reclaiming = false;
    expect(await reclaimed).toBeGreaterThanOrEqual(16);
    for (const w of workers) await w.stop();

    // Every job completed exactly once: one accepted completion each, no more.
    const completed = log.ids("completed");
    expect(completed).toHaveLength(TOTAL);
    expect(new Set(completed).size).toBe(TOTAL);
    expect(new Set(completed)).toEqual(new Set(ids));
    expect(log.count("dead")).toBe(0);

    const queue = await makeQueue(redis);
    const states = await Promise.all(ids.map((id) => run(queue.getJob(id))));
    expect(states.filter((s) => s?.state !== "completed")).toEqual([]);
    expect(states.every((s) => s?.result === s?.id)).toBe(true);
    const stats = await run(new QueueAdmin(queue).stats());
    for (const s of stats) expect(s).toMatchObject({ waiting: 0, running: 0, delayed: 0, dead: 0 });
    expect(stats.reduce((n, s) => n + s.completedLastHour, 0)).toBe(TOTAL);
    // The flaky ones really ran twice (unless the doomed worker took their first attempt).
    const twice = ids.filter((id) => flaky(id) && !heldByDoomed.has(id));
    expect(twice.length).toBeGreaterThan(100);
    expect(twice.every((id) => (runs.get(id) ?? 0) >= 2)).toBe(true);
    // Streams hold nothing once every job is done.
    for (const p of PRIORITIES) expect(await redis.client().xlen(queue.keys.stream(p))).toBe(0);
  }, 120_000);
});
