import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { QueueAdmin } from "../../src/queue/admin.js";
import { JobPostponed } from "../../src/queue/failures.js";
import { replaceWithNonHash } from "../support/live-state.js";
import { ALL, eventLog, eventually, makeQueue, newJob, testWorker } from "../support/queue.js";
import { run, runFailure, useRedis } from "../support/redis.js";

describe("leases, reclaim and fencing", () => {
  const redis = useRedis();
  const leaseMs = 300;

  it("a stopping worker gives back the jobs it stopped at once, uncharged: no reclaim, no attempt spent", async () => {
    const queue = await makeQueue(redis);
    const job = newJob("normal", { userId: "7", maxAttempts: 1 });
    await run(queue.enqueue(job));
    const log = eventLog();
    const worker = testWorker(queue, {
      leaseMs: 60_000,
      onEvent: log.onEvent,
      // Heeds the abort, as a well-behaved handler does.
      handler: (_job, { signal }) =>
        new Promise((_resolve, reject) => signal.addEventListener("abort", () => reject(signal.reason))),
    }).start();
    await eventually(() => worker.active === 1, 5_000, "the job to start");
    expect(await worker.stop({ timeoutMs: 0 })).toEqual({ abandoned: 1 });
    expect(log.ids("released")).toEqual([job.id]);
    expect(await run(queue.getJob(job.id))).toMatchObject({ state: "queued", attempt: 1, reclaims: 0 });
    expect(await run(new QueueAdmin(queue).activeTaskOf("7"))).toBe(job.id);
    // Claimable now, not after the lease; a higher attempt, and still the first of its run.
    const [next] = (await run(queue.claim("B", ALL, 1))).jobs;
    expect(next).toMatchObject({ id: job.id, attempt: 2, runAttempt: 1 });
    // The stopped worker's word about attempt 1 is refused from now on.
    expect(await run(queue.release("w", { id: job.id, attempt: 1 }))).toBe("stale");
  });

  it("a job that cannot start is postponed, uncharged: it waits its delay, then runs, even on its last attempt", async () => {
    const queue = await makeQueue(redis);
    const job = newJob("high", { userId: "8", maxAttempts: 1 });
    await run(queue.enqueue(job));
    const log = eventLog();
    let away = 2;
    const worker = testWorker(queue, {
      onEvent: log.onEvent,
      handler: async () => {
        if (away-- > 0) throw new JobPostponed(200, "the ledger could not be reached: ECONNREFUSED");
        return "ran";
      },
    }).start();
    await eventually(() => log.count("postponed") === 1, 5_000, "the first postponement");
    const waiting = await run(queue.getJob(job.id));
    expect(waiting).toMatchObject({
      state: "delayed",
      attempt: 1,
      uncounted: 1,
      owner: undefined,
      priority: "high",
    });
    expect(waiting!.dueAt! - Date.now()).toBeGreaterThan(0);
    expect(log.events.find((e) => e.type === "postponed")).toMatchObject({
      delayMs: 200,
      error: "the ledger could not be reached: ECONNREFUSED",
    });
    // The same release again (a resend after a dropped reply) is acknowledged and changes nothing.
    expect(await run(queue.release("w", { id: job.id, attempt: 1 }, 200))).toBe("ok");
    expect(await run(queue.getJob(job.id))).toMatchObject({ state: "delayed", uncounted: 1 });
    // Its user keeps the slot while it waits: the task is still the active one.
    expect(await run(new QueueAdmin(queue).activeTaskOf("8"))).toBe(job.id);
    // Nothing to claim before it is due; the scheduler's promotion brings it back.
    expect(await run(queue.claim("other", ALL, 1))).toMatchObject({ jobs: [] });
    await eventually(() => run(queue.promote()).then((p) => p.moved === 1), 5_000, "the first promotion");
    await eventually(() => log.count("postponed") === 2, 5_000, "the second postponement");
    await eventually(() => run(queue.promote()).then((p) => p.moved === 1), 5_000, "the second promotion");
    await eventually(() => log.count("completed") === 1, 5_000, "the run");
    await worker.stop();
    // Three attempts, two of them given back: the run's one attempt was the third.
    expect(log.count("retry") + log.count("dead") + log.count("stale")).toBe(0);
    expect(await run(queue.getJob(job.id))).toMatchObject({
      state: "completed",
      attempt: 3,
      uncounted: 2,
      result: "ran",
    });
    expect((await run(new QueueAdmin(queue).stats())).reduce((n, s) => n + s.retriedLastHour, 0)).toBe(0);
  });

  it("a postponement of a job with a cancel pending ends it cancelled; of a stale attempt, changes nothing", async () => {
    const queue = await makeQueue(redis);
    const cancelled = newJob("normal");
    await run(queue.enqueue(cancelled));
    const log = eventLog();
    let started: () => void = () => {};
    const running = new Promise<void>((resolve) => (started = resolve));
    let go: () => void = () => {};
    const gate = new Promise<void>((resolve) => (go = resolve));
    const worker = testWorker(queue, {
      onEvent: log.onEvent,
      handler: async () => {
        started();
        await gate;
        throw new JobPostponed(60_000, "the ledger could not be reached");
      },
    }).start();
    await running;
    expect(await run(queue.cancel(cancelled.id))).toMatchObject({ outcome: "flagged" });
    // Not given back with a cancel waiting: the worker reports a failure instead.
    expect(await run(queue.release("w", { id: cancelled.id, attempt: 1 }, 5_000))).toBe("cancel");
    go();
    await eventually(() => log.count("cancelled") === 1, 5_000, "the cancel");
    await worker.stop();
    expect(log.count("postponed")).toBe(0);
    expect(await run(queue.getJob(cancelled.id))).toMatchObject({ state: "cancelled" });

    // An attempt another worker owns now: its release is refused and changes nothing.
    const stale = newJob("normal");
    await run(queue.enqueue(stale));
    const claimed = (await run(queue.claim("A", ALL, 1))).jobs[0]!;
    await run(queue.reclaim("reclaimer", { leaseMs: 0 }));
    expect((await run(queue.claim("B", ALL, 1))).jobs[0]?.attempt).toBe(claimed.attempt + 1);
    expect(await run(queue.release("A", { id: stale.id, attempt: claimed.attempt }, 5_000))).toBe("stale");
    expect(await run(queue.getJob(stale.id))).toMatchObject({ state: "running", owner: "B", uncounted: 0 });
  });

  it("reclaims the job of a vanished worker after the lease; the stale worker's late answer is refused", async () => {
    const queue = await makeQueue(redis);
    const job = newJob("normal", { userId: "1" });
    await run(queue.enqueue(job));
    // Worker A claims, then goes silent (no renewals): as if its process froze or died.
    const claimA = await run(queue.claim("A", ALL, 1));
    expect(claimA.jobs[0]?.attempt).toBe(1);

    // Within the lease nothing is taken over.
    expect(await run(queue.reclaim("reclaimer", { leaseMs }))).toMatchObject({ requeued: 0, dead: 0 });
    await sleep(leaseMs + 50);
    expect(await run(queue.reclaim("reclaimer", { leaseMs }))).toMatchObject({ requeued: 1, dead: 0 });
    expect(await run(queue.getJob(job.id))).toMatchObject({ state: "queued", reclaims: 1, owner: undefined });
    // The user still has exactly this one active task.
    expect(await run(new QueueAdmin(queue).activeTaskOf("1"))).toBe(job.id);

    const claimB = await run(queue.claim("B", ALL, 1));
    expect(claimB.jobs[0]).toMatchObject({ id: job.id, attempt: 2 });

    // A wakes up and answers for attempt 1: refused, every way it tries.
    expect(await run(queue.complete([{ id: job.id, attempt: 1, result: "from A" }]))).toEqual(["stale"]);
    expect(
      await run(queue.fail({ id: job.id, attempt: 1, error: "A", retriable: true, delayMs: 0 })),
    ).toEqual({ outcome: "stale" });
    expect(await run(queue.renew("A", [{ id: job.id, attempt: 1 }]))).toEqual(["lost"]);
    expect(await run(queue.getJob(job.id))).toMatchObject({ state: "running", attempt: 2, owner: "B" });

    expect(await run(queue.complete([{ id: job.id, attempt: 2, result: "from B" }]))).toEqual(["ok"]);
    expect(await run(queue.getJob(job.id))).toMatchObject({ state: "completed", result: "from B" });
    // The same completion again (a resend after a lost reply) is acknowledged and changes nothing.
    expect(await run(queue.complete([{ id: job.id, attempt: 2, result: "again" }]))).toEqual(["ok"]);
    expect(await run(queue.getJob(job.id))).toMatchObject({ state: "completed", result: "from B" });
    expect((await run(new QueueAdmin(queue).stats())).reduce((n, s) => n + s.completedLastHour, 0)).toBe(1);
    const stats = await run(new QueueAdmin(queue).stats());
    expect(stats.every((s) => s.waiting === 0 && s.running === 0)).toBe(true);
  });

  it("renewing keeps a job that runs longer than the lease", async () => {
    const queue = await makeQueue(redis);
    const job = newJob("high");
    await run(queue.enqueue(job));
    const log = eventLog();
    // A lease long enough that a busy CI machine's event-loop stalls cannot eat two renewals.
    const lease = 1_000;
    const worker = testWorker(queue, {
      consumer: "slow",
      leaseMs: lease,
      onEvent: log.onEvent,
      handler: async () => {
        await sleep(lease * 2.5);
        return "done";
      },
    }).start();
    const reclaims: number[] = [];
    await eventually(async () => {
      reclaims.push((await run(queue.reclaim("reclaimer", { leaseMs: lease }))).requeued);
      return log.count("completed") === 1;
    }, 10_000);
    await worker.stop();
    expect(reclaims.every((n) => n === 0)).toBe(true);
    expect(log.count("lost")).toBe(0);
    expect(await run(queue.getJob(job.id))).toMatchObject({ state: "completed", attempt: 1 });
  });

  it("detects a lost lease through renewal, aborts the run and reports nothing", async () => {
    const queue = await makeQueue(redis);
    let abortReason: string | undefined;
    const job = newJob("normal");
    await run(queue.enqueue(job));
    const log = eventLog();
    const worker = testWorker(queue, {
      consumer: "A",
      priorities: ["normal"],
      leaseMs,
      onEvent: log.onEvent,
      handler: (_job, { signal }) =>
        new Promise((_, reject) =>
          signal.addEventListener("abort", () => {
            abortReason = String(signal.reason);
            reject(signal.reason);
          }),
        ),
    }).start();
    await eventually(async () => (await run(queue.getJob(job.id)))?.state === "running");
    await run(queue.reclaim("reclaimer", { leaseMs: 0 }));
    // Take the job to another consumer so A's next renewal finds attempt 2 owned by B.
    expect((await run(queue.claim("B", ["normal"], 1))).jobs[0]?.attempt).toBe(2);
    await eventually(() => log.count("lost") === 1, 10_000, "the lost lease");
    await eventually(() => abortReason !== undefined, 5_000, "the abort");
    await worker.stop();
    expect(abortReason).toBe("Error: lease lost");
    // The aborted run reports nothing: the job belongs to attempt 2 now.
    expect(log.count("stale") + log.count("retry") + log.count("dead")).toBe(0);
    expect(await run(queue.getJob(job.id))).toMatchObject({ state: "running", attempt: 2, owner: "B" });
  });

  it("reaches lapsed jobs behind more live ones than one XAUTOCLAIM scans, a step at a time", async () => {
    const queue = await makeQueue(redis);
    const live = Array.from({ length: 1_200 }, () => newJob("normal"));
    const lapsed = newJob("normal");
    for (const j of [...live, lapsed]) await run(queue.enqueue(j));
    await run(queue.claim("live", ALL, 1_200));
    await run(queue.claim("dead", ALL, 1));
    await sleep(leaseMs + 50);
    // The live worker renews; the dead one does not.
    await run(
      queue.renew(
        "live",
        live.map((j) => ({ id: j.id, attempt: 1 })),
      ),
    );
    let cursors: readonly string[] = [];
    let requeued = 0;
    let calls = 0;
    do {
      const result = await run(queue.reclaim("reclaimer", { leaseMs, cursors }));
      requeued += result.requeued;
      cursors = result.cursors;
      calls++;
    } while (cursors.some((c) => c !== "0-0") && calls < 10);
    expect(requeued).toBe(1);
    expect(calls).toBeGreaterThan(1);
    expect((await run(queue.getJob(lapsed.id)))?.state).toBe("queued");
    expect((await run(queue.getJob(live[0]!.id)))?.state).toBe("running");
  });

  it("dead-letters a poison job that keeps losing its worker", async () => {
    const queue = await makeQueue(redis);
    const admin = new QueueAdmin(queue);
    const job = newJob("urgent", { userId: "p" });
    await run(queue.enqueue(job));
    for (let round = 1; round <= 3; round++) {
      expect((await run(queue.claim(`w${round}`, ALL, 1))).jobs).toHaveLength(1);
      expect(await run(queue.reclaim("reclaimer", { leaseMs: 0, maxReclaims: 2 }))).toMatchObject(
        round <= 2 ? { requeued: 1, dead: 0 } : { requeued: 0, dead: 1 },
      );
    }
    expect(await run(queue.getJob(job.id))).toMatchObject({ state: "failed", reclaims: 3 });
    const [dead] = await run(admin.listDead());
    expect(dead).toMatchObject({ taskId: job.id, priority: "urgent" });
    expect(dead?.reason).toMatch(/^poison: its lease lapsed 3 times/);
    expect(await run(admin.activeTaskOf("p"))).toBeUndefined();
  });

  it("dead-letters a lapsed entry whose task key is not a hash, and still reclaims the rest", async () => {
    const queue = await makeQueue(redis);
    const raw = redis.client();
    const broken = newJob("urgent");
    const valid = newJob("normal");
    for (const j of [broken, valid]) await run(queue.enqueue(j));
    expect((await run(queue.claim("A", ALL, 2))).jobs.map((j) => j.id)).toEqual([broken.id, valid.id]);
    const [[entry]] = (await raw.xpending(queue.keys.stream("urgent"), queue.group, "-", "+", 10)) as [
      [string],
    ];
    // While it ran, its state was lost and something else took its task's name: with no live state
    // to read, the lookup of its own key gets WRONGTYPE.
    await replaceWithNonHash(raw, queue, broken.id);
    await sleep(leaseMs + 50);

    // Every call failed (for all priorities) while that entry stayed pending.
    expect(await run(queue.reclaim("reclaimer", { leaseMs }))).toMatchObject({ requeued: 1, dead: 1 });
    expect(await run(queue.getJob(valid.id))).toMatchObject({ state: "queued", reclaims: 1 });
    const [dead] = await run(new QueueAdmin(queue).listDead());
    expect(dead).toMatchObject({
      taskId: broken.id,
      priority: "urgent",
      reason: `corrupt stream entry ${entry}: its task key is not a hash`,
    });
    // Acknowledged and deleted; the key of the other type is left alone.
    expect(await raw.xpending(queue.keys.stream("urgent"), queue.group)).toEqual([0, null, null, null]);
    expect(await raw.xlen(queue.keys.stream("urgent"))).toBe(0);
    expect(await raw.get(queue.keys.job(broken.id))).toBe("not a hash");
    expect(await raw.hexists(queue.keys.live, broken.id)).toBe(0);
    expect(await run(queue.reclaim("reclaimer", { leaseMs }))).toMatchObject({ requeued: 0, dead: 0 });
  });

  it("fails a lapsed task whose reclaim count is not a number, and still reclaims the rest", async () => {
    const queue = await makeQueue(redis);
    const raw = redis.client();
    const admin = new QueueAdmin(queue);
    const broken = newJob("urgent", { userId: "r" });
    const cancelled = newJob("high");
    const valid = newJob("normal");
    for (const j of [broken, cancelled, valid]) await run(queue.enqueue(j));
    expect((await run(queue.claim("A", ALL, 3))).jobs.map((j) => j.id)).toEqual([
      broken.id,
      cancelled.id,
      valid.id,
    ]);
    expect(await run(queue.cancel(cancelled.id))).toMatchObject({ outcome: "flagged" });
    await raw.hset(queue.keys.job(broken.id), "reclaims", "x");
    await raw.hset(queue.keys.job(cancelled.id), "reclaims", "y");

    // The count was arithmetic: every call failed (for all priorities) while that entry stayed pending.
    expect(await run(queue.reclaim("reclaimer", { leaseMs: 0 }))).toMatchObject({ requeued: 1, dead: 1 });
    expect(await run(queue.getJob(valid.id))).toMatchObject({ state: "queued", reclaims: 1 });
    // A cancel pending ends the task as asked, whatever its count.
    expect(await run(queue.getJob(cancelled.id))).toMatchObject({ state: "cancelled" });
    const reason = 'corrupt task data: reclaims "x" is not a whole number';
    expect(await run(queue.getJob(broken.id))).toMatchObject({ state: "failed", error: reason });
    const [dead] = await run(admin.listDead());
    expect(dead).toMatchObject({ taskId: broken.id, priority: "urgent", reason, attempt: 1, userId: "r" });
    expect(dead?.data).toBe(broken.data);
    expect(await raw.xpending(queue.keys.stream("urgent"), queue.group)).toEqual([0, null, null, null]);
    expect(await raw.xlen(queue.keys.stream("urgent"))).toBe(0);
    expect(await run(admin.activeTaskOf("r"))).toBeUndefined();
    expect(await run(queue.reclaim("reclaimer", { leaseMs: 0 }))).toMatchObject({ requeued: 0, dead: 0 });
    // The letter redrives like any other: the task's data is written afresh, the attempt counts on.
    expect(await run(admin.redriveDead("urgent", [dead!.entryId]))).toEqual(["ok"]);
    expect((await run(queue.claim("B", ["urgent"], 1))).jobs[0]).toMatchObject({ id: broken.id, attempt: 2 });
  });
});

describe("cancel", () => {
  const redis = useRedis();

  it("removes a waiting or delayed job at once", async () => {
    const queue = await makeQueue(redis);
    const waiting = newJob("normal", { userId: "1" });
    const delayed = newJob("normal", { userId: "2", delayMs: 60_000 });
    await run(queue.enqueue(waiting));
    await run(queue.enqueue(delayed));
    expect(await run(queue.cancel(waiting.id, "changed my mind"))).toEqual({ outcome: "cancelled" });
    expect(await run(queue.cancel(delayed.id))).toEqual({ outcome: "cancelled" });
    expect(await run(queue.getJob(waiting.id))).toMatchObject({
      state: "cancelled",
      error: "changed my mind",
    });
    expect(await redis.client().zcard(queue.keys.delayed("normal"))).toBe(0);
    expect((await run(queue.claim("w", ALL, 5))).jobs).toHaveLength(0);
    expect(await run(queue.cancel(waiting.id))).toEqual({ outcome: "ended", state: "cancelled" });
    expect(await runFailure(queue.cancel("no-such-task"))).toMatchObject({ _tag: "TaskNotFound" });
  });

  it("flags a running job; its worker aborts and the job ends cancelled, not retried", async () => {
    const queue = await makeQueue(redis);
    const job = newJob("normal", { userId: "1", maxAttempts: 5 });
    await run(queue.enqueue(job));
    const log = eventLog();
    const worker = testWorker(queue, {
      leaseMs: 300,
      onEvent: log.onEvent,
      handler: (_job, { signal }) =>
        new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason))),
    }).start();
    await eventually(async () => (await run(queue.getJob(job.id)))?.state === "running");
    expect(await run(queue.cancel(job.id, "admin said so"))).toEqual({ outcome: "flagged", attempt: 1 });
    await eventually(() => log.count("cancelled") === 1, 10_000, "the cancel to reach the worker");
    await worker.stop();
    expect(await run(queue.getJob(job.id))).toMatchObject({ state: "cancelled" });
    await run(queue.enqueue(newJob("normal", { userId: "1" })));
  });
  it("a handler may hear its abort through onAbort, without reading its signal", async () => {
    const queue = await makeQueue(redis);
    const job = newJob("normal", { maxAttempts: 5 });
    await run(queue.enqueue(job));
    const log = eventLog();
    const heard: string[] = [];
    const reasonOf = (reason: unknown) => (reason instanceof Error ? reason.message : String(reason));
    const listenerErrors: string[] = [];
    const consoleError = console.error;
    console.error = (...line: unknown[]) => {
      const text = line.join(" ");
      if (text.startsWith("a job's abort listener threw")) listenerErrors.push(text);
      else consoleError(...line);
    };
    try {
      const worker = testWorker(queue, {
        leaseMs: 300,
        onEvent: log.onEvent,
        // Destructured, as handlers take `signal`.
        handler: (_job, { onAbort }) =>
          new Promise((_, reject) => {
            const unlisten = onAbort(() => heard.push("removed"));
            unlisten();
            // One listener that throws stops neither the others nor the abort.
            onAbort(() => {
              throw new Error("a listener broke");
            });
            let removeNext = () => {};
            onAbort((reason) => {
              heard.push(`first: ${reasonOf(reason)}`);
              removeNext();
              // Heard at once, once the job is aborted.
              onAbort((again) => heard.push(`late: ${reasonOf(again)}`));
              reject(reason);
            });
            // Removed by the listener before it, during the abort: not called, as with a signal.
            removeNext = onAbort(() => heard.push("removed by the first"));
          }),
      }).start();
      await eventually(async () => (await run(queue.getJob(job.id)))?.state === "running");
      expect(await run(queue.cancel(job.id, "admin said so"))).toEqual({ outcome: "flagged", attempt: 1 });
      await eventually(() => log.count("cancelled") === 1, 10_000, "the cancel to reach the worker");
      await worker.stop();
    } finally {
      console.error = consoleError;
    }
    expect(heard).toEqual(["first: cancelled", "late: cancelled"]);
    expect(listenerErrors).toEqual(["a job's abort listener threw: a listener broke"]);
    expect(await run(queue.getJob(job.id))).toMatchObject({ state: "cancelled" });
  });
});
