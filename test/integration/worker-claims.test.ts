import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import type { Worker } from "../../src/queue/worker.js";
import { QueueAdmin } from "../../src/queue/admin.js";
import { ALL, countClaims, eventLog, eventually, makeQueue, newJob, testWorker } from "../support/queue.js";
import { run, runFailure, useRedis } from "../support/redis.js";

describe("how a worker claims", () => {
  const redis = useRedis();
  let worker: Worker | undefined;
  afterEach(async () => {
    await worker?.stop({ timeoutMs: 1_000 });
    worker = undefined;
  });

  it("near an empty queue, sends one claim per new job, not one per job that finishes", async () => {
    const queue = await makeQueue(redis);
    // The jobs come through a queue of their own, as from another process: an enqueue through
    // the worker's queue would hand its job over, claimed (handoff.test.ts).
    const producer = await makeQueue(redis);
    const counts = countClaims(queue);
    const log = eventLog();
    // Many slots, one job at a time: every job finds the streams dry and frees a slot when done.
    // A long idle block, so that no wait times out (each timeout is one more claim, rightly).
    worker = testWorker(queue, { concurrency: 16, idleBlockMs: 60_000, onEvent: log.onEvent }).start();
    await eventually(() => counts.claims > 0, 5_000, "the first claim");
    const jobs = 30;
    for (let i = 0; i < jobs; i++) {
      await run(producer.enqueue(newJob("normal")));
      await eventually(() => log.count("completed") === i + 1, 5_000, `job ${i + 1} to complete`);
      // Time for anything the finished job would set off (its slot freeing, its acknowledgement).
      await sleep(20);
    }
    // One claim for each arrival, plus the first one on start. A claim per freed slot (what
    // the worker once did) makes about four per job.
    expect(counts.claims).toBeLessThanOrEqual(jobs + 2);
    expect(counts.claimed).toBe(jobs);
  });

  it("wakes for a job that arrives while another runs, and drains a burst after a dry spell", async () => {
    const queue = await makeQueue(redis);
    const producer = await makeQueue(redis);
    const counts = countClaims(queue);
    const log = eventLog();
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    let running = 0;
    let most = 0;
    worker = testWorker(queue, {
      concurrency: 16,
      idleBlockMs: 60_000,
      onEvent: log.onEvent,
      handler: async (job) => {
        most = Math.max(most, ++running);
        if (JSON.parse(job.data).hold) await gate;
        running--;
        return "ok";
      },
    }).start();
    await eventually(() => counts.claims > 0, 5_000, "the first claim");
    await run(producer.enqueue({ ...newJob("normal"), data: JSON.stringify({ hold: true }) }));
    await eventually(() => running === 1, 5_000, "the held job to start");
    await run(producer.enqueue(newJob("normal")));
    await eventually(() => log.count("completed") === 1, 5_000, "the second job, beside the held one");
    expect(most).toBe(2);
    release();
    await eventually(() => log.count("completed") === 2, 5_000, "the held job");

    const before = counts.claims;
    const burst = Array.from({ length: 400 }, () => newJob("normal"));
    await run(queue.enqueueMany(burst));
    await eventually(() => log.count("completed") === 402, 10_000, "the burst");
    expect(counts.claimed).toBe(402);
    // Claims of many jobs (up to the 16 slots), not one claim per job.
    expect(counts.claims - before).toBeLessThan(400 / 4);
    expect(log.count("error")).toBe(0);
  });

  it("while jobs flow but finish a few at a time, a claim beside one out waits for a batch, and claims carry the completions", async () => {
    const queue = await makeQueue(redis);
    const jobs = 800;
    await run(queue.enqueueMany(Array.from({ length: jobs }, () => newJob("normal"))));
    const counts = countClaims(queue);
    const log = eventLog();
    // Each handler ends on its own timer, so slots free one or two at a time, as they do when
    // handlers answer from threads.
    worker = testWorker(queue, {
      concurrency: 16,
      idleBlockMs: 60_000,
      onEvent: log.onEvent,
      handler: async () => {
        await sleep(Math.random() * 3);
        return "ok";
      },
    }).start();
    await eventually(() => log.count("completed") === jobs, 20_000, "the queue to drain");
    expect(counts.claimed).toBe(jobs);
    // A claim for each slot or two that freed beside a claim already out, and the completions
    // that missed a claim sent in scripts of their own, made about 300 scripts here (claims of
    // 3.3 jobs on average, 50 completions alone); now about 150. A claim that comes back filling
    // every free slot has none following it, so what finished meanwhile goes alone: 4-12 here
    // under two busy loops (4-8 when a claim took half the slots at most).
    expect(counts.completes).toBeLessThanOrEqual(16);
    expect(counts.claims + counts.completes).toBeLessThanOrEqual(jobs / 3.5);
    expect(log.count("error")).toBe(0);
  });

  it.each([
    { claimsInFlight: undefined, claimAhead: false, most: 2, share: 8 },
    { claimsInFlight: 3, claimAhead: false, most: 3, share: 6 },
    // Jobs claimed ahead may take claims of their own beside those for the slots: one more
    // out per share ahead.
    { claimsInFlight: undefined, claimAhead: true, most: 4, share: 8 },
  ])(
    "keeps up to $most claims out while jobs flow (claiming ahead: $claimAhead), one beside another once $share of 16 slots are free",
    async ({ claimsInFlight, claimAhead, most, share }) => {
      const queue = await makeQueue(redis);
      const jobs = 600;
      await run(queue.enqueueMany(Array.from({ length: jobs }, () => newJob("normal"))));
      const counts = countClaims(queue);
      const log = eventLog();
      worker = testWorker(queue, {
        concurrency: 16,
        idleBlockMs: 60_000,
        onEvent: log.onEvent,
        // Long enough that the next claim goes out while Redis still answers the last.
        handler: async () => {
          await sleep(1);
          return "ok";
        },
        ...(claimsInFlight === undefined ? {} : { claimsInFlight }),
        claimAhead,
      }).start();
      await eventually(() => log.count("completed") === jobs, 20_000, "the queue to drain");
      if (claimAhead) expect(counts.mostOut).toBeLessThanOrEqual(most);
      else expect(counts.mostOut).toBe(most);
      // A claim takes every free slot: the first, with all 16 free, asks for 16 (not a share).
      expect(counts.wants[0]).toBe(16);
      expect(Math.max(...counts.wants)).toBe(16);
      // A claim beside one out asks for a share or more.
      expect(Math.min(...counts.wantsBeside)).toBeGreaterThanOrEqual(share);
      expect(log.count("error")).toBe(0);
    },
  );

  it("refuses a number of claims in flight that is not a positive whole number", async () => {
    const queue = await makeQueue(redis);
    for (const claimsInFlight of [0, 1.5, -1])
      expect(() => testWorker(queue, { claimsInFlight })).toThrow(
        `claimsInFlight must be a positive integer, got ${claimsInFlight}`,
      );
  });

  it("refuses a worker with no priorities or an unknown one", async () => {
    const queue = await makeQueue(redis);
    for (const priorities of [[], ["soon"]])
      expect(() => testWorker(queue, { priorities: priorities as never })).toThrow(
        `priorities must be one or more of urgent, high, normal, low, got ${JSON.stringify(priorities)}`,
      );
  });

  it("a listener that throws stops nothing: every job completes and the worker stops cleanly", async () => {
    const queue = await makeQueue(redis);
    const jobs = 64;
    await run(queue.enqueueMany(Array.from({ length: jobs }, () => newJob("normal"))));
    let completed = 0;
    worker = testWorker(queue, {
      concurrency: 16,
      idleBlockMs: 60_000,
      onEvent: (event) => {
        if (event.type !== "completed") return;
        completed++;
        throw new Error("a listener's own bug");
      },
    }).start();
    await eventually(() => completed === jobs, 20_000, "every completion to be told");
    const stats = await run(new QueueAdmin(queue).stats());
    expect(stats.find((s) => s.priority === "normal")?.completedLastHour).toBe(jobs);
    // Every run has ended: a `done` skipped by the throw left its run waiting until the timeout.
    expect(await worker.stop({ timeoutMs: 5_000 })).toEqual({ abandoned: 0 });
    expect(worker.runningIds).toEqual([]);
  });

  it("a claim records the completions it carries first, as complete would: ok, stale, and ok again on a resend", async () => {
    const queue = await makeQueue(redis);
    const a = newJob("high", { userId: "u1" });
    const b = newJob("normal");
    await run(queue.enqueueMany([a, b]));
    const first = await run(queue.claim("w", ALL, 2));
    expect(first.jobs.map((j) => j.id)).toEqual([a.id, b.id]);
    expect(first.completed).toEqual([]);
    const next = newJob("low", { userId: "u1" });
    // u1's task a is still active: a second task of u1 waits for it to end.
    expect(await runFailure(queue.enqueue(next))).toMatchObject({ _tag: "ActiveTaskExists" });

    const done = [
      { id: a.id, attempt: 1, result: "caption a" },
      { id: b.id, attempt: 2, result: "from an attempt that never ran" },
    ];
    const second = await run(queue.claim("w", ALL, 5, done));
    expect(second.completed).toEqual(["ok", "stale"]);
    expect(second.jobs).toEqual([]);
    expect(await run(queue.getJob(a.id))).toMatchObject({ state: "completed", result: "caption a" });
    expect(await run(queue.getJob(b.id))).toMatchObject({ state: "running", attempt: 1 });
    // a's entry is acknowledged and gone; b's is still pending with its worker.
    const raw = redis.client();
    expect(await raw.xlen(queue.keys.stream("high"))).toBe(0);
    expect(((await raw.xpending(queue.keys.stream("normal"), queue.group)) as [number])[0]).toBe(1);
    // u1's lock went with a's completion, in the same script as the claim.
    await run(queue.enqueue(next));
    const stats = await run(new QueueAdmin(queue).stats());
    expect(stats.find((s) => s.priority === "high")?.completedLastHour).toBe(1);

    // The same completion again (a reply lost on the way back) is answered ok and changes nothing.
    const third = await run(queue.claim("w", ALL, 5, done.slice(0, 1)));
    expect(third.completed).toEqual(["ok"]);
    expect(third.jobs.map((j) => j.id)).toEqual([next.id]);
    const again = await run(new QueueAdmin(queue).stats());
    expect(again.find((s) => s.priority === "high")?.completedLastHour).toBe(1);
  });

  it("loses no completion when the claim carrying it fails: it goes out again once Redis takes scripts", async () => {
    const queue = await makeQueue(redis);
    const admin = redis.client();
    const log = eventLog();
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    worker = testWorker(queue, {
      idleBlockMs: 60_000,
      onEvent: log.onEvent,
      handler: async () => {
        await gate;
        return "finished";
      },
    }).start();
    const job = newJob("normal");
    await run(queue.enqueue(job));
    await eventually(() => worker?.active === 1, 5_000, "the job to start");
    // Redis refuses every script from now on: the next claim, which carries the completion,
    // fails, and so does each try to send the completion alone.
    await admin.call("ACL", "SETUSER", "default", "-fcall", "-evalsha", "-eval");
    try {
      release();
      await eventually(() => log.count("error") >= 2, 10_000, "the claim and a completion to be refused");
      expect(log.count("completed")).toBe(0);
      expect(await run(queue.getJob(job.id))).toMatchObject({ state: "running" });
    } finally {
      await admin.call("ACL", "SETUSER", "default", "+fcall", "+evalsha", "+eval");
    }
    await eventually(() => log.count("completed") === 1, 10_000, "the completion to be recorded");
    expect(await run(queue.getJob(job.id))).toMatchObject({ state: "completed", result: "finished" });
  });
});
