import { Effect } from "effect";
import { describe, expect, it } from "vitest";
import { QueueAdmin } from "../../src/queue/admin.js";
import { ActiveTaskExists } from "../../src/queue/errors.js";
import { ALL, makeQueue, newJob } from "../support/queue.js";
import { run, runFailure, useRedis } from "../support/redis.js";

describe("one active task per user", () => {
  const redis = useRedis();

  it("lets exactly one of 50 concurrent submissions of one user in, and names it to the others", async () => {
    // Ten connections, so the 50 enqueues really race inside Redis rather than on one socket.
    const queues = await Promise.all(Array.from({ length: 10 }, () => makeQueue(redis)));
    const jobs = Array.from({ length: 50 }, (_, i) => newJob(i % 2 ? "high" : "low", { userId: "42" }));
    const results = await Promise.all(
      jobs.map((job, i) => Effect.runPromise(Effect.either((queues[i % 10] ?? queues[0])!.enqueue(job)))),
    );
    const winners = results.flatMap((r, i) => (r._tag === "Right" ? [jobs[i]?.id] : []));
    expect(winners).toHaveLength(1);
    for (const r of results) {
      if (r._tag === "Left") {
        expect(r.left).toBeInstanceOf(ActiveTaskExists);
        expect(r.left).toMatchObject({ userId: "42", activeTaskId: winners[0] });
        expect(r.left.message).toContain(winners[0]);
      }
    }
    const admin = new QueueAdmin(queues[0]!);
    expect(await run(admin.activeTaskOf("42"))).toBe(winners[0]);
    const stats = await run(admin.stats());
    expect(stats.reduce((n, s) => n + s.waiting, 0)).toBe(1);
  });

  it("holds while the task runs and frees the user when it ends", async () => {
    const queue = await makeQueue(redis);
    const first = newJob("normal", { userId: "7" });
    await run(queue.enqueue(first));
    const claim = await run(queue.claim("c1", ALL, 1));
    const blocked = await runFailure(queue.enqueue(newJob("normal", { userId: "7" })));
    expect(blocked).toMatchObject({ _tag: "ActiveTaskExists", activeTaskId: first.id });
    // Another user is not affected.
    await run(queue.enqueue(newJob("normal", { userId: "8" })));

    await run(queue.complete([{ id: first.id, attempt: claim.jobs[0]!.attempt }]));
    await run(queue.enqueue(newJob("normal", { userId: "7" })));
  });

  it("is freed by a cancel, a dead letter and a clear", async () => {
    const queue = await makeQueue(redis);
    const admin = new QueueAdmin(queue);
    const a = newJob("normal", { userId: "u" });
    await run(queue.enqueue(a));
    await run(queue.cancel(a.id));
    const b = newJob("normal", { userId: "u", maxAttempts: 1 });
    await run(queue.enqueue(b));
    const claim = await run(queue.claim("c1", ALL, 1));
    expect(
      await run(
        queue.fail({ id: b.id, attempt: claim.jobs[0]!.attempt, error: "x", retriable: true, delayMs: 0 }),
      ),
    ).toEqual({
      outcome: "dead",
    });
    const c = newJob("low", { userId: "u" });
    await run(queue.enqueue(c));
    expect(await run(admin.clear("low"))).toEqual([{ id: c.id, attempt: 0 }]);
    await run(queue.enqueue(newJob("low", { userId: "u" })));
  });

  it("replaces a lock that names a task that no longer exists", async () => {
    const queue = await makeQueue(redis);
    const stale = newJob("normal", { userId: "9" });
    await run(queue.enqueue(stale));
    await redis.client().del(queue.keys.job(stale.id));
    const admin = new QueueAdmin(queue);
    expect(await run(admin.activeTaskOf("9"))).toBeUndefined();
    await run(queue.enqueue(newJob("normal", { userId: "9" })));
  });

  it("an admin can force-release a user's slot", async () => {
    const queue = await makeQueue(redis);
    const admin = new QueueAdmin(queue);
    const job = newJob("normal", { userId: "5" });
    await run(queue.enqueue(job));
    expect(await run(admin.releaseUser("5"))).toBe(true);
    expect(await run(admin.releaseUser("5"))).toBe(false);
    const second = newJob("normal", { userId: "5" });
    await run(queue.enqueue(second));
    expect(await run(admin.activeTaskOf("5"))).toBe(second.id);
  });

  it("refuses a task id that is already queued", async () => {
    const queue = await makeQueue(redis);
    const job = newJob("normal");
    await run(queue.enqueue(job));
    expect(await runFailure(queue.enqueue(job))).toMatchObject({ _tag: "DuplicateTask", taskId: job.id });
  });

  it("refuses malformed jobs with a clear reason and stores nothing", async () => {
    const queue = await makeQueue(redis);
    const cases = [
      { ...newJob(), id: "has space" },
      { ...newJob(), priority: "soon" as never },
      { ...newJob(), maxAttempts: 0 },
      { ...newJob(), delayMs: -1 },
      { ...newJob(), userId: "" },
    ];
    for (const job of cases) {
      const error = await runFailure(queue.enqueue(job));
      expect(error._tag).toBe("InvalidJob");
      expect(error.message).toMatch(/^invalid job: /);
    }
    expect(await redis.client().dbsize()).toBe(0);
  });
});
