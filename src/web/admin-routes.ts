import type { MikroORM } from "@mikro-orm/core";
import { Effect, Either } from "effect";
import { AuditEntry, CaptionTask, User } from "../db/entities.js";
import { TASK_STATUSES } from "../domain/status.js";
import { isPriority, PRIORITIES, type Priority } from "../domain/priority.js";
import { parseTaskId } from "../domain/task-id.js";
import { QueueAdmin } from "../queue/admin.js";
import type { Queue } from "../queue/queue.js";
import { WorkerRegistry } from "../queue/workers.js";
import type { RuntimeStatus } from "../runtime.js";
import { actorOf, auditTrail, writeAudit } from "../tasks/audit.js";
import type { TaskService } from "../tasks/service.js";
import { authenticate, type Caller, requireAdmin } from "./auth.js";
import { HttpError, reply, type Reply, type Request } from "./http.js";
import { readSharedAlerts } from "../alerts/center.js";
import { safeText } from "./public-error.js";
import type { Router } from "./router.js";

const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(effect);

const iso = (d: Date | null | undefined) => (d ? d.toISOString() : null);

const jobJson = (row: CaptionTask) => ({
  task_id: row.id,
  user_id: row.userId,
  platform_connection_id: row.platformConnectionId,
  status: row.status,
  priority: row.priority,
  progress_percent: row.progressPercent,
  current_step: row.currentStep,
  created_at: iso(row.createdAt),
  started_at: iso(row.startedAt),
  completed_at: iso(row.completedAt),
  // Admins too see only error text fit to leave the server; the whole of it is in the log.
  error_message: row.errorMessage === null ? null : safeText(row.errorMessage, 2000),
  retry_count: row.retryCount,
  max_retries: row.maxRetries,
  attempt: row.attempt,
  queue_backend: row.queueBackend,
  cancelled_by_admin: row.cancelledByAdmin,
  admin_user_id: row.adminUserId,
  cancellation_reason: row.cancellationReason,
});

const intParam = (value: string | null, name: string, fallback: number, min: number, max: number) => {
  if (value === null || value === "") return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new HttpError(400, "validation_error", `${name} must be a whole number from ${min} to ${max}`, {
      details: [{ field: name, message: `must be a whole number from ${min} to ${max}` }],
    });
  return n;
};

const priorityParam = (value: unknown, field = "queue_name"): Priority => {
  if (!isPriority(value))
    throw new HttpError(400, "validation_error", `${field} must be one of ${PRIORITIES.join(", ")}`, {
      details: [{ field, message: `must be one of ${PRIORITIES.join(", ")}` }],
    });
  return value;
};

const taskIdParam = (request: Request): string => {
  const id = parseTaskId(request.params[0]);
  if (id._tag === "None") throw new HttpError(400, "invalid_task_id", "the task id is not a valid task id");
  return id.value;
};

const notFound = () => new HttpError(404, "not_found", "no such task");

const auditJson = (a: AuditEntry) => ({
  id: a.id,
  task_id: a.taskId,
  user_id: a.userId,
  action: a.action,
  actor: a.actor,
  from_status: a.fromStatus,
  to_status: a.toStatus,
  attempt: a.attempt,
  priority: a.priority,
  reason: a.reason === null ? null : safeText(a.reason, 2000),
  processing_seconds: a.processingSeconds,
  at: iso(a.createdAt),
});

/**
 * `q`: the start of a task id, or a user's name (exact). Ids are lower-case hex with
 * dashes, so the prefix is checked to be one before it goes into a LIKE.
 */
const searchWhere = async (orm: MikroORM, q: string | null) => {
  const text = (q ?? "").trim();
  if (text === "") return {};
  if (text.length > 100) throw new HttpError(400, "validation_error", "q is at most 100 characters");
  const users = await orm.em.fork().find(User, { username: text }, { fields: ["id"] });
  const idPrefix = /^[0-9a-f-]{1,36}$/i.test(text) ? [{ id: { $like: `${text.toLowerCase()}%` } }] : [];
  const byUser = users.length > 0 ? [{ userId: { $in: users.map((u) => u.id) } }] : [];
  const either = [...idPrefix, ...byUser];
  // Nothing can match: an id that matches no row keeps the answer empty.
  return { $or: either.length > 0 ? either : [{ id: "" }] };
};

/**
 * The admin API (role admin): tasks across users, queue stats and management, workers, health,
 * and the dead letters. Every route answers 401 without a token and 403 for other roles.
 */
export const adminRoutes = (
  router: Router,
  deps: { orm: MikroORM; tasks: TaskService; queue: Queue; runtime: () => RuntimeStatus },
): Router => {
  const { orm, tasks, queue } = deps;
  const admin = new QueueAdmin(queue);
  const asAdmin =
    (handler: (request: Request, caller: Caller) => Promise<Reply>) =>
    async (request: Request): Promise<Reply> =>
      handler(request, requireAdmin(await authenticate(orm, request.header("authorization"))));

  return router
    .add(
      "GET",
      "/admin/api/jobs",
      asAdmin(async (request) => {
        const status = request.query.get("status");
        if (status && !(TASK_STATUSES as readonly string[]).includes(status))
          throw new HttpError(400, "validation_error", `status must be one of ${TASK_STATUSES.join(", ")}`);
        const userId = request.query.get("user_id");
        const priority = request.query.get("priority");
        const limit = intParam(request.query.get("limit"), "limit", 50, 1, 500);
        const offset = intParam(request.query.get("offset"), "offset", 0, 0, 10_000_000);
        const where = {
          ...(status ? { status: status as CaptionTask["status"] } : {}),
          ...(priority ? { priority: priorityParam(priority, "priority") } : {}),
          ...(userId ? { userId: intParam(userId, "user_id", 0, 1, 2 ** 31 - 1) } : {}),
          ...(await searchWhere(orm, request.query.get("q"))),
        };
        const [rows, total] = await orm.em
          .fork()
          .findAndCount(CaptionTask, where, { orderBy: { createdAt: "desc", id: "asc" }, limit, offset });
        return reply(200, { success: true, jobs: rows.map(jobJson), total, limit, offset });
      }),
    )
    .add(
      "GET",
      "/admin/api/jobs/active",
      asAdmin(async () => {
        const rows = await orm.em
          .fork()
          .find(CaptionTask, { status: { $in: ["queued", "running"] } }, { orderBy: { createdAt: "asc" } });
        return reply(200, { success: true, jobs: rows.map(jobJson) });
      }),
    )
    .add(
      "GET",
      "/admin/api/jobs/:id/details",
      asAdmin(async (request) => {
        const id = taskIdParam(request);
        const row = await orm.em.fork().findOne(CaptionTask, { id });
        if (!row) throw notFound();
        // Redis's view is a detail: with Redis away the ledger's still answers.
        const job = await run(Effect.either(queue.getJob(id)));
        return reply(200, {
          success: true,
          job: {
            ...jobJson(row),
            settings: JSON.parse(row.settingsJson) as unknown,
            results: row.resultsJson ? (JSON.parse(row.resultsJson) as unknown) : null,
            admin_notes: row.adminNotes,
          },
          queue:
            Either.isRight(job) && job.right
              ? {
                  ...job.right,
                  data: undefined,
                  ...(job.right.error === undefined ? {} : { error: safeText(job.right.error, 2000) }),
                }
              : null,
          audit: (await auditTrail(orm.em.fork(), id)).map(auditJson),
        });
      }),
    )
    .add(
      "GET",
      "/admin/api/jobs/:id/audit",
      asAdmin(async (request) => {
        const id = taskIdParam(request);
        return reply(200, {
          success: true,
          task_id: id,
          audit: (await auditTrail(orm.em.fork(), id)).map(auditJson),
        });
      }),
    )
    .add(
      "GET",
      "/admin/api/audit",
      asAdmin(async (request) => {
        const limit = intParam(request.query.get("limit"), "limit", 100, 1, 1000);
        const offset = intParam(request.query.get("offset"), "offset", 0, 0, 10_000_000);
        const where: Record<string, unknown> = {};
        for (const [param, column] of [
          ["action", "action"],
          ["actor", "actor"],
          ["task_id", "taskId"],
        ] as const) {
          const value = request.query.get(param);
          if (value) where[column] = value.slice(0, 200);
        }
        const [rows, total] = await orm.em
          .fork()
          .findAndCount(AuditEntry, where, { orderBy: { id: "desc" }, limit, offset });
        return reply(200, { success: true, audit: rows.map(auditJson), total, limit, offset });
      }),
    )
    .add(
      "PUT",
      "/admin/api/jobs/:id/priority",
      asAdmin(async (request, caller) => {
        const id = taskIdParam(request);
        const priority = priorityParam((await request.body()).priority, "priority");
        const moved = await tasks.reprioritize(id, priority, actorOf(caller));
        if (Either.isLeft(moved)) {
          if (moved.left._tag === "TaskNotFound") throw notFound();
          throw new HttpError(409, "not_waiting", moved.left.message, { status: moved.left.status });
        }
        return reply(200, { success: true, task_id: id, priority });
      }),
    )
    .add(
      "POST",
      "/admin/api/jobs/:id/restart",
      asAdmin(async (request, caller) => {
        const retried = await tasks.retry(
          taskIdParam(request),
          { userId: caller.userId, admin: true },
          request.id,
        );
        if (Either.isRight(retried))
          return reply(202, {
            success: true,
            task_id: retried.right.taskId,
            message: "Restarted as a new task",
          });
        const error = retried.left;
        if (error._tag === "TaskNotFound") throw notFound();
        if (error._tag === "ActiveTaskExists")
          throw new HttpError(409, "active_task_exists", "the user has an active task", {
            task_id: error.activeTaskId,
          });
        throw new HttpError(409, "not_retryable", error.message);
      }),
    )
    .add(
      "POST",
      "/admin/api/jobs/:id/cancel",
      asAdmin(async (request, caller) => {
        const id = taskIdParam(request);
        const reason = (await request.body()).reason;
        if (typeof reason !== "string" || reason.trim() === "" || reason.length > 500)
          throw new HttpError(400, "validation_error", "a reason of 1 to 500 characters is required", {
            details: [{ field: "reason", message: "required, at most 500 characters" }],
          });
        const outcome = await tasks.cancel(id, { userId: caller.userId, admin: true }, reason.trim());
        if (Either.isLeft(outcome)) throw notFound();
        if (typeof outcome.right === "object")
          throw new HttpError(409, "task_ended", `the task is already ${outcome.right.ended}`);
        return reply(200, { success: true, task_id: id, status: outcome.right });
      }),
    )
    .add(
      "GET",
      "/admin/api/rq/queue-stats",
      asAdmin(async () => {
        const stats = await run(Effect.either(admin.stats()));
        const em = orm.em.fork();
        const database = Object.fromEntries(
          await Promise.all(
            TASK_STATUSES.map(async (s) => [s, await em.count(CaptionTask, { status: s })] as const),
          ),
        );
        const waitingInDatabase = await em.count(CaptionTask, { status: "queued", queueBackend: "database" });
        return reply(200, {
          success: true,
          backend: deps.runtime().health.mode,
          queues: Either.isRight(stats) ? stats.right : null,
          redis_error: Either.isLeft(stats) ? stats.left.message : null,
          database: { ...database, waiting_in_database_queue: waitingInDatabase },
        });
      }),
    )
    .add(
      "POST",
      "/admin/api/rq/queue-management",
      asAdmin(async (request, caller) => {
        const body = await request.body();
        const action = body.action;
        if (action === "cleanup_completed") {
          const removed = await run(admin.purgeFinished());
          return reply(200, { success: true, action, removed });
        }
        const priority = priorityParam(body.queue_name);
        const noted = (what: "queue_paused" | "queue_resumed" | "queue_cleared", reason: string) =>
          writeAudit(orm.em.fork(), { action: what, actor: actorOf(caller), priority, reason });
        switch (action) {
          case "pause_queue":
          case "resume_queue": {
            const changed = await run(
              action === "pause_queue" ? admin.pause(priority) : admin.resume(priority),
            );
            await noted(
              action === "pause_queue" ? "queue_paused" : "queue_resumed",
              changed ? "changed" : "it already was",
            );
            return reply(200, { success: true, action, queue_name: priority, changed });
          }
          case "clear_queue": {
            const reason = `cleared by an administrator (${caller.username})`;
            const cleared = await run(admin.clear(priority, reason));
            // The ledger follows now rather than at the reconciler's next pass (which still
            // settles any row this misses: Redis keeps the cancelled jobs for a while).
            await Promise.all(
              cleared.map((job) =>
                tasks.ledger
                  .settleFromRedis(job.id, job.attempt, { state: "cancelled", error: reason })
                  .catch(() => false),
              ),
            );
            await noted("queue_cleared", `${cleared.length} waiting tasks cancelled`);
            return reply(200, { success: true, action, queue_name: priority, cleared: cleared.length });
          }
          default:
            throw new HttpError(
              400,
              "validation_error",
              "action must be pause_queue, resume_queue, clear_queue or cleanup_completed",
              { details: [{ field: "action", message: "unknown action" }] },
            );
        }
      }),
    )
    .add(
      "GET",
      "/admin/api/rq/health-check",
      asAdmin(async () => {
        const status = deps.runtime();
        const alerts = await run(Effect.either(admin.alerts(10)));
        return reply(200, {
          success: true,
          healthy: status.state === "running" && status.health.mode === "redis",
          runtime: status.state,
          redis: {
            mode: status.health.mode,
            forced: status.health.forced,
            since: new Date(status.health.since).toISOString(),
            misses: status.health.misses,
            ping_ms: status.health.lastPingMs ?? null,
            memory: status.health.memory ?? null,
            transitions: status.health.transitions,
          },
          alerts: Either.isRight(alerts) ? alerts.right : status.health.alerts,
          actors: status.actors,
        });
      }),
    )
    .add(
      "GET",
      "/admin/api/rq/monitoring/alerts",
      asAdmin(async (request) => {
        const limit = Number(request.query.get("limit") ?? 50);
        if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
          throw new HttpError(400, "validation_error", "limit must be a whole number from 1 to 1000", {
            details: [{ field: "limit", message: "out of range" }],
          });
        }
        const status = deps.runtime();
        const fromRedis = await Promise.all([readSharedAlerts(queue), run(admin.alerts(limit))]).then(
          (found) => found,
          () => undefined,
        );
        // Queue-wide alerts as their evaluator stored them, with this process's own (fallback).
        const shared =
          fromRedis?.[0] ?? status.alerts.active.filter((a) => !a.key.startsWith("fallback_mode:"));
        const own = status.alerts.active.filter((a) => a.key.startsWith("fallback_mode:"));
        const active = [...shared.filter((a) => a.firedAt !== undefined), ...own].map((a) => ({
          rule: a.rule,
          key: a.key,
          severity: a.severity,
          message: a.message,
          since: new Date(a.since).toISOString(),
          fired_at: new Date(a.firedAt ?? a.since).toISOString(),
        }));
        const recent =
          fromRedis?.[1] ??
          status.alerts.recent.slice(0, limit).map((n) => ({
            at: n.at,
            level: n.state === "resolved" ? "info" : n.severity,
            message: n.message,
            source: "this process",
            rule: n.rule,
            key: n.key,
            state: n.state,
          }));
        return reply(200, {
          success: true,
          // Without Redis, only this process's view: its own alerts and what it announced.
          complete: fromRedis !== undefined,
          evaluator: status.alerts.evaluator,
          active,
          recent: recent.map((r) => ({ ...r, at: new Date(r.at).toISOString() })),
        });
      }),
    )
    .add(
      "GET",
      "/admin/api/workers",
      asAdmin(async () =>
        reply(200, { success: true, workers: await run(new WorkerRegistry(queue).list()) }),
      ),
    )
    .add(
      "GET",
      "/admin/api/dead",
      asAdmin(async (request) => {
        const p = request.query.get("priority");
        const limit = intParam(request.query.get("limit"), "limit", 100, 1, 10_000);
        const letters = await run(
          admin.listDead(p ? { priority: priorityParam(p, "priority"), limit } : { limit }),
        );
        return reply(200, {
          success: true,
          dead: letters.map((d) => ({ ...d, reason: safeText(d.reason, 2000) })),
        });
      }),
    )
    .add(
      "POST",
      "/admin/api/dead/:priority/retry",
      asAdmin(async (request, caller) => {
        const priority = priorityParam(request.params[0], "priority");
        const body = await request.body();
        const letters = await run(admin.listDead({ priority, limit: 10_000 }));
        const wanted =
          body.all === true ? letters : letters.filter((d) => entryIds(body).includes(d.entryId));
        // The ledger first: a failed task's row becomes queued again, or the redriven job would
        // find it ended and skip. A user with another active task keeps this one dead.
        const results = [];
        for (const letter of wanted) {
          const reopened = letter.taskId
            ? await tasks.ledger.reopenFailed(letter.taskId, actorOf(caller)).catch(() => false)
            : false;
          const [outcome] = await run(admin.redriveDead(priority, [letter.entryId]));
          // A letter whose row did not reopen (none, or not failed) still leaves its trace.
          if (!reopened)
            await writeAudit(orm.em.fork(), {
              action: "dead_letter_retried",
              actor: actorOf(caller),
              taskId: letter.taskId || null,
              priority,
              reason: `entry ${letter.entryId}: ${JSON.stringify(outcome)}`,
            });
          if (outcome !== "ok" && reopened)
            await tasks.ledger.markFailedAgain(letter.taskId, `redrive refused: ${JSON.stringify(outcome)}`);
          results.push({ entry_id: letter.entryId, task_id: letter.taskId, outcome });
        }
        return reply(200, {
          success: true,
          retried: results.filter((r) => r.outcome === "ok").length,
          results,
        });
      }),
    )
    .add(
      "POST",
      "/admin/api/dead/:priority/purge",
      asAdmin(async (request, caller) => {
        const priority = priorityParam(request.params[0], "priority");
        const body = await request.body();
        const letters = await run(admin.listDead({ priority, limit: 10_000 }));
        const wanted =
          body.all === true ? letters : letters.filter((d) => entryIds(body).includes(d.entryId));
        const purged =
          wanted.length === 0
            ? 0
            : await run(
                admin.purgeDead(
                  priority,
                  wanted.map((d) => d.entryId),
                ),
              );
        for (const letter of wanted)
          await writeAudit(orm.em.fork(), {
            action: "dead_letter_purged",
            actor: actorOf(caller),
            taskId: letter.taskId || null,
            priority,
            reason: `entry ${letter.entryId}: ${letter.reason}`.slice(0, 2000),
          });
        return reply(200, { success: true, purged });
      }),
    );
};

const entryIds = (body: Record<string, unknown>): string[] =>
  Array.isArray(body.entry_ids) ? body.entry_ids.filter((e): e is string => typeof e === "string") : [];
