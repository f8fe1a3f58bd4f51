import { describe, expect, it } from "vitest";
import { QueueAdmin } from "../../src/queue/admin.js";
import { InvalidJob } from "../../src/queue/errors.js";
import { ALL, makeQueue, newJob } from "../support/queue.js";
import { run, runFailure, useRedis } from "../support/redis.js";

describe("bulk enqueue", () => {
  const redis = useRedis();

  it("puts in every job, across script calls, in the order given within each priority", async () => {
    const queue = await makeQueue(redis);
    // More than one chunk (500 per script call), so chunking and reassembly are both exercised.
    const jobs = Array.from({ length: 1_203 }, (_, i) => newJob(ALL[i % 4]));
    const outcomes = await run(queue.enqueueMany(jobs));
    expect(outcomes.map((o) => o.id)).toEqual(jobs.map((j) => j.id));
    expect(outcomes.every((o) => o.outcome === "ok" && o.entry !== undefined)).toBe(true);

    const stats = await run(new QueueAdmin(queue).stats());
    expect(stats.map((s) => s.waiting)).toEqual([301, 301, 301, 300]);
    // Strict priority, and first in first out within one.
    const claimed = await run(queue.claim("c", ALL, 1_203));
    const expected = ALL.flatMap((prio) => jobs.filter((j) => j.priority === prio).map((j) => j.id));
    expect(claimed.jobs.map((j) => j.id)).toEqual(expected);
    expect(claimed.jobs[0]).toMatchObject({ attempt: 1, maxAttempts: 4, data: jobs[0]!.data });

    // One completion call for all of them: its acknowledgements go out in slices of 1,000.
    const answers = await run(queue.complete(claimed.jobs.map((j) => ({ id: j.id, attempt: j.attempt }))));
    expect(answers.every((a) => a === "ok")).toBe(true);
    const after = await run(new QueueAdmin(queue).stats());
    expect(after.map((s) => [s.waiting, s.running, s.completedLastHour])).toEqual([
      [0, 0, 301],
      [0, 0, 301],
      [0, 0, 301],
      [0, 0, 300],
    ]);
    for (const prio of ALL) expect(await redis.client().xlen(queue.keys.stream(prio))).toBe(0);
  });

  it("judges each job on its own: a duplicate or a busy user is refused, the rest go in", async () => {
    const queue = await makeQueue(redis);
    const existing = newJob("normal");
    await run(queue.enqueue(existing));
    const first = newJob("high", { userId: "u1" });
    const second = newJob("low", { userId: "u1" });
    const free = newJob("normal", { userId: "u2" });
    const delayed = newJob("normal", { delayMs: 60_000 });
    const outcomes = await run(queue.enqueueMany([first, existing, second, free, delayed]));
    expect(outcomes).toEqual([
      { id: first.id, outcome: "ok", entry: expect.any(String) },
      { id: existing.id, outcome: "duplicate" },
      { id: second.id, outcome: "active", activeTaskId: first.id },
      { id: free.id, outcome: "ok", entry: expect.any(String) },
      { id: delayed.id, outcome: "ok", entry: undefined },
    ]);
    const stats = await run(new QueueAdmin(queue).stats());
    expect(stats.reduce((n, s) => n + s.waiting, 0)).toBe(3);
    expect(stats.reduce((n, s) => n + s.delayed, 0)).toBe(1);
    expect(await run(new QueueAdmin(queue).activeTaskOf("u1"))).toBe(first.id);
  });

  it("refuses the whole call, naming the job, when one job is not valid, and writes nothing", async () => {
    const queue = await makeQueue(redis);
    const good = newJob("normal");
    const bad = { ...newJob("normal"), id: "has space" };
    const error = await runFailure(queue.enqueueMany([good, bad]));
    expect(error).toBeInstanceOf(InvalidJob);
    expect(error.message).toContain('job 1 ("has space")');
    const stats = await run(new QueueAdmin(queue).stats());
    expect(stats.reduce((n, s) => n + s.waiting, 0)).toBe(0);
  });

  it("answers an empty list with an empty list", async () => {
    const queue = await makeQueue(redis);
    expect(await run(queue.enqueueMany([]))).toEqual([]);
  });
});
