import { describe, expect, it } from "vitest";
import { PRIORITIES, type Priority, priorityRank } from "../../src/domain/priority.js";
import { ALL, makeQueue, newJob } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";

describe("strict priority", () => {
  const redis = useRedis();

  it("drains urgent before high before normal before low, under concurrent enqueues", async () => {
    const queue = await makeQueue(redis);
    // Four producers on four connections, interleaving priorities as fast as they can.
    const producers = [0, 1, 2, 3].map(async (p) => {
      const q = await makeQueue(redis);
      const sent: Array<{ id: string; priority: Priority }> = [];
      for (let i = 0; i < 100; i++) {
        const job = newJob(PRIORITIES[(i + p) % 4] as Priority);
        await run(q.enqueue(job));
        sent.push(job);
      }
      return sent;
    });
    const sent = (await Promise.all(producers)).flat();

    const claimed: Array<{ id: string; priority: Priority }> = [];
    for (;;) {
      const claim = await run(queue.claim("c1", ALL, 7));
      if (claim.jobs.length === 0) break;
      claimed.push(...claim.jobs);
    }
    expect(claimed).toHaveLength(sent.length);
    const ranks = claimed.map((j) => priorityRank(j.priority));
    expect(ranks).toEqual([...ranks].sort((a, b) => a - b));
    expect(new Set(claimed.map((j) => j.id)).size).toBe(sent.length);
  });

  it("never claims a job while a higher-priority one was waiting, with producers and consumer racing", async () => {
    const queue = await makeQueue(redis);
    // ackedAt: when the producer learned its enqueue was done. An enqueue acknowledged before a
    // claim was sent was executed by Redis before that claim.
    const ackedAt = new Map<string, { priority: Priority; at: number }>();
    let producing = true;
    const producers = [0, 1, 2].map(async (p) => {
      const q = await makeQueue(redis);
      for (let i = 0; i < 150; i++) {
        const job = newJob(PRIORITIES[(i * 7 + p) % 4] as Priority);
        await run(q.enqueue(job));
        ackedAt.set(job.id, { priority: job.priority, at: performance.now() });
      }
    });
    const done = Promise.all(producers).then(() => {
      producing = false;
    });
    const claimed: Array<{ id: string; sentAt: number }> = [];
    while (producing || claimed.length < 450) {
      const sentAt = performance.now();
      const claim = await run(queue.claim("c1", ALL, 1));
      for (const j of claim.jobs) claimed.push({ id: j.id, sentAt });
    }
    await done;
    const claimedAt = new Map(claimed.map((c, i) => [c.id, i]));
    for (const [i, c] of claimed.entries()) {
      const mine = ackedAt.get(c.id);
      if (!mine) throw new Error(`claimed unknown job ${c.id}`);
      for (const [other, info] of ackedAt) {
        if (priorityRank(info.priority) < priorityRank(mine.priority) && info.at < c.sentAt) {
          // A more urgent job was already waiting when this claim was sent: it must have gone first.
          expect(claimedAt.get(other)).toBeLessThan(i);
        }
      }
    }
    expect(claimed).toHaveLength(450);
  });

  it("keeps FIFO order within a priority", async () => {
    const queue = await makeQueue(redis);
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const job = newJob("high");
      ids.push(job.id);
      await run(queue.enqueue(job));
    }
    const claim = await run(queue.claim("c1", ALL, 50));
    expect(claim.jobs.map((j) => j.id)).toEqual(ids);
  });

  it("a batch claim takes the higher priority first and fills up from the next ones", async () => {
    const queue = await makeQueue(redis);
    const low = newJob("low");
    const urgent = newJob("urgent");
    const normal = newJob("normal");
    for (const j of [low, urgent, normal]) await run(queue.enqueue(j));
    const claim = await run(queue.claim("c1", ALL, 2));
    expect(claim.jobs.map((j) => j.id)).toEqual([urgent.id, normal.id]);
    // Slots were filled, so no wait follows.
    expect(claim.dry).toBe(false);
    const rest = await run(queue.claim("c1", ALL, 2));
    expect(rest.jobs.map((j) => j.id)).toEqual([low.id]);
    expect(rest.dry).toBe(true);
  });

  it("claims only from the priorities it is given, in priority order whatever order they are given in", async () => {
    const queue = await makeQueue(redis);
    const jobs = ALL.map((p) => newJob(p));
    for (const j of jobs) await run(queue.enqueue(j));
    const claim = await run(queue.claim("c1", ["low", "high"], 10));
    expect(claim.jobs.map((j) => j.priority)).toEqual(["high", "low"]);
  });

  it("each claim raises the attempt number, the fencing token", async () => {
    const queue = await makeQueue(redis);
    const job = newJob("normal");
    await run(queue.enqueue(job));
    const first = await run(queue.claim("c1", ALL, 1));
    expect(first.jobs[0]).toMatchObject({ id: job.id, attempt: 1, runAttempt: 1, maxAttempts: 4 });
    await run(queue.fail({ id: job.id, attempt: 1, error: "boom", retriable: true, delayMs: 0 }));
    const second = await run(queue.claim("c2", ALL, 1));
    expect(second.jobs[0]).toMatchObject({ id: job.id, attempt: 2, runAttempt: 2 });
  });
});
