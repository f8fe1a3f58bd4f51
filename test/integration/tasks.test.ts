import { Effect, Either } from "effect";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { CaptionTask } from "../../src/db/entities.js";
import { PRIORITIES } from "../../src/domain/priority.js";
import { Queue } from "../../src/queue/queue.js";
import { connectRedis } from "../../src/redis/connection.js";
import { type RuntimeHandle, start } from "../../src/runtime.js";
import { auditTrail } from "../../src/tasks/audit.js";
import { TaskService } from "../../src/tasks/service.js";
import { dropLive } from "../support/live-state.js";
import { eventually, makeQueue } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";
import { hasPostgres, type LedgerDb, openLedgerDb, seedUser } from "../support/ledger.js";
import { testConfig } from "../support/runtime.js";

const LEDGER_JOBS = new URL("../support/ledger-jobs.ts", import.meta.url).href;

const suite = (kind: "sqlite" | "postgres", enabled: boolean) =>
  describe.skipIf(!enabled)(`tasks and the ledger on ${kind}`, () => {
    const redis = useRedis();
    let db: LedgerDb;
    let runtime: RuntimeHandle | undefined;
    const row = async (id: string) => (await db.orm.em.fork().findOne(CaptionTask, { id }))!;

    beforeAll(async () => {
      db = await openLedgerDb(kind);
    });
    afterAll(async () => {
      await db?.cleanup();
    });
    afterEach(async () => {
      await runtime?.stop({ graceful: false });
      runtime = undefined;
    });

    const startRuntime = async (claimIn: "main" | "threads" = "main") => {
      runtime = await start({
        config: testConfig(redis.server.url, {
          RT_CLAIM_IN: claimIn,
          DATABASE_URL: db.url,
          RT_JOBS_MODULE: LEDGER_JOBS,
          RT_LEASE_MS: "1000",
        }),
        groups: [{ name: "all", queues: PRIORITIES, concurrency: 4 }],
        ledger: true,
      });
      return runtime;
    };

    it("refuses bad settings field by field, and users without a connection", async () => {
      const service = new TaskService(db.orm, await makeQueue(redis));
      const { userId } = await seedUser(db.orm);
      const bad = await service.submit({
        userId,
        priority: "normal",
        settings: { max_posts_per_run: 0, processing_delay: "soon" },
      });
      expect(Either.isLeft(bad) && bad.left._tag).toBe("InvalidTaskInput");
      const fields =
        Either.isLeft(bad) && bad.left._tag === "InvalidTaskInput"
          ? bad.left.details.map((d) => d.field)
          : [];
      expect(fields.sort()).toEqual(["settings.max_posts_per_run", "settings.processing_delay"]);
      const nobody = await service.submit({ userId: 999_999, priority: "normal" });
      expect(Either.isLeft(nobody) && nobody.left._tag).toBe("NoPlatformConnection");
      const foreign = await seedUser(db.orm);
      const wrong = await service.submit({
        userId,
        platformConnectionId: foreign.connectionId,
        priority: "normal",
      });
      expect(Either.isLeft(wrong) && wrong.left._tag).toBe("NoPlatformConnection");
    });

    it("lets exactly one of 20 racing submissions of one user in: one row, one job", async () => {
      const queue = await makeQueue(redis);
      const services = Array.from({ length: 5 }, () => new TaskService(db.orm, queue));
      const { userId } = await seedUser(db.orm);
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => services[i % 5]!.submit({ userId, priority: "high" })),
      );
      const winners = results.filter(Either.isRight).map((r) => r.right.taskId);
      expect(winners).toHaveLength(1);
      for (const r of results.filter(Either.isLeft))
        expect(r.left).toMatchObject({ _tag: "ActiveTaskExists", activeTaskId: winners[0] });
      expect(await db.orm.em.fork().count(CaptionTask, { userId })).toBe(1);
      expect((await run(queue.getJob(winners[0]!)))?.state).toBe("queued");
    });

    it("keeps a submission when Redis is away: the row waits with backend database", async () => {
      const dead = connectRedis("redis://127.0.0.1:1", { name: "dead" });
      const service = new TaskService(db.orm, new Queue(dead));
      const { userId } = await seedUser(db.orm);
      const submitted = await service.submit({ userId, priority: "low" });
      dead.disconnect();
      expect(Either.isRight(submitted) && submitted.right.backend).toBe("database");
      const taskId = Either.isRight(submitted) ? submitted.right.taskId : "";
      expect(await row(taskId)).toMatchObject({ status: "queued", queueBackend: "database" });
    });

    it.each(["main", "threads"] as const)(
      "follows a task through the runtime: running with progress, a retry, then completed with results (claims in %s)",
      async (claimIn) => {
        const { queue } = await startRuntime(claimIn);
        const service = new TaskService(db.orm, queue);
        const { userId } = await seedUser(db.orm);
        const ok = await service.submit({ userId, priority: "urgent", settings: { processing_delay: 1 } });
        const flakyUser = (await seedUser(db.orm)).userId;
        const flaky = await service.submit({
          userId: flakyUser,
          priority: "normal",
          settings: { max_posts_per_run: 13, processing_delay: 0 },
        });
        const okId = Either.isRight(ok) ? ok.right.taskId : "";
        const flakyId = Either.isRight(flaky) ? flaky.right.taskId : "";
        const seen = new Set<number>();
        await eventually(
          async () => {
            const r = await row(okId);
            seen.add(r.progressPercent);
            return r.status === "completed";
          },
          20_000,
          "the task to complete",
        );
        expect([...seen].some((p) => p > 0 && p < 100)).toBe(true);
        const done = await row(okId);
        expect(done).toMatchObject({
          status: "completed",
          progressPercent: 100,
          attempt: 1,
          currentStep: "Completed",
        });
        expect(JSON.parse(done.resultsJson!)).toMatchObject({ captions_generated: 2, task_id: okId });
        expect(await service.results(okId, { userId })).toEqual(Either.right(JSON.parse(done.resultsJson!)));
        expect(Either.isLeft(await service.results(okId, { userId: userId + 1000 }))).toBe(true);
        expect(Either.isRight(await service.results(okId, { userId: userId + 1000, admin: true }))).toBe(
          true,
        );
        expect(done.startedAt).toBeInstanceOf(Date);
        await eventually(async () => (await row(flakyId)).status === "completed", 20_000, "the retried task");
        expect(await row(flakyId)).toMatchObject({ attempt: 2, retryCount: 1, errorMessage: null });
        // Its audit trail: made by its user, then the runtime's moves, each from one state to the next.
        const trail = await auditTrail(db.orm.em.fork(), flakyId);
        expect(trail[0]).toMatchObject({ action: "created", actor: `user:${flakyUser}`, toStatus: "queued" });
        expect(trail.at(-1)).toMatchObject({
          action: "completed",
          fromStatus: "running",
          toStatus: "completed",
          attempt: 2,
        });
        expect(trail.at(-1)!.processingSeconds).toBeGreaterThanOrEqual(0);
        expect(trail.filter((a) => a.action === "started").map((a) => a.attempt)).toEqual([1, 2]);
        // The first attempt's "retrying" may lose its race with the second's start; if it landed, it came first.
        expect(trail.map((a) => a.action).join(",")).toMatch(
          /^created,started,(retrying,)?started,completed$/,
        );
        for (const a of trail.slice(1)) expect(a.actor).toMatch(/^system:/);
      },
    );

    it.each(["main", "threads"] as const)(
      "cancels: a queued task at once, a running one through its worker, a lost one in the ledger (claims in %s)",
      async (claimIn) => {
        const queue = await makeQueue(redis);
        const service = new TaskService(db.orm, queue);
        const a = await seedUser(db.orm);
        const queued = await service.submit({ userId: a.userId, priority: "low" });
        const queuedId = Either.isRight(queued) ? queued.right.taskId : "";
        expect(await service.cancel(queuedId, { userId: a.userId })).toEqual(Either.right("cancelled"));
        expect(await row(queuedId)).toMatchObject({ status: "cancelled", cancelledByAdmin: false });
        // Another user cannot see, let alone cancel, it.
        const b = await seedUser(db.orm);
        expect(Either.isLeft(await service.cancel(queuedId, { userId: b.userId }))).toBe(true);

        const { queue: rq } = await startRuntime(claimIn);
        const svc = new TaskService(db.orm, rq);
        const running = await svc.submit({
          userId: b.userId,
          priority: "high",
          settings: { processing_delay: 30 },
        });
        const runningId = Either.isRight(running) ? running.right.taskId : "";
        await eventually(async () => (await row(runningId)).status === "running", 15_000, "the start");
        expect(await svc.cancel(runningId, { userId: 1, admin: true }, "admin stop")).toEqual(
          Either.right("cancelling"),
        );
        await eventually(
          async () => (await row(runningId)).status === "cancelled",
          15_000,
          "the worker to stop",
        );

        const c = await seedUser(db.orm);
        const lost = await svc.submit({
          userId: c.userId,
          priority: "low",
          settings: { processing_delay: 30 },
        });
        const lostId = Either.isRight(lost) ? lost.right.taskId : "";
        // Redis loses it: its live field and its own hash (if it has one).
        await dropLive(redis.client(), rq, lostId);
        await redis.client().del(rq.keys.job(lostId));
        expect(await svc.cancel(lostId, { userId: c.userId })).toEqual(Either.right("cancelled"));
        expect((await row(lostId)).status).toBe("cancelled");
      },
    );

    it("refuses a stale attempt's word in the ledger, and retries a failed task as a new one", async () => {
      const queue = await makeQueue(redis);
      const service = new TaskService(db.orm, queue);
      const { userId } = await seedUser(db.orm);
      const sub = await service.submit({ userId, priority: "normal" });
      const id = Either.isRight(sub) ? sub.right.taskId : "";
      expect(await service.ledger.markRunning(id, 2)).toBe(true);
      expect(await service.ledger.markRunning(id, 1)).toBe(false);
      // Attempt 1's "retrying" arriving after attempt 2 started changes nothing; the count holds.
      const attempt = (n: number) => ({ id, attempt: n, backend: "redis" }) as const;
      expect(await service.ledger.markRetrying(attempt(1), "late")).toBe(false);
      expect(await row(id)).toMatchObject({ status: "running", attempt: 2, retryCount: 1 });
      // Attempts given back uncharged (a shutdown, a postponement) are no retries: attempt 4 of
      // Redis, the second of its run.
      expect(await service.ledger.markRunning(id, 4, 2)).toBe(true);
      expect(await row(id)).toMatchObject({ status: "running", attempt: 4, retryCount: 1 });
      expect(await service.ledger.markRetrying(attempt(4), "flaky", 2)).toBe(true);
      expect(await row(id)).toMatchObject({ status: "queued", attempt: 4, retryCount: 2 });
      expect(await service.ledger.markRunning(id, 5, 3)).toBe(true);
      expect(await service.ledger.markCompleted(attempt(1), "{}")).toBe(false);
      expect(await service.ledger.markFailed(attempt(5), "broken")).toBe(true);
      expect(await service.ledger.markCompleted(attempt(5), "{}")).toBe(false);
      await run(Effect.ignore(queue.cancel(id)));
      const again = await service.retry(id, { userId });
      expect(Either.isRight(again)).toBe(true);
      const newId = Either.isRight(again) ? again.right.taskId : "";
      expect(newId).not.toBe(id);
      expect(await row(newId)).toMatchObject({
        status: "queued",
        userId,
        settingsJson: (await row(id)).settingsJson,
      });
      const notYet = await service.retry(newId, { userId });
      expect(Either.isLeft(notYet) && notYet.left._tag).toBe("TaskNotRetryable");
    });

    it("records a worker's cancel of an attempt that never began (claimed ahead), but not of one past it", async () => {
      const queue = await makeQueue(redis);
      const service = new TaskService(db.orm, queue);
      const { userId } = await seedUser(db.orm);
      const sub = await service.submit({ userId, priority: "normal" });
      const id = Either.isRight(sub) ? sub.right.taskId : "";
      // The row is still queued at attempt 0: the job was cancelled while it waited for a slot.
      const attempt = (n: number) => ({ id, attempt: n, backend: "redis" }) as const;
      expect(await service.ledger.markCancelled(id, {}, attempt(1))).toBe(true);
      expect(await row(id)).toMatchObject({ status: "cancelled", attempt: 1 });

      const other = await seedUser(db.orm);
      const next = await service.submit({ userId: other.userId, priority: "normal" });
      const nextId = Either.isRight(next) ? next.right.taskId : "";
      expect(await service.ledger.markRunning(nextId, 3)).toBe(true);
      // An older attempt's word about a row at a later one changes nothing.
      expect(
        await service.ledger.markCancelled(nextId, {}, { id: nextId, attempt: 2, backend: "redis" }),
      ).toBe(false);
      expect(await row(nextId)).toMatchObject({ status: "running", attempt: 3 });
    });

    it("records a move to another priority even when a worker takes the task the moment it lands", async () => {
      const queue = await makeQueue(redis);
      const service = new TaskService(db.orm, queue);
      const { userId } = await seedUser(db.orm);
      const sub = await service.submit({ userId, priority: "low" });
      const id = Either.isRight(sub) ? sub.right.taskId : "";
      // A worker with a free slot on the new priority claims the job, and the ledger hears it
      // start, before the move reaches the ledger: what a busy machine made of the admin route.
      // The real script runs; the claim and the start follow it at once.
      const reprioritize = queue.reprioritize.bind(queue);
      const claimed: string[] = [];
      queue.reprioritize = (...args) =>
        reprioritize(...args).pipe(
          Effect.tap(() =>
            Effect.promise(async () => {
              const [job] = (await run(queue.claim("w", PRIORITIES, 1))).jobs;
              claimed.push(`${job?.id} ${job?.priority}`);
              await service.ledger.markRunning(id, job!.attempt);
            }),
          ),
        );
      expect(await service.reprioritize(id, "high")).toEqual(Either.right("ok"));
      expect(claimed).toEqual([`${id} high`]);
      expect(await row(id)).toMatchObject({ status: "running", priority: "high" });
      // Once it runs, its priority stays.
      const late = await service.reprioritize(id, "low");
      expect(Either.isLeft(late) && late.left._tag).toBe("TaskNotWaiting");
      expect((await row(id)).priority).toBe("high");
    });
  });

suite("sqlite", true);
suite("postgres", hasPostgres);
