import { spawnSync } from "node:child_process";
import { Either } from "effect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CaptionTask } from "../../src/db/entities.js";
import { PRIORITIES } from "../../src/domain/priority.js";
import { RedisHealth } from "../../src/health/redis-health.js";
import { QueueAdmin } from "../../src/queue/admin.js";
import { migrateToRedis, rollbackToDb } from "../../src/tasks/backend-switch.js";
import { TaskLedger } from "../../src/tasks/ledger.js";
import { TaskService } from "../../src/tasks/service.js";
import { hasPostgres, type LedgerDb, openLedgerDb, seedUser } from "../support/ledger.js";
import { CLI } from "../support/processes.js";
import { makeQueue } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";

const suite = (kind: "sqlite" | "postgres", enabled: boolean) =>
  describe.skipIf(!enabled)(`rollback to the database queue and migration back, on ${kind}`, () => {
    const redis = useRedis();
    let db: LedgerDb;
    const row = async (id: string) => (await db.orm.em.fork().findOne(CaptionTask, { id }))!;

    beforeAll(async () => {
      db = await openLedgerDb(kind);
    });
    afterAll(async () => {
      await db?.cleanup();
    });

    it("rolls back (waiting tasks move, running ones stay, every process switches) and migrates back, each idempotent", async () => {
      const queue = await makeQueue(redis);
      const service = new TaskService(db.orm, queue);
      const ledger = new TaskLedger(() => db.orm.em.fork());
      const ids: string[] = [];
      for (const priority of ["low", "urgent", "normal"] as const) {
        const submitted = await service.submit({ userId: (await seedUser(db.orm)).userId, priority });
        ids.push(Either.isRight(submitted) ? submitted.right.taskId : "");
      }
      const [low, urgent, normal] = ids as [string, string, string];
      const [running] = (await run(queue.claim("w", ["urgent"], 1))).jobs;
      expect(running?.id).toBe(urgent);
      expect(await ledger.markRunning(urgent, 1)).toBe(true);
      const admin = new QueueAdmin(queue);
      await run(admin.pause("high"));

      const dry = await rollbackToDb(db.orm, queue, { dryRun: true });
      expect(dry).toEqual({ dryRun: true, moved: 2, running: 1, paused: ["urgent", "normal", "low"] });
      expect((await row(low)).queueBackend).toBe("redis");

      const rolled = await rollbackToDb(db.orm, queue, { dryRun: false });
      expect(rolled).toEqual({ dryRun: false, moved: 2, running: 1, paused: ["urgent", "normal", "low"] });
      for (const id of [low, normal]) {
        expect((await row(id)).queueBackend).toBe("database");
        expect((await run(queue.getJob(id)))?.state).toBe("cancelled");
      }
      // The running one is left to finish, not cancelled.
      expect(await run(queue.getJob(urgent))).toMatchObject({ state: "running", cancelRequested: false });
      expect((await run(admin.stats())).every((s) => s.paused)).toBe(true);
      // Every process's health probe now holds the database queue.
      const health = new RedisHealth(redis.client(), {
        timeoutMs: 500,
        failureThreshold: 3,
        memoryWarnPercent: 80,
        backendKey: queue.keys.backend,
      });
      await health.check();
      expect(health.snapshot()).toMatchObject({ mode: "database", forced: true });
      expect(await rollbackToDb(db.orm, queue, { dryRun: false })).toEqual({
        dryRun: false,
        moved: 0,
        running: 1,
        paused: [],
      });

      // A row that can no longer become a job is reported, not moved.
      await db.orm.em.fork().nativeUpdate(CaptionTask, { id: normal }, { settingsJson: "{not json" });
      const dryBack = await migrateToRedis(db.orm, queue, { dryRun: true });
      expect(dryBack).toMatchObject({
        dryRun: true,
        waiting: { urgent: 0, high: 0, normal: 1, low: 1 },
        moved: 0,
        resumed: ["urgent", "normal", "low"],
      });
      expect(dryBack.invalid.map((i) => i.id)).toEqual([normal]);
      const migrating = migrateToRedis(db.orm, queue, { dryRun: false, settleMs: 500 });
      // The flag goes first, so every process leaves database mode before anything moves: none
      // is left taking the moved tasks back into the database queue.
      await new Promise((resolve) => setTimeout(resolve, 200));
      await health.check();
      expect(health.snapshot()).toMatchObject({ mode: "redis", forced: false });
      expect((await row(low)).queueBackend).toBe("database");
      // Resumed before the move too: a migration cut short leaves Redis working, not paused.
      expect((await run(admin.stats())).find((s) => s.priority === "low")?.paused).toBe(false);
      const back = await migrating;
      expect(back).toMatchObject({ moved: 1, invalid: [{ id: normal }] });
      expect(await row(low)).toMatchObject({ queueBackend: "redis", status: "queued" });
      expect(await row(normal)).toMatchObject({
        status: "failed",
        errorMessage: expect.stringMatching(/^cannot be run: /),
      });
      expect((await run(queue.getJob(low)))?.state).toBe("queued");
      const stats = await run(admin.stats());
      // What the rollback paused resumes; what an operator had paused stays paused.
      expect(Object.fromEntries(stats.map((s) => [s.priority, s.paused]))).toEqual({
        urgent: false,
        high: true,
        normal: false,
        low: false,
      });
      await health.check();
      expect(health.snapshot()).toMatchObject({ mode: "redis", forced: false });
      expect(await migrateToRedis(db.orm, queue, { dryRun: false })).toMatchObject({ moved: 0, resumed: [] });
      expect((await run(queue.claim("w2", PRIORITIES, 5))).jobs.map((j) => j.id)).toEqual([low]);
    });

    it.runIf(kind === "sqlite")("the CLI reports a dry run and changes nothing", async () => {
      const queue = await makeQueue(redis);
      await new TaskService(db.orm, queue, { health: { mode: () => "database" } }).submit({
        userId: (await seedUser(db.orm)).userId,
        priority: "high",
      });
      const cli = spawnSync(process.execPath, [CLI, "tasks", "migrate-to-redis", "--dry-run"], {
        env: { ...process.env, REDIS_URL: redis.server.url, DATABASE_URL: db.url },
        encoding: "utf8",
      });
      expect(cli.stderr).toBe("");
      expect(cli.stdout).not.toContain("invalid");
      expect(cli.status).toBe(0);
      expect(cli.stdout).toContain("waiting in the database: urgent 0, high 1, normal 0, low 0");
      expect(cli.stdout).toContain("would move 1 tasks to redis (dry run: nothing changed)");
      expect(await db.orm.em.fork().count(CaptionTask, { status: "queued", queueBackend: "database" })).toBe(
        1,
      );
    });
  });

suite("sqlite", true);
suite("postgres", hasPostgres);
