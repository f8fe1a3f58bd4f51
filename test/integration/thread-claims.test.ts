import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it, vi } from "vitest";
import { PRIORITIES, type Priority } from "../../src/domain/priority.js";
import type { HostListener } from "../../src/pool/hosted-group.js";
import { JobPool } from "../../src/pool/pool.js";
import { bundleThreadCode } from "../../src/pool/thread-bundle.js";
import type { GateRequest, GateVerdict, HostedEvent } from "../../src/pool/protocol.js";
import { eventually, makeQueue } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";
import { testJob } from "../support/runtime.js";

const registry = new URL("../support/jobs.ts", import.meta.url).href;
const timeouts = (ms: number) =>
  Object.fromEntries(PRIORITIES.map((p) => [p, ms])) as Record<Priority, number>;

/** What the main thread hears of a hosted group, kept for the assertions. */
const recorder = (gate?: (request: GateRequest) => Promise<GateVerdict>) => {
  const heard = {
    events: [] as HostedEvent[],
    completed: 0,
    gated: [] as string[],
    lost: [] as string[],
  };
  const listener: HostListener = {
    event: (event) => heard.events.push(event),
    completed: (seconds) => {
      for (const ran of Object.values(seconds)) heard.completed += ran.length;
    },
    gate: async (request) => {
      heard.gated.push(`${request.step} ${request.job.id}`);
      return gate ? gate(request) : { type: "run" };
    },
    progress: () => {},
    log: () => {},
    lost: (jobs) => heard.lost.push(...jobs.map((job) => job.id)),
  };
  return { heard, listener };
};

/**
 * The pool's threads claiming for a worker group themselves (RT_CLAIM_IN=threads), each at its
 * share of the concurrency: real threads, a real Redis.
 */
describe("worker groups claimed for in the pool's threads", () => {
  const redis = useRedis();
  let pool: JobPool | undefined;

  afterEach(async () => {
    vi.restoreAllMocks();
    await pool?.close();
    pool = undefined;
  });

  const host = async (
    listener: HostListener,
    options: {
      concurrency?: number;
      timeoutMs?: number;
      gated?: boolean;
      silentMs?: number;
      redisUrl?: string;
      graceMs?: number;
    } = {},
  ) => {
    const queue = await makeQueue(redis);
    const abortGraceMs = options.graceMs ?? 300;
    // The threads load the bundle the runtime builds by default.
    pool = new JobPool({ registry, threads: 2, abortGraceMs, bundle: await bundleThreadCode(registry) });
    const group = pool.host(
      {
        group: "all",
        redisUrl: options.redisUrl ?? redis.server.url,
        redisAccess: {},
        queue: {},
        consumer: "test-worker/all",
        priorities: PRIORITIES,
        concurrency: options.concurrency ?? 3,
        leaseMs: 30_000,
        timeoutsMs: timeouts(options.timeoutMs ?? 60_000),
        abortGraceMs,
        gated: options.gated ?? false,
      },
      listener,
      { silentMs: options.silentMs ?? 60_000 },
    );
    const state = async (id: string) => (await run(queue.getJob(id)))?.state;
    /** The thread that runs the next job: the one hosting the group, at concurrency 1. */
    const threadOf = async () => {
      const job = testJob("thread", {});
      await run(queue.enqueue(job));
      await eventually(async () => (await state(job.id)) === "completed", 20_000, "the thread job");
      return (await run(queue.getJob(job.id)))?.result;
    };
    return { queue, group, state, threadOf };
  };

  it("splits the concurrency over the threads, each its own consumer, and counts completions", async () => {
    const { heard, listener } = recorder();
    const { queue, group } = await host(listener, { concurrency: 3 });
    expect([group.share(0), group.share(1)]).toEqual([2, 1]);
    const jobs = Array.from({ length: 20 }, (_, i) => testJob("echo", { text: `n${i}` }));
    for (const job of jobs) await run(queue.enqueue(job));
    await eventually(async () => heard.completed === 20, 20_000, "20 completions counted");
    for (const job of jobs) expect((await run(queue.getJob(job.id)))?.result).toContain('"echoed"');
    // Ungated, a completion is only counted: no per-job event crosses to the main thread.
    expect(heard.events.filter((e) => e.type === "completed")).toEqual([]);
    // Each thread on connections of its own, named for its consumer.
    const clients = String(await redis.client().client("LIST"));
    for (const consumer of ["test-worker/all/t0", "test-worker/all/t1"])
      expect(clients).toContain(`name=ratatoskr:${consumer} `);
  });

  it("reports what runs in the threads, and stops: finished jobs end, one that ignores its abort retires its thread", async () => {
    const { heard, listener } = recorder();
    // A grace longer than the stop's own wait after its abort (2 s), as by default (5 s).
    const { queue, group, state } = await host(listener, { concurrency: 2, graceMs: 5_000 });
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    const short = testJob("sleep", { ms: 300 });
    const long = testJob("ignoreAbort", { ms: 20_000 });
    await run(queue.enqueue(short));
    await run(queue.enqueue(long));
    await eventually(() => group.active === 2, 10_000, "both jobs running");
    expect(group.runningIds.sort()).toEqual([short.id, long.id].sort());
    const { abandoned } = await group.stop({ timeoutMs: 1_000 });
    expect(abandoned).toBe(1);
    expect(await state(short.id)).toBe("completed");
    // The job that ignored the stop's abort still ran its code: its thread is ended, and the job
    // waits in Redis for the reclaimer, unanswered (as the engine leaves a job that does not settle).
    await eventually(
      () => errors.mock.calls.some(([line]) => String(line).includes("still running after its stop")),
      10_000,
      "the thread to retire",
    );
    expect(errors).toHaveBeenCalledWith(
      "worker thread retired: 1 jobs of group all still running after its stop",
    );
    errors.mockRestore();
    expect(await state(long.id)).toBe("running");
    expect(heard.events.map((e) => e.type)).not.toContain("released");
  });

  it("leaves a job that ignores its abort past the grace time to the reclaimer, and retires its thread for a new one", async () => {
    const { heard, listener } = recorder();
    const { queue, state, threadOf } = await host(listener, { concurrency: 1, timeoutMs: 500 });
    const before = await threadOf();
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    const stuck = testJob("ignoreAbort", { ms: 30_000 }, "normal", { maxAttempts: 1 });
    await run(queue.enqueue(stuck));
    await eventually(
      () => errors.mock.calls.some(([line]) => String(line).includes(stuck.id)),
      10_000,
      "the thread to retire",
    );
    expect(errors).toHaveBeenCalledWith(
      `worker thread retired: job ${stuck.id} attempt 1 did not stop within 300 ms of being aborted`,
    );
    // The retired thread's replacement claims for the group.
    expect(await threadOf()).not.toBe(before);
    // Not answered: a retry must not start while its code may still run. Its entry waits in
    // Redis for its lease to lapse and the reclaimer to give it out again.
    expect(await state(stuck.id)).toBe("running");
    const pending = (await redis.client().xpending(queue.keys.stream("normal"), queue.group)) as unknown[];
    expect(pending[0]).toBe(1);
    expect(heard.events.map((e) => e.type)).toEqual([]);
  });

  it("ends a thread whose event loop stays blocked, and its replacement claims for the group", async () => {
    const { listener } = recorder();
    const { queue, state, threadOf } = await host(listener, { concurrency: 1, silentMs: 1_500 });
    const before = await threadOf();
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    const spinning = testJob("spin", { ms: 120_000 });
    await run(queue.enqueue(spinning));
    await eventually(async () => (await state(spinning.id)) === "running", 10_000, "the spin to start");
    expect(await threadOf()).not.toBe(before);
    expect(errors).toHaveBeenCalledWith(
      expect.stringMatching(/^worker thread silent for \d+ s, its event loop blocked$/),
    );
    errors.mockRestore();
    // The spinning job's entry waits in Redis for the reclaimer: nothing answered for it.
    const pending = (await redis.client().xpending(queue.keys.stream("normal"), queue.group)) as unknown[];
    expect(pending[0]).toBe(1);
    expect(await state(spinning.id)).toBe("running");
  });

  it("asks the main thread before each job runs and after, and follows its verdicts", async () => {
    const verdicts: Record<string, GateVerdict> = {};
    const { heard, listener } = recorder(async (request) =>
      request.step === "start" ? (verdicts[request.job.id] ?? { type: "run" }) : { type: "run" },
    );
    const { queue, state } = await host(listener, { gated: true });
    const [runs, skipped, postponed, failed] = ["runs", "skipped", "postponed", "failed"].map((text) =>
      testJob("echo", { text }),
    ) as [ReturnType<typeof testJob>, ...ReturnType<typeof testJob>[]];
    verdicts[skipped!.id] = { type: "skip", reason: "the ledger has this task as completed" };
    verdicts[postponed!.id] = { type: "postpone", delayMs: 60_000, message: "the ledger is away" };
    verdicts[failed!.id] = { type: "fail", kind: "invalid", message: "refused at the gate" };
    for (const job of [runs, skipped, postponed, failed]) await run(queue.enqueue(job!));
    await eventually(async () => (await state(runs.id)) === "completed", 10_000, "the job that runs");
    await eventually(async () => (await state(skipped!.id)) === "completed", 10_000, "the skipped job");
    await eventually(async () => (await state(postponed!.id)) === "delayed", 10_000, "the postponed job");
    await eventually(async () => (await state(failed!.id)) === "failed", 10_000, "the failed job");
    expect((await run(queue.getJob(runs.id)))?.result).toBe('{"echoed":"runs"}');
    expect((await run(queue.getJob(skipped!.id)))?.result).toBe(
      '{"skipped":"the ledger has this task as completed"}',
    );
    expect((await run(queue.getJob(failed!.id)))?.error).toBe("refused at the gate");
    // Only the job that ran came back after it ran; every job was asked about first.
    expect(heard.gated.filter((g) => g.startsWith("ran"))).toEqual([`ran ${runs.id}`]);
    expect(heard.gated.filter((g) => g.startsWith("start")).length).toBe(4);
    // Gated, the main thread hears every event (the ledger follows them), completions too.
    expect(
      heard.events
        .filter((e) => e.type === "completed")
        .map((e) => "job" in e && e.job.id)
        .sort(),
    ).toEqual([runs.id, skipped!.id].sort());
    expect(heard.events.find((e) => e.type === "completed")).toMatchObject({ job: { data: "" } });
  });

  describe("a job aborted while it waits at the gate does not start", () => {
    /** The jobs that started in a thread: the test registry's scope writes `open <id>` as it opens. */
    const started = () => {
      const file = process.env.RT_TEST_LOG!;
      return existsSync(file)
        ? readFileSync(file, "utf8")
            .split("\n")
            .filter((l) => l.startsWith("open "))
        : [];
    };
    const saved = process.env.RT_TEST_LOG;
    afterEach(() => {
      process.env.RT_TEST_LOG = saved;
    });

    /** A gated group whose start gate answers only when the test says. */
    const heldAtTheGate = async () => {
      // The threads take the environment as it is when they start.
      process.env.RT_TEST_LOG = join(mkdtempSync(join(tmpdir(), "rt-gate-")), "log");
      let release: (verdict: GateVerdict) => void = () => {};
      const { heard, listener } = recorder((request) =>
        request.step === "start"
          ? new Promise<GateVerdict>((resolve) => (release = resolve))
          : Promise.resolve({ type: "run" }),
      );
      const hosted = await host(listener, { gated: true, concurrency: 1 });
      const job = testJob("sleep", { ms: 1 });
      await run(hosted.queue.enqueue(job));
      await eventually(() => heard.gated.includes(`start ${job.id}`), 10_000, "the job at the gate");
      return { ...hosted, heard, job, release: (verdict: GateVerdict) => release(verdict) };
    };

    it("let through after the stop's abort, before it gave up: given back to the queue, and the main thread hears it did not run", async () => {
      const { group, heard, job, state, release } = await heldAtTheGate();
      // The stop waits 300 ms for running jobs, then aborts them and waits a little more.
      const stopping = group.stop({ timeoutMs: 300 });
      await sleep(800);
      release({ type: "run" });
      // Counted as the engine counts it: still running when the wait ran out, then it settled.
      expect(await stopping).toEqual({ abandoned: 1 });
      expect(await state(job.id)).toBe("queued");
      expect(heard.events.map((e) => e.type)).toContain("released");
      expect(heard.gated).toEqual([`start ${job.id}`, `ran ${job.id}`]);
      expect(started()).toEqual([]);
    });

    it("cancelled while it waits: recorded cancelled when let through, its code not run", async () => {
      const { queue, group, heard, job, state, release } = await heldAtTheGate();
      await eventually(() => group.runningIds.includes(job.id), 5_000, "the job in the thread's status");
      // As the dispatcher does on the events channel: the queue records the cancel, the group aborts.
      await run(queue.cancel(job.id));
      expect(group.cancelRunning(job.id, 1)).toBe(true);
      await sleep(300);
      release({ type: "run" });
      await eventually(async () => (await state(job.id)) === "cancelled", 10_000, "the cancel");
      expect(heard.gated).toEqual([`start ${job.id}`, `ran ${job.id}`]);
      expect(started()).toEqual([]);
    });

    it("let through after the stop gave it up: its code never runs there", async () => {
      const { group, job, state, release } = await heldAtTheGate();
      expect(await group.stop({ timeoutMs: 300 })).toEqual({ abandoned: 1 });
      release({ type: "run" });
      await sleep(500);
      expect(started()).toEqual([]);
      // It waits in Redis for the reclaimer, as any job a stop abandons.
      expect(await state(job.id)).toBe("running");
    });
  });

  it("reports a thread that cannot claim for the group, for its dispatcher to fail with", async () => {
    const { listener } = recorder();
    const { group } = await host(listener, { redisUrl: "memcached://127.0.0.1:1" });
    expect(await group.failed).toMatch(/^worker thread \d cannot claim for group all: expected redis:\/\//);
  });
});
