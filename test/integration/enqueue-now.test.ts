import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { QueueAdmin } from "../../src/queue/admin.js";
import { ActiveTaskExists, DuplicateTask, InvalidJob, RedisError } from "../../src/queue/errors.js";
import { Queue } from "../../src/queue/queue.js";
import { connectRedis } from "../../src/redis/connection.js";
import { ALL, makeQueue, newJob } from "../support/queue.js";
import { run, runFailure, useRedis } from "../support/redis.js";

/** A port nothing listens on: one the system just gave out and took back. */
const closedPort = async (): Promise<number> => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
};

describe("enqueueNow: enqueue as a promise", () => {
  const redis = useRedis();

  it("enqueues as enqueue does: the job waits, and a worker's claim gets it", async () => {
    const queue = await makeQueue(redis);
    const job = newJob("high", { userId: "u1" });
    const enqueued = await queue.enqueueNow(job);
    expect(enqueued.id).toBe(job.id);
    expect(enqueued.entry).toMatch(/^\d+-\d+$/);
    const claim = await run(queue.claim("c1", ALL, 5));
    expect(claim.jobs.map((j) => [j.id, j.priority, j.userId, j.data])).toEqual([
      [job.id, "high", "u1", job.data],
    ]);
  });

  it("rejects with the typed errors enqueue fails with, and changes nothing then", async () => {
    const queue = await makeQueue(redis);
    const first = newJob("normal", { userId: "7" });
    await queue.enqueueNow(first);

    const duplicate = await queue.enqueueNow(first).catch((error: unknown) => error);
    expect(duplicate).toBeInstanceOf(DuplicateTask);
    expect(duplicate).toMatchObject({ taskId: first.id });

    const active = await queue.enqueueNow(newJob("low", { userId: "7" })).catch((error: unknown) => error);
    expect(active).toBeInstanceOf(ActiveTaskExists);
    expect(active).toMatchObject({ userId: "7", activeTaskId: first.id });

    const invalid = await queue
      .enqueueNow({ id: "no spaces allowed", priority: "normal", data: "{}" })
      .catch((error: unknown) => error);
    expect(invalid).toBeInstanceOf(InvalidJob);
    expect((invalid as InvalidJob).message).toContain("no spaces allowed");
    const unknownPriority = await queue
      .enqueueNow({ id: "p1", priority: "soon" as never, data: "{}" })
      .catch((error: unknown) => error);
    expect(unknownPriority).toBeInstanceOf(InvalidJob);

    const stats = await run(new QueueAdmin(queue).stats());
    expect(stats.reduce((n, s) => n + s.waiting, 0)).toBe(1);
    // The Effect form fails with the same errors.
    expect(await runFailure(queue.enqueue(first))).toBeInstanceOf(DuplicateTask);
    expect(
      await runFailure(queue.enqueue({ id: "p1", priority: "soon" as never, data: "{}" })),
    ).toBeInstanceOf(InvalidJob);
  });

  it("rejects with a RedisError naming the enqueue when Redis cannot be reached", async () => {
    const client = connectRedis(`redis://127.0.0.1:${await closedPort()}`, {
      name: "nowhere",
      failFast: true,
    });
    try {
      const queue = new Queue(client);
      const error = await queue.enqueueNow(newJob()).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RedisError);
      expect((error as RedisError).operation).toBe("enqueue");
      const viaEffect = await runFailure(queue.enqueue(newJob()));
      expect(viaEffect).toBeInstanceOf(RedisError);
    } finally {
      client.disconnect();
    }
  });
});
