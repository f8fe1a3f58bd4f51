import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { migrate, openDatabase } from "../../src/db/orm.js";
import { sqliteUrl } from "../support/databases.js";
import { QueueAdmin } from "../../src/queue/admin.js";
import { WorkerRegistry } from "../../src/queue/workers.js";
import { eventually, makeQueue } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";
import { CLI, supervisors } from "../support/processes.js";
import { testJob } from "../support/runtime.js";

/** A supervisor keeps the ledger, so it needs a migrated database (its rows: none, for these jobs). */
let ledgerUrl = "";
beforeAll(async () => {
  ledgerUrl = sqliteUrl();
  const orm = await openDatabase({ url: ledgerUrl, dataDir: "" });
  await migrate(orm);
  await orm.close();
});

const processes = supervisors();
const spawnSupervisor = (env: Record<string, string>, args: string[] = []) =>
  processes.spawnSupervisor({ DATABASE_URL: ledgerUrl, ...env }, args);

const ranLines = (log: string) =>
  existsSync(log)
    ? readFileSync(log, "utf8")
        .split("\n")
        .filter((l) => l.startsWith("ran "))
        .map((l) => {
          const [, id, attempt, pid] = l.split(" ");
          return { id: id!, attempt: Number(attempt), pid: Number(pid) };
        })
    : [];

describe("ratatoskr supervisor processes", () => {
  const redis = useRedis();
  afterEach(processes.killAll);

  it("SIGTERM during 20 running jobs: finished ones complete, the rest complete in another process", async () => {
    const log = join(mkdtempSync(join(tmpdir(), "rt-sigterm-")), "log");
    const queue = await makeQueue(redis);
    const short = Array.from({ length: 10 }, () => testJob("sleep", { ms: 2_000, steps: 2 }));
    const long = Array.from({ length: 10 }, () => testJob("sleep", { ms: 60_000, retryMs: 200 }));
    for (const j of [...short, ...long]) await run(queue.enqueue(j));
    const env = {
      REDIS_URL: redis.server.url,
      RT_LEASE_MS: "1000",
      RT_SHUTDOWN_MS: "3000",
      RT_TEST_LOG: log,
    };

    const first = spawnSupervisor(env, ["--concurrency", "20"]);
    const admin = new QueueAdmin(queue);
    await eventually(
      async () => (await run(admin.stats())).reduce((n, s) => n + s.running, 0) === 20,
      20_000,
      "20 running jobs",
    );
    // Half-way progress of every short job: they are really executing in the threads.
    await eventually(
      async () =>
        (await Promise.all(short.map((j) => run(queue.getJob(j.id))))).every((j) => j?.progress === 50),
      20_000,
      "the short jobs to be half done",
    );
    first.child.kill("SIGTERM");
    expect(await first.exited).toBe(0);
    expect(first.output()).toContain("SIGTERM: stopping");

    // The short jobs finished within the drain time; the long ones were given back, uncharged.
    for (const j of short) expect((await run(queue.getJob(j.id)))?.state).toBe("completed");
    for (const j of long)
      expect(await run(queue.getJob(j.id))).toMatchObject({ state: "queued", reclaims: 0 });
    expect(first.output()).toContain("10 unfinished jobs given back to the queue");

    const second = spawnSupervisor(env, ["--concurrency", "10"]);
    await eventually(
      async () =>
        (await Promise.all(long.map((j) => run(queue.getJob(j.id))))).every((j) => j?.state === "completed"),
      30_000,
      "the abandoned jobs to complete elsewhere",
    );
    const ran = ranLines(log);
    for (const j of long) {
      expect(ran.filter((r) => r.id === j.id)).toEqual([{ id: j.id, attempt: 2, pid: second.child.pid }]);
    }
    for (const j of short) {
      expect(ran.filter((r) => r.id === j.id)).toEqual([{ id: j.id, attempt: 1, pid: first.child.pid }]);
    }
    second.child.kill("SIGTERM");
    expect(await second.exited).toBe(0);
  }, 90_000);

  it("two supervisors on one Redis never run the same attempt twice", async () => {
    const log = join(mkdtempSync(join(tmpdir(), "rt-two-")), "log");
    const queue = await makeQueue(redis);
    const env = { REDIS_URL: redis.server.url, RT_TEST_LOG: log };
    const a = spawnSupervisor(env, ["--concurrency", "8"]);
    const b = spawnSupervisor(env, ["--concurrency", "8"]);
    const registry = new WorkerRegistry(queue);
    await eventually(async () => (await run(registry.list())).length === 2, 20_000, "both to register");
    // What an operator sees: both processes, with their group.
    const stats = spawnSync(process.execPath, [CLI, "stats"], {
      env: { ...process.env, ...env },
      encoding: "utf8",
    });
    expect(stats.status).toBe(0);
    for (const pid of [a.child.pid, b.child.pid])
      expect(stats.stdout).toMatch(new RegExp(`:${pid}:\\w+ +all\\[urgent>high>normal>low\\]x8`));

    const jobs = Array.from({ length: 300 }, (_, i) =>
      testJob("sleep", { ms: 20 }, (["urgent", "high", "normal", "low"] as const)[i % 4]),
    );
    for (const j of jobs) await run(queue.enqueue(j));
    await eventually(async () => ranLines(log).length >= 300, 60_000, "300 runs");
    await eventually(
      async () =>
        (await run(new QueueAdmin(queue).stats())).reduce((n, s) => n + s.completedLastHour, 0) === 300,
      10_000,
      "300 completions",
    );
    const ran = ranLines(log);
    const attempts = ran.map((r) => `${r.id}#${r.attempt}`);
    expect(new Set(attempts).size).toBe(attempts.length);
    expect(new Set(ran.map((r) => r.id))).toEqual(new Set(jobs.map((j) => j.id)));
    // Both processes took part.
    expect(new Set(ran.map((r) => r.pid))).toEqual(new Set([a.child.pid, b.child.pid]));
    a.child.kill("SIGTERM");
    b.child.kill("SIGTERM");
    expect(await a.exited).toBe(0);
    expect(await b.exited).toBe(0);
  }, 90_000);

  it("a second signal forces the exit", async () => {
    const queue = await makeQueue(redis);
    await run(queue.enqueue(testJob("ignoreAbort", { ms: 30_000 })));
    const proc = spawnSupervisor({ REDIS_URL: redis.server.url, RT_SHUTDOWN_MS: "60000" });
    await eventually(
      async () => (await run(new QueueAdmin(queue).stats())).some((s) => s.running === 1),
      20_000,
      "the job to start",
    );
    proc.child.kill("SIGTERM");
    await sleep(300);
    proc.child.kill("SIGINT");
    expect(await proc.exited).toBe(130);
    expect(proc.output()).toContain("SIGINT again: exiting now");
  }, 60_000);

  it("refuses bad flags and configuration with one clear line", async () => {
    const bad = spawnSupervisor({ REDIS_URL: redis.server.url }, ["--queues", "urgent,soon"]);
    expect(await bad.exited).toBe(1);
    expect(bad.output()).toContain('--queues takes priorities (urgent,high,normal,low), got "urgent,soon"');
    const badEnv = spawnSupervisor({ REDIS_URL: redis.server.url, RT_SHUTDOWN_MS: "soon" });
    expect(await badEnv.exited).toBe(1);
    expect(badEnv.output()).toContain('RT_SHUTDOWN_MS="soon" is not valid');
    const unmigrated = spawnSupervisor({ REDIS_URL: redis.server.url, DATABASE_URL: sqliteUrl() });
    expect(await unmigrated.exited).toBe(1);
    expect(unmigrated.output()).toContain("run `ratatoskr db migrate`");
  }, 90_000);
});
