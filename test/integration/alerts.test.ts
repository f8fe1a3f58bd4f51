import { createServer, type Server } from "node:http";
import { afterEach, describe, expect, it, onTestFinished } from "vitest";
import { PRIORITIES } from "../../src/domain/priority.js";
import { readSharedAlerts } from "../../src/alerts/center.js";
import { type AlertEntry, QueueAdmin } from "../../src/queue/admin.js";
import { WorkerRegistry } from "../../src/queue/workers.js";
import { freePort } from "../../src/redis/private-server.js";
import { type RuntimeHandle, start } from "../../src/runtime.js";
import { openLedgerDb } from "../support/ledger.js";
import { supervisors } from "../support/processes.js";
import { eventually, makeQueue } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";
import { testConfig, testJob } from "../support/runtime.js";

/**
 * Each alert rule provoked for real on a real Redis, through the embedded runtime: it fires
 * once, repeats while it holds, and resolves when cleared. Notices are read where operators read
 * them: the alerts stream (dashboard, `ratatoskr alerts`), the evaluator's stored state, the
 * webhook.
 */
const FAST = {
  RT_ALERT_INTERVAL_MS: "100",
  RT_HEARTBEAT_MS: "200",
  RT_HEALTH_INTERVAL_MS: "100",
  RT_HEALTH_TIMEOUT_MS: "100",
  RT_LOG_LEVEL: "error",
};

/** A worker process's registration as its heartbeat writes it, for a process that is not there. */
const fakeWorker = (id: string, restarts = 0) => ({
  id,
  host: "h",
  pid: 1,
  groups: [],
  startedAt: 0,
  active: 0,
  jobs: [],
  rssMb: 1,
  mode: "redis",
  outages: 0,
  restarts,
});

describe("alert rules", () => {
  const redis = useRedis();
  const runtimes: RuntimeHandle[] = [];
  const procs = supervisors();
  let hook: Server | undefined;
  afterEach(async () => {
    for (const r of runtimes.splice(0)) await r.stop({ graceful: false });
    await procs.killAll();
    hook?.close();
    hook = undefined;
  });

  const startRuntime = async (env: Record<string, string> = {}, concurrency = 4) => {
    const runtime = await start({
      config: testConfig(redis.server.url, { ...FAST, ...env }),
      groups: [{ name: "all", queues: PRIORITIES, concurrency }],
    });
    runtimes.push(runtime);
    return runtime;
  };
  const notices = async (runtime: RuntimeHandle, key: string): Promise<AlertEntry[]> =>
    (await run(new QueueAdmin(runtime.queue).alerts(500))).filter((a) => a.key === key).reverse();
  const states = async (runtime: RuntimeHandle, key: string) =>
    (await notices(runtime, key)).map((a) => a.state);
  const until = (runtime: RuntimeHandle, key: string, state: string, timeoutMs = 15_000) =>
    eventually(async () => (await states(runtime, key)).includes(state), timeoutMs, `${key} ${state}`);

  it("backlog: the oldest waiting job's age and the count of a paused priority fire, repeat, and resolve once it runs", async () => {
    const runtime = await startRuntime({
      RT_ALERT_WAIT_URGENT_S: "1",
      RT_ALERT_BACKLOG: "3",
      RT_ALERT_REPEAT_S: "1",
    });
    const admin = new QueueAdmin(runtime.queue);
    await run(admin.pause("urgent"));
    for (let i = 0; i < 3; i++) await run(runtime.queue.enqueue(testJob("echo", { text: `${i}` }, "urgent")));
    await until(runtime, "backlog_count:urgent", "firing");
    await until(runtime, "backlog_age:urgent", "firing");
    const [age] = await notices(runtime, "backlog_age:urgent");
    expect(age).toMatchObject({ level: "critical", rule: "backlog_age", source: runtime.workerId });
    expect(age?.message).toMatch(
      /^the oldest waiting urgent job has waited \d+ s \(alert at 1 s\) \(the priority is paused\)$/,
    );
    expect((await readSharedAlerts(runtime.queue)).map((a) => a.key).sort()).toEqual([
      "backlog_age:urgent",
      "backlog_count:urgent",
    ]);
    await until(runtime, "backlog_age:urgent", "repeat");

    await run(admin.resume("urgent"));
    await until(runtime, "backlog_age:urgent", "resolved");
    await until(runtime, "backlog_count:urgent", "resolved");
    for (const key of ["backlog_age:urgent", "backlog_count:urgent"]) {
      const seen = await states(runtime, key);
      expect(seen.filter((s) => s === "firing")).toHaveLength(1);
      expect(seen.at(-1)).toBe("resolved");
    }
    expect(await readSharedAlerts(runtime.queue)).toEqual([]);
  });

  it("failure rate and dead letters: fire on failing jobs; the rate resolves as successes dilute it, the count as the window moves on", async () => {
    const runtime = await startRuntime({
      RT_ALERT_FAILURE_MIN: "3",
      RT_ALERT_FAILURE_PCT: "50",
      RT_ALERT_DEAD_LETTERS: "2",
      RT_ALERT_WINDOW_MIN: "1",
    });
    for (let i = 0; i < 3; i++) await run(runtime.queue.enqueue(testJob("fail", { kind: "invalid" })));
    await until(runtime, "failure_rate", "firing");
    await until(runtime, "dead_letters", "firing");
    expect((await notices(runtime, "dead_letters"))[0]?.message).toMatch(
      /^[23] jobs dead-lettered over the last 1 min \(ratatoskr dead list\)$/,
    );
    for (let i = 0; i < 12; i++) await run(runtime.queue.enqueue(testJob("echo", { text: `${i}` })));
    await until(runtime, "failure_rate", "resolved");
    // The per-minute counters roll over within a minute; then the dead letters are out of the window.
    await until(runtime, "dead_letters", "resolved", 75_000);
  }, 90_000);

  it("heartbeat: a worker process that stops beating fires; it resolves when it beats again", async () => {
    const runtime = await startRuntime();
    // A supervisor keeps the ledger, so it needs a migrated database (its rows: none here).
    const db = await openLedgerDb("sqlite");
    onTestFinished(() => db.cleanup());
    const worker = procs.spawnSupervisor({
      REDIS_URL: redis.server.url,
      DATABASE_URL: db.url,
      ...FAST,
      RT_HEARTBEAT_MS: "300",
    });
    const registry = new WorkerRegistry(runtime.queue);
    let id = "";
    await eventually(
      async () => {
        id = (await run(registry.list())).find((w) => w.pid === worker.child.pid)?.id ?? "";
        return id !== "";
      },
      30_000,
      "the supervisor to register",
    );
    // Only what follows the stop counts (a loaded machine may have let one beat slip before).
    const key = `heartbeat_lapsed:${id}`;
    const earlier = (await states(runtime, key)).length;
    const since = async () => (await states(runtime, key)).slice(earlier);
    worker.child.kill("SIGSTOP");
    try {
      await eventually(async () => (await since()).includes("firing"), 15_000, `${key} firing`);
    } finally {
      worker.child.kill("SIGCONT");
    }
    await eventually(async () => (await since()).at(-1) === "resolved", 15_000, `${key} resolved`);
  }, 60_000);

  it("heartbeat: each process is judged by its own interval, not the evaluator's", async () => {
    // The evaluator beats every 200 ms (FAST); this process every second, its registration kept
    // five seconds (room for a slow machine). Judged by the evaluator's interval it would lapse
    // 600 ms after each beat.
    const runtime = await startRuntime();
    const registry = new WorkerRegistry(runtime.queue);
    const key = "heartbeat_lapsed:patient";
    const beat = () => run(registry.beat(fakeWorker("patient"), 5_000));
    for (let i = 0; i < 3; i++) {
      await beat();
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
    expect(await states(runtime, key)).toEqual([]);
    // It stops beating: five seconds later its registration lapses, and it fires,
    // though its hash has expired by then (the janitor forgets it only a minute later).
    await until(runtime, key, "firing");
    expect((await run(registry.list())).some((w) => w.id === "patient")).toBe(false);
    await run(registry.remove("patient"));
    await until(runtime, key, "resolved");
  }, 60_000);

  it("registry: an older version's worker is judged by the evaluator's interval; the janitor forgets a worker a minute after it lapsed", async () => {
    const queue = await makeQueue(redis);
    const registry = new WorkerRegistry(queue);
    const direct = redis.client();
    const now = Number((await direct.time())[0]) * 1000;
    // Each with its registration expired: one of an older version (a beat 10 s ago, no lapse
    // time), one lapsed 10 s ago, one 2 min ago, and a lapse time with no registry entry.
    await direct.zadd(queue.keys.workers, now - 10_000, "old", now - 20_000, "recent", now - 200_000, "long");
    await direct.zadd(
      queue.keys.workersLapse,
      now - 10_000,
      "recent",
      now - 120_000,
      "long",
      now - 120_000,
      "orphan",
    );
    await run(registry.beat(fakeWorker("alive"), 60_000));
    expect((await run(registry.lapsed(3_000))).sort()).toEqual(["long", "old", "orphan", "recent"]);
    expect(await run(registry.prune())).toMatchObject({ workers: 3 });
    expect((await direct.zrange(queue.keys.workers, "0", "-1")).sort()).toEqual(["alive", "recent"]);
    expect((await direct.zrange(queue.keys.workersLapse, "0", "-1")).sort()).toEqual(["alive", "recent"]);
  });

  it("restarts: a process whose actors keep restarting fires; it resolves when the process leaves", async () => {
    const runtime = await startRuntime({ RT_ALERT_RESTARTS: "3" });
    const registry = new WorkerRegistry(runtime.queue);
    const beat = (restarts: number) => run(registry.beat(fakeWorker("flaky", restarts), 60_000));
    await beat(1);
    await eventually(
      async () => (await run(registry.list())).some((w) => w.id === "flaky"),
      5_000,
      "the beat",
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    await beat(5);
    await until(runtime, "actor_restarts:flaky", "firing");
    expect((await notices(runtime, "actor_restarts:flaky"))[0]?.message).toContain(
      "restarted actors 4 times",
    );
    await run(registry.remove("flaky"));
    await until(runtime, "actor_restarts:flaky", "resolved");
  });

  it("Redis memory: fires near maxmemory and resolves when the limit is lifted", async () => {
    const runtime = await startRuntime({ RT_MEMORY_WARN_PCT: "80" });
    const direct = redis.client();
    const used = Number(/used_memory:(\d+)/.exec(await direct.info("memory"))?.[1]);
    await direct.config("SET", "maxmemory", String(Math.round(used / 0.85)));
    try {
      await until(runtime, "redis_memory", "firing");
    } finally {
      await direct.config("SET", "maxmemory", "0");
    }
    await until(runtime, "redis_memory", "resolved");
  });

  it("saturation: fires once every slot has been busy for the hold while jobs wait, resolves when they drain", async () => {
    const runtime = await startRuntime({ RT_ALERT_SATURATED_S: "1" }, 1);
    for (let i = 0; i < 3; i++) await run(runtime.queue.enqueue(testJob("sleep", { ms: 1_500 })));
    await until(runtime, "pool_saturated", "firing");
    const [fired] = await notices(runtime, "pool_saturated");
    expect(fired?.message).toBe(
      "every worker slot is busy (1 in 1 processes) while jobs wait: add workers or concurrency",
    );
    await until(runtime, "pool_saturated", "resolved", 20_000);
  });

  it("fallback: a process on the database queue says so while Redis is away, and resolves when it returns", async () => {
    const runtime = await startRuntime();
    const key = `fallback_mode:${runtime.workerId}`;
    await redis.server.kill();
    await eventually(
      () => runtime.status().alerts.active.some((a) => a.key === key),
      10_000,
      "the fallback alert in this process",
    );
    expect(runtime.status().alerts.recent[0]).toMatchObject({ state: "firing", severity: "warning", key });
    await redis.server.restart();
    await eventually(() => runtime.status().alerts.active.length === 0, 15_000, "the resolution");
    // Told while Redis was away, written to the (restarted, empty) stream once it is back.
    await until(runtime, key, "resolved");
    expect(await states(runtime, key)).toEqual(["firing", "resolved"]);
  });

  it("webhook: a hook that was down for a while receives every notice, in order, once it is up", async () => {
    const port = await freePort();
    const runtime = await startRuntime({
      RT_ALERT_WAIT_HIGH_S: "1",
      ALERT_WEBHOOK_URL: `http://127.0.0.1:${port}/hooks/ratatoskr`,
    });
    const admin = new QueueAdmin(runtime.queue);
    await run(admin.pause("high"));
    await run(runtime.queue.enqueue(testJob("echo", { text: "x" }, "high")));
    await until(runtime, "backlog_age:high", "firing");
    await run(admin.resume("high"));
    await until(runtime, "backlog_age:high", "resolved");
    // Nothing listens yet: both notices wait, retried with backoff (1 s, 2 s, ...): let a few
    // tries fail before the hook comes up.
    await new Promise((resolve) => setTimeout(resolve, 3_500));
    expect(runtime.status().actors["alert-webhook"]).toMatchObject({ running: true, restarts: 0 });
    const received: Array<{ path: string; type: string; body: Record<string, unknown> }> = [];
    hook = createServer((request, response) => {
      let text = "";
      request.on("data", (chunk: Buffer) => (text += chunk.toString()));
      request.on("end", () => {
        received.push({
          path: request.url ?? "",
          type: request.headers["content-type"] ?? "",
          body: JSON.parse(text) as Record<string, unknown>,
        });
        response.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => hook!.listen(port, "127.0.0.1", resolve));
    await eventually(() => received.length >= 2, 20_000, "the webhook deliveries");
    expect(received.map((r) => (r.body.alert as { state: string }).state)).toEqual(["firing", "resolved"]);
    expect(received[0]).toMatchObject({
      path: "/hooks/ratatoskr",
      type: "application/json",
      body: {
        source: runtime.workerId,
        queue: "caption",
        alert: { rule: "backlog_age", key: "backlog_age:high", severity: "warning", state: "firing" },
      },
    });
  }, 60_000);

  it("one evaluator among several processes: an alert fires once, and a successor carries it on", async () => {
    const a = await startRuntime({ RT_ALERT_WAIT_LOW_S: "1" });
    const b = await startRuntime({ RT_ALERT_WAIT_LOW_S: "1" });
    await eventually(
      () => [a, b].filter((r) => r.status().alerts.evaluator).length === 1,
      5_000,
      "one evaluator",
    );
    const admin = new QueueAdmin(a.queue);
    await run(admin.pause("low"));
    await run(a.queue.enqueue(testJob("echo", { text: "x" }, "low")));
    await until(a, "backlog_age:low", "firing");
    const [first, second] = a.status().alerts.evaluator ? [a, b] : [b, a];
    await first.stop();
    runtimes.splice(runtimes.indexOf(first), 1);
    await eventually(() => second.status().alerts.evaluator, 5_000, "the successor");
    await new Promise((resolve) => setTimeout(resolve, 500));
    await run(new QueueAdmin(second.queue).resume("low"));
    await until(second, "backlog_age:low", "resolved");
    const seen = await notices(second, "backlog_age:low");
    expect(seen.map((n) => n.state)).toEqual(["firing", "resolved"]);
    expect(seen.map((n) => n.source)).toEqual([first.workerId, second.workerId]);
  });
});
