import { Either } from "effect";
import { describe, expect, it } from "vitest";
import { QueueAdmin } from "../../src/queue/admin.js";
import { TaskService } from "../../src/tasks/service.js";
import { eventually } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";
import { useWebServer } from "../support/web.js";

type Who = "anonymous" | "owner" | "stranger" | "admin";

describe("the admin API, and who may call what", () => {
  const redis = useRedis();
  // Alert rules judged every 100 ms, urgent jobs older than 1 s: the alerts API test provokes one.
  const web = useWebServer(redis, { env: { RT_ALERT_INTERVAL_MS: "100", RT_ALERT_WAIT_URGENT_S: "1" } });

  const call = async (method: string, path: string, token?: string, json?: unknown) => {
    const headers: Record<string, string> = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (json !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(`${web.base}${path}`, {
      method,
      headers,
      ...(json === undefined ? {} : { body: JSON.stringify(json) }),
    });
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are checked field by field
    return { status: response.status, body: (await response.json()) as Record<string, any> };
  };

  const startTask = async (token: string, settings: Record<string, unknown> = {}) =>
    (await call("POST", "/caption/start", token, settings)).body.data.task_id as string;

  it("answers every route by role: 401 without a token, 403 for admin routes, 404 for others' tasks", async () => {
    const owner = await web.account();
    const stranger = await web.account();
    const admin = await web.account("admin");
    const taskId = await startTask(owner.token, { processing_delay: 0.1 });
    await eventually(async () => (await web.row(taskId)).status === "completed", 15_000, "the task");
    const tokens: Record<Who, string | undefined> = {
      anonymous: undefined,
      owner: owner.token,
      stranger: stranger.token,
      admin: admin.token,
    };
    const taskRoutes: Array<[string, string]> = [
      ["GET", `/caption/api/status/${taskId}`],
      ["GET", `/api/caption_generation/status/${taskId}`],
      ["GET", `/api/caption_generation/results/${taskId}`],
    ];
    const adminRoutes: Array<[string, string, unknown?]> = [
      ["GET", "/admin/api/jobs"],
      ["GET", "/admin/api/jobs/active"],
      ["GET", `/admin/api/jobs/${taskId}/details`],
      ["PUT", `/admin/api/jobs/${taskId}/priority`, { priority: "low" }],
      ["POST", `/admin/api/jobs/${taskId}/restart`],
      ["POST", `/admin/api/jobs/${taskId}/cancel`, { reason: "test" }],
      ["GET", "/admin/api/rq/queue-stats"],
      ["POST", "/admin/api/rq/queue-management", { action: "resume_queue", queue_name: "low" }],
      ["GET", "/admin/api/rq/health-check"],
      ["GET", "/admin/api/workers"],
      ["GET", "/admin/api/dead"],
      ["POST", "/admin/api/dead/low/retry", { entry_ids: [] }],
      ["POST", "/admin/api/dead/low/purge", { entry_ids: [] }],
    ];
    const seen: string[] = [];
    for (const who of ["anonymous", "owner", "stranger", "admin"] as const) {
      for (const [method, path] of taskRoutes) {
        const { status } = await call(method, path, tokens[who]);
        seen.push(`${who} ${method} ${path.split("/").slice(0, -1).join("/")} ${status}`);
        const expected = { anonymous: 401, owner: 200, stranger: 404, admin: 200 }[who];
        expect(status, `${who} ${method} ${path}`).toBe(expected);
      }
      for (const [method, path, body] of adminRoutes) {
        const { status } = await call(method, path, tokens[who], body);
        if (who === "admin") expect(status, `${who} ${method} ${path}`).toBeLessThan(500);
        else expect(status, `${who} ${method} ${path}`).toBe(who === "anonymous" ? 401 : 403);
        if (who === "admin" && !path.includes(taskId)) expect(status, `${method} ${path}`).toBe(200);
      }
    }
    expect(seen).toHaveLength(12);
  });

  it("lists and filters jobs, moves a waiting task to another priority, and cancels with a reason on record", async () => {
    const admin = await web.account("admin");
    const user = await web.account();
    // Normal paused: the user's task waits.
    const paused = await call("POST", "/admin/api/rq/queue-management", admin.token, {
      action: "pause_queue",
      queue_name: "normal",
    });
    expect(paused.body).toMatchObject({ success: true, changed: true });
    const taskId = await startTask(user.token, { processing_delay: 30 });
    expect((await web.row(taskId)).status).toBe("queued");

    const listed = await call("GET", `/admin/api/jobs?status=queued&user_id=${user.userId}`, admin.token);
    expect(listed.body).toMatchObject({
      success: true,
      total: 1,
      jobs: [{ task_id: taskId, priority: "normal" }],
    });
    const paged = await call("GET", "/admin/api/jobs?limit=1&offset=0", admin.token);
    expect(paged.body.jobs).toHaveLength(1);
    expect((await call("GET", "/admin/api/jobs?limit=0", admin.token)).status).toBe(400);
    expect((await call("GET", "/admin/api/jobs?status=sleeping", admin.token)).status).toBe(400);
    const active = await call("GET", "/admin/api/jobs/active", admin.token);
    expect(active.body.jobs.map((j: { task_id: string }) => j.task_id)).toContain(taskId);
    const details = await call("GET", `/admin/api/jobs/${taskId}/details`, admin.token);
    expect(details.body).toMatchObject({
      job: { task_id: taskId, settings: { processing_delay: 30 } },
      queue: { state: "queued", priority: "normal" },
    });

    // To high, which is not paused: it runs.
    const moved = await call("PUT", `/admin/api/jobs/${taskId}/priority`, admin.token, { priority: "high" });
    expect(moved.body).toEqual({ success: true, task_id: taskId, priority: "high" });
    await eventually(async () => (await web.row(taskId)).status === "running", 10_000, "the task to run");
    expect((await web.row(taskId)).priority).toBe("high");
    const late = await call("PUT", `/admin/api/jobs/${taskId}/priority`, admin.token, { priority: "low" });
    expect(late).toMatchObject({ status: 409, body: { error_type: "not_waiting", status: "running" } });

    expect((await call("POST", `/admin/api/jobs/${taskId}/cancel`, admin.token, {})).status).toBe(400);
    const tooLong = await call("POST", `/admin/api/jobs/${taskId}/cancel`, admin.token, {
      reason: "x".repeat(501),
    });
    expect(tooLong.status).toBe(400);
    const cancelled = await call("POST", `/admin/api/jobs/${taskId}/cancel`, admin.token, {
      reason: "abusive content",
    });
    expect(cancelled.body).toMatchObject({ success: true, status: "cancelling" });
    await eventually(async () => (await web.row(taskId)).status === "cancelled", 10_000, "the cancel");
    expect(await web.row(taskId)).toMatchObject({
      cancelledByAdmin: true,
      adminUserId: admin.userId,
      cancellationReason: "abusive content",
    });
    const restarted = await call("POST", `/admin/api/jobs/${taskId}/restart`, admin.token);
    expect(restarted.status).toBe(202);
    await call("POST", "/admin/api/rq/queue-management", admin.token, {
      action: "resume_queue",
      queue_name: "normal",
    });
    await eventually(
      async () => (await web.row(restarted.body.task_id)).status === "completed",
      60_000,
      "restart",
    );
  });

  it("clears a paused priority's waiting tasks, and their rows say so at once", async () => {
    const admin = await web.account("admin");
    const manage = (action: string) =>
      call("POST", "/admin/api/rq/queue-management", admin.token, { action, queue_name: "low" });
    expect((await manage("pause_queue")).body).toMatchObject({ changed: true });
    const service = new TaskService(web.runtime.orm!, web.runtime.queue);
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const submitted = await service.submit({ userId: (await web.account()).userId, priority: "low" });
      ids.push(Either.isRight(submitted) ? submitted.right.taskId : "");
    }
    const cleared = await manage("clear_queue");
    expect(cleared.body).toEqual({ success: true, action: "clear_queue", queue_name: "low", cleared: 2 });
    for (const id of ids)
      expect(await web.row(id)).toMatchObject({
        status: "cancelled",
        cancellationReason: expect.stringMatching(/^cleared by an administrator \(.+\)$/),
      });
    await manage("resume_queue");
  });

  it("writes one audit row per admin action, and each task's trail says who did what", async () => {
    const admin = await web.account("admin");
    const actor = `admin:${admin.userId}`;
    const manage = (action: string, queue: string) =>
      call("POST", "/admin/api/rq/queue-management", admin.token, { action, queue_name: queue });
    const service = new TaskService(web.runtime.orm!, web.runtime.queue);
    const submit = async (priority: "low") => {
      const user = await web.account();
      const submitted = await service.submit({ userId: user.userId, priority });
      return { user, taskId: Either.isRight(submitted) ? submitted.right.taskId : "" };
    };

    await manage("pause_queue", "low");
    await manage("pause_queue", "normal");
    const a = await submit("low");
    await call("PUT", `/admin/api/jobs/${a.taskId}/priority`, admin.token, { priority: "normal" });
    await call("POST", `/admin/api/jobs/${a.taskId}/cancel`, admin.token, { reason: "duplicate" });
    const restarted = await call("POST", `/admin/api/jobs/${a.taskId}/restart`, admin.token);
    await manage("clear_queue", "normal");
    await manage("resume_queue", "low");
    await manage("resume_queue", "normal");
    // A task dead at once (no retries; the test job fails every run's first attempt at 13 posts),
    // retried from its dead letter (and dead again), then purged.
    const d = { taskId: await web.doomedTask((await web.account()).userId, "high") };
    await eventually(async () => (await web.row(d.taskId)).status === "failed", 15_000, "the task to fail");
    const [letter] = (await call("GET", "/admin/api/dead?priority=high", admin.token)).body.dead;
    await call("POST", "/admin/api/dead/high/retry", admin.token, { entry_ids: [letter.entryId] });
    await eventually(
      async () => (await web.row(d.taskId)).attempt === 2 && (await web.row(d.taskId)).status === "failed",
      15_000,
      "the second run",
    );
    await call("POST", "/admin/api/dead/high/purge", admin.token, { all: true });

    const mine = (await call("GET", `/admin/api/audit?actor=${actor}&limit=1000`, admin.token)).body
      .audit as Array<{
      action: string;
    }>;
    const counts: Record<string, number> = {};
    for (const row of mine) counts[row.action] = (counts[row.action] ?? 0) + 1;
    expect(counts).toEqual({
      queue_paused: 2,
      priority_changed: 1,
      cancelled: 1,
      restarted: 1,
      // The restart's new task is the admin's doing too.
      created: 1,
      queue_cleared: 1,
      queue_resumed: 2,
      reopened: 1,
      dead_letter_purged: 1,
    });

    const trail = (id: string) =>
      call("GET", `/admin/api/jobs/${id}/audit`, admin.token).then(
        (r) =>
          r.body.audit as Array<{ action: string; actor: string; from_status: string; to_status: string }>,
      );
    expect((await trail(a.taskId)).map((t) => [t.action, t.actor, t.from_status, t.to_status])).toEqual([
      ["created", `user:${a.user.userId}`, null, "queued"],
      ["priority_changed", actor, "queued", "queued"],
      ["cancelled", actor, "queued", "cancelled"],
      ["restarted", actor, "cancelled", "cancelled"],
    ]);
    // The restart, cleared by the admin's clear_queue: the runtime settled it from Redis.
    expect((await trail(restarted.body.task_id)).map((t) => [t.action, t.to_status])).toEqual([
      ["created", "queued"],
      ["cancelled", "cancelled"],
    ]);
    expect((await trail(d.taskId)).map((t) => t.action)).toEqual([
      "created",
      "started",
      "failed",
      "reopened",
      "started",
      "failed",
      "dead_letter_purged",
    ]);
    // Shown with the task's details too.
    const details = await call("GET", `/admin/api/jobs/${a.taskId}/details`, admin.token);
    expect(details.body.audit).toHaveLength(4);
  }, 60_000);

  it("reports queues, health and workers, and retries a dead letter with its ledger row", async () => {
    const admin = await web.account("admin");
    const user = await web.account();
    const taskId = await web.doomedTask(user.userId, "low");
    await eventually(async () => (await web.row(taskId)).status === "failed", 15_000, "the task to fail");

    const stats = await call("GET", "/admin/api/rq/queue-stats", admin.token);
    expect(stats.body).toMatchObject({
      success: true,
      backend: "redis",
      database: { failed: expect.any(Number) },
    });
    expect(stats.body.queues.find((q: { priority: string }) => q.priority === "low")).toMatchObject({
      dead: 1,
    });
    const health = await call("GET", "/admin/api/rq/health-check", admin.token);
    expect(health.body).toMatchObject({ healthy: true, runtime: "running", redis: { mode: "redis" } });
    // Each test starts from an empty Redis: the registration is back at the next heartbeat.
    await eventually(
      async () => (await call("GET", "/admin/api/workers", admin.token)).body.workers.length > 0,
      15_000,
      "the heartbeat",
    );
    const workers = await call("GET", "/admin/api/workers", admin.token);
    expect(workers.body.workers[0]).toMatchObject({ id: web.runtime.workerId, mode: "redis" });

    const dead = await call("GET", "/admin/api/dead?priority=low", admin.token);
    expect(dead.body.dead).toEqual([expect.objectContaining({ taskId, priority: "low" })]);
    const entryId = dead.body.dead[0].entryId as string;
    const retried = await call("POST", "/admin/api/dead/low/retry", admin.token, { entry_ids: [entryId] });
    expect(retried.body).toMatchObject({ retried: 1, results: [{ task_id: taskId, outcome: "ok" }] });
    // The row was reopened and the task ran again, as attempt 2 (a new run: this test job fails
    // every run's first attempt, so it failed again, and is a dead letter again).
    await eventually(
      async () => {
        const row = await web.row(taskId);
        return row.attempt === 2 && row.status === "failed";
      },
      15_000,
      "the second run",
    );
    expect((await call("GET", "/admin/api/dead?priority=low", admin.token)).body.dead).toEqual(
      expect.not.arrayContaining([expect.objectContaining({ entryId })]),
    );
    const purged = await call("POST", "/admin/api/dead/low/purge", admin.token, { all: true });
    expect(purged.body).toEqual({ success: true, purged: 1 });
    expect(await run(new QueueAdmin(web.runtime.queue).listDead({ priority: "low" }))).toEqual([]);
  });

  it("exposes Prometheus metrics: counters of this process, and gauges read at the scrape", async () => {
    const user = await web.account();
    const taskId = await startTask(user.token, { processing_delay: 0.1 });
    await eventually(async () => (await web.row(taskId)).status === "completed", 15_000, "the task");
    const response = await fetch(`${web.base}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const text = await response.text();
    const value = (line: string) =>
      Number(new RegExp(`^${line.replace(/[{}"+.]/g, "\\$&")} (\\S+)$`, "m").exec(text)?.[1]);
    expect(
      value('ratatoskr_tasks_submitted_total{priority="normal",backend="redis"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(
      value('ratatoskr_attempts_total{priority="normal",outcome="completed",backend="redis"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(
      value('ratatoskr_job_duration_seconds_bucket{priority="normal",backend="redis",le="+Inf"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(value("ratatoskr_redis_up")).toBe(1);
    expect(value('ratatoskr_queue_jobs{priority="urgent",state="waiting"}')).toBe(0);
    expect(value("ratatoskr_fallback_mode")).toBe(0);
    expect(value('ratatoskr_actor_restarts_total{actor="dispatcher:all"}')).toBe(0);
    expect(text).toContain("# TYPE ratatoskr_job_duration_seconds histogram");
  });

  it("lists active and recent alerts to admins only; a backlog alert fires and resolves", async () => {
    const user = await web.account();
    const admin = await web.account("admin");
    const path = "/admin/api/rq/monitoring/alerts";
    expect((await call("GET", path, user.token)).status).toBe(403);
    expect((await call("GET", `${path}?limit=0`, admin.token)).body).toMatchObject({
      error_type: "validation_error",
    });
    type Notice = { key: string; state: string };
    // Earlier tests' failures may raise alerts of their own: only this one is followed.
    const backlog = async () => {
      const body = (await call("GET", path, admin.token)).body;
      const active = (body.active as Notice[]).filter((a) => a.key === "backlog_age:urgent");
      const recent = (body.recent as Notice[]).filter((a) => a.key === "backlog_age:urgent");
      return { body, active, recent: recent.map((r) => r.state) };
    };

    const queueAdmin = new QueueAdmin(web.runtime.queue);
    await run(queueAdmin.pause("urgent"));
    const taskId = await web.doomedTask(user.userId, "urgent");
    try {
      await eventually(async () => (await backlog()).active.length === 1, 15_000, "the backlog alert");
      const firing = await backlog();
      expect(firing.body).toMatchObject({ success: true, complete: true });
      expect(firing.active[0]).toMatchObject({ rule: "backlog_age", severity: "critical" });
      const alert = firing.active[0] as unknown as Record<string, string>;
      expect(alert.message).toContain("(the priority is paused)");
      expect(Date.parse(alert.since!)).toBeLessThanOrEqual(Date.parse(alert.fired_at!));
      expect(firing.recent).toEqual(["firing"]);
    } finally {
      await run(queueAdmin.resume("urgent"));
    }
    await eventually(async () => (await backlog()).active.length === 0, 15_000, "the resolution");
    expect((await backlog()).recent).toEqual(["resolved", "firing"]);
    await eventually(async () => (await web.row(taskId)).status === "failed", 15_000, "the task to end");
  });
});
