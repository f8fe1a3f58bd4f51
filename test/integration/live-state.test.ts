import { Effect, Either } from "effect";
import { describe, expect, it } from "vitest";
import { QueueAdmin } from "../../src/queue/admin.js";
import type { Queue } from "../../src/queue/queue.js";
import type { RedisClient } from "../../src/redis/connection.js";
import { LIVE_FIELDS } from "../../src/queue/live-state.js";
import { tracingOn } from "../../src/tracing.js";
import { type LiveState, packStrings, readLive, writeRawLive } from "../support/live-state.js";
import { ALL, makeQueue, newJob } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";

/**
 * A job written as every version before the live hash wrote it: all its state in its own hash,
 * its data in its stream entry (or, delayed, in the hash), so that jobs already in Redis when the
 * scripts change are read, run and ended like any other.
 */
const writeOldJob = async (
  raw: RedisClient,
  queue: Queue,
  id: string,
  options: { state: "queued" | "delayed"; user?: string; data?: string },
) => {
  const data = options.data ?? `{"old":"${id}"}`;
  const fields: Record<string, string> = { prio: "normal", attempt: "0", max: "3", created: "1700000000000" };
  if (options.user) fields.user = options.user;
  if (options.state === "delayed") {
    const due = Date.now() - 1;
    await raw.zadd(queue.keys.delayed("normal"), due, id);
    await raw.hset(queue.keys.job(id), { ...fields, state: "delayed", entry: "", due: String(due), data });
  } else {
    const entry = await raw.xadd(queue.keys.stream("normal"), "*", "i", id, "d", data);
    await raw.hset(queue.keys.job(id), { ...fields, state: "queued", entry: entry! });
  }
  if (options.user) await raw.set(queue.keys.user(options.user), id);
};

/** A completed job: no live state, no hash of its own, its record answering, its user's slot free. */
const expectCompletedAndGone = async (
  raw: RedisClient,
  queue: Queue,
  id: string,
  expected: { result: string; userId: string },
) => {
  expect(await readLive(raw, queue, id)).toBeUndefined();
  expect(await raw.exists(queue.keys.job(id))).toBe(0);
  expect(await run(queue.getJob(id))).toMatchObject({ state: "completed", ...expected });
  expect(await raw.exists(queue.keys.user(expected.userId))).toBe(0);
};

describe("a live job's state in the live hash", () => {
  const redis = useRedis();

  it("hands out a job's request id and trace context as they were given, with no tracer installed", async () => {
    expect(tracingOn()).toBe(false);
    const queue = await makeQueue(redis);
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const job = { ...newJob("normal"), meta: { requestId: "req-2", traceparent } };
    await run(queue.enqueue(job));
    const [claimed] = (await run(queue.claim("worker-a/g", ALL, 1))).jobs;
    expect(claimed!.meta).toEqual({ requestId: "req-2", traceparent });
  });

  it("follows a job through waiting, running, completion and failure, with no hash of its own until it ends", async () => {
    const raw = redis.client();
    const queue = await makeQueue(redis);
    const job = { ...newJob("high", { userId: "u-1", maxAttempts: 1 }), meta: { requestId: "req-ü-1" } };
    await run(queue.enqueue(job));

    expect(await raw.exists(queue.keys.job(job.id))).toBe(0);
    expect(await readLive(raw, queue, job.id)).toMatchObject({
      state: "queued",
      attempt: "0",
      hashed: "0",
      spent: "0",
      max: "1",
      prio: "high",
      user: "u-1",
      owner: "",
      started: "",
    });

    const [claimed] = (await run(queue.claim("worker-a/g", ALL, 1))).jobs;
    expect(claimed).toMatchObject({ id: job.id, attempt: 1, userId: "u-1", meta: { requestId: "req-ü-1" } });
    const running = await readLive(raw, queue, job.id);
    expect(running).toMatchObject({
      state: "running",
      attempt: "1",
      owner: "worker-a/g",
      entry: claimed!.entry,
    });
    expect(Number(running!.started)).toBeGreaterThan(0);
    expect(await raw.exists(queue.keys.job(job.id))).toBe(0);
    expect(await run(queue.getJob(job.id))).toMatchObject({
      state: "running",
      attempt: 1,
      owner: "worker-a/g",
      userId: "u-1",
      priority: "high",
    });

    // The last attempt fails: the live state leaves, the end state is in the job's own hash.
    await run(queue.fail({ id: job.id, attempt: 1, error: "broken", retriable: true, delayMs: 0 }));
    expect(await readLive(raw, queue, job.id)).toBeUndefined();
    expect(await raw.hgetall(queue.keys.job(job.id))).toMatchObject({
      state: "failed",
      attempt: "1",
      max: "1",
      prio: "high",
      user: "u-1",
      owner: "",
      error: "broken",
    });
    expect(await raw.ttl(queue.keys.job(job.id))).toBeGreaterThan(0);
    expect(await run(new QueueAdmin(queue).activeTaskOf("u-1"))).toBeUndefined();

    const other = newJob("normal", { userId: "u-1" });
    await run(queue.enqueue(other));
    const [next] = (await run(queue.claim("worker-a/g", ALL, 1))).jobs;
    expect(await run(queue.complete([{ id: other.id, attempt: next!.attempt, result: "r" }]))).toEqual([
      "ok",
    ]);
    await expectCompletedAndGone(raw, queue, other.id, { result: "r", userId: "u-1" });
  });

  it("gives a job its own hash only for what is added while it lives, and removes it with the job", async () => {
    const raw = redis.client();
    const queue = await makeQueue(redis);
    const job = newJob("normal", { maxAttempts: 3 });
    await run(queue.enqueue(job));
    let [claimed] = (await run(queue.claim("c", ALL, 1))).jobs;
    expect(await run(queue.progress(claimed!, { percent: 50, step: "halfway" }))).toBe(true);
    expect((await readLive(raw, queue, job.id))?.hashed).toBe("1");
    expect(await raw.hget(queue.keys.job(job.id), "step")).toBe("halfway");

    // A delayed retry keeps the data in the hash until it is due.
    await run(
      queue.fail({ id: job.id, attempt: claimed!.attempt, error: "later", retriable: true, delayMs: 1 }),
    );
    expect(await readLive(raw, queue, job.id)).toMatchObject({ state: "delayed", entry: "" });
    expect(await raw.hget(queue.keys.job(job.id), "data")).toBe(job.data);
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect((await run(queue.promote())).moved).toBe(1);
    expect(await raw.hget(queue.keys.job(job.id), "data")).toBeNull();

    [claimed] = (await run(queue.claim("c", ALL, 1))).jobs;
    expect(claimed).toMatchObject({ id: job.id, attempt: 2, data: job.data });
    await run(queue.complete([{ id: job.id, attempt: 2, result: "done" }]));
    expect(await raw.exists(queue.keys.job(job.id))).toBe(0);
    const view = await run(queue.getJob(job.id));
    expect(view?.steps.map((s) => s.step)).toEqual(["halfway"]);
  });

  it("packs values of every length and any bytes: a 128-character user, a request id of 300 bytes", async () => {
    const raw = redis.client();
    const queue = await makeQueue(redis);
    const user = "u".repeat(128);
    const requestId = "ü".repeat(150);
    const job = { ...newJob("low", { userId: user }), meta: { requestId } };
    await run(queue.enqueue(job));
    expect(await readLive(raw, queue, job.id)).toMatchObject({ user, state: "queued" });
    expect(await run(queue.getJob(job.id))).toMatchObject({ userId: user, state: "queued" });
    const [claimed] = (await run(queue.claim("c", ALL, 1))).jobs;
    expect(claimed).toMatchObject({ userId: user, meta: { requestId } });
    expect(await readLive(raw, queue, job.id)).toMatchObject({ user, state: "running", owner: "c" });
  });
});

describe("a job written before the live hash", () => {
  const redis = useRedis();

  it("is seen, claimed, run and completed, and its old hash goes with it", async () => {
    const raw = redis.client();
    const queue = await makeQueue(redis);
    await writeOldJob(raw, queue, "old-1", { state: "queued", user: "ou" });

    expect(await run(queue.getJob("old-1"))).toMatchObject({ state: "queued", userId: "ou", maxAttempts: 3 });
    expect(await run(new QueueAdmin(queue).activeTaskOf("ou"))).toBe("old-1");
    // Its id is taken, and its user's slot too.
    const sameId = await run(Effect.either(queue.enqueue({ ...newJob("normal"), id: "old-1" })));
    expect(Either.isLeft(sameId) && sameId.left._tag).toBe("DuplicateTask");
    const sameUser = await run(Effect.either(queue.enqueue(newJob("normal", { userId: "ou" }))));
    expect(Either.isLeft(sameUser) && sameUser.left._tag).toBe("ActiveTaskExists");

    const [claimed] = (await run(queue.claim("c", ALL, 1))).jobs;
    expect(claimed).toMatchObject({ id: "old-1", attempt: 1, userId: "ou", data: '{"old":"old-1"}' });
    expect(await readLive(raw, queue, "old-1")).toMatchObject({ state: "running", hashed: "1", owner: "c" });
    expect(await run(queue.complete([{ id: "old-1", attempt: 1, result: "ok" }]))).toEqual(["ok"]);
    await expectCompletedAndGone(raw, queue, "old-1", { result: "ok", userId: "ou" });
  });

  it("is promoted when delayed, and cancelled when queued", async () => {
    const raw = redis.client();
    const queue = await makeQueue(redis);
    await writeOldJob(raw, queue, "old-d", { state: "delayed" });
    await writeOldJob(raw, queue, "old-q", { state: "queued", user: "cu" });

    expect((await run(queue.promote())).moved).toBe(1);
    expect(await readLive(raw, queue, "old-d")).toMatchObject({ state: "queued" });
    const [claimed] = (await run(queue.claim("c", ALL, 1))).jobs;
    // old-q was queued first, so it comes first.
    expect(claimed?.id).toBe("old-q");

    const [again] = (await run(queue.claim("c", ALL, 1))).jobs;
    expect(again).toMatchObject({ id: "old-d", data: '{"old":"old-d"}' });

    await writeOldJob(raw, queue, "old-c", { state: "queued" });
    expect(await run(queue.cancel("old-c", "not wanted"))).toEqual({ outcome: "cancelled" });
    expect(await raw.hgetall(queue.keys.job("old-c"))).toMatchObject({
      state: "cancelled",
      error: "not wanted",
    });
    expect(await raw.xlen(queue.keys.stream("normal"))).toBe(2);
  });

  it("running from before the change, completes with its lease alone", async () => {
    const raw = redis.client();
    const queue = await makeQueue(redis);
    await writeOldJob(raw, queue, "old-r", { state: "queued" });
    await raw.xgroup("CREATE", queue.keys.stream("normal"), queue.group, "0");
    // Claimed as the old claim did: the group delivers the entry, the hash says running.
    const [[, entries] = ["", []]] = (await raw.xreadgroup(
      "GROUP",
      queue.group,
      "old-worker",
      "COUNT",
      1,
      "STREAMS",
      queue.keys.stream("normal"),
      ">",
    )) as [string, [string, string[]][]][];
    await raw.hset(queue.keys.job("old-r"), {
      state: "running",
      attempt: "1",
      owner: "old-worker",
      started: "1",
    });
    expect(entries).toHaveLength(1);

    expect(await run(queue.complete([{ id: "old-r", attempt: 1, result: "late" }]))).toEqual(["ok"]);
    expect(await raw.exists(queue.keys.job("old-r"))).toBe(0);
    expect(await raw.xlen(queue.keys.stream("normal"))).toBe(0);
    expect(await run(queue.getJob("old-r"))).toMatchObject({
      state: "completed",
      result: "late",
      attempt: 1,
    });
  });
});

describe("damage around a live job", () => {
  const redis = useRedis();

  it("a running job whose own key is of another type is dead-lettered by the reclaimer, not left running", async () => {
    const raw = redis.client();
    const queue = await makeQueue(redis);
    const broken = newJob("normal", { userId: "bu" });
    const fine = newJob("normal");
    await run(queue.enqueueMany([broken, fine]));
    await run(queue.claim("gone", ALL, 2));
    await raw.set(queue.keys.job(broken.id), "not a hash");
    // The scripts run a live job on its live state: the view is there, without what the key hid.
    expect(await run(queue.getJob(broken.id))).toMatchObject({
      state: "running",
      owner: "gone",
      userId: "bu",
    });

    expect(await run(queue.reclaim("reclaimer", { leaseMs: 0 }))).toMatchObject({ requeued: 1, dead: 1 });
    const [letter] = await run(new QueueAdmin(queue).listDead({ priority: "normal" }));
    expect(letter).toMatchObject({ taskId: broken.id });
    expect(letter?.reason).toMatch(/its task key is not a hash/);
    expect(await readLive(raw, queue, broken.id)).toBeUndefined();
    expect(await raw.get(queue.keys.job(broken.id))).toBe("not a hash");
    // Not live any more, so its user's lock no longer holds anyone back.
    expect(await run(new QueueAdmin(queue).activeTaskOf("bu"))).toBeUndefined();
    // Nothing is left pending or running for it.
    const claimed = (await run(queue.claim("c", ALL, 5))).jobs.map((j) => j.id);
    expect(claimed).toEqual([fine.id]);
  });

  it("a job enqueued again after its live state was lost does not inherit the old run's flags", async () => {
    const raw = redis.client();
    const queue = await makeQueue(redis);
    const job = newJob("normal");
    await run(queue.enqueue(job));
    const [claimed] = (await run(queue.claim("c", ALL, 1))).jobs;
    await run(queue.progress(claimed!, { percent: 10, step: "started" }));
    expect(await run(queue.cancel(job.id, "stop"))).toMatchObject({ outcome: "flagged" });
    // Redis loses the live state (eviction, a stray DEL); the ledger puts the task back.
    await raw.hdel(queue.keys.live, job.id);
    await run(queue.enqueue(job));
    const view = await run(queue.getJob(job.id));
    expect(view).toMatchObject({ state: "queued", cancelRequested: false, steps: [] });
    expect(view?.error).toBeUndefined();
  });
});

describe("damaged live states, and a claim that failed after its read", () => {
  const redis = useRedis();

  it("a live state with a nil, a table or a NaN in it is dead-lettered; the claim reading it runs the rest", async () => {
    const raw = redis.client();
    const queue = await makeQueue(redis);
    const jobs = [
      newJob("normal"),
      newJob("normal"),
      newJob("normal"),
      newJob("normal", { userId: "ok-user" }),
    ];
    await run(queue.enqueueMany(jobs));
    const [nilHashed, tableCreated, nanAttempt, fine] = jobs as [Job, Job, Job, Job];
    // MessagePack nil (0xc0) where `hashed` goes; a fixmap {} where `created` goes; a float64 NaN
    // where `attempt` goes: unpack reads each, and none is a string.
    const state = (await readLive(raw, queue, nilHashed.id))!;
    await writeRawLive(raw, queue, nilHashed.id, packWith(state, { hashed: Buffer.from([0xc0]) }));
    const created = (await readLive(raw, queue, tableCreated.id))!;
    await writeRawLive(raw, queue, tableCreated.id, packWith(created, { created: Buffer.from([0x80]) }));
    const nan = (await readLive(raw, queue, nanAttempt.id))!;
    await writeRawLive(
      raw,
      queue,
      nanAttempt.id,
      packWith(nan, { attempt: Buffer.from([0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0]) }),
    );

    const claimed = await run(queue.claim("c", ALL, 10));
    expect(claimed.jobs.map((j) => j.id)).toEqual([fine.id]);
    const dead = await run(new QueueAdmin(queue).listDead({ priority: "normal" }));
    expect(dead.map((d) => d.taskId).sort()).toEqual([nilHashed.id, tableCreated.id, nanAttempt.id].sort());
    for (const letter of dead) expect(letter.reason).toMatch(/its live state .* does not parse/);
    for (const id of [nilHashed.id, tableCreated.id, nanAttempt.id]) {
      expect(await readLive(raw, queue, id)).toBeUndefined();
      expect(await raw.hget(queue.keys.job(id), "state")).toBe("failed");
    }
  });

  it("a failed task whose live state did not parse is not redriven: its attempt is unknown", async () => {
    const raw = redis.client();
    const queue = await makeQueue(redis);
    const job = { ...newJob("normal"), afterAttempt: 6 };
    await run(queue.enqueue(job));
    await run(queue.claim("hung", ALL, 1));
    await writeRawLive(raw, queue, job.id, "damaged");
    expect(await run(queue.reclaim("reclaimer", { leaseMs: 0 }))).toMatchObject({ dead: 1 });
    const [letter] = await run(new QueueAdmin(queue).listDead({ priority: "normal" }));
    expect(await run(new QueueAdmin(queue).redriveDead("normal", [letter!.entryId]))).toEqual(["corrupt"]);
    expect((await run(queue.claim("c", ALL, 1))).jobs).toEqual([]);
  });

  it("a delayed job whose live state does not parse is dead-lettered when due, not dropped", async () => {
    const raw = redis.client();
    const queue = await makeQueue(redis);
    const job = newJob("high", { delayMs: 1, userId: "du" });
    await run(queue.enqueue(job));
    await writeRawLive(raw, queue, job.id, "damaged");
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect((await run(queue.promote())).moved).toBe(0);
    const [letter] = await run(new QueueAdmin(queue).listDead({ priority: "high" }));
    expect(letter).toMatchObject({ taskId: job.id, data: job.data });
    expect(await readLive(raw, queue, job.id)).toBeUndefined();
    expect(await run(new QueueAdmin(queue).activeTaskOf("du"))).toBeUndefined();
  });

  it("an entry delivered whose job is still queued from it is put back by the reclaimer, uncharged", async () => {
    const raw = redis.client();
    const queue = await makeQueue(redis);
    const job = newJob("normal");
    await run(queue.enqueue(job));
    await raw.xgroup("CREATE", queue.keys.stream("normal"), queue.group, "0");
    // A claim that read the entry and then failed: delivered, never marked running.
    await raw.xreadgroup(
      "GROUP",
      queue.group,
      "crashed",
      "COUNT",
      1,
      "STREAMS",
      queue.keys.stream("normal"),
      ">",
    );
    expect(await readLive(raw, queue, job.id)).toMatchObject({ state: "queued" });

    expect(await run(queue.reclaim("reclaimer", { leaseMs: 0 }))).toMatchObject({ requeued: 1, dead: 0 });
    const [claimed] = (await run(queue.claim("c", ALL, 1))).jobs;
    expect(claimed).toMatchObject({ id: job.id, attempt: 1, data: job.data });
  });
});

type Job = ReturnType<typeof newJob>;

/** A live state packed with some values replaced by raw MessagePack (damage). */
const packWith = (state: LiveState, over: Partial<Record<keyof LiveState, Buffer>>) =>
  Buffer.concat(LIVE_FIELDS.map((name) => over[name] ?? packStrings([state[name]])));
