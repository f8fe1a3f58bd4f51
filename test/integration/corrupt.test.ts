import { describe, expect, it } from "vitest";
import { newTaskId } from "../../src/domain/index.js";
import { QueueAdmin } from "../../src/queue/admin.js";
import { ALL, eventLog, eventually, makeQueue, newJob, testWorker } from "../support/queue.js";
import { captionEnvelope, validateEnvelope } from "../support/envelopes.js";
import { patchLive, replaceWithNonHash } from "../support/live-state.js";
import { run, useRedis } from "../support/redis.js";

const captionJob = () => {
  const id = newTaskId();
  return { id, priority: "normal" as const, data: captionEnvelope("normal", id) };
};

describe("bad input never stops claiming", () => {
  const redis = useRedis();

  it("dead-letters corrupt stream entries and garbage payloads with a reason, and runs the good jobs", async () => {
    const queue = await makeQueue(redis);
    const raw = redis.client();
    const good = [captionJob(), captionJob(), captionJob()];
    await run(queue.enqueue(good[0]!));
    // An entry with no task id, and one naming a task whose data is gone.
    await raw.xadd(queue.keys.stream("normal"), "*", "garbage", "\u0000\u00ff");
    await raw.xadd(queue.keys.stream("normal"), "*", "i", "no-such-task");
    await run(queue.enqueue(good[1]!));
    // Payloads that are not envelopes, of an unknown version, of an unknown kind, with bad fields.
    const garbage = [
      { id: "g-json", priority: "normal" as const, data: "{not json" },
      {
        id: "g-version",
        priority: "normal" as const,
        data: JSON.stringify({ v: 99, kind: "caption", body: {} }),
      },
      { id: "g-kind", priority: "normal" as const, data: JSON.stringify({ v: 1, kind: "resize", body: {} }) },
      {
        id: "g-fields",
        priority: "normal" as const,
        data: JSON.stringify({ v: 1, kind: "caption", body: { user_id: -1 } }),
      },
    ];
    for (const g of garbage) await run(queue.enqueue(g));
    await run(queue.enqueue(good[2]!));

    const log = eventLog();
    const handled: string[] = [];
    const worker = testWorker(queue, {
      concurrency: 2,
      validate: validateEnvelope,
      onEvent: log.onEvent,
      handler: async (job) => {
        handled.push(job.id);
        return undefined;
      },
    }).start();
    await eventually(() => log.count("completed") === 3 && log.count("dead") === 4, 5_000, "all jobs to end");
    await worker.stop();
    expect(handled.sort()).toEqual(good.map((g) => g.id).sort());

    const dead = await run(new QueueAdmin(queue).listDead());
    const reasons = new Map(dead.map((d) => [d.taskId || "(no id)", d.reason]));
    expect(reasons.get("(no id)")).toMatch(/^corrupt stream entry .*: no task id$/);
    expect(reasons.get("no-such-task")).toMatch(/^orphan stream entry .*: the task data is gone$/);
    expect(reasons.get("g-json")).toBe("corrupt envelope: not JSON");
    expect(reasons.get("g-version")).toMatch(/^unsupported envelope version 99/);
    expect(reasons.get("g-kind")).toBe('unknown job kind "resize"');
    expect(reasons.get("g-fields")).toMatch(/^invalid caption payload: .*user_id/);
    // The dead letter keeps what was wrong, for a person to look at.
    expect(dead.find((d) => d.taskId === "")?.data).toContain("garbage");
    expect(dead.find((d) => d.taskId === "g-json")?.data).toBe("{not json");
    const stats = await run(new QueueAdmin(queue).stats());
    expect(stats.find((s) => s.priority === "normal")).toMatchObject({ waiting: 0, running: 0, dead: 6 });
  });

  it("redrive refuses a letter whose task data holds no usable attempt, and redrives the rest", async () => {
    const queue = await makeQueue(redis);
    const raw = redis.client();
    const admin = new QueueAdmin(queue);
    // A job of user u1 that fails the ordinary way.
    const plain = newJob("normal", { maxAttempts: 1, userId: "u1" });
    await run(queue.enqueue(plain));
    expect((await run(queue.claim("w", ALL, 1))).jobs.map((j) => j.id)).toEqual([plain.id]);
    await run(queue.fail({ id: plain.id, attempt: 1, error: "nope", retriable: false, delayMs: 0 }));
    // Claim fails these unrun: a non-numeric attempt (the fencing token), a non-numeric spent
    // count, and a task key that is not a hash (its user's lock, u1's, is left naming it).
    // A queued job's counters are in its live state (the `live` hash), not in `j:<id>`: the bad
    // counters are written there; the unreadable task is one with no live state and a string
    // under its name (replaceWithNonHash), as claim reads `j:<id>` only for a job with no live state.
    const badAttempt = newJob("normal");
    const badSpent = newJob("normal");
    const notHash = newJob("normal", { userId: "u1" });
    for (const j of [badAttempt, badSpent, notHash]) await run(queue.enqueue(j));
    await patchLive(raw, queue, badAttempt.id, { attempt: "x" });
    await patchLive(raw, queue, badSpent.id, { spent: "x" });
    await replaceWithNonHash(raw, queue, notHash.id);
    expect((await run(queue.claim("w", ALL, 3))).jobs).toEqual([]);
    const letters = new Map((await run(admin.listDead())).map((d) => [d.taskId, d]));
    expect(letters.get(badAttempt.id)?.reason).toBe('corrupt task data: attempt "x" is not a whole number');
    expect(letters.get(badSpent.id)?.reason).toMatch(/^corrupt task data: spent "x"/);
    expect(letters.get(notHash.id)?.reason).toMatch(/: its task key is not a hash$/);

    // One call for all four: the two that cannot be redriven are answered, not a script error.
    const order = [badAttempt, badSpent, notHash, plain].map((j) => letters.get(j.id)!.entryId);
    expect(await run(admin.redriveDead("normal", order))).toEqual(["corrupt", "ok", "corrupt", "ok"]);
    // The refused letters stay for an operator to read or purge; their task data is untouched
    // (the failed task's hash keeps the attempt its live state had; neither is live any more).
    const left = (await run(admin.listDead())).map((d) => d.taskId);
    expect(left.sort()).toEqual([badAttempt.id, notHash.id].sort());
    expect(await raw.hget(queue.keys.job(badAttempt.id), "attempt")).toBe("x");
    expect(await raw.get(queue.keys.job(notHash.id))).toBe("not a hash");
    expect(await raw.hexists(queue.keys.live, badAttempt.id)).toBe(0);
    expect(await raw.hexists(queue.keys.live, notHash.id)).toBe(0);
    // u1's lock named the unreadable task, which is not active: the lock is the redriven job's.
    expect(await run(admin.activeTaskOf("u1"))).toBe(plain.id);
    // The others run again: spent is rewritten by the redrive, the attempt counts on.
    const again = (await run(queue.claim("w", ALL, 4))).jobs;
    expect(again.map((j) => [j.id, j.attempt, j.runAttempt])).toEqual([
      [badSpent.id, 1, 1],
      [plain.id, 2, 1],
    ]);
  });

  it("a handler that throws anything at all fails that job only", async () => {
    const queue = await makeQueue(redis);
    const jobs = Array.from({ length: 6 }, () => captionJob());
    for (const j of jobs) await run(queue.enqueue({ ...j, maxAttempts: 1 }));
    const throwers: Array<() => never> = [
      () => {
        throw undefined;
      },
      () => {
        throw "a string";
      },
      () => {
        throw { weird: true };
      },
      () => {
        throw new TypeError("x is not a function");
      },
    ];
    const log = eventLog();
    let n = 0;
    const worker = testWorker(queue, {
      concurrency: 3,
      onEvent: log.onEvent,
      handler: async () => {
        const i = n++;
        const thrower = throwers[i];
        if (thrower) thrower();
        return "fine";
      },
    }).start();
    await eventually(() => log.count("completed") + log.count("dead") === 6, 5_000, "all jobs to end");
    await worker.stop();
    expect(log.count("dead")).toBe(4);
    expect(log.count("completed")).toBe(2);
    expect(log.count("error")).toBe(0);
  });
});
