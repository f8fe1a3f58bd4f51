import { describe, expect, it } from "vitest";
import { QueueAdmin } from "../../src/queue/admin.js";
import { JobFailure, retryDelayMs } from "../../src/queue/failures.js";
import { ALL, eventLog, eventually, makeQueue, newJob, testWorker } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";

describe("retries, delays and dead letters", () => {
  const redis = useRedis();

  it("retries a failing job on the transient schedule, then dead-letters it with the reason", async () => {
    const queue = await makeQueue(redis);
    const admin = new QueueAdmin(queue);
    const job = newJob("high", { maxAttempts: 3, userId: "1" });
    await run(queue.enqueue(job));

    // Attempt 1 fails: transient errors get one immediate retry, straight back on the stream.
    let claim = await run(queue.claim("w", ALL, 1));
    expect(retryDelayMs("transient", claim.jobs[0]!.runAttempt)).toBe(0);
    const first = await run(
      queue.fail({ id: job.id, attempt: 1, error: "reset", retriable: true, delayMs: 0 }),
    );
    expect(first.outcome).toBe("retry");
    expect((await run(queue.getJob(job.id)))?.state).toBe("queued");

    // Attempt 2 fails: backoff, into the delayed set with its due time.
    claim = await run(queue.claim("w", ALL, 1));
    expect(claim.jobs[0]?.attempt).toBe(2);
    const delay = retryDelayMs("transient", 2, () => 0.5)!;
    expect(delay).toBe(2000);
    const before = Date.now();
    const second = await run(
      queue.fail({ id: job.id, attempt: 2, error: "timeout", retriable: true, delayMs: delay }),
    );
    expect(second.outcome).toBe("retry");
    const due = second.outcome === "retry" ? second.dueAt : 0;
    expect(due).toBeGreaterThanOrEqual(before + delay - 50);
    expect(due).toBeLessThanOrEqual(Date.now() + delay + 50);
    expect(Number(await redis.client().zscore(queue.keys.delayed("high"), job.id))).toBe(due);
    expect(await run(queue.getJob(job.id))).toMatchObject({ state: "delayed", error: "timeout", dueAt: due });

    // Not due yet: nothing to promote or claim; the scheduler is told when to look again.
    expect(await run(queue.promote())).toEqual({ moved: 0, nextDueAt: due });
    expect((await run(queue.claim("w", ALL, 1))).jobs).toHaveLength(0);

    await redis.client().zadd(queue.keys.delayed("high"), Date.now() - 1, job.id);
    expect(await run(queue.promote())).toEqual({ moved: 1, nextDueAt: undefined });

    // Attempt 3 of 3 fails: no attempts left, dead-lettered with the reason and the payload.
    claim = await run(queue.claim("w", ALL, 1));
    expect(claim.jobs[0]?.attempt).toBe(3);
    expect(
      await run(queue.fail({ id: job.id, attempt: 3, error: "still broken", retriable: true, delayMs: 10 })),
    ).toEqual({
      outcome: "dead",
    });
    // A resend of the same failure repeats the outcome and dead-letters nothing twice.
    expect(
      await run(queue.fail({ id: job.id, attempt: 3, error: "still broken", retriable: true, delayMs: 10 })),
    ).toEqual({
      outcome: "dead",
    });
    expect(
      await run(queue.fail({ id: job.id, attempt: 2, error: "old", retriable: true, delayMs: 10 })),
    ).toEqual({
      outcome: "stale",
    });
    const view = await run(queue.getJob(job.id));
    expect(view).toMatchObject({ state: "failed", error: "still broken", attempt: 3 });
    const dead = await run(admin.listDead());
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({
      taskId: job.id,
      priority: "high",
      reason: "still broken",
      attempt: 3,
      userId: "1",
      data: job.data,
    });
    const stats = await run(admin.stats());
    expect(stats.find((s) => s.priority === "high")).toMatchObject({
      dead: 1,
      failedLastHour: 1,
      retriedLastHour: 2,
      waiting: 0,
      running: 0,
    });
    // Failed job data expires (7 days by default) rather than piling up.
    expect(await redis.client().ttl(queue.keys.job(job.id))).toBeGreaterThan(6 * 24 * 3600);
  });

  it("never retries a non-retriable failure", async () => {
    const queue = await makeQueue(redis);
    const job = newJob("normal", { maxAttempts: 5 });
    await run(queue.enqueue(job));
    await run(queue.claim("w", ALL, 1));
    expect(
      await run(queue.fail({ id: job.id, attempt: 1, error: "400 bad image", retriable: false, delayMs: 0 })),
    ).toEqual({
      outcome: "dead",
    });
  });

  it("a worker applies the failure policy: transient retried, invalid dead-lettered at once", async () => {
    const queue = await makeQueue(redis);
    const flaky = newJob("normal", { maxAttempts: 3 });
    const invalid = newJob("normal", { maxAttempts: 3 });
    await run(queue.enqueue(flaky));
    await run(queue.enqueue(invalid));
    const runs = new Map<string, number>();
    const log = eventLog();
    const worker = testWorker(queue, {
      consumer: "w1",
      concurrency: 2,
      onEvent: log.onEvent,
      handler: async (job) => {
        runs.set(job.id, (runs.get(job.id) ?? 0) + 1);
        if (job.id === invalid.id) throw new JobFailure("invalid", "image is not a picture");
        if (job.runAttempt === 1) throw new Error("connection reset");
        return "ok";
      },
    }).start();
    await eventually(
      () => log.count("completed") === 1 && log.count("dead") === 1,
      5_000,
      "both jobs to end",
    );
    await worker.stop();
    expect(runs.get(flaky.id)).toBe(2);
    expect(runs.get(invalid.id)).toBe(1);
    expect(await run(queue.getJob(flaky.id))).toMatchObject({ state: "completed", result: "ok" });
    const [dead] = await run(new QueueAdmin(queue).listDead());
    expect(dead?.reason).toBe("image is not a picture");
  });

  it("runs a delayed job only once it is due", async () => {
    const queue = await makeQueue(redis);
    const job = newJob("urgent", { delayMs: 300 });
    const { entry } = await run(queue.enqueue(job));
    expect(entry).toBeUndefined();
    expect((await run(queue.getJob(job.id)))?.state).toBe("delayed");
    expect((await run(queue.promote())).moved).toBe(0);
    await eventually(async () => (await run(queue.promote())).moved === 1, 5_000, "promotion");
    const claim = await run(queue.claim("w", ALL, 1));
    expect(claim.jobs[0]?.id).toBe(job.id);
  });

  it("redrives dead letters as a new run, and purges them", async () => {
    const queue = await makeQueue(redis);
    const admin = new QueueAdmin(queue);
    const jobs = [newJob("low", { maxAttempts: 1, userId: "3" }), newJob("low", { maxAttempts: 1 })];
    for (const j of jobs) await run(queue.enqueue(j));
    const claim = await run(queue.claim("w", ALL, 2));
    for (const j of claim.jobs)
      await run(queue.fail({ id: j.id, attempt: j.attempt, error: "nope", retriable: true, delayMs: 0 }));
    const dead = await run(admin.listDead({ priority: "low" }));
    expect(dead.map((d) => d.taskId).sort()).toEqual(jobs.map((j) => j.id).sort());

    // User 3 has another task active meanwhile: its dead letter must wait.
    const blocker = newJob("normal", { userId: "3" });
    await run(queue.enqueue(blocker));
    const mine = dead.find((d) => d.taskId === jobs[0]!.id)!;
    const other = dead.find((d) => d.taskId === jobs[1]!.id)!;
    expect(await run(admin.redriveDead("low", [mine.entryId, other.entryId, "1-1"]))).toEqual([
      { activeTaskId: blocker.id },
      "ok",
      "missing",
    ]);
    await run(queue.cancel(blocker.id));
    expect(await run(admin.redriveDead("low", [mine.entryId]))).toEqual(["ok"]);
    expect(await run(admin.listDead())).toHaveLength(0);

    // The new run: a fresh budget of attempts, attempt numbers still counting up.
    const again = await run(queue.claim("w", ["low"], 5));
    expect(again.jobs.map((j) => [j.id, j.attempt, j.runAttempt]).sort()).toEqual(
      jobs.map((j) => [j.id, 2, 1]).sort(),
    );
    for (const j of again.jobs)
      await run(
        queue.fail({ id: j.id, attempt: j.attempt, error: "nope again", retriable: false, delayMs: 0 }),
      );
    expect(await run(admin.purgeDead("low", [(await run(admin.listDead()))[0]!.entryId]))).toBe(1);
    expect(await run(admin.purgeDead("low"))).toBe(1);
    expect(await run(admin.listDead())).toHaveLength(0);
  });
});
