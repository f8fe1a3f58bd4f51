import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { QueueAdmin } from "../../src/queue/admin.js";
import type { Queue } from "../../src/queue/queue.js";
import type { Worker } from "../../src/queue/worker.js";
import { eventLog, eventually, makeGate, makeQueue, newJob, testWorker } from "../support/queue.js";
import type { RedisClient } from "../../src/redis/connection.js";
import { run, useRedis } from "../support/redis.js";

/** The claims a queue's worker sends, with how many jobs each brought. */
const recordClaims = (queue: Queue) => {
  const claims: number[] = [];
  const claimNow = queue.claimNow.bind(queue);
  queue.claimNow = async (...args) => {
    const claim = await claimNow(...args);
    claims.push(claim.jobs.length);
    return claim;
  };
  return { claims };
};

/** How many connections are blocked now: the workers' waits. */
const blockedReads = async (redis: RedisClient) => {
  const list = (await redis.client("LIST")) as string;
  return list.split("\n").filter((line) => /\bflags=b\b/.test(line)).length;
};

describe("each new job wakes one waiting worker, in any process", () => {
  const redis = useRedis();
  const workers: Worker[] = [];
  let waiting: () => Promise<number>;
  beforeEach(() => {
    const client = redis.client();
    waiting = () => blockedReads(client);
  });
  const start = (worker: Worker) => {
    workers.push(worker.start());
    return worker;
  };
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.stop({ timeoutMs: 1_000 })));
  });

  it("wakes one of four idle workers for a job enqueued elsewhere: only the worker that runs it claims", async () => {
    const producer = await makeQueue(redis);
    const queues = await Promise.all([0, 1, 2, 3].map(() => makeQueue(redis)));
    const recorded = queues.map(recordClaims);
    const logs = queues.map(() => eventLog());
    queues.forEach((queue, i) =>
      // Not claiming ahead: a worker's claims are then two a job it runs, which this counts.
      start(
        testWorker(queue, {
          consumer: `w${i}`,
          claimAhead: false,
          idleBlockMs: 60_000,
          onEvent: logs[i]!.onEvent,
        }),
      ),
    );
    await eventually(async () => (await waiting()) === 4, 5_000, "every worker to wait");
    const from = recorded.map((r) => r.claims.length);
    const completed = () => logs.reduce((n, log) => n + log.count("completed"), 0);
    for (let i = 0; i < 20; i++) {
      await run(producer.enqueue(newJob(i % 2 === 0 ? "normal" : "low")));
      await eventually(() => completed() === i + 1, 5_000, `job ${i + 1} to complete`);
      await eventually(async () => (await waiting()) === 4, 5_000, "every worker to wait again");
    }
    // A job: the woken worker's claim, which takes it, and its next, which carries the completion
    // and finds the streams dry. With a plain XREAD each job woke all four, and each claimed.
    expect(recorded.map((r, i) => r.claims.length - from[i]!)).toEqual(
      logs.map((log) => 2 * log.count("completed")),
    );
    expect(logs.reduce((n, log) => n + log.count("error"), 0)).toBe(0);
  });

  it("wakes no worker for a job its enqueue handed over, here or in another process", async () => {
    const queue = await makeQueue(redis);
    const others = await Promise.all([0, 1].map(() => makeQueue(redis)));
    const recorded = others.map(recordClaims);
    const log = eventLog();
    start(testWorker(queue, { consumer: "h", concurrency: 4, idleBlockMs: 60_000, onEvent: log.onEvent }));
    others.forEach((other, i) => start(testWorker(other, { consumer: `o${i}`, idleBlockMs: 60_000 })));
    await eventually(async () => (await waiting()) === 3, 5_000, "every worker to wait");
    const from = recorded.map((r) => r.claims.length);
    for (let i = 0; i < 10; i++) {
      await run(queue.enqueue(newJob()));
      await eventually(() => log.count("completed") === i + 1, 5_000, `job ${i + 1} to complete`);
    }
    await sleep(100);
    expect(recorded.map((r, i) => r.claims.length - from[i]!)).toEqual([0, 0]);
    expect(await waiting()).toBe(3);
  });

  it("a worker woken when its slots have filled passes the wake on to another", async () => {
    const first = await makeQueue(redis);
    const second = await makeQueue(redis);
    const producer = await makeQueue(redis);
    const gate = makeGate();
    const held = newJob("normal");
    const firstLog = eventLog();
    const secondLog = eventLog();
    const started: string[] = [];
    start(
      testWorker(first, {
        consumer: "first",
        idleBlockMs: 60_000,
        onEvent: firstLog.onEvent,
        handler: async (job) => {
          started.push(job.id);
          if (job.id === held.id) await gate.closed;
          return "ok";
        },
      }),
    );
    // Redis serves the reads blocked on a stream in the order they blocked: the first worker's
    // is served first.
    await eventually(async () => (await waiting()) === 1, 5_000, "the first worker to wait");
    start(testWorker(second, { consumer: "second", idleBlockMs: 60_000, onEvent: secondLog.onEvent }));
    await eventually(async () => (await waiting()) === 2, 5_000, "the second worker to wait");
    // Handed over by its enqueue: the first worker's one slot is taken, its read still blocked.
    await run(first.enqueue(held));
    await eventually(() => started.length === 1, 5_000, "the held job to start");
    const next = newJob("normal");
    await run(producer.enqueue(next));
    // Well before the second worker's 60 s block would end by itself.
    await eventually(() => secondLog.count("completed") === 1, 5_000, "the other worker to run the job");
    expect(secondLog.ids("completed")).toEqual([next.id]);
    expect(firstLog.count("completed")).toBe(0);
    gate.open();
    await eventually(() => firstLog.count("completed") === 1, 5_000, "the held job");
  });

  it("a resume wakes as many waiting workers as there are jobs waiting in the stream", async () => {
    const producer = await makeQueue(redis);
    const admin = new QueueAdmin(producer);
    await run(admin.pause("normal"));
    const gate = makeGate();
    const logs = [0, 1, 2].map(() => eventLog());
    const started = [0, 0, 0];
    for (const [i, log] of logs.entries()) {
      start(
        testWorker(await makeQueue(redis), {
          consumer: `w${i}`,
          idleBlockMs: 60_000,
          onEvent: log.onEvent,
          handler: () => {
            started[i]!++;
            return gate.closed.then(() => "ok");
          },
        }),
      );
    }
    await eventually(async () => (await waiting()) === 3, 5_000, "every worker to wait");
    // Each enqueue wakes one worker, which finds its priority paused.
    for (let i = 0; i < 3; i++) await run(producer.enqueue(newJob("normal")));
    await eventually(async () => (await waiting()) === 3, 5_000, "every worker to wait again");
    expect(started).toEqual([0, 0, 0]);
    await run(admin.resume("normal"));
    // One job each, at once: one slot each, and all three blocked for 60 s.
    await eventually(() => started.every((n) => n === 1), 5_000, "each worker to start one job");
    gate.open();
    await eventually(() => logs.every((log) => log.count("completed") === 1), 5_000, "the jobs to complete");
  });

  it("a stream deleted under a waiting worker wakes it to claim, and the next job still runs", async () => {
    const queue = await makeQueue(redis);
    const recorded = recordClaims(queue);
    const log = eventLog();
    start(testWorker(queue, { idleBlockMs: 60_000, onEvent: log.onEvent }));
    await eventually(async () => (await waiting()) === 1, 5_000, "the worker to wait");
    expect(recorded.claims).toHaveLength(1);
    // What a flushed Redis does to the wake groups, on one stream: the read ends, and the claim
    // after it makes the groups again.
    await redis.client().del(queue.keys.stream("normal"));
    await eventually(() => recorded.claims.length === 2, 5_000, "a claim after the read ended");
    await eventually(async () => (await waiting()) === 1, 5_000, "the worker to wait again");
    await run(queue.enqueue(newJob("normal")));
    await eventually(() => log.count("completed") === 1, 5_000, "the job to run");
    expect(log.count("error")).toBe(0);
  });

  it("passes a wake only to a worker that takes the job's priority", async () => {
    const urgentOnly = eventLog();
    const first = eventLog();
    const second = eventLog();
    const gate = makeGate();
    const held = newJob("normal");
    const firstQueue = await makeQueue(redis);
    // A worker of other priorities waits first: with one signal stream for all, it took the
    // passed wake and claimed nothing.
    start(
      testWorker(await makeQueue(redis), {
        consumer: "u",
        priorities: ["urgent", "high"],
        idleBlockMs: 60_000,
        onEvent: urgentOnly.onEvent,
      }),
    );
    await eventually(async () => (await waiting()) === 1, 5_000, "the urgent worker to wait");
    start(
      testWorker(firstQueue, {
        consumer: "n1",
        priorities: ["normal"],
        idleBlockMs: 60_000,
        onEvent: first.onEvent,
        handler: async (job) => (job.id === held.id ? gate.closed.then(() => "ok") : "ok"),
      }),
    );
    await eventually(async () => (await waiting()) === 2, 5_000, "the first normal worker to wait");
    start(
      testWorker(await makeQueue(redis), {
        consumer: "n2",
        priorities: ["normal"],
        idleBlockMs: 60_000,
        onEvent: second.onEvent,
      }),
    );
    await eventually(async () => (await waiting()) === 3, 5_000, "the second normal worker to wait");
    await run(firstQueue.enqueue(held));
    const next = newJob("normal");
    await run((await makeQueue(redis)).enqueue(next));
    await eventually(() => second.count("completed") === 1, 5_000, "the second normal worker to run the job");
    expect(second.ids("completed")).toEqual([next.id]);
    gate.open();
    await eventually(() => first.count("completed") === 1, 5_000, "the held job");
    expect(urgentOnly.count("completed")).toBe(0);
  });

  it("wakes for a resume only workers that take the resumed priority", async () => {
    const producer = await makeQueue(redis);
    const admin = new QueueAdmin(producer);
    await run(admin.pause("low"));
    const gate = makeGate();
    start(testWorker(await makeQueue(redis), { consumer: "u", priorities: ["urgent"], idleBlockMs: 60_000 }));
    await eventually(async () => (await waiting()) === 1, 5_000, "the urgent worker to wait");
    const started = [0, 0];
    for (const i of [0, 1]) {
      start(
        testWorker(await makeQueue(redis), {
          consumer: `low${i}`,
          priorities: ["low"],
          idleBlockMs: 60_000,
          handler: () => {
            started[i]!++;
            return gate.closed.then(() => "ok");
          },
        }),
      );
      await eventually(async () => (await waiting()) === 2 + i, 5_000, "the low worker to wait");
    }
    for (let i = 0; i < 2; i++) await run(producer.enqueue(newJob("low")));
    await eventually(async () => (await waiting()) === 3, 5_000, "every worker to wait again");
    await run(admin.resume("low"));
    await eventually(() => started.every((n) => n === 1), 5_000, "each low worker to start one job");
    gate.open();
  });

  it("reports each priority whose stream has a wake, one read taking a wake of each", async () => {
    const queue = await makeQueue(redis);
    const blocking = redis.client({ blocking: true });
    expect((await run(queue.claim("w", ["urgent", "normal", "low"], 1))).dry).toBe(true);
    // Nothing new: the read times out.
    expect(await queue.waitForWork(blocking, ["urgent", "normal", "low"], 50)).toBeUndefined();
    await run(queue.enqueue(newJob("low")));
    await run(queue.enqueue(newJob("urgent")));
    await run(queue.enqueue(newJob("low")));
    expect(await queue.waitForWork(blocking, ["low", "normal", "urgent"], 1_000)).toEqual(["urgent", "low"]);
    // One wake an entry: the second low job's is left for another read.
    expect(await queue.waitForWork(blocking, ["urgent", "normal", "low"], 1_000)).toEqual(["low"]);
    expect(await queue.waitForWork(blocking, ["urgent", "normal", "low"], 50)).toBeUndefined();
    // A worker that takes priorities it has not claimed yet waits on groups not made yet: a
    // claim makes them, and until then the read says so by ending at once.
    expect(await queue.waitForWork(blocking, ["high"], 1_000)).toEqual([]);
  });
});
