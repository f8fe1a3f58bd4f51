import { existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { queueOptionsFrom } from "../../config/schema.js";
import { PRIORITIES } from "../../src/domain/priority.js";
import { JobPool } from "../../src/pool/pool.js";
import { QueueAdmin } from "../../src/queue/admin.js";
import { WorkerRegistry } from "../../src/queue/workers.js";
import { type RuntimeHandle, start } from "../../src/runtime.js";
import { eventually, makeQueue } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";
import { testConfig as baseConfig, testJob } from "../support/runtime.js";

const allInOne = (concurrency = 4) => [{ name: "all", queues: PRIORITIES, concurrency }];

/**
 * Run twice: with the main thread claiming and sending each job to a thread (RT_CLAIM_IN=main),
 * and with the threads claiming for themselves (`threads`).
 */
describe.each(["main", "threads"] as const)("embedded runtime, claiming in %s", (claimIn) => {
  const redis = useRedis();
  const testConfig = (url: string, env: Record<string, string> = {}) =>
    baseConfig(url, { RT_CLAIM_IN: claimIn, ...env });
  let runtime: RuntimeHandle | undefined;
  let log: string;

  beforeAll(() => {
    log = join(mkdtempSync(join(tmpdir(), "rt-runtime-")), "log");
    process.env.RT_TEST_LOG = log;
  });
  afterEach(async () => {
    await runtime?.stop({ graceful: false });
    runtime = undefined;
  });

  it("runs jobs on the thread pool, records progress, registers itself and leaves on stop", async () => {
    runtime = await start({
      config: testConfig(redis.server.url, { RT_HEARTBEAT_MS: "200" }),
      groups: allInOne(),
    });
    const { queue } = runtime;
    const jobs = [testJob("sleep", { ms: 200, steps: 4 }), testJob("echo", { text: "hello" }, "urgent")];
    for (const j of jobs) await run(queue.enqueue(j));
    await eventually(
      async () =>
        (await Promise.all(jobs.map((j) => run(queue.getJob(j.id))))).every((j) => j?.state === "completed"),
      20_000,
      "the jobs",
    );
    expect(await run(queue.getJob(jobs[0]!.id))).toMatchObject({
      progress: 100,
      step: "step 4 of 4",
      result: "slept",
    });
    expect((await run(queue.getJob(jobs[1]!.id)))?.result).toBe('{"echoed":"hello"}');
    // The history of its progress (throttled, so not every step), ending with the last.
    const steps = (await run(queue.getJob(jobs[0]!.id)))!.steps;
    expect(steps.at(-1)).toMatchObject({ attempt: 1, percent: 100, step: "step 4 of 4" });
    expect(steps.map((s) => s.at)).toEqual([...steps.map((s) => s.at)].sort((a, b) => a - b));

    const registry = new WorkerRegistry(queue);
    // A beat taken while a job ran names it; the next (every 200 ms here) has none.
    await eventually(async () => (await run(registry.list()))[0]?.jobs.length === 0, 5_000, "a beat");
    const [me] = await run(registry.list());
    expect(me).toMatchObject({ id: runtime.workerId, pid: process.pid, jobs: [] });
    expect(me!.rssMb).toBeGreaterThan(10);
    expect(me?.groups).toEqual([{ name: "all", queues: PRIORITIES, concurrency: 4 }]);
    const actors = runtime.status().actors;
    for (const id of ["heartbeat", "scheduler", "reclaimer", "janitor", "dispatcher:all"]) {
      expect(actors[id]).toMatchObject({ running: true, restarts: 0 });
    }
    expect(runtime.status().state).toBe("running");

    const { workerId } = runtime;
    await runtime.stop();
    expect(runtime.status().state).toBe("stopped");
    runtime = undefined;
    const check = redis.client();
    expect(await check.exists(queue.keys.worker(workerId))).toBe(0);
  });

  it("a job whose thread exits is retried on a fresh thread and completes", async () => {
    // Claimed in its thread, it waits for its lease to lapse and the reclaimer to take it back.
    runtime = await start({
      config: testConfig(redis.server.url, { RT_LEASE_MS: "1000" }),
      groups: allInOne(),
    });
    const job = testJob("exit", {});
    await run(runtime.queue.enqueue(job));
    await eventually(
      async () => (await run(runtime!.queue.getJob(job.id)))?.state === "completed",
      15_000,
      "the retry",
    );
    expect(await run(runtime.queue.getJob(job.id))).toMatchObject({ attempt: 2, result: "survived" });
    // The replacement thread claims for the group again.
    const again = testJob("echo", { text: "after" });
    await run(runtime.queue.enqueue(again));
    await eventually(
      async () => (await run(runtime!.queue.getJob(again.id)))?.state === "completed",
      15_000,
      "a job after the replacement",
    );
  });

  it("a job over the heap limit is requeued for later, not lost, and then completes", async () => {
    runtime = await start({
      config: testConfig(redis.server.url, { RT_THREAD_HEAP_MB: "48", RT_LEASE_MS: "1000" }),
      groups: allInOne(),
    });
    const { queue } = runtime;
    const job = testJob("hog", {}, "low");
    await run(queue.enqueue(job));
    if (claimIn === "threads") {
      // Claimed in the thread that died, it is reclaimed once its lease lapses, and runs again.
      await eventually(
        async () => (await run(queue.getJob(job.id)))?.state === "completed",
        30_000,
        "the reclaim",
      );
      expect(await run(queue.getJob(job.id))).toMatchObject({ result: "fits now", attempt: 2 });
      return;
    }
    await eventually(
      async () => (await run(queue.getJob(job.id)))?.state === "delayed",
      20_000,
      "the requeue",
    );
    expect((await run(queue.getJob(job.id)))?.error).toMatch(/^worker thread died/);
    // Resource exhaustion waits 30 s or more before the retry; bring that moment forward.
    await redis.client().zadd(queue.keys.delayed("low"), 0, job.id);
    await eventually(
      async () => (await run(queue.getJob(job.id)))?.state === "completed",
      10_000,
      "the retry",
    );
    expect((await run(queue.getJob(job.id)))?.result).toBe("fits now");
  });

  it("aborts a job past its priority's timeout and retries it, then dead-letters it", async () => {
    runtime = await start({
      config: testConfig(redis.server.url, { RT_TIMEOUT_NORMAL_S: "1" }),
      groups: allInOne(),
    });
    const job = testJob("sleep", { ms: 30_000 }, "normal", { maxAttempts: 2 });
    await run(runtime.queue.enqueue(job));
    await eventually(
      async () => (await run(runtime!.queue.getJob(job.id)))?.state === "failed",
      15_000,
      "two timeouts",
    );
    const [dead] = await run(new QueueAdmin(runtime.queue).listDead());
    expect(dead).toMatchObject({ taskId: job.id, attempt: 2, reason: "timed out after 1 s" });
  });

  it("cancelling a running job aborts it in its thread and ends it cancelled", async () => {
    runtime = await start({
      config: testConfig(redis.server.url, { RT_LEASE_MS: "1000" }),
      groups: allInOne(),
    });
    const { queue } = runtime;
    const job = testJob("sleep", { ms: 30_000 }, "high", { userId: "9" });
    await run(queue.enqueue(job));
    // Cancel once the job runs in its thread (its scope is open), so there is a scope to close.
    await eventually(
      () => existsSync(log) && readFileSync(log, "utf8").includes(`open ${job.id}`),
      20_000,
      "the job to start in its thread",
    );
    await run(queue.cancel(job.id, "user pressed cancel"));
    await eventually(
      async () => (await run(queue.getJob(job.id)))?.state === "cancelled",
      // Under load a fresh thread may still be loading when the cancel comes: it aborts on arrival.
      20_000,
      "the abort",
    );
    expect(await run(new QueueAdmin(queue).activeTaskOf("9"))).toBeUndefined();
    // The scope of the aborted job was closed as a failure, in its thread.
    expect(readFileSync(log, "utf8")).toContain(`close ${job.id} failed`);
  });

  it("rides out Redis restarting empty: no actor gives up, and work goes on afterwards", async () => {
    runtime = await start({
      config: testConfig(redis.server.url, { RT_HEARTBEAT_MS: "200" }),
      groups: allInOne(),
    });
    const { queue } = runtime;
    await redis.server.kill();
    // Long enough for several failed rounds of every actor.
    await new Promise((r) => setTimeout(r, 4_000));
    await redis.server.restart();
    const job = testJob("echo", { text: "after the outage" });
    await eventually(
      async () => {
        try {
          await run(queue.enqueue(job));
          return true;
        } catch {
          return false;
        }
      },
      10_000,
      "Redis to take jobs again",
    );
    await eventually(async () => (await run(queue.getJob(job.id)))?.state === "completed", 15_000, "the job");
    expect(runtime.status().state).toBe("running");
    // An outage is not a crash: nothing was restarted, let alone escalated.
    for (const [id, actor] of Object.entries(runtime.status().actors)) {
      expect({ id, restarts: actor.restarts }).toEqual({ id, restarts: 0 });
    }
    // The heartbeat put this process back into the (emptied) registry.
    await eventually(
      async () => (await run(new WorkerRegistry(queue).list())).length === 1,
      10_000,
      "re-registration",
    );
  });

  it("a stop ends claiming in every group at once and honours a drain longer than the default", async () => {
    runtime = await start({
      config: testConfig(redis.server.url, { RT_SHUTDOWN_MS: "100" }),
      groups: [
        { name: "fast", queues: ["urgent"], concurrency: 1 },
        { name: "slow", queues: ["low"], concurrency: 1 },
      ],
    });
    // Its own connection: the runtime's closes with it.
    const queue = await makeQueue(redis, queueOptionsFrom(testConfig(redis.server.url)));
    const first = [testJob("sleep", { ms: 1_500 }, "urgent"), testJob("sleep", { ms: 1_500 }, "low")];
    for (const j of first) await run(queue.enqueue(j));
    await eventually(
      async () =>
        (await Promise.all(first.map((j) => run(queue.getJob(j.id))))).every((j) => j?.state === "running"),
      10_000,
      "both groups running",
    );
    const stopped = runtime.stop({ timeoutMs: 15_000 });
    runtime = undefined;
    const late = [testJob("echo", { text: "a" }, "urgent"), testJob("echo", { text: "b" }, "low")];
    for (const j of late) await run(queue.enqueue(j));
    await stopped;
    // Both drained past RT_SHUTDOWN_MS (the stop's own time counts), and neither group took more.
    for (const j of first) expect((await run(queue.getJob(j.id)))?.state).toBe("completed");
    for (const j of late) expect((await run(queue.getJob(j.id)))?.state).toBe("queued");
  });

  it("deletes completed jobs' data at once when Redis runs short of memory", async () => {
    runtime = await start({
      config: testConfig(redis.server.url, { RT_HEALTH_INTERVAL_MS: "100" }),
      groups: allInOne(),
    });
    const { queue } = runtime;
    const done = testJob("echo", { text: "kept until memory runs short" });
    await run(queue.enqueue(done));
    await eventually(
      async () => (await run(queue.getJob(done.id)))?.state === "completed",
      15_000,
      "the job",
    );
    const admin = redis.client();
    try {
      const used = Number(/used_memory:(\d+)/.exec(await admin.info("memory"))?.[1]);
      await admin.config("SET", "maxmemory", String(Math.ceil(used * 1.1)));
      await eventually(async () => (await run(queue.getJob(done.id))) === undefined, 15_000, "the cleanup");
      expect(runtime.status().health.alerts.map((a) => a.message)).toContainEqual(
        expect.stringMatching(/^Redis memory at \d+% of maxmemory/),
      );
    } finally {
      await admin.config("SET", "maxmemory", "0");
    }
  });

  it("runs jobs with threads that compile the registry themselves when its bundle cannot be built", async () => {
    // A registry whose node_modules has a file where the bundle's directory would go.
    const dir = mkdtempSync(join(tmpdir(), "rt-lone-registry-"));
    mkdirSync(join(dir, "node_modules"));
    symlinkSync(
      fileURLToPath(new URL("../../node_modules/effect", import.meta.url)),
      join(dir, "node_modules", "effect"),
    );
    writeFileSync(join(dir, "node_modules", ".cache"), "not a directory");
    const registry = join(dir, "jobs.mjs");
    writeFileSync(
      registry,
      [
        'import { Schema } from "effect";',
        'export default { kinds: { hello: { schema: Schema.Struct({}), handler: async () => "hello from tsx" } } };',
      ].join("\n"),
    );
    runtime = await start({
      config: testConfig(redis.server.url, { RT_JOBS_MODULE: pathToFileURL(registry).href }),
      groups: allInOne(),
    });
    const job = testJob("hello", {});
    await run(runtime.queue.enqueue(job));
    await eventually(
      async () => (await run(runtime!.queue.getJob(job.id)))?.state === "completed",
      20_000,
      "the job",
    );
    expect((await run(runtime.queue.getJob(job.id)))?.result).toBe("hello from tsx");
  });

  it("closes the worker threads it started when a later step of the start fails", async () => {
    // The threads start first and load while the database opens; this database is not there.
    const closed = vi.spyOn(JobPool.prototype, "close");
    const config = testConfig(redis.server.url, { DATABASE_URL: "postgresql://ratatoskr@127.0.0.1:1/none" });
    try {
      await expect(start({ config, groups: allInOne(), ledger: true })).rejects.toThrow();
      expect(closed).toHaveBeenCalledTimes(1);
    } finally {
      closed.mockRestore();
    }
  });

  it("refuses to start workers with a registry that has no job kinds", async () => {
    const config = testConfig(redis.server.url, {
      RT_JOBS_MODULE: new URL("../support/empty-jobs.ts", import.meta.url).href,
    });
    await expect(start({ config, groups: allInOne() })).rejects.toThrow(
      /has no job kinds; set RT_JOBS_MODULE/,
    );
  });
});
