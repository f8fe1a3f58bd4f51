import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { QueueAdmin } from "../../src/queue/admin.js";
import { ALL, eventLog, eventually, makeQueue, newJob, testWorker } from "../support/queue.js";
import { run, runFailure, useRedis } from "../support/redis.js";

describe("pause, resume, clear and stats", () => {
  const redis = useRedis();

  it("a paused priority is skipped by claims, lower ones still run, resume brings it back", async () => {
    const queue = await makeQueue(redis);
    const admin = new QueueAdmin(queue);
    const urgent = newJob("urgent");
    const low = newJob("low");
    await run(queue.enqueue(urgent));
    await run(queue.enqueue(low));
    expect(await run(admin.pause("urgent"))).toBe(true);
    expect(await run(admin.pause("urgent"))).toBe(false);
    expect((await run(queue.claim("w", ALL, 5))).jobs.map((j) => j.id)).toEqual([low.id]);
    const stats = await run(admin.stats());
    expect(stats.find((s) => s.priority === "urgent")).toMatchObject({
      paused: true,
      waiting: 1,
      running: 0,
    });
    expect(stats.find((s) => s.priority === "low")).toMatchObject({ paused: false, waiting: 0, running: 1 });
    expect(await run(admin.resume("urgent"))).toBe(true);
    expect((await run(queue.claim("w", ALL, 5))).jobs.map((j) => j.id)).toEqual([urgent.id]);
    expect(await runFailure(admin.pause("soon" as never))).toMatchObject({ _tag: "InvalidJob" });
  });

  it("resume wakes an idle worker blocked on the streams at once", async () => {
    const queue = await makeQueue(redis);
    const admin = new QueueAdmin(queue);
    await run(admin.pause("normal"));
    const job = newJob("normal");
    await run(queue.enqueue(job));
    const log = eventLog();
    // A long idle block: only the signal stream can wake it in time.
    const worker = testWorker(queue, {
      idleBlockMs: 20_000,
      onEvent: log.onEvent,
    }).start();
    await sleep(200);
    expect(log.count("completed")).toBe(0);
    await run(admin.resume("normal"));
    await eventually(() => log.count("completed") === 1, 5_000, "the resumed job to run");
    await worker.stop();
  });

  it("a new job wakes an idle worker, and an idle worker does not poll", async () => {
    const queue = await makeQueue(redis);
    const log = eventLog();
    const worker = testWorker(queue, {
      concurrency: 4,
      idleBlockMs: 20_000,
      onEvent: log.onEvent,
    }).start();
    await sleep(100);
    const stats = redis.client();
    await stats.config("RESETSTAT");
    await sleep(1_000);
    const info = await stats.info("commandstats");
    const calls = (cmd: string) => Number(new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
    // One second idle: no claims and no new blocking reads (the one in flight was counted before).
    expect(calls("fcall") + calls("evalsha") + calls("xread") + calls("xreadgroup")).toBe(0);
    await run(queue.enqueue(newJob("low")));
    // Well before the 20 s idle block would end by itself: the new entry woke it.
    await eventually(() => log.count("completed") === 1, 5_000, "the new job to run");
    await worker.stop();
  });

  it("clear cancels waiting jobs of one priority only, leaving running and delayed ones", async () => {
    const queue = await makeQueue(redis);
    const admin = new QueueAdmin(queue);
    const running = newJob("normal");
    await run(queue.enqueue(running));
    await run(queue.claim("w", ALL, 1));
    const waiting = Array.from({ length: 1200 }, () => newJob("normal"));
    for (const j of waiting) await run(queue.enqueue(j));
    const delayed = newJob("normal", { delayMs: 60_000 });
    await run(queue.enqueue(delayed));
    const other = newJob("high");
    await run(queue.enqueue(other));

    const cleared = await run(admin.clear("normal"));
    expect(cleared).toHaveLength(1200);
    expect(new Set(cleared.map((c) => c.id))).toEqual(new Set(waiting.map((j) => j.id)));
    expect(cleared.every((c) => c.attempt === 0)).toBe(true);
    expect(await run(queue.getJob(waiting[0]!.id))).toMatchObject({
      state: "cancelled",
      error: "cleared by an administrator",
    });
    expect((await run(queue.getJob(running.id)))?.state).toBe("running");
    expect((await run(queue.getJob(delayed.id)))?.state).toBe("delayed");
    const stats = await run(admin.stats());
    expect(stats.find((s) => s.priority === "normal")).toMatchObject({ waiting: 0, running: 1, delayed: 1 });
    expect(stats.find((s) => s.priority === "high")).toMatchObject({ waiting: 1 });
    expect((await run(queue.claim("w2", ALL, 10))).jobs.map((j) => j.id)).toEqual([other.id]);
  });

  it("counts completions and failures of the last hour per priority", async () => {
    const queue = await makeQueue(redis);
    const admin = new QueueAdmin(queue);
    for (const p of ALL) for (let i = 0; i < 3; i++) await run(queue.enqueue(newJob(p, { maxAttempts: 1 })));
    const claim = await run(queue.claim("w", ALL, 12));
    const [failing, ...rest] = claim.jobs;
    await run(
      queue.fail({ id: failing!.id, attempt: failing!.attempt, error: "x", retriable: false, delayMs: 0 }),
    );
    await run(queue.complete(rest.map((j) => ({ id: j.id, attempt: j.attempt }))));
    const stats = await run(admin.stats());
    expect(stats.map((s) => [s.priority, s.completedLastHour, s.failedLastHour])).toEqual([
      ["urgent", 2, 1],
      ["high", 3, 0],
      ["normal", 3, 0],
      ["low", 3, 0],
    ]);
  });
});

describe("Redis restarted empty", () => {
  const redis = useRedis();

  it("scripts and consumer groups come back by themselves and the worker goes on", async () => {
    const queue = await makeQueue(redis);
    const log = eventLog();
    const worker = testWorker(queue, {
      concurrency: 2,
      idleBlockMs: 500,
      onEvent: log.onEvent,
    }).start();
    await run(queue.enqueue(newJob("normal")));
    await eventually(() => log.count("completed") === 1);
    await redis.server.restart();
    // The script cache and the groups are gone; the next calls must reload and recreate them.
    await eventually(
      async () => {
        try {
          await run(queue.enqueue(newJob("high")));
          return true;
        } catch {
          return false;
        }
      },
      10_000,
      "Redis to accept enqueues again",
    );
    await eventually(() => log.count("completed") === 2, 10_000, "the job after the restart");
    await worker.stop();
  });
});
