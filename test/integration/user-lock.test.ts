import { Effect } from "effect";
import { describe, expect, it } from "vitest";
import { QueueAdmin } from "../../src/queue/admin.js";
import { ActiveTaskExists } from "../../src/queue/errors.js";
import { dropLive, replaceWithNonHash } from "../support/live-state.js";
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
    // Its state is gone: no live field, no hash of its own.
    await dropLive(redis.client(), queue, stale.id);
    await redis.client().del(queue.keys.job(stale.id));
    const admin = new QueueAdmin(queue);
    expect(await run(admin.activeTaskOf("9"))).toBeUndefined();
    await run(queue.enqueue(newJob("normal", { userId: "9" })));
  });

  it("replaces a lock that names a task whose key is not a hash", async () => {
    const queue = await makeQueue(redis);
    const raw = redis.client();
    const stale = newJob("normal", { userId: "h" });
    await run(queue.enqueue(stale));
    // Unreadable: no live state, and a string where its hash would be.
    await replaceWithNonHash(raw, queue, stale.id);
    // The lookup of the locked task got WRONGTYPE: every later enqueue of the user failed.
    const next = newJob("normal", { userId: "h" });
    await run(queue.enqueue(next));
    expect(await run(new QueueAdmin(queue).activeTaskOf("h"))).toBe(next.id);
    // The key of the other type is left alone.
    expect(await raw.get(queue.keys.job(stale.id))).toBe("not a hash");
  });

  it("replaces a key of another type under a lock's name: enqueue, redrive and restore", async () => {
    const queue = await makeQueue(redis);
    const raw = redis.client();
    const admin = new QueueAdmin(queue);
    const clobber = async (userId: string) => {
      await raw.del(queue.keys.user(userId));
      await raw.rpush(queue.keys.user(userId), "not a lock");
    };
    // enqueue: the lock's GET got WRONGTYPE, for every later enqueue of the user.
    await clobber("e");
    const first = newJob("normal", { userId: "e" });
    await run(queue.enqueue(first));
    expect(await raw.get(queue.keys.user("e"))).toBe(first.id);
    // ... and the rule holds again from there.
    expect(await runFailure(queue.enqueue(newJob("normal", { userId: "e" })))).toMatchObject({
      _tag: "ActiveTaskExists",
      activeTaskId: first.id,
    });

    // redrive: the same GET, failing the call (and the letters after it).
    const dead = newJob("normal", { userId: "d", maxAttempts: 1 });
    await run(queue.enqueue(dead));
    await run(queue.claim("w", ["normal"], 2));
    await run(queue.fail({ id: dead.id, attempt: 1, error: "nope", retriable: false, delayMs: 0 }));
    await clobber("d");
    const [letter] = await run(admin.listDead());
    expect(await run(admin.redriveDead("normal", [letter!.entryId]))).toEqual(["ok"]);
    expect(await raw.get(queue.keys.user("d"))).toBe(dead.id);

    // restore-locks: SET NX left the key of the other type, and the live task without its lock.
    const live = newJob("low", { userId: "l" });
    await run(queue.enqueue(live));
    await clobber("l");
    expect(await run(queue.restoreUserLocks([{ id: live.id, userId: "l" }]))).toBe(1);
    expect(await run(admin.activeTaskOf("l"))).toBe(live.id);
    // A real lock naming another task is still never replaced.
    expect(await run(queue.restoreUserLocks([{ id: first.id, userId: "l" }]))).toBe(0);
    expect(await run(admin.activeTaskOf("l"))).toBe(live.id);
  });

  it("the admin lookup judges a lock of another type, or naming a task key of another type, as no active task", async () => {
    const queue = await makeQueue(redis);
    const raw = redis.client();
    const admin = new QueueAdmin(queue);
    // A key of another type under the lock's name: its GET got WRONGTYPE, and the lookup threw.
    await raw.rpush(queue.keys.user("t"), "not a lock");
    expect(await run(admin.activeTaskOf("t"))).toBeUndefined();
    // A lock naming a task whose key is not a hash: its HGET got WRONGTYPE.
    const stale = newJob("normal", { userId: "s" });
    await run(queue.enqueue(stale));
    await replaceWithNonHash(raw, queue, stale.id);
    expect(await run(admin.activeTaskOf("s"))).toBeUndefined();
    // The scripts agree: both locks are stale, and the users' next tasks get in.
    const next = [newJob("normal", { userId: "t" }), newJob("normal", { userId: "s" })];
    for (const job of next) await run(queue.enqueue(job));
    expect(await run(admin.activeTaskOf("t"))).toBe(next[0]!.id);
    expect(await run(admin.activeTaskOf("s"))).toBe(next[1]!.id);
  });

  it("restore-locks skips a task whose key is not a hash and restores the others", async () => {
    const queue = await makeQueue(redis);
    const raw = redis.client();
    const admin = new QueueAdmin(queue);
    const broken = newJob("normal", { userId: "b" });
    const live = newJob("normal", { userId: "l" });
    await run(queue.enqueue(broken));
    await run(queue.enqueue(live));
    await raw.del(queue.keys.user("b"), queue.keys.user("l"));
    await replaceWithNonHash(raw, queue, broken.id);
    // The HGET of the broken task's state got WRONGTYPE and failed the call: no lock came back.
    expect(
      await run(
        queue.restoreUserLocks([
          { id: broken.id, userId: "b" },
          { id: live.id, userId: "l" },
        ]),
      ),
    ).toBe(1);
    expect(await raw.exists(queue.keys.user("b"))).toBe(0);
    expect(await run(admin.activeTaskOf("l"))).toBe(live.id);
    expect(await raw.get(queue.keys.job(broken.id))).toBe("not a hash");
  });

  it("a task ends, and frees its user, when a key of another type took its lock's name", async () => {
    const queue = await makeQueue(redis);
    const raw = redis.client();
    const job = newJob("normal", { userId: "f" });
    await run(queue.enqueue(job));
    const [claimed] = (await run(queue.claim("w", ALL, 1))).jobs;
    await raw.del(queue.keys.user("f"));
    await raw.hset(queue.keys.user("f"), "not", "a lock");
    // Every terminal transition releases the lock: its GET got WRONGTYPE and failed the complete.
    expect(await run(queue.complete([{ id: job.id, attempt: claimed!.attempt }]))).toEqual(["ok"]);
    expect(await run(queue.getJob(job.id))).toMatchObject({ state: "completed" });
    expect(await raw.exists(queue.keys.user("f"))).toBe(0);
    await run(queue.enqueue(newJob("normal", { userId: "f" })));
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

  it("refuses a task id held by a key of another type, leaving it and the user's slot alone", async () => {
    const queue = await makeQueue(redis);
    const raw = redis.client();
    const job = newJob("normal", { userId: "k" });
    await raw.rpush(queue.keys.job(job.id), "not a job");
    // The HGET of the id's state got WRONGTYPE: a Lua error, not a typed answer.
    expect(await runFailure(queue.enqueue(job))).toMatchObject({ _tag: "DuplicateTask", taskId: job.id });
    // Not an ended job either: replace_ended does not delete it.
    expect(await runFailure(queue.enqueue({ ...job, replaceEnded: true }))).toMatchObject({
      _tag: "DuplicateTask",
      taskId: job.id,
    });
    expect(await raw.lrange(queue.keys.job(job.id), 0, -1)).toEqual(["not a job"]);
    expect(await raw.xlen(queue.keys.stream("normal"))).toBe(0);
    expect(await raw.exists(queue.keys.user("k"))).toBe(0);
    await run(queue.enqueue(newJob("normal", { userId: "k" })));
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
