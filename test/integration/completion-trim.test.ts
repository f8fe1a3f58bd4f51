import { describe, expect, it } from "vitest";
import type { ClaimedJob, Queue } from "../../src/queue/queue.js";
import { scripts } from "../../src/queue/scripts.js";
import { WorkerRegistry } from "../../src/queue/workers.js";
import { ALL, makeQueue, newJob } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";

/**
 * A batch of completions drops its stream entries with one XTRIM MINID below the group's oldest
 * pending entry, and deletes one by one only those at or above it (includes/common.lua,
 * ack_and_delete_all). These hold what the trim must never take: a waiting entry, a running
 * job's entry, or a later entry held back behind a long job; and the janitor's removal of idle
 * consumers, which must never drop a pending entry unacknowledged (the trim's premise).
 */
describe("completions trim their stream", () => {
  const redis = useRedis();

  const calls = async (queue: Queue, command: string) => {
    const stats = await queue.redis.info("commandstats");
    return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
  };
  const complete = (queue: Queue, jobs: ClaimedJob[]) =>
    run(queue.complete(jobs.map((job) => ({ id: job.id, attempt: job.attempt, job }))));
  const entries = async (queue: Queue) =>
    (await queue.redis.xrange(queue.keys.stream("normal"), "-", "+")).map(([entry]) => entry);
  /** A queue with `n` normal jobs waiting; `before` is their stream entries, oldest first. */
  const queued = async (n: number) => {
    const queue = await makeQueue(redis);
    const jobs = Array.from({ length: n }, () => newJob("normal"));
    await run(queue.enqueueMany(jobs));
    return { queue, jobs, before: await entries(queue) };
  };

  it("entries completed in order are trimmed; waiting and running ones stay, with their data", async () => {
    const { queue, jobs, before } = await queued(20);
    const first = (await run(queue.claim("A", ALL, 5))).jobs;
    const second = (await run(queue.claim("B", ALL, 5))).jobs;

    await queue.redis.config("RESETSTAT");
    expect(await complete(queue, first)).toEqual(Array(5).fill("ok"));
    // B's five are the oldest pending: everything below them went in one trim.
    expect([await calls(queue, "xtrim"), await calls(queue, "xdel")]).toEqual([1, 0]);
    expect(await entries(queue)).toEqual(before.slice(5));
    expect(before.slice(5, 10)).toEqual(second.map((j) => j.entry));

    // Nothing pending: no bound of Redis's own to trim to, so they are deleted one by one.
    await queue.redis.config("RESETSTAT");
    expect(await complete(queue, second)).toEqual(Array(5).fill("ok"));
    expect([await calls(queue, "xtrim"), await calls(queue, "xdel")]).toEqual([0, 1]);
    expect(await entries(queue)).toEqual(before.slice(10));

    const rest = (await run(queue.claim("C", ALL, 20))).jobs;
    expect(rest.map((j) => [j.id, j.data])).toEqual(jobs.slice(10).map((j) => [j.id, j.data]));
    expect(await complete(queue, rest)).toEqual(Array(10).fill("ok"));
    expect(await entries(queue)).toEqual([]);
    for (const job of jobs) expect(await run(queue.getJob(job.id))).toMatchObject({ state: "completed" });
  });

  it("entries completed ahead of a long job are deleted, not kept behind it", async () => {
    const { queue } = await queued(6);
    const claimed = (await run(queue.claim("A", ALL, 6))).jobs;
    const [long, ...quick] = claimed;

    await queue.redis.config("RESETSTAT");
    expect(await complete(queue, quick)).toEqual(Array(5).fill("ok"));
    expect(await calls(queue, "xdel")).toBe(1);
    expect(await entries(queue)).toEqual([long!.entry]);
    expect(await run(queue.getJob(long!.id))).toMatchObject({ state: "running", attempt: 1 });

    expect(await complete(queue, [long!])).toEqual(["ok"]);
    expect(await entries(queue)).toEqual([]);
  });

  it("a batch of one stream split around a running job loses only its own entries", async () => {
    const { queue, jobs, before } = await queued(8);
    const claimed = (await run(queue.claim("A", ALL, 6))).jobs;
    // Completed: 0, 1, 4 and 5; running: 2 and 3; waiting: 6 and 7.
    const done = [claimed[0]!, claimed[1]!, claimed[4]!, claimed[5]!];
    expect(await complete(queue, done)).toEqual(Array(4).fill("ok"));
    expect(await entries(queue)).toEqual([before[2], before[3], before[6], before[7]]);

    const waiting = (await run(queue.claim("B", ALL, 2))).jobs;
    expect(waiting.map((j) => [j.id, j.data])).toEqual(jobs.slice(6).map((j) => [j.id, j.data]));
    expect(await complete(queue, [claimed[2]!, claimed[3]!, ...waiting])).toEqual(Array(4).fill("ok"));
    expect(await entries(queue)).toEqual([]);
  });

  it("an entry already gone, or a stream whose group is gone, does not fail the batch", async () => {
    const { queue } = await queued(3);
    const claimed = (await run(queue.claim("A", ALL, 3))).jobs;
    await queue.redis.xdel(queue.keys.stream("normal"), claimed[1]!.entry);
    expect(await complete(queue, claimed)).toEqual(["ok", "ok", "ok"]);
    expect(await entries(queue)).toEqual([]);

    const other = newJob("normal");
    await run(queue.enqueue(other));
    const [job] = (await run(queue.claim("A", ALL, 1))).jobs;
    await queue.redis.xgroup("DESTROY", queue.keys.stream("normal"), queue.group);
    expect(await complete(queue, [job!])).toEqual(["ok"]);
    expect(await entries(queue)).toEqual([]);
    expect(await run(queue.getJob(other.id))).toMatchObject({ state: "completed" });
  });

  it("a consumer pruned while it claims keeps its running job's entry, so no completion trims it", async () => {
    const { queue, jobs, before } = await queued(4);
    const registry = new WorkerRegistry(queue);
    // The worker `gone` (never registered, so not live) ran a job: its consumer holds nothing.
    const [first] = (await run(queue.claim("gone/main", ALL, 1))).jobs;
    expect(await complete(queue, [first!])).toEqual(["ok"]);
    // It claims again just after prune has read the group's consumers and seen none pending.
    let late: ClaimedJob | undefined;
    const xinfo = queue.redis.xinfo.bind(queue.redis) as (...args: unknown[]) => Promise<unknown>;
    Object.assign(queue.redis, {
      xinfo: async (...args: unknown[]) => {
        const answer = await xinfo(...args);
        if (args[1] === queue.keys.stream("normal") && late === undefined)
          [late] = (await run(queue.claim("gone/main", ["normal"], 1))).jobs;
        return answer;
      },
    });
    await run(registry.prune());
    expect(late?.entry).toBe(before[1]);
    const pending = await queue.redis.xpending(queue.keys.stream("normal"), queue.group, "-", "+", 10);
    expect(pending.map((p) => (p as unknown[])[0])).toEqual([before[1]]);

    // Another worker's completion leaves the running job's entry, and the job its data.
    const [, third] = (await run(queue.claim("alive/main", ALL, 2))).jobs;
    expect(await complete(queue, [third!])).toEqual(["ok"]);
    expect(await entries(queue)).toEqual([before[1], before[2]]);
    expect(await run(queue.getJob(late!.id))).toMatchObject({ state: "running", data: jobs[1]!.data });
  });

  it("prune forgets a gone worker's consumer that holds nothing, and keeps one with a running job", async () => {
    const { queue } = await queued(2);
    const [done] = (await run(queue.claim("idle/main", ALL, 1))).jobs;
    expect(await complete(queue, [done!])).toEqual(["ok"]);
    await run(queue.claim("busy/main", ALL, 1));
    expect(await run(new WorkerRegistry(queue).prune())).toEqual({ workers: 0, consumers: 1 });
    const consumers = (await queue.redis.xinfo(
      "CONSUMERS",
      queue.keys.stream("normal"),
      queue.group,
    )) as unknown[][];
    expect(consumers.map((c) => c[1])).toEqual(["busy/main"]);
    // A consumer already gone (another janitor was first) is not counted again.
    expect(await run(queue.run(scripts.forgetConsumer, [queue.group, "normal", "idle/main"]))).toBe(0);
    expect(await run(new WorkerRegistry(queue).prune())).toEqual({ workers: 0, consumers: 0 });
  });
});
