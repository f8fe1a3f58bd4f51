import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { QueueAdmin } from "../../src/queue/admin.js";
import type { NewJob, Queue } from "../../src/queue/queue.js";
import { dropLive, readLive, replaceWithNonHash } from "../support/live-state.js";
import { ALL, eventually, makeQueue, newJob } from "../support/queue.js";
import { run, runFailure, useRedis } from "../support/redis.js";

/**
 * A completed job keeps no hash: its record goes into the bucket of its retention period, written
 * for a whole batch at once (complete-jobs.lua).
 */
/** Enqueues a job, claims it and completes it with its claim; the id. */
const runToCompletion = async (queue: Queue, job: NewJob = newJob("normal"), result = "") => {
  await run(queue.enqueue(job));
  const [claimed] = (await run(queue.claim("w", ALL, 1))).jobs;
  expect(claimed?.id).toBe(job.id);
  expect(await run(queue.complete([{ id: job.id, attempt: claimed!.attempt, result }]))).toEqual(["ok"]);
  return job.id;
};

describe("completed records", () => {
  const redis = useRedis();

  const completedLastHour = async (queue: Queue) =>
    (await run(new QueueAdmin(queue).stats())).reduce((n, s) => n + s.completedLastHour, 0);

  const pending = async (queue: Queue) => {
    let n = 0;
    for (const p of ALL) {
      const summary = (await queue.redis.xpending(queue.keys.stream(p), queue.group).catch(() => [0])) as [
        number,
      ];
      n += Number(summary[0]);
    }
    return n;
  };

  it("a completion leaves no hash; its record answers getJob, a resend, cancel, reprioritize and enqueue", async () => {
    const queue = await makeQueue(redis);
    const jobs = [newJob("high", { userId: "u1", maxAttempts: 3 }), newJob("normal"), newJob("low")];
    await run(queue.enqueueMany(jobs));
    const claimed = (await run(queue.claim("w", ALL, 3))).jobs;
    expect(claimed.map((j) => j.id)).toEqual(jobs.map((j) => j.id));

    const done = claimed.map((job) => ({ id: job.id, attempt: job.attempt, result: `r ${job.id}`, job }));
    // Running, their state is in the live hash; none has a hash of its own (no progress, no
    // earlier error, no cancel).
    for (const job of jobs) expect((await readLive(queue.redis, queue, job.id))?.state).toBe("running");
    expect(await queue.redis.exists(...jobs.map((j) => queue.keys.job(j.id)))).toBe(0);
    await queue.redis.config("RESETSTAT");
    expect(await run(queue.complete(done))).toEqual(["ok", "ok", "ok"]);
    // One read of the live hash for the whole batch (every job's state, attempt and whether it has a
    // hash of its own); the rest of the batch's work is one call per kind: one HSET of the records
    // and its expiry, one HDEL of the jobs' live states, one DEL of the user's lock (no job hash to
    // delete: none has one), and per stream an XACK, an XPENDING and an XDEL (nothing is pending,
    // so there is no bound to trim to).
    const stats = await queue.redis.info("commandstats");
    const calls = (command: string) =>
      Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
    expect(
      ["hmget", "hget", "hset", "pexpireat", "hdel", "del", "xack", "xpending", "xtrim", "xdel"].map(calls),
    ).toEqual([1, 0, 1, 1, 1, 1, 3, 3, 0, 3]);
    expect(await queue.redis.exists(...jobs.map((j) => queue.keys.job(j.id)))).toBe(0);
    for (const job of jobs) expect(await readLive(queue.redis, queue, job.id)).toBeUndefined();
    expect(await pending(queue)).toBe(0);
    for (const p of ALL) expect(await queue.redis.xlen(queue.keys.stream(p))).toBe(0);

    const view = await run(queue.getJob(jobs[0]!.id));
    expect(view).toMatchObject({
      state: "completed",
      priority: "high",
      attempt: 1,
      maxAttempts: 3,
      userId: "u1",
      createdAt: claimed[0]!.createdAt,
      uncounted: 0,
      result: `r ${jobs[0]!.id}`,
    });
    expect(Math.abs(view!.endedAt! - Date.now())).toBeLessThan(5_000);
    // The user's slot is free again.
    expect(await run(new QueueAdmin(queue).activeTaskOf("u1"))).toBeUndefined();
    await run(queue.enqueue(newJob("normal", { userId: "u1" })));

    // The per-minute counter keeps its expiry though the batch set it only with its first count.
    for (const key of await queue.redis.keys(`${queue.keys.base}m:*`))
      expect(await queue.redis.ttl(key)).toBeGreaterThan(0);

    // A resend (the reply was lost) is acknowledged, changes nothing and is not counted twice.
    expect(await run(queue.complete([{ ...done[1]!, result: "again" }]))).toEqual(["ok"]);
    expect(await run(queue.getJob(jobs[1]!.id))).toMatchObject({ result: `r ${jobs[1]!.id}` });
    expect(await completedLastHour(queue)).toBe(3);
    // Answers of the completed attempt are acknowledged, others refused, checked against the record.
    expect(await run(queue.complete([{ id: jobs[1]!.id, attempt: 1 }]))).toEqual(["ok"]);
    expect(await run(queue.complete([{ id: jobs[1]!.id, attempt: 2 }]))).toEqual(["stale"]);

    expect(await run(queue.cancel(jobs[2]!.id))).toEqual({ outcome: "ended", state: "completed" });
    expect(await run(queue.reprioritize(jobs[2]!.id, "urgent"))).toEqual({ state: "completed" });
    expect(await runFailure(queue.enqueue(jobs[2]!))).toMatchObject({ _tag: "DuplicateTask" });
    const bulk = await run(queue.enqueueMany([jobs[2]!, newJob("low")]));
    expect(bulk.map((b) => b.outcome)).toEqual(["duplicate", "ok"]);

    // A new run of the id replaces the record: once it ends otherwise, the old result is not shown.
    await run(queue.enqueue({ ...jobs[2]!, replaceEnded: true, afterAttempt: 1 }));
    expect(await run(queue.getJob(jobs[2]!.id))).toMatchObject({ state: "queued", attempt: 1 });
    expect(await run(queue.cancel(jobs[2]!.id))).toEqual({ outcome: "cancelled" });
    await queue.redis.del(queue.keys.job(jobs[2]!.id));
    expect(await run(queue.getJob(jobs[2]!.id))).toBeUndefined();
  });

  it("a stale answer in a batch is refused, and the rest of the batch completes", async () => {
    const queue = await makeQueue(redis);
    const [a, b] = [newJob("normal"), newJob("normal")];
    await run(queue.enqueueMany([a, b]));
    const first = (await run(queue.claim("A", ALL, 2))).jobs;
    await sleep(150);
    // a's lease lapses (b was renewed); B runs a's next attempt.
    await run(queue.renew("A", [{ id: b.id, attempt: 1 }]));
    expect(await run(queue.reclaim("reclaimer", { leaseMs: 100 }))).toMatchObject({ requeued: 1 });
    const [again] = (await run(queue.claim("B", ALL, 1))).jobs;
    expect(again).toMatchObject({ id: a.id, attempt: 2 });

    const answers = await run(
      queue.complete(first.map((job) => ({ id: job.id, attempt: job.attempt, job }))),
    );
    expect(answers).toEqual(["stale", "ok"]);
    expect(await run(queue.getJob(a.id))).toMatchObject({ state: "running", attempt: 2, owner: "B" });
    expect(await run(queue.getJob(b.id))).toMatchObject({ state: "completed" });
    // a's new entry is still B's to answer for.
    expect(await pending(queue)).toBe(1);
    expect(await run(queue.complete([{ id: a.id, attempt: 2, result: "B" }]))).toEqual(["ok"]);
    expect(await run(queue.getJob(a.id))).toMatchObject({ state: "completed", attempt: 2, result: "B" });
    expect(await completedLastHour(queue)).toBe(2);
  });

  it("a job that reported progress keeps its history in its record", async () => {
    const queue = await makeQueue(redis);
    const job = newJob("urgent", { userId: "who@example.org" });
    await run(queue.enqueue(job));
    const [claimed] = (await run(queue.claim("w", ALL, 1))).jobs;
    for (const [percent, step] of [
      [10, "downloading"],
      [100, "a step with spaces and ünïcode"],
    ] as const)
      expect(await run(queue.progress(claimed!, { percent, step }))).toBe(true);
    const result = JSON.stringify({ alt: "a cat, in the sun" });
    expect(await run(queue.complete([{ id: job.id, attempt: 1, result }]))).toEqual(["ok"]);
    expect(await queue.redis.exists(queue.keys.job(job.id))).toBe(0);
    const view = await run(queue.getJob(job.id));
    expect(view).toMatchObject({
      state: "completed",
      userId: "who@example.org",
      progress: 100,
      step: "a step with spaces and ünïcode",
      result,
    });
    expect(view!.steps.map((s) => [s.attempt, s.percent, s.step])).toEqual([
      [1, 10, "downloading"],
      [1, 100, "a step with spaces and ünïcode"],
    ]);
  });

  it("a stale attempt's completion is refused after its job's hash was lost and the job enqueued again", async () => {
    const queue = await makeQueue(redis);
    const job = newJob("normal");
    await run(queue.enqueue(job));
    const [first] = (await run(queue.claim("w", ALL, 1))).jobs;
    // Redis forgets the running job (its entry stays pending); the reconciler enqueues it again.
    // A running job's state is its live state (it has no hash of its own unless something was
    // added to it: none here).
    expect(await queue.redis.exists(queue.keys.job(job.id))).toBe(0);
    await dropLive(queue.redis, queue, job.id);
    await run(queue.enqueue({ ...job, replaceEnded: true, afterAttempt: 1 }));
    const late = { id: job.id, attempt: first!.attempt, result: "stale" };
    expect(await run(queue.complete([late]))).toEqual(["stale"]);
    expect(await run(queue.getJob(job.id))).toMatchObject({ state: "queued", attempt: 1 });
    const [second] = (await run(queue.claim("w2", ALL, 1))).jobs;
    expect(second).toMatchObject({ id: job.id, attempt: 2 });
    expect(await run(queue.complete([late]))).toEqual(["stale"]);
    expect(await run(queue.renew("w2", [second!]))).toEqual(["ok"]);
    expect(await run(queue.complete([{ id: job.id, attempt: 2, result: "fresh" }]))).toEqual(["ok"]);
    expect(await run(queue.getJob(job.id))).toMatchObject({
      state: "completed",
      attempt: 2,
      result: "fresh",
    });
  });

  it("the same completion twice in one batch completes once, with the first result", async () => {
    const queue = await makeQueue(redis);
    const job = newJob("normal");
    await run(queue.enqueue(job));
    const [claimed] = (await run(queue.claim("w", ALL, 1))).jobs;
    const answers = await run(
      queue.complete([
        { id: job.id, attempt: claimed!.attempt, result: "first" },
        { id: job.id, attempt: 1, result: "second" },
      ]),
    );
    expect(answers).toEqual(["ok", "ok"]);
    expect(await completedLastHour(queue)).toBe(1);
    expect(await run(queue.getJob(job.id))).toMatchObject({ result: "first" });
  });

  it("keeps the progress history of earlier attempts when the last reports none", async () => {
    const queue = await makeQueue(redis);
    const job = newJob("normal", { maxAttempts: 3 });
    await run(queue.enqueue(job));
    const [first] = (await run(queue.claim("w", ALL, 1))).jobs;
    await run(queue.progress(first!, { percent: 50, step: "half" }));
    await run(queue.fail({ id: job.id, attempt: 1, error: "x", retriable: true, delayMs: 0 }));
    const [second] = (await run(queue.claim("w", ALL, 1))).jobs;
    await run(queue.complete([{ id: job.id, attempt: second!.attempt }]));
    const view = await run(queue.getJob(job.id));
    expect(view?.steps.map((s) => [s.attempt, s.percent, s.step])).toEqual([[1, 50, "half"]]);
  });

  it("a redrive after a later run completed starts above that run's attempt, and replaces its record", async () => {
    const queue = await makeQueue(redis);
    const admin = new QueueAdmin(queue);
    const job = newJob("normal", { maxAttempts: 1 });
    await run(queue.enqueue(job));
    await run(queue.claim("w", ALL, 1));
    await run(queue.fail({ id: job.id, attempt: 1, error: "boom", retriable: false, delayMs: 0 }));
    // The task comes back (from the ledger) and completes at attempt 2; its hash is gone.
    await run(queue.enqueue({ ...job, replaceEnded: true, afterAttempt: 1 }));
    const [second] = (await run(queue.claim("w", ALL, 1))).jobs;
    await run(queue.complete([{ id: job.id, attempt: second!.attempt, result: "old" }]));
    const [letter] = await run(admin.listDead({ priority: "normal" }));
    expect(await run(admin.redriveDead("normal", [letter!.entryId]))).toEqual(["ok"]);
    const [third] = (await run(queue.claim("w", ALL, 1))).jobs;
    expect(third).toMatchObject({ id: job.id, attempt: 3 });
    // attempt 2's late resend cannot complete the new run.
    expect(await run(queue.complete([{ id: job.id, attempt: 2, result: "old" }]))).toEqual(["stale"]);
    await run(queue.cancel(job.id));
    await run(queue.fail({ id: job.id, attempt: 3, error: "stopped", retriable: false, delayMs: 0 }));
    await queue.redis.del(queue.keys.job(job.id));
    expect(await run(queue.getJob(job.id))).toBeUndefined();
  });

  it("a bucket emptied by a new run of its only job keeps its expiry when written again", async () => {
    const queue = await makeQueue(redis, { retention: { completedSeconds: 600 } });
    const first = newJob("normal");
    await runToCompletion(queue, first);
    const [bucket] = await queue.redis.zrange(queue.keys.completed, "0", "-1");
    await run(queue.enqueue({ ...first, replaceEnded: true, afterAttempt: 1 }));
    expect(await queue.redis.exists(bucket!)).toBe(0);
    // The new run completes in the same period: its record makes the bucket again.
    const [again] = (await run(queue.claim("w", ALL, 1))).jobs;
    expect(await run(queue.complete([{ id: first.id, attempt: again!.attempt }]))).toEqual(["ok"]);
    expect(await queue.redis.pttl(bucket!)).toBeGreaterThan(0);
  });

  it("a completion is its lease and result: the record takes priority, counters, user and created from the job", async () => {
    const queue = await makeQueue(redis);
    const job = newJob("high", { userId: "bare", maxAttempts: 5 });
    await run(queue.enqueue({ ...job, afterAttempt: 2 }));
    const [claimed] = (await run(queue.claim("w", ALL, 1))).jobs;
    expect(await run(queue.complete([{ id: job.id, attempt: 3, result: "r" }]))).toEqual(["ok"]);
    expect(await run(queue.getJob(job.id))).toMatchObject({
      state: "completed",
      priority: "high",
      attempt: 3,
      maxAttempts: 5,
      userId: "bare",
      createdAt: claimed!.createdAt,
      uncounted: 2,
      result: "r",
    });
    expect(await pending(queue)).toBe(0);
    expect(await queue.redis.xlen(queue.keys.stream("high"))).toBe(0);
  });

  it("a key of another type in a batch is answered stale; the batch's other jobs complete and free their users", async () => {
    const queue = await makeQueue(redis);
    const [a, b] = [newJob("normal", { userId: "ua" }), newJob("normal")];
    await run(queue.enqueueMany([a, b]));
    const claimed = (await run(queue.claim("w", ALL, 2))).jobs;
    // b's state is lost and a key of another type holds its name: no running job to complete.
    await replaceWithNonHash(queue.redis, queue, b.id, "not a job");
    const answers = await run(
      queue.complete(claimed.map((job) => ({ id: job.id, attempt: job.attempt, job }))),
    );
    expect(answers).toEqual(["ok", "stale"]);
    expect(await run(queue.getJob(a.id))).toMatchObject({ state: "completed" });
    expect(await run(new QueueAdmin(queue).activeTaskOf("ua"))).toBeUndefined();
    expect(await queue.redis.get(queue.keys.job(b.id))).toBe("not a job");
  });

  it("keeps an attempt number of 15 digits exact through claim, renew and completion", async () => {
    const queue = await makeQueue(redis);
    const job = newJob("normal");
    await run(queue.enqueue({ ...job, afterAttempt: 99_999_999_999_999 }));
    const [claimed] = (await run(queue.claim("w", ALL, 1))).jobs;
    expect(claimed?.attempt).toBe(100_000_000_000_000);
    expect((await readLive(queue.redis, queue, job.id))?.attempt).toBe("100000000000000");
    expect(await run(queue.renew("w", [claimed!]))).toEqual(["ok"]);
    expect(await run(queue.complete([{ id: job.id, attempt: claimed!.attempt }]))).toEqual(["ok"]);
    expect(await run(queue.getJob(job.id))).toMatchObject({
      state: "completed",
      attempt: 100_000_000_000_000,
    });
  });

  it("drops a leftover entry of a completed job at the claim and at the reclaim, and still dead-letters an orphan", async () => {
    const queue = await makeQueue(redis);
    const admin = new QueueAdmin(queue);
    const job = newJob("normal");
    await runToCompletion(queue, job);
    const stream = queue.keys.stream("normal");
    // Copies of its entry (a retried write, a bad client) and one naming no task at all.
    await queue.redis.xadd(stream, "*", "i", job.id, "d", "{}");
    await queue.redis.xadd(stream, "*", "i", "nobody", "d", "{}");
    expect((await run(queue.claim("w", ALL, 5))).jobs).toEqual([]);
    // Another copy, delivered outside the claim so that only the reclaimer meets it.
    await queue.redis.xadd(stream, "*", "i", job.id, "d", "{}");
    await queue.redis.xreadgroup("GROUP", queue.group, "ghost", "COUNT", 1, "STREAMS", stream, ">");
    await sleep(60);
    expect(await run(queue.reclaim("reclaimer", { leaseMs: 50 }))).toMatchObject({ requeued: 0, dead: 0 });
    const dead = await run(admin.listDead({ priority: "normal" }));
    expect(dead.map((d) => [d.taskId, d.reason.replace(/entry \S+:/, "entry <id>:")])).toEqual([
      ["nobody", "orphan stream entry <id>: the task data is gone"],
    ]);
    expect(await queue.redis.xlen(stream)).toBe(0);
    expect(await pending(queue)).toBe(0);
    expect(await run(queue.getJob(job.id))).toMatchObject({ state: "completed", attempt: 1 });
  });

  it("an enqueue refused because its user is busy replaces nothing: the record and an ended hash stay", async () => {
    const queue = await makeQueue(redis);
    const [done, failed] = [
      newJob("normal", { userId: "busy" }),
      newJob("normal", { userId: "busy", maxAttempts: 1 }),
    ];
    await runToCompletion(queue, done, "kept");
    await run(queue.enqueue(failed));
    await run(queue.claim("w", ALL, 1));
    await run(queue.fail({ id: failed.id, attempt: 1, error: "boom", retriable: false, delayMs: 0 }));
    const active = newJob("normal", { userId: "busy" });
    await run(queue.enqueue(active));
    for (const job of [done, failed]) {
      expect(await runFailure(queue.enqueue({ ...job, replaceEnded: true, afterAttempt: 1 }))).toMatchObject({
        _tag: "ActiveTaskExists",
        activeTaskId: active.id,
      });
    }
    expect(await run(queue.getJob(done.id))).toMatchObject({ state: "completed", result: "kept" });
    expect(await run(queue.getJob(failed.id))).toMatchObject({ state: "failed", error: "boom" });
  });

  it("refuses an afterAttempt beyond the 15 digits the scripts count in", async () => {
    const queue = await makeQueue(redis);
    expect(
      await runFailure(queue.enqueue({ ...newJob("normal"), afterAttempt: 100_000_000_000_000 })),
    ).toMatchObject({
      _tag: "InvalidJob",
      reason: "afterAttempt must be an integer 0-99999999999999",
    });
  });

  it("a bulk enqueue judges repeated ids in order, against records and each other", async () => {
    const queue = await makeQueue(redis);
    const done = newJob("normal");
    await runToCompletion(queue, done);
    const fresh = newJob("low");
    const outcomes = await run(
      queue.enqueueMany([done, { ...done, replaceEnded: true, afterAttempt: 1 }, done, fresh, fresh]),
    );
    expect(outcomes.map((o) => o.outcome)).toEqual(["duplicate", "ok", "duplicate", "ok", "duplicate"]);
    expect(await run(queue.getJob(done.id))).toMatchObject({ state: "queued", attempt: 1 });
  });

  it("records expire with their retention period, and the index forgets the expired buckets", async () => {
    const queue = await makeQueue(redis, { retention: { completedSeconds: 1 } });
    const id = await runToCompletion(queue);
    expect(await run(queue.getJob(id))).toMatchObject({ state: "completed" });
    const [bucket] = await queue.redis.zrange(queue.keys.completed, "0", "-1");
    const ttl = await queue.redis.pttl(bucket!);
    // A period of one second, kept one second after it ends.
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(2_000);
    await eventually(async () => (await run(queue.getJob(id))) === undefined, 5_000, "the record to expire");
    await runToCompletion(queue);
    expect(await queue.redis.zrange(queue.keys.completed, "0", "-1")).not.toContain(bucket);
  });

  it("with retention 0 records stay until purged; the purge counts them", async () => {
    const queue = await makeQueue(redis, { retention: { completedSeconds: 0 } });
    const jobs = [newJob("normal"), newJob("urgent", { userId: "p" })];
    await run(queue.enqueueMany(jobs));
    const claimed = (await run(queue.claim("w", ALL, 2))).jobs;
    await run(queue.complete(claimed.map((job) => ({ id: job.id, attempt: job.attempt, job }))));
    const buckets = await queue.redis.zrange(queue.keys.completed, "0", "-1");
    expect(buckets).toHaveLength(1);
    expect(await queue.redis.pttl(buckets[0]!)).toBe(-1);

    expect(await run(new QueueAdmin(queue).purgeFinished())).toBe(2);
    for (const job of jobs) expect(await run(queue.getJob(job.id))).toBeUndefined();
    expect(await queue.redis.exists(queue.keys.completed, buckets[0]!)).toBe(0);
  });
});
