import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { Effect } from "effect";
import { CaptionTask as CaptionTaskRow } from "../../src/db/entities.js";
import { PRIORITIES } from "../../src/domain/priority.js";
import { connectRedis } from "../../src/redis/connection.js";
import type { RuntimeHandle } from "../../src/runtime.js";
import { TaskService } from "../../src/tasks/service.js";
import { hasPostgres, type LedgerDb, openLedgerDb } from "../support/ledger.js";
import { eventually } from "../support/queue.js";
import { useRedis } from "../support/redis.js";
import { TcpProxy } from "../support/tcp-proxy.js";
import {
  countByStatus,
  report,
  runLog,
  seedUsers,
  startCaptionRuntime,
  submitOne,
  verdict,
} from "./support.js";

/**
 * The fault-injection suite: real redis-server processes killed, paused and kept away, and a
 * real PostgreSQL cut off behind a TCP proxy, while a caption runtime works. Each scenario
 * prints what it measured.
 */
describe("faults", () => {
  const redis = useRedis();
  let runtime: RuntimeHandle | undefined;
  let db: LedgerDb | undefined;

  afterEach(async () => {
    await runtime?.stop({ graceful: false });
    runtime = undefined;
    await db?.cleanup();
    db = undefined;
  });

  const allCompleted = (ids: readonly string[], timeoutMs: number, what: string) =>
    eventually(async () => (await countByStatus(db!.orm, ids)).completed === ids.length, timeoutMs, what);

  // Claimed by the main thread and sent to the threads, and claimed in the threads themselves.
  it.each(["main", "threads"] as const)(
    "(a) Redis killed during 500 queued and running tasks, back empty: all 500 complete exactly once (claims in %s)",
    async (claimIn) => {
      db = await openLedgerDb("sqlite");
      const log = runLog();
      runtime = await startCaptionRuntime(redis.server.url, db.url, { RT_CLAIM_IN: claimIn });
      const service = new TaskService(db.orm, runtime.queue, { health: runtime.health });
      const users = await seedUsers(db.orm, 500);
      const ids = (
        await Promise.all(users.map((u, i) => submitOne(service, u, PRIORITIES[i % 4]!, 0.15)))
      ).map((s) => s.taskId);
      await eventually(
        async () => {
          // Mid-batch: tasks of one batch start and end together, so wait for some to be running.
          const counts = await countByStatus(db!.orm, ids);
          return (counts.completed ?? 0) >= 16 && (counts.running ?? 0) >= 8;
        },
        30_000,
        "work under way",
      );
      const before = await countByStatus(db.orm, ids);
      const killedAt = Date.now();
      await redis.server.kill();
      await eventually(async () => runtime!.health.mode() === "database", 10_000, "the outage noticed");
      const detectedMs = Date.now() - killedAt;
      await sleep(1_500);
      await redis.server.restart();
      const restartedAt = Date.now();
      await allCompleted(ids, 120_000, "all 500 tasks");
      const recoveryMs = Date.now() - restartedAt;
      const result = await verdict(db.orm, ids, log);
      report(`(a, claims in ${claimIn})`, {
        runningAtKill: before.running ?? 0,
        completedAtKill: before.completed ?? 0,
        detectionMs: detectedMs,
        recoveryMs,
        ...result,
      });
      expect(before.running).toBeGreaterThan(0);
      expect(before.queued).toBeGreaterThan(0);
      expect(result).toMatchObject({ tasks: 500, completed: 500, lost: 0, unbacked: 0 });
      expect(result.duplicates).toBe(0);
      expect(runtime.health.snapshot().transitions).toEqual({ toDatabase: 1, toRedis: 1 });
    },
    180_000,
  );

  it("(b) Redis paused 10 s under steady submissions: none fails, noticed in under 5 s, all complete", async () => {
    db = await openLedgerDb("sqlite");
    const log = runLog();
    // The default health settings: a ping a second, three misses.
    runtime = await startCaptionRuntime(redis.server.url, db.url);
    const service = new TaskService(db.orm, runtime.queue, { health: runtime.health });
    const users = await seedUsers(db.orm, 300);
    const submissions: Array<Promise<{ taskId: string; backend: string; ms: number }>> = [];
    const admin = connectRedis(redis.server.url);
    let pausedAt = 0;
    let detectedAt = 0;
    const watch = setInterval(() => {
      if (pausedAt && !detectedAt && runtime?.health.mode() === "database") detectedAt = Date.now();
    }, 20);
    try {
      for (const [i, userId] of users.entries()) {
        if (i === 40) {
          pausedAt = Date.now();
          await admin.call("CLIENT", "PAUSE", "10000", "ALL");
        }
        submissions.push(submitOne(service, userId, PRIORITIES[i % 4]!, 0.1));
        await sleep(50);
      }
      const settled = await Promise.allSettled(submissions);
      const failed = settled.filter((s) => s.status === "rejected");
      expect(failed).toEqual([]);
      const accepted = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
      const ids = accepted.map((s) => s.taskId);
      await allCompleted(ids, 120_000, "all submitted tasks");
      const result = await verdict(db.orm, ids, log);
      const slowest = Math.max(...accepted.map((s) => s.ms));
      report("(b)", {
        submissions: accepted.length,
        failedSubmissions: failed.length,
        toDatabase: accepted.filter((s) => s.backend === "database").length,
        slowestSubmitMs: slowest,
        detectionMs: detectedAt - pausedAt,
        ...result,
      });
      expect(detectedAt).toBeGreaterThan(0);
      expect(detectedAt - pausedAt).toBeLessThan(5_000);
      expect(result).toMatchObject({ lost: 0, duplicates: 0, unbacked: 0 });
    } finally {
      clearInterval(watch);
      admin.disconnect();
    }
  }, 180_000);

  it("(c) Redis down for the whole run: every task completes through the database", async () => {
    db = await openLedgerDb("sqlite");
    const log = runLog();
    await redis.server.kill();
    runtime = await startCaptionRuntime(redis.server.url, db.url);
    const service = new TaskService(db.orm, runtime.queue, { health: runtime.health });
    const users = await seedUsers(db.orm, 60);
    const submitted = await Promise.all(users.map((u, i) => submitOne(service, u, PRIORITIES[i % 4]!, 0.1)));
    const ids = submitted.map((s) => s.taskId);
    await allCompleted(ids, 60_000, "every task through the database");
    const result = await verdict(db.orm, ids, log);
    report("(c)", {
      slowestSubmitMs: Math.max(...submitted.map((s) => s.ms)),
      viaDatabase: submitted.filter((s) => s.backend === "database").length,
      ...result,
    });
    expect(submitted.every((s) => s.backend === "database")).toBe(true);
    expect(result).toMatchObject({ tasks: 60, lost: 0, duplicates: 0, unbacked: 0 });
    expect(runtime.health.mode()).toBe("database");
  }, 120_000);

  it.skipIf(!hasPostgres)(
    "(e) PostgreSQL unreachable for 3 s: nothing lost or run twice, every task completes after it returns",
    async () => {
      db = await openLedgerDb("postgres");
      const log = runLog();
      const target = new URL(db.url);
      const proxy = await TcpProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
      const viaProxy = new URL(db.url);
      viaProxy.port = String(proxy.port);
      try {
        runtime = await startCaptionRuntime(redis.server.url, viaProxy.toString());
        // The web side keeps its own path to the database.
        const service = new TaskService(db.orm, runtime.queue, { health: runtime.health });
        const users = await seedUsers(db.orm, 60);
        const ids = (
          await Promise.all(users.map((u, i) => submitOne(service, u, PRIORITIES[i % 4]!, 2)))
        ).map((s) => s.taskId);
        // Cut while jobs run, so some end and the next ones start during the outage (two-second
        // jobs, 60 of them on 16 slots: claims go on past the 3 s cut).
        await eventually(
          async () => ((await countByStatus(db!.orm, ids)).running ?? 0) >= 8,
          30_000,
          "jobs running",
        );
        await proxy.cut();
        const cutAt = Date.now();
        await sleep(3_000);
        await proxy.restore();
        await allCompleted(ids, 90_000, "every task after the database returned");
        const result = await verdict(db.orm, ids, log);
        // A job that could not start because the ledger was away was given back uncharged: every
        // task completed on the first attempt its run counted. How many were postponed depends on
        // what was in flight at the cut: reported, not asserted.
        const jobs = await Promise.all(ids.map((id) => Effect.runPromise(runtime!.queue.getJob(id))));
        const charged = jobs.filter((job) => !job || job.attempt - job.uncounted !== 1).length;
        const postponed = jobs.reduce((n, job) => n + (job?.uncounted ?? 0), 0);
        report("(e)", {
          outageMs: 3_000,
          recoveredAfterMs: Date.now() - cutAt,
          postponed,
          charged,
          ...result,
        });
        expect(result).toMatchObject({ tasks: 60, lost: 0, duplicates: 0, unbacked: 0 });
        expect(charged).toBe(0);
        // What the task shows: no retries.
        const rows = await db.orm.em.fork().find(CaptionTaskRow, { id: { $in: ids } });
        expect(rows.filter((r) => r.retryCount !== 0).map((r) => r.retryCount)).toEqual([]);
        const counted = runtime.metrics.ended
          .samples()
          .filter((sample) => sample.labels?.outcome === "postponed")
          .reduce((n, sample) => n + sample.value, 0);
        expect(counted).toBe(postponed);
      } finally {
        await proxy.cut();
      }
    },
    150_000,
  );
});
