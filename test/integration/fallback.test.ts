import { Either } from "effect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CaptionTask } from "../../src/db/entities.js";
import { openDatabase } from "../../src/db/orm.js";
import { PRIORITIES } from "../../src/domain/priority.js";
import { DatabaseQueue } from "../../src/tasks/database-queue.js";
import { auditTrail } from "../../src/tasks/audit.js";
import { TaskLedger } from "../../src/tasks/ledger.js";
import { Reconciler } from "../../src/tasks/reconciler.js";
import { TaskService } from "../../src/tasks/service.js";
import { hasPostgres, type LedgerDb, openLedgerDb, seedUser } from "../support/ledger.js";
import { dropLive, replaceWithNonHash, writeRawLive } from "../support/live-state.js";
import { makeQueue } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";

const down = { mode: () => "database" as const };

const suite = (kind: "sqlite" | "postgres", enabled: boolean) =>
  describe.skipIf(!enabled)(`the database queue and the reconciler on ${kind}`, () => {
    const redis = useRedis();
    let db: LedgerDb;
    const fork = () => db.orm.em.fork();
    const row = async (id: string) => (await fork().findOne(CaptionTask, { id }))!;
    const clearTasks = () => fork().nativeDelete(CaptionTask, {});

    beforeAll(async () => {
      db = await openLedgerDb(kind);
    });
    afterAll(async () => {
      await db?.cleanup();
    });

    /** `n` tasks submitted while Redis is known down, each of its own user. */
    const submitDown = async (priorities: readonly (typeof PRIORITIES)[number][]) => {
      const service = new TaskService(db.orm, await makeQueue(redis), { health: down });
      const ids: string[] = [];
      for (const priority of priorities) {
        const { userId } = await seedUser(db.orm);
        const submitted = await service.submit({ userId, priority });
        if (Either.isLeft(submitted)) throw new Error(String(submitted.left));
        expect(submitted.right.backend).toBe("database");
        ids.push(submitted.right.taskId);
      }
      return ids;
    };

    it("claims by priority then age, each task once across racing claimers, and never a paused-by-time one", async () => {
      await clearTasks();
      const ids = await submitDown(["low", "normal", "urgent", "low", "high", "urgent", "normal", "high"]);
      const later = ids[5]!;
      await fork().nativeUpdate(CaptionTask, { id: later }, { availableAt: new Date(Date.now() + 60_000) });
      // A second process: its own ORM, its own connections.
      const other = await openDatabase({ url: db.url, dataDir: "" });
      try {
        const a = new DatabaseQueue(fork);
        const b = new DatabaseQueue(() => other.em.fork());
        const first = await a.claim("a", PRIORITIES, 3, 30_000);
        expect(first.map((c) => c.id)).toEqual([ids[2], ids[4], ids[7]]);
        expect(first.every((c) => c.attempt === 1)).toBe(true);
        const racing = await Promise.all([
          a.claim("a", PRIORITIES, 2, 30_000),
          b.claim("b", PRIORITIES, 2, 30_000),
          a.claim("a", ["low"], 5, 30_000),
        ]);
        const claimed = [...first, ...racing.flat()].map((c) => c.id);
        expect(new Set(claimed).size).toBe(claimed.length);
        expect(claimed.sort()).toEqual(ids.filter((id) => id !== later).sort());
        expect(await a.claim("a", PRIORITIES, 5, 30_000)).toEqual([]);
        expect(await row(ids[2]!)).toMatchObject({ status: "running", attempt: 1, leaseOwner: "a" });
      } finally {
        await other.close();
      }
    });

    it("retries later, renews, sees a cancel at renewal, and takes back a lapsed lease", async () => {
      await clearTasks();
      const [id, lapsing] = await submitDown(["normal", "normal"]);
      const queue = new DatabaseQueue(fork);
      const ledger = new TaskLedger(fork);
      const [claim] = await queue.claim("me", ["normal"], 1, 30_000);
      expect(claim?.id).toBe(id);
      expect(await queue.retryLater(id!, 1, 1, "model away", 60_000)).toBe(true);
      expect(await row(id!)).toMatchObject({ status: "queued", retryCount: 1, errorMessage: "model away" });
      // Not due for a minute: the other task comes first.
      const [next] = await queue.claim("me", ["normal"], 1, 1);
      expect(next?.id).toBe(lapsing);
      expect(await queue.renew(lapsing!, 1, "me", 1)).toBe(true);
      expect(await queue.renew(lapsing!, 1, "someone else", 1)).toBe(false);
      await new Promise((r) => setTimeout(r, 20));
      expect(await queue.recoverExpired()).toEqual({ requeued: 1, failed: 0 });
      expect(await row(lapsing!)).toMatchObject({ status: "queued", attempt: 1 });
      const [again] = await queue.claim("me", ["normal"], 1, 30_000);
      expect(again).toMatchObject({ id: lapsing, attempt: 2 });
      await ledger.markCancelled(lapsing!, { reason: "changed my mind" });
      expect(await queue.renew(lapsing!, 2, "me", 30_000)).toBe(false);
      // A Redis job of a task the database queue runs is refused by the ledger.
      await fork().nativeUpdate(CaptionTask, { id: id! }, { availableAt: null });
      const [third] = await queue.claim("me", ["normal"], 1, 30_000);
      expect(third).toMatchObject({ id, attempt: 2 });
      expect(await ledger.markRunning(id!, 3)).toBe(false);
      // Every move left its row in the audit log, from the state it left (the refused one none).
      const trail = async (task: string) =>
        (await auditTrail(fork(), task)).map((a) => [a.action, a.fromStatus, a.toStatus, a.attempt]);
      expect(await trail(lapsing!)).toEqual([
        ["created", null, "queued", 0],
        ["started", "queued", "running", 1],
        ["requeued", "running", "queued", 1],
        ["started", "queued", "running", 2],
        ["cancelled", "running", "cancelled", 2],
      ]);
      expect(await trail(id!)).toEqual([
        ["created", null, "queued", 0],
        ["started", "queued", "running", 1],
        ["retrying", "running", "queued", 1],
        ["started", "queued", "running", 2],
      ]);
    });

    it("judges a task by its charged attempts: those given back uncharged in Redis do not use up its retries", async () => {
      await clearTasks();
      // Redis ran it to attempt 6: one charged retry, four attempts postponed while the ledger
      // was away (uncharged). Then Redis went down and the database queue took it over.
      const [id] = await submitDown(["normal"]);
      await fork().nativeUpdate(CaptionTask, { id: id! }, { attempt: 6, retryCount: 1, maxRetries: 2 });
      const queue = new DatabaseQueue(fork);
      const lapse = async (attempt: number) => {
        const [claim] = await queue.claim("me", ["normal"], 1, 1);
        expect(claim).toMatchObject({ id, attempt, retries: attempt - 6 });
        await new Promise((r) => setTimeout(r, 20));
        return queue.recoverExpired();
      };
      // Its second charged attempt lapses: one retry is left, so it waits again.
      expect(await lapse(7)).toEqual({ requeued: 1, failed: 0 });
      expect(await row(id!)).toMatchObject({ status: "queued", attempt: 7, retryCount: 2 });
      // Its third, the last of 1 + 2 retries, lapses too: failed, named as the third.
      expect(await lapse(8)).toEqual({ requeued: 0, failed: 1 });
      expect(await row(id!)).toMatchObject({
        status: "failed",
        errorMessage: "its worker stopped answering on attempt 3 of 3",
      });
    });

    it("moves waiting tasks to Redis exactly once with two reconcilers racing, attempts continuing", async () => {
      await clearTasks();
      const ids = await submitDown(["low", "urgent", "normal", "high", "normal"]);
      // And one whose stored settings today's schema refuses: it must not block the others.
      const [broken] = await submitDown(["high"]);
      await fork().nativeUpdate(CaptionTask, { id: broken! }, { settingsJson: '{"max_posts_per_run":-5}' });
      // One of them already ran once from the database queue and waits to retry.
      const dbQueue = new DatabaseQueue(fork);
      await dbQueue.claim("me", ["urgent"], 1, 30_000);
      await dbQueue.retryLater(ids[1]!, 1, 1, "flaky", 0);
      const queue = await makeQueue(redis);
      const ledger = new TaskLedger(fork);
      const reconcilers = [1, 2].map(() => new Reconciler(fork, queue, dbQueue, ledger, { graceMs: 0 }));
      const moves = await Promise.all(reconcilers.map((r) => r.moveToRedis()));
      expect(moves[0]!.moved + moves[1]!.moved).toBe(5);
      expect(moves.flatMap((m) => m.unrunnable).map((u) => u.id)).toEqual([broken]);
      expect(await row(broken!)).toMatchObject({
        status: "failed",
        queueBackend: "database",
        errorMessage: expect.stringMatching(/^cannot be run: .*max_posts_per_run/s),
      });
      for (const id of ids) {
        expect((await row(id)).queueBackend).toBe("redis");
        expect((await run(queue.getJob(id)))?.state).toBe("queued");
      }
      const claim = await run(queue.claim("w", PRIORITIES, 5));
      expect(claim.jobs.map((j) => j.id)).toEqual([ids[1], ids[3], ids[2], ids[4], ids[0]]);
      // The retried one continues from its database attempt: attempt 2, a fresh run of 4.
      expect(claim.jobs[0]).toMatchObject({ attempt: 2, runAttempt: 1, maxAttempts: 4 });
      expect(await ledger.markRunning(ids[1]!, 2)).toBe(true);
    });

    it("while Redis is down, the database queue takes over tasks waiting in it; Redis's copy is then refused", async () => {
      await clearTasks();
      const queue = await makeQueue(redis);
      const service = new TaskService(db.orm, queue);
      const ids: string[] = [];
      for (const priority of ["low", "high"] as const) {
        const submitted = await service.submit({ userId: (await seedUser(db.orm)).userId, priority });
        ids.push(Either.isRight(submitted) ? submitted.right.taskId : "");
      }
      const dbQueue = new DatabaseQueue(fork);
      const ledger = new TaskLedger(fork);
      const patient = new Reconciler(fork, queue, dbQueue, ledger, { graceMs: 60_000 });
      expect(await patient.takeOverWaiting()).toBe(0);
      const reconciler = new Reconciler(fork, queue, dbQueue, ledger, { graceMs: 0 });
      expect(await reconciler.takeOverWaiting()).toBe(2);
      const claims = await dbQueue.claim("db", PRIORITIES, 5, 30_000);
      expect(claims.map((c) => c.id)).toEqual([ids[1], ids[0]]);
      // Redis still had them; its worker's attempt is refused, so each runs once.
      const redisClaim = await run(queue.claim("w", PRIORITIES, 5));
      for (const job of redisClaim.jobs) expect(await ledger.markRunning(job.id, job.attempt)).toBe(false);
      // Both queues are at attempt 1: only the database queue's word lands.
      const [first] = redisClaim.jobs;
      const redisSide = { id: first!.id, attempt: first!.attempt, backend: "redis" } as const;
      expect(redisSide.attempt).toBe(claims.find((c) => c.id === first!.id)!.attempt);
      expect(await ledger.markProgress(redisSide, 50, "elsewhere")).toBe(false);
      expect(await ledger.markCompleted(redisSide, '{"skipped":"x"}')).toBe(false);
      expect(await ledger.markFailed(redisSide, "elsewhere")).toBe(false);
      expect(await ledger.markCancelled(first!.id, {}, redisSide)).toBe(false);
      expect(await ledger.settleFromRedis(first!.id, 1, { state: "completed", resultsJson: "{}" })).toBe(
        false,
      );
      expect(await row(first!.id)).toMatchObject({ status: "running", queueBackend: "database" });
      expect(await ledger.markCompleted({ ...redisSide, backend: "database" }, "{}")).toBe(true);
    });

    it("after Redis restarts empty: re-enqueues what it lost, settles what ended, restores user locks", async () => {
      await clearTasks();
      const queue = await makeQueue(redis);
      const service = new TaskService(db.orm, queue);
      const ledger = new TaskLedger(fork);
      const ids: string[] = [];
      for (let i = 0; i < 4; i++) {
        const submitted = await service.submit({
          userId: (await seedUser(db.orm)).userId,
          priority: "normal",
        });
        ids.push(Either.isRight(submitted) ? submitted.right.taskId : "");
      }
      const [lost, running, finished, live] = ids as [string, string, string, string];
      const claim = await run(queue.claim("w", ["normal"], 3));
      expect(claim.jobs.map((j) => j.id)).toEqual([lost, running, finished]);
      for (const j of claim.jobs) expect(await ledger.markRunning(j.id, 1)).toBe(true);
      await run(queue.complete([{ id: finished, attempt: 1, result: '{"captions_generated":3}' }]));
      // Redis forgets two jobs and a lock; the ledger never heard that `finished` completed.
      const client = redis.client();
      // A job's state is its live field (and its own hash, if it has one): both go.
      await dropLive(client, queue, lost);
      await dropLive(client, queue, running);
      await client.del(
        queue.keys.job(lost),
        queue.keys.job(running),
        queue.keys.user(String((await row(live)).userId)),
      );
      const reconciler = new Reconciler(fork, queue, new DatabaseQueue(fork), ledger, { graceMs: 0 });
      const report = await reconciler.run();
      expect(report).toMatchObject({
        reenqueued: 2,
        settled: 1,
        locksRestored: 1,
        movedToRedis: 0,
        unrunnable: 0,
      });
      expect(await row(finished)).toMatchObject({
        status: "completed",
        resultsJson: '{"captions_generated":3}',
      });
      expect(await row(running)).toMatchObject({ status: "queued", attempt: 1 });
      expect(await client.get(queue.keys.user(String((await row(live)).userId)))).toBe(live);
      const again = await run(queue.claim("w2", ["normal"], 5));
      const attempts = Object.fromEntries(again.jobs.map((j) => [j.id, j.attempt]));
      // No fencing token repeats: the lost attempts were 1, their successors are 2.
      expect(attempts).toEqual({ [live]: 1, [lost]: 2, [running]: 2 });
      // The first worker of `running` answers late: refused by Redis and by the ledger.
      const late = claim.jobs.find((j) => j.id === running)!;
      expect(await run(queue.complete([{ id: running, attempt: late.attempt, result: "{}" }]))).toEqual([
        "stale",
      ]);
      expect(await ledger.markCompleted({ id: running, attempt: 1, backend: "redis" }, "{}")).toBe(false);
      expect(await reconciler.run()).toMatchObject({ reenqueued: 0, settled: 0, locksRestored: 0 });
    });

    it("leaves a task whose Redis key is not a job for a person, and still repairs the rest", async () => {
      await clearTasks();
      const queue = await makeQueue(redis);
      const service = new TaskService(db.orm, queue);
      const ids: string[] = [];
      for (let i = 0; i < 4; i++) {
        const submitted = await service.submit({ userId: (await seedUser(db.orm)).userId, priority: "low" });
        ids.push(Either.isRight(submitted) ? submitted.right.taskId : "");
      }
      const [damaged, garbled, lost, live] = ids as [string, string, string, string];
      const client = redis.client();
      // Something else wrote a plain string where the job's hash was; another job is lost.
      // (An unreadable task: no live state, and a string where its hash would be.)
      await replaceWithNonHash(client, queue, damaged, "not a job");
      // Another's live state is bytes the scripts never write.
      await writeRawLive(client, queue, garbled, "garbage");
      await dropLive(client, queue, lost);
      await client.del(queue.keys.job(lost));
      const reconciler = new Reconciler(fork, queue, new DatabaseQueue(fork), new TaskLedger(fork), {
        graceMs: 0,
        batch: 2,
      });
      const report = await reconciler.run();
      expect(report).toMatchObject({ reenqueued: 1, settled: 0, unrunnable: 0 });
      expect([...(report.corrupt ?? [])].sort()).toEqual([damaged, garbled].sort());
      // The key is left as it was; the row still waits; the lost job is back.
      expect(await client.get(queue.keys.job(damaged))).toBe("not a job");
      expect(await row(damaged)).toMatchObject({ status: "queued", queueBackend: "redis" });
      const claimed = await run(queue.claim("w", ["low"], 5));
      expect(claimed.jobs.map((j) => j.id).sort()).toEqual([lost, live].sort());
      // And again on the next pass, which still gets through.
      expect(await reconciler.run()).toMatchObject({ reenqueued: 0, corrupt: [damaged] });
    });
  });

suite("sqlite", true);
suite("postgres", hasPostgres);
