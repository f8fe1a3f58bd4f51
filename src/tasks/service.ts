import { type MikroORM, UniqueConstraintViolationException } from "@mikro-orm/core";
import { Duration, Effect, Either, ParseResult, Schema } from "effect";
import { CaptionTask } from "../db/entities.js";
import { onSqlite, selectRows, sqlTime, timeFromSql } from "../db/raw-sql.js";
import { CaptionSettings } from "../domain/caption-settings.js";
import type { Priority } from "../domain/priority.js";
import { newTaskId } from "../domain/task-id.js";
import { QueueAdmin } from "../queue/admin.js";
import { ActiveTaskExists, RedisError } from "../queue/errors.js";
import type { Backend } from "../health/redis-health.js";
import type { JobMetrics } from "../metrics/job-metrics.js";
import { captionJob } from "./caption-job.js";
import type { Queue } from "../queue/queue.js";
import {
  InvalidTaskInput,
  NoPlatformConnection,
  SubmitRateLimited,
  TaskNotFound,
  TaskNotRetryable,
  TaskNotWaiting,
} from "./errors.js";
import { actorOf, auditColumns, writeAudit } from "./audit.js";
import { TaskLedger } from "./ledger.js";

export interface SubmitInput {
  readonly userId: number;
  readonly platformConnectionId?: number | undefined;
  readonly priority: Priority;
  /** Untrusted: validated against CaptionSettings, defaults filled in. */
  readonly settings?: unknown;
  readonly maxRetries?: number | undefined;
  /** Who submits, for the audit log; default the user themself. */
  readonly actor?: string | undefined;
  /** Not subject to the submission limit (an admin's submission). */
  readonly exempt?: boolean | undefined;
  /** The HTTP request that submitted it: the job carries it, so its logs name it. */
  readonly requestId?: string | undefined;
}

export interface Submitted {
  readonly taskId: string;
  /** `database` when Redis could not take it: the row waits for the fallback dispatcher. */
  readonly backend: "redis" | "database";
}

export interface TaskServiceOptions {
  /** This process's view of Redis: while it says `database`, submissions skip Redis. */
  readonly health?: { mode(): Backend } | undefined;
  /** How long a submission or cancel waits for Redis (default 1 s). */
  readonly redisTimeoutMs?: number | undefined;
  /** Counts submissions for /metrics. */
  readonly metrics?: JobMetrics | undefined;
  /**
   * At most `count` submissions per user in any `windowMs` (admins exempt); none when unset.
   * Counted in the ledger, so every web server shares it, and it holds while Redis is away.
   */
  readonly submitLimit?: { readonly count: number; readonly windowMs: number } | undefined;
}

export type CancelOutcome = "cancelled" | "cancelling" | { readonly ended: string };

export interface Caller {
  readonly userId: number;
  readonly admin?: boolean | undefined;
}

const decodeSettings = Schema.decodeUnknownEither(CaptionSettings, {
  errors: "all",
  onExcessProperty: "ignore",
});

/**
 * What the web app does with caption tasks. The database row is written first and is the
 * ledger; the queue is how the task reaches a worker. One active task per user is enforced by
 * both: the partial unique index (the truth) and Redis's lock (the fast path).
 */
export class TaskService {
  readonly ledger: TaskLedger;

  private readonly health: { mode(): Backend } | undefined;
  private readonly redisTimeoutMs: number;
  private readonly metrics: JobMetrics | undefined;
  private readonly submitLimit: TaskServiceOptions["submitLimit"];

  constructor(
    private readonly orm: MikroORM,
    private readonly queue: Queue,
    options: TaskServiceOptions = {},
  ) {
    this.ledger = new TaskLedger(() => this.orm.em.fork());
    this.health = options.health;
    this.redisTimeoutMs = options.redisTimeoutMs ?? 1_000;
    this.metrics = options.metrics;
    this.submitLimit = options.submitLimit;
  }

  /**
   * Over the limit: when the oldest submission that counts leaves the window. Racing submissions
   * may overshoot it by the few that passed the count together; the one-active-task rule still
   * lets only one of them in.
   */
  private async overLimit(userId: number): Promise<SubmitRateLimited | undefined> {
    const limit = this.submitLimit;
    if (!limit || limit.count <= 0) return undefined;
    const since = new Date(Date.now() - limit.windowMs);
    const em = this.orm.em;
    // Raw selects here and for the connection: a submission's reads cost a third of what entity
    // queries did (src/db/raw-sql.ts).
    const recent = await selectRows<{ created_at: unknown }>(
      em,
      "select created_at from caption_generation_tasks where user_id = ? and created_at >= ? order by created_at desc limit ?",
      [userId, sqlTime(onSqlite(em), since), limit.count],
    );
    if (recent.length < limit.count) return undefined;
    const oldest = timeFromSql(recent[recent.length - 1]!.created_at).getTime();
    return new SubmitRateLimited({
      userId,
      limit: limit.count,
      windowSeconds: Math.round(limit.windowMs / 1000),
      retryAfterSeconds: Math.max(1, Math.ceil((oldest + limit.windowMs - Date.now()) / 1000)),
    });
  }

  /** A Redis call that gives up after the submit timeout: a paused Redis must not hold a request. */
  private withinTimeout<A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E | RedisError> {
    return effect.pipe(
      Effect.timeoutFail({
        duration: Duration.millis(this.redisTimeoutMs),
        onTimeout: () =>
          new RedisError({ operation: "submit", cause: new Error(`no answer in ${this.redisTimeoutMs} ms`) }),
      }),
    );
  }

  async submit(
    input: SubmitInput,
  ): Promise<
    Either.Either<Submitted, InvalidTaskInput | NoPlatformConnection | ActiveTaskExists | SubmitRateLimited>
  > {
    const settings = decodeSettings(input.settings ?? {});
    if (Either.isLeft(settings)) {
      const details = ParseResult.ArrayFormatter.formatErrorSync(settings.left).map((i) => ({
        field: ["settings", ...i.path].join("."),
        message: i.message,
      }));
      return Either.left(new InvalidTaskInput({ details }));
    }
    const maxRetries = input.maxRetries ?? 3;
    if (!Number.isInteger(maxRetries) || maxRetries < 0 || maxRetries > 20) {
      return Either.left(
        new InvalidTaskInput({ details: [{ field: "max_retries", message: "must be 0-20" }] }),
      );
    }
    const limited = input.exempt ? undefined : await this.overLimit(input.userId);
    if (limited) return Either.left(limited);
    const em = this.orm.em.fork();
    const named = input.platformConnectionId !== undefined;
    // The one asked for, else the user's default, else their oldest. `is_active` and
    // `is_default` order and test alike as PostgreSQL's booleans and SQLite's 1 and 0.
    const [connection] = await selectRows<{ id: number }>(
      em,
      `select id from platform_connections where user_id = ? and is_active${named ? " and id = ?" : ""}
        order by is_default desc, id asc limit 1`,
      named ? [input.userId, input.platformConnectionId] : [input.userId],
    );
    if (!connection) {
      return Either.left(
        new NoPlatformConnection({ userId: input.userId, platformConnectionId: input.platformConnectionId }),
      );
    }
    // No look for an active task first: the partial unique index refuses the insert, and the
    // refusal names the active task (one query fewer on every submission).
    const taskId = newTaskId();
    // Read once: the row and the path it takes must agree even if the mode changes meanwhile.
    const redisKnownDown = this.health?.mode() === "database";
    const createdAt = new Date();
    em.create(CaptionTask, {
      id: taskId,
      userId: input.userId,
      platformConnectionId: connection.id,
      status: "queued",
      priority: input.priority,
      settingsJson: JSON.stringify(settings.right),
      createdAt,
      maxRetries,
      // Known down: straight to the database queue, no Redis round trip in the request.
      queueBackend: redisKnownDown ? "database" : "redis",
      attempt: 0,
      // The insert is logged by the table's trigger: a task exists exactly when its "created" row does.
      ...auditColumns("created", input.actor ?? `user:${input.userId}`),
    });
    try {
      await em.flush();
    } catch (error) {
      // The user has an active task (this submission's own, or one that won a race to the index).
      if (error instanceof UniqueConstraintViolationException) {
        const winner = await this.activeTaskOf(input.userId);
        return Either.left(
          new ActiveTaskExists({ userId: String(input.userId), activeTaskId: winner ?? "unknown" }),
        );
      }
      throw error;
    }

    if (redisKnownDown) {
      this.metrics?.submitted(input.priority, "database");
      return Either.right({ taskId, backend: "database" as const });
    }
    const job = {
      ...captionJob({
        id: taskId,
        userId: input.userId,
        platformConnectionId: connection.id,
        priority: input.priority,
        settingsJson: JSON.stringify(settings.right),
        createdAt,
        retryCount: 0,
        maxRetries,
      }),
      ...(input.requestId === undefined ? {} : { meta: { requestId: input.requestId } }),
    };
    const enqueue = this.queue.enqueue(job).pipe(
      // The ledger says this user has no active task, so a Redis lock saying otherwise is stale.
      Effect.catchTag("ActiveTaskExists", () =>
        new QueueAdmin(this.queue)
          .releaseUser(job.userId ?? "")
          .pipe(Effect.zipRight(this.queue.enqueue(job))),
      ),
      (effect) => this.withinTimeout(effect),
      Effect.either,
    );
    const enqueued = await Effect.runPromise(enqueue);
    if (Either.isLeft(enqueued)) {
      // Redis could not take it: the row waits in the database queue. Nothing is lost; if the
      // enqueue still lands later, whichever side claims the task first runs it (the ledger's
      // compare-and-set lets only one), and the reconciler settles the other.
      await this.ledger.keepInDatabase(taskId);
      this.metrics?.submitted(input.priority, "database");
      return Either.right({ taskId, backend: "database" });
    }
    this.metrics?.submitted(input.priority, "redis");
    return Either.right({ taskId, backend: "redis" });
  }

  async activeTaskOf(userId: number): Promise<string | undefined> {
    const row = await this.orm.em
      .fork()
      .findOne(CaptionTask, { userId, status: { $in: ["queued", "running"] } });
    return row?.id;
  }

  /** The task, if the caller may see it (its owner, or an admin). */
  async find(taskId: string, caller: Caller): Promise<CaptionTask | undefined> {
    const row = await this.orm.em.fork().findOne(CaptionTask, { id: taskId });
    if (!row || (!caller.admin && row.userId !== caller.userId)) return undefined;
    return row;
  }

  /** The results of a finished task (Vedfolnir's GenerationResults), if the caller may see it. */
  async results(taskId: string, caller: Caller): Promise<Either.Either<unknown, TaskNotFound>> {
    const row = await this.find(taskId, caller);
    if (!row) return Either.left(new TaskNotFound({ taskId }));
    return Either.right(row.resultsJson ? (JSON.parse(row.resultsJson) as unknown) : undefined);
  }

  async cancel(
    taskId: string,
    caller: Caller,
    reason = "cancelled by the user",
  ): Promise<Either.Either<CancelOutcome, TaskNotFound>> {
    const row = await this.find(taskId, caller);
    if (!row) return Either.left(new TaskNotFound({ taskId }));
    if (row.status !== "queued" && row.status !== "running") return Either.right({ ended: row.status });
    const byAdmin = caller.admin && row.userId !== caller.userId ? { adminUserId: caller.userId } : undefined;
    const flagged =
      row.queueBackend === "redis" &&
      (await Effect.runPromise(
        this.withinTimeout(this.queue.cancel(taskId, reason)).pipe(
          Effect.map((answer) => answer.outcome === "flagged"),
          Effect.orElseSucceed(() => false),
        ),
      ));
    // Running from Redis: its worker aborts at once and the dispatcher records the end.
    if (flagged) {
      await this.ledger.noteCancel(taskId, reason, byAdmin, actorOf(caller));
      return Either.right("cancelling");
    }
    // Removed from the queue, or not there (database queue, Redis lost it, Redis away): the
    // ledger's word is final; a dispatcher that claims it later finds it cancelled and skips
    // it, and a database-queue attempt sees it at its next lease renewal and aborts.
    await this.ledger.markCancelled(taskId, { reason, byAdmin, actor: actorOf(caller) });
    return Either.right("cancelled");
  }

  /**
   * Moves a waiting task to another priority (an admin's call): in Redis and in the ledger.
   * `running` (or ended) tasks keep theirs.
   */
  async reprioritize(
    taskId: string,
    priority: Priority,
    actor?: string,
  ): Promise<Either.Either<"ok", TaskNotFound | TaskNotWaiting>> {
    const row = await this.orm.em.fork().findOne(CaptionTask, { id: taskId });
    if (!row) return Either.left(new TaskNotFound({ taskId }));
    if (row.status !== "queued") return Either.left(new TaskNotWaiting({ taskId, status: row.status }));
    let movedInRedis = false;
    if (row.queueBackend === "redis") {
      const moved = await Effect.runPromise(
        Effect.either(this.withinTimeout(this.queue.reprioritize(taskId, priority))),
      );
      if (Either.isRight(moved) && moved.right !== "ok")
        return Either.left(new TaskNotWaiting({ taskId, status: moved.right.state }));
      // Not in Redis (lost, or Redis away): the ledger's priority is what the reconciler uses.
      movedInRedis = Either.isRight(moved);
    }
    return (await this.ledger.setPriority(taskId, priority, actor, movedInRedis))
      ? Either.right("ok")
      : Either.left(new TaskNotWaiting({ taskId, status: "running" }));
  }

  /** A new task with the same connection, priority and settings as a failed or cancelled one. */
  async retry(
    taskId: string,
    caller: Caller,
    requestId?: string,
  ): Promise<
    Either.Either<
      Submitted,
      | TaskNotFound
      | TaskNotRetryable
      | InvalidTaskInput
      | NoPlatformConnection
      | ActiveTaskExists
      | SubmitRateLimited
    >
  > {
    const row = await this.find(taskId, caller);
    if (!row) return Either.left(new TaskNotFound({ taskId }));
    if (row.status !== "failed" && row.status !== "cancelled") {
      return Either.left(new TaskNotRetryable({ taskId, status: row.status }));
    }
    const again = await this.submit({
      userId: row.userId,
      platformConnectionId: row.platformConnectionId,
      priority: row.priority,
      settings: JSON.parse(row.settingsJson) as unknown,
      maxRetries: row.maxRetries,
      actor: actorOf(caller),
      exempt: caller.admin === true,
      requestId,
    });
    if (Either.isRight(again))
      await writeAudit(this.orm.em.fork(), {
        taskId,
        userId: row.userId,
        action: "restarted",
        actor: actorOf(caller),
        fromStatus: row.status,
        toStatus: row.status,
        attempt: row.attempt,
        priority: row.priority,
        reason: `as task ${again.right.taskId}`,
      });
    return again;
  }
}
