import { setTimeout as sleep } from "node:timers/promises";
import { Effect } from "effect";
import { afterEach, describe, expect, it } from "vitest";
import type { Priority } from "../../src/domain/priority.js";
import type { Queue } from "../../src/queue/queue.js";
import type { Worker } from "../../src/queue/worker.js";
import { eventLog, eventually, makeQueue, newJob, testWorker } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";

/** Entries a consumer holds in the group, over every priority's stream (one never used has none). */
const held = async (queue: Queue, consumer: string): Promise<number> => {
  let n = 0;
  for (const priority of ["urgent", "high", "normal", "low"] as const) {
    const stream = queue.keys.stream(priority);
    if ((await queue.redis.exists(stream)) === 0) continue;
    const rows = (await queue.redis.xpending(stream, queue.group, "-", "+", 1000, consumer)) as unknown[];
    n += rows.length;
  }
  return n;
};

/** A job the handler holds until `open()`; the rest return at once. */
const heldJob = (priority: Priority = "normal") => ({
  ...newJob(priority),
  data: JSON.stringify({ hold: true }),
});

/**
 * A worker whose handler returns at once, except for held jobs, which wait for the gate (or
 * their abort); it records the jobs it started, in order, and the most handlers at once.
 */
const gatedWorker = (queue: Queue, options: { concurrency: number; consumer?: string; leaseMs?: number }) => {
  let open: () => void = () => {};
  const gate = new Promise<void>((resolve) => (open = resolve));
  const state = { running: 0, most: 0, started: [] as string[], held: 0 };
  const log = eventLog();
  const worker = testWorker(queue, {
    concurrency: options.concurrency,
    consumer: options.consumer ?? "w",
    ...(options.leaseMs === undefined ? {} : { leaseMs: options.leaseMs }),
    idleBlockMs: 60_000,
    onEvent: log.onEvent,
    handler: async (job) => {
      state.started.push(job.id);
      state.most = Math.max(state.most, ++state.running);
      try {
        if (JSON.parse(job.data).hold) {
          state.held++;
          await gate;
        }
        return "ok";
      } finally {
        state.running--;
      }
    },
  });
  return { worker, state, log, open: () => open() };
};

/** Short jobs first, so that the worker has measured its runs and claims before the held ones. */
const warmUp = (queue: Queue, jobs = 100) =>
  run(queue.enqueueMany(Array.from({ length: jobs }, () => newJob("normal"))));

/**
 * A worker with one slot, held by a job, and the next job claimed ahead of it: the worker, its
 * records, the gate, and that next job.
 */
const oneHeldOneAhead = async (queue: Queue, started: (worker: Worker) => void, leaseMs?: number) => {
  await warmUp(queue);
  const next = newJob("normal");
  await run(queue.enqueueMany([heldJob(), next]));
  const gated = gatedWorker(queue, { concurrency: 1, ...(leaseMs === undefined ? {} : { leaseMs }) });
  started(gated.worker.start());
  await eventually(() => gated.state.held === 1, 10_000, "the held job to start");
  await eventually(async () => (await held(queue, "w")) === 2, 5_000, "the next job claimed ahead");
  return { ...gated, next };
};

describe("claiming ahead of free slots", () => {
  const redis = useRedis();
  let workers: Worker[] = [];
  afterEach(async () => {
    await Promise.all(workers.map((w) => w.stop({ timeoutMs: 1_000 })));
    workers = [];
  });

  it("with short jobs, claims as many more as it has slots, and never runs more handlers than its concurrency", async () => {
    const queue = await makeQueue(redis);
    await warmUp(queue);
    await run(
      queue.enqueueMany([heldJob(), heldJob(), ...Array.from({ length: 10 }, () => newJob("normal"))]),
    );
    const { worker, state, log, open } = gatedWorker(queue, { concurrency: 2 });
    workers.push(worker.start());
    await eventually(() => state.held === 2, 10_000, "both held jobs to start");
    // Two slots, both held: two more jobs claimed ahead, waiting here for a slot.
    await eventually(async () => (await held(queue, "w")) === 4, 5_000, "two jobs claimed ahead");
    await sleep(100);
    expect(await held(queue, "w")).toBe(4);
    expect(state.running).toBe(2);
    expect(worker.active).toBe(2);
    expect(worker.runningIds).toHaveLength(2);
    open();
    await eventually(() => log.count("completed") === 112, 10_000, "every job");
    expect(state.most).toBe(2);
    expect(log.count("error")).toBe(0);
  });

  it("claims none ahead while jobs take longer than a claim round trip times the concurrency", async () => {
    const queue = await makeQueue(redis);
    await warmUp(queue, 20);
    const log = eventLog();
    const worker = testWorker(queue, {
      concurrency: 2,
      idleBlockMs: 60_000,
      onEvent: log.onEvent,
      handler: async () => {
        await sleep(40);
        return "ok";
      },
    });
    workers.push(worker.start());
    let most = 0;
    while (log.count("completed") < 20) {
      most = Math.max(most, await held(queue, "w"));
      await sleep(5);
    }
    expect(most).toBe(2);
  });

  it("does not claim ahead when told not to", async () => {
    const queue = await makeQueue(redis);
    await warmUp(queue);
    await run(queue.enqueueMany([heldJob(), heldJob(), newJob("normal")]));
    const log = eventLog();
    let open: () => void = () => {};
    const gate = new Promise<void>((resolve) => (open = resolve));
    let holding = 0;
    const worker = testWorker(queue, {
      concurrency: 2,
      claimAhead: false,
      idleBlockMs: 60_000,
      onEvent: log.onEvent,
      handler: async (job) => {
        if (JSON.parse(job.data).hold) {
          holding++;
          await gate;
        }
        return "ok";
      },
    });
    workers.push(worker.start());
    await eventually(() => holding === 2, 10_000, "both held jobs to start");
    await sleep(100);
    expect(await held(queue, "w")).toBe(2);
    open();
    await eventually(() => log.count("completed") === 103, 10_000, "every job");
  });

  it("a stop gives the jobs claimed ahead back at once, unrun and uncharged", async () => {
    const queue = await makeQueue(redis);
    await warmUp(queue);
    const ahead = [newJob("normal"), newJob("normal")];
    await run(queue.enqueueMany([heldJob(), heldJob(), ...ahead]));
    const { worker, state, log, open } = gatedWorker(queue, { concurrency: 2 });
    workers.push(worker.start());
    await eventually(() => state.held === 2, 10_000, "both held jobs to start");
    // One or two: how many the worker claims ahead follows the claim and run times it measured
    // in the warm-up, and one slow run there (a loaded machine) makes it one.
    await eventually(async () => (await held(queue, "w")) > 2, 5_000, "a job claimed ahead");
    const stopped = worker.stop({ timeoutMs: 10_000 });
    // Back before the held jobs end: they did not wait for a slot.
    await eventually(
      async () => log.count("released") > 0 && (await held(queue, "w")) === 2,
      5_000,
      "the jobs claimed ahead to go back",
    );
    expect(ahead.map((j) => j.id)).toEqual(expect.arrayContaining(log.ids("released")));
    for (const job of ahead) expect(state.started).not.toContain(job.id);
    open();
    expect(await stopped).toEqual({ abandoned: 0 });
    expect(log.count("completed")).toBe(102);
    // Claimed again, each is on its first charged attempt.
    const again = await run(queue.claim("other", ["normal"], 5));
    expect(again.jobs.map((j) => j.id).sort()).toEqual(ahead.map((j) => j.id).sort());
    for (const job of again.jobs) expect(job.runAttempt).toBe(1);
  });

  it("a job claimed ahead that finds no slot within a second goes back, and another worker runs it", async () => {
    const queue = await makeQueue(redis);
    await warmUp(queue);
    const next = newJob("normal");
    await run(queue.enqueueMany([heldJob(), next]));
    const a = gatedWorker(queue, { concurrency: 1, consumer: "a" });
    workers.push(a.worker.start());
    await eventually(() => a.state.held === 1, 10_000, "the held job to start");
    await eventually(async () => (await held(queue, "a")) === 2, 5_000, "the next job claimed ahead");
    await eventually(() => a.log.count("released") === 1, 5_000, "the job claimed ahead to go back");
    expect(a.log.ids("released")).toEqual([next.id]);
    // The held job is still running, and the worker holding it claims nothing ahead now: the
    // job waits in its stream.
    await sleep(200);
    expect(a.state.running).toBe(1);
    expect(await held(queue, "a")).toBe(1);
    expect(await run(queue.getJob(next.id))).toMatchObject({ state: "queued" });
    const b = gatedWorker(queue, { concurrency: 1, consumer: "b" });
    workers.push(b.worker.start());
    await eventually(() => b.log.count("completed") === 1, 5_000, "the other worker to run the job");
    expect(b.log.ids("completed")).toEqual([next.id]);
    expect(a.state.started).not.toContain(next.id);
    a.open();
    await eventually(() => a.log.count("completed") === 101, 5_000, "the held job");
  });

  it("jobs claimed ahead start highest priority first, whichever claim brought them", async () => {
    const queue = await makeQueue(redis);
    await warmUp(queue);
    await run(queue.enqueueMany([heldJob(), heldJob(), heldJob(), heldJob()]));
    const { worker, state, log, open } = gatedWorker(queue, { concurrency: 4 });
    workers.push(worker.start());
    await eventually(() => state.held === 4, 10_000, "the held jobs to start");
    const low = newJob("low");
    await run(queue.enqueue(low));
    await eventually(async () => (await held(queue, "w")) === 5, 5_000, "the low job claimed ahead");
    const urgent = newJob("urgent");
    await run(queue.enqueue(urgent));
    await eventually(async () => (await held(queue, "w")) === 6, 5_000, "the urgent job claimed ahead");
    expect(state.started).not.toContain(low.id);
    open();
    await eventually(() => log.count("completed") === 106, 5_000, "every job");
    expect(state.started.slice(-2)).toEqual([urgent.id, low.id]);
  });

  it("a job cancelled while it waits for a slot never runs, and ends cancelled", async () => {
    const queue = await makeQueue(redis);
    const { worker, state, log, open, next } = await oneHeldOneAhead(queue, (w) => workers.push(w));
    expect(await run(queue.cancel(next.id))).toMatchObject({ outcome: "flagged" });
    // As the runtime's cancel listener does on hearing it.
    expect(worker.cancelRunning(next.id, 1)).toBe(true);
    // It ends now, not when the held job frees the slot (well before the give-back's second).
    await eventually(() => log.count("cancelled") === 1, 500, "the cancel to be recorded");
    expect(state.running).toBe(1);
    expect(state.started).not.toContain(next.id);
    expect(await run(queue.getJob(next.id))).toMatchObject({ state: "cancelled" });
    open();
  });

  it("a job claimed ahead whose cancel was not heard here ends cancelled when it goes back, unrun", async () => {
    const queue = await makeQueue(redis);
    const { state, log, open, next } = await oneHeldOneAhead(queue, (w) => workers.push(w));
    // Flagged in Redis only (its message missed): the give-back after a second finds the flag.
    expect(await run(queue.cancel(next.id))).toMatchObject({ outcome: "flagged" });
    await eventually(() => log.count("cancelled") === 1, 5_000, "the job to end cancelled");
    expect(log.ids("released")).toEqual([]);
    expect(state.started).not.toContain(next.id);
    expect(await run(queue.getJob(next.id))).toMatchObject({ state: "cancelled" });
    open();
    await eventually(() => log.count("completed") === 101, 5_000, "the held job");
  });

  it("a stop counts a job claimed ahead as given back, not abandoned", async () => {
    const queue = await makeQueue(redis);
    const { worker, log, open, next } = await oneHeldOneAhead(queue, (w) => workers.push(w));
    const stopping = worker.stop({ timeoutMs: 0 });
    await eventually(() => log.count("released") === 1, 5_000, "the job claimed ahead to go back");
    open();
    // Only the held job, which ignores its abort, was abandoned.
    expect(await stopping).toEqual({ abandoned: 1 });
    expect(log.ids("released")).toEqual([next.id]);
  });

  it("a lease renewal that crosses a give-back does not report the job lost", async () => {
    const queue = await makeQueue(redis);
    const release = queue.release.bind(queue);
    // Redis gives the job back at once; its answer comes 100 ms later (a slow link), while the
    // worker renews its leases every 20 ms.
    queue.release = (...args) => release(...args).pipe(Effect.tap(() => Effect.sleep(100)));
    const { log, open } = await oneHeldOneAhead(queue, (w) => workers.push(w), 60);
    await eventually(() => log.count("released") === 1, 5_000, "the job claimed ahead to go back");
    expect(log.count("lost")).toBe(0);
    open();
  });
});
