import { DateTime, Either } from "effect";
import { describe, expect, it } from "vitest";
import { jobCodec, newTaskId } from "../../src/domain/index.js";
import { QueueAdmin } from "../../src/queue/admin.js";
import type { ClaimedJob } from "../../src/queue/queue.js";
import { eventLog, eventually, makeQueue, testWorker } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";

const captionJob = () => {
  const id = newTaskId();
  return {
    id,
    priority: "normal" as const,
    data: jobCodec.encode("caption", {
      task_id: id,
      user_id: 1,
      platform_connection_id: 2,
      priority: "normal",
      settings: {
        max_posts_per_run: 5,
        max_caption_length: 500,
        optimal_min_length: 80,
        optimal_max_length: 200,
        reprocess_existing: false,
        processing_delay: 0,
      },
      created_at: DateTime.unsafeNow(),
      retry_count: 0,
      max_retries: 3,
    }),
  };
};

const validateEnvelope = (job: ClaimedJob) =>
  Either.match(jobCodec.decode(job.data), { onLeft: (e) => e.message, onRight: () => undefined });

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
