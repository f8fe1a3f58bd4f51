import { createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import type { Priority } from "../../src/domain/priority.js";
import { QueueAdmin } from "../../src/queue/admin.js";
import { DuplicateTask, RedisError } from "../../src/queue/errors.js";
import { type ClaimedJob, type HandoffTarget, Queue } from "../../src/queue/queue.js";
import type { Worker } from "../../src/queue/worker.js";
import { connectRedis } from "../../src/redis/connection.js";
import {
  ALL,
  countClaims,
  eventLog,
  eventually,
  makeGate,
  makeQueue,
  newJob,
  testWorker,
} from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";

/** A target that always offers (as consumer `consumer`) and keeps what it is handed, unrun. */
const keepingTarget = (consumer: string, priorities: readonly Priority[] = ALL) => {
  const offered: Priority[] = [];
  const handed: ClaimedJob[][] = [];
  const target: HandoffTarget = {
    offer: (priority) => {
      offered.push(priority);
      return { consumer, priorities };
    },
    handed: (jobs) => void handed.push([...jobs]),
  };
  return { target, offered, handed };
};

const waiting = async (queue: Queue) =>
  (await run(new QueueAdmin(queue).stats())).reduce((n, s) => n + s.waiting, 0);

describe("an enqueue hands its job to an idle worker of its own queue", () => {
  const redis = useRedis();
  const workers: Worker[] = [];
  const startWorker = (...args: Parameters<typeof testWorker>) => {
    const worker = testWorker(...args).start();
    workers.push(worker);
    return worker;
  };
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.stop({ timeoutMs: 1_000 })));
  });

  it("runs each job without a claim of the worker's own: the enqueue's answer carried it, claimed", async () => {
    const queue = await makeQueue(redis);
    const counts = countClaims(queue);
    const log = eventLog();
    const started: string[] = [];
    startWorker(queue, {
      concurrency: 4,
      idleBlockMs: 60_000,
      onEvent: log.onEvent,
      handler: async (job) => {
        started.push(job.id);
        return `done ${job.id}`;
      },
    });
    await eventually(() => counts.claims > 0, 5_000, "the first claim");
    await sleep(50);
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const job = newJob(i % 2 === 0 ? "normal" : "urgent", { userId: `u${i}` });
      ids.push(job.id);
      await run(queue.enqueue(job));
      await eventually(() => log.count("completed") === i + 1, 5_000, `job ${i + 1} to complete`);
      await sleep(10);
    }
    expect(started).toEqual(ids);
    // The first claim found the streams dry; no job since needed one, nor did the wakes that
    // each new entry set off.
    expect([counts.claims, counts.claimed]).toEqual([1, 0]);
    expect(log.count("error")).toBe(0);
    for (const id of ids) {
      const view = await run(queue.getJob(id));
      expect(view).toMatchObject({ state: "completed", attempt: 1, result: `done ${id}` });
    }
    const stats = await run(new QueueAdmin(queue).stats());
    expect(stats.reduce((n, s) => n + s.waiting + s.running + s.dead, 0)).toBe(0);
    // Each user's lock went with its job: the next task of the same user is taken.
    await run(queue.enqueue(newJob("low", { userId: "u3" })));
    await eventually(() => log.count("completed") === 21, 5_000, "a later job of the same user");
  });

  it("claims strictly by priority: an older job of a higher priority goes first, the new one waits", async () => {
    const queue = await makeQueue(redis);
    const producer = await makeQueue(redis);
    const urgent = newJob("urgent");
    await run(producer.enqueue(urgent));
    const { target, handed } = keepingTarget("x");
    queue.acceptHandoffs(target);
    const low = newJob("low");
    const enqueued = await queue.enqueueNow(low);
    expect(enqueued.entry).toMatch(/^\d+-\d+$/);
    expect(handed.map((jobs) => jobs.map((j) => [j.id, j.priority, j.attempt]))).toEqual([
      [[urgent.id, "urgent", 1]],
    ]);
    expect(await run(queue.getJob(urgent.id))).toMatchObject({ state: "running", owner: "x" });
    expect(await run(queue.getJob(low.id))).toMatchObject({ state: "queued" });
    // The low job waits for the next claim, as any job would.
    const claim = await run(producer.claim("y", ALL, 5));
    expect(claim.jobs.map((j) => j.id)).toEqual([low.id]);
  });

  it("claims none for a paused priority, nor for a priority the worker does not take", async () => {
    const queue = await makeQueue(redis);
    const { target, offered, handed } = keepingTarget("x", ["urgent", "normal"]);
    const stopHandoffs = queue.acceptHandoffs(target);
    await run(new QueueAdmin(queue).pause("normal"));
    const paused = newJob("normal");
    await queue.enqueueNow(paused);
    // Offered (the target said yes), but the claim skipped the paused stream.
    expect(offered).toEqual(["normal"]);
    expect(handed).toEqual([[]]);
    expect(await run(queue.getJob(paused.id))).toMatchObject({ state: "queued" });

    // A real worker that does not take low jobs does not offer for one.
    stopHandoffs();
    const log = eventLog();
    const counts = countClaims(queue);
    const worker = startWorker(queue, { priorities: ["urgent"], idleBlockMs: 60_000, onEvent: log.onEvent });
    const answers: number[] = [];
    const handedTo = worker.handed.bind(worker);
    worker.handed = (jobs) => {
      answers.push(jobs.length);
      handedTo(jobs);
    };
    await eventually(() => counts.claims > 0, 5_000, "the first claim");
    // Its claim answered (dry): it is waiting for work.
    await sleep(100);
    const low = newJob("low");
    await queue.enqueueNow(low);
    expect(answers).toEqual([]);
    await sleep(100);
    expect(log.count("completed")).toBe(0);
    expect(await run(queue.getJob(low.id))).toMatchObject({ state: "queued" });
    // It does take an urgent one, handed over.
    await queue.enqueueNow(newJob("urgent"));
    await eventually(() => log.count("completed") === 1, 5_000, "the urgent job");
    expect(answers).toEqual([1]);
    expect(counts.claimed).toBe(0);
    expect(offered).toEqual(["normal"]);
  });

  it("claims nothing for a refused or delayed enqueue, and leaves what waits where it is", async () => {
    const queue = await makeQueue(redis);
    const producer = await makeQueue(redis);
    const first = newJob("normal");
    await run(producer.enqueue(first));
    const { target, offered, handed } = keepingTarget("x");
    queue.acceptHandoffs(target);

    const duplicate = await queue.enqueueNow(first).catch((error: unknown) => error);
    expect(duplicate).toBeInstanceOf(DuplicateTask);
    expect(handed).toEqual([[]]);
    // A delayed job is not offered at all: it enters no stream now.
    await queue.enqueueNow({ ...newJob("urgent"), delayMs: 60_000 });
    expect(offered).toEqual(["normal"]);
    expect(await run(queue.getJob(first.id))).toMatchObject({ state: "queued" });
    expect(await waiting(queue)).toBe(1);
  });

  it("a job handed to a worker that never runs it comes back when its lease lapses", async () => {
    const queue = await makeQueue(redis);
    const { target, handed } = keepingTarget("gone");
    const stop = queue.acceptHandoffs(target);
    const job = newJob("high");
    await queue.enqueueNow(job);
    expect(handed.flat().map((j) => j.id)).toEqual([job.id]);
    stop();
    expect(await run(queue.reclaim("reclaimer", { leaseMs: 0 }))).toMatchObject({ requeued: 1 });
    const log = eventLog();
    startWorker(queue, { consumer: "other", onEvent: log.onEvent });
    await eventually(() => log.count("completed") === 1, 5_000, "the job, run by another worker");
    expect(await run(queue.getJob(job.id))).toMatchObject({ state: "completed", attempt: 2 });
  });

  it("when the enqueue fails the worker gets its slot back and the error names the enqueue", async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as { port: number };
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const client = connectRedis(`redis://127.0.0.1:${port}`, { name: "nowhere", failFast: true });
    try {
      const queue = new Queue(client);
      const { target, handed } = keepingTarget("x");
      queue.acceptHandoffs(target);
      const error = await queue.enqueueNow(newJob()).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RedisError);
      expect((error as RedisError).operation).toBe("enqueue");
      expect(handed).toEqual([[]]);
    } finally {
      client.disconnect();
    }
  });

  it("a busy or stopped worker takes no handoff: the job waits for a claim", async () => {
    const queue = await makeQueue(redis);
    const producer = await makeQueue(redis);
    const gate = makeGate();
    const log = eventLog();
    const counts = countClaims(queue);
    const worker = startWorker(queue, {
      concurrency: 1,
      idleBlockMs: 60_000,
      onEvent: log.onEvent,
      handler: async (job) => {
        if (JSON.parse(job.data).hold) await gate.closed;
        return "ok";
      },
    });
    await eventually(() => counts.claims > 0, 5_000, "the first claim");
    await queue.enqueueNow({ ...newJob("normal"), data: JSON.stringify({ hold: true }) });
    await eventually(() => worker.active === 1, 5_000, "the held job to start");
    // Its one slot is taken: the next job waits in its stream and is claimed when the slot frees.
    const next = newJob("normal");
    await queue.enqueueNow(next);
    expect(await run(queue.getJob(next.id))).toMatchObject({ state: "queued" });
    const before = counts.claims;
    gate.open();
    await eventually(() => log.count("completed") === 2, 5_000, "both jobs");
    expect(counts.claims).toBeGreaterThan(before);

    await worker.stop();
    const after = newJob("normal");
    await queue.enqueueNow(after);
    expect(await run(queue.getJob(after.id))).toMatchObject({ state: "queued" });
    const claim = await run(producer.claim("y", ALL, 5));
    expect(claim.jobs.map((j) => j.id)).toEqual([after.id]);
  });

  it("with handoffs off, the worker claims what its own queue enqueues", async () => {
    const queue = await makeQueue(redis);
    const counts = countClaims(queue);
    const log = eventLog();
    startWorker(queue, { handoffs: false, idleBlockMs: 60_000, onEvent: log.onEvent });
    await eventually(() => counts.claims > 0, 5_000, "the first claim");
    await queue.enqueueNow(newJob("normal"));
    await eventually(() => log.count("completed") === 1, 5_000, "the job");
    expect(counts.claimed).toBe(1);
  });
});
