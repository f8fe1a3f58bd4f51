import type { EntityManager } from "@mikro-orm/core";
import { Duration, Effect, Either } from "effect";
import { CaptionTask } from "../db/entities.js";
import { QueueAdmin } from "../queue/admin.js";
import { isUnreadableJob } from "../queue/errors.js";
import type { JobView, NewJob, Queue } from "../queue/queue.js";
import { captionJob } from "./caption-job.js";
import type { DatabaseQueue } from "./database-queue.js";
import type { TaskLedger } from "./ledger.js";
import { isSkip } from "./skip.js";
import { auditedUpdate } from "./audit.js";

export interface ReconcileReport {
  /** Redis-side waiting tasks the database queue took over while Redis was down. */
  readonly takenOver?: number;
  /** Database-queue attempts whose lease lapsed: requeued, or failed when out of attempts. */
  readonly expired: { readonly requeued: number; readonly failed: number };
  /** Waiting database-queue tasks handed to Redis. */
  readonly movedToRedis: number;
  /** Tasks that can no longer become a job (their settings fail today's schema): failed, said why. */
  readonly unrunnable: number;
  /** Active tasks Redis no longer knew (it restarted empty, or lost them), enqueued again. */
  readonly reenqueued: number;
  /** Active rows whose Redis job had ended: the ledger now says how. */
  readonly settled: number;
  /** One-active-task-per-user locks put back from the ledger. */
  readonly locksRestored: number;
  /**
   * Active tasks whose key in Redis holds something other than a job (damage, or another
   * program's key): left as they are, for a person to look at, as enqueue leaves such a key.
   */
  readonly corrupt?: readonly string[];
}

export interface ReconcilerOptions {
  /** Active tasks younger than this are left alone: their submit may still be under way. */
  readonly graceMs: number;
  /** Rows looked at per step and pass. */
  readonly batch?: number;
  /** How long one Redis call may take before the pass gives up (Redis may be going away). */
  readonly redisTimeoutMs?: number;
  /** Who its moves are by, in the audit log. */
  readonly actor?: string;
}

export interface Unrunnable {
  readonly id: string;
  readonly reason: string;
}

class RedisTimeout extends Error {
  constructor(ms: number) {
    super(`redis gave no answer within ${ms} ms`);
  }
}

const ENDED = new Set(["completed", "failed", "cancelled"]);
const LIVE = new Set(["queued", "delayed", "running"]);

/**
 * Keeps the database ledger and Redis telling one story. Each step is a compare-and-set on the
 * row, so reconcilers in many processes may run at once and each task moves exactly once.
 */
export class Reconciler {
  private readonly batch: number;

  constructor(
    private readonly em: () => EntityManager,
    private readonly queue: Queue,
    private readonly dbQueue: DatabaseQueue,
    private readonly ledger: TaskLedger,
    private readonly options: ReconcilerOptions,
  ) {
    this.batch = options.batch ?? 500;
  }

  private get actor() {
    return this.options.actor ?? "system";
  }

  private redis<A, E>(effect: Effect.Effect<A, E>): Promise<A> {
    const ms = this.options.redisTimeoutMs ?? 2_000;
    return Effect.runPromise(
      effect.pipe(
        Effect.timeoutFail({ duration: Duration.millis(ms), onTimeout: () => new RedisTimeout(ms) }),
      ),
    );
  }

  /** What needs only the database: lapsed database-queue leases. Runs whatever Redis's state. */
  recoverExpired() {
    return this.dbQueue.recoverExpired();
  }

  /** Everything, for when Redis is up. A Redis failure midway stops the pass (it rejects). */
  async run(): Promise<ReconcileReport> {
    const expired = await this.recoverExpired();
    const move = await this.moveToRedis();
    const repaired = await this.repairRedis();
    return {
      expired,
      movedToRedis: move.moved,
      ...repaired,
      unrunnable: move.unrunnable.length + repaired.unrunnable,
    };
  }

  /**
   * Waiting database-queue tasks go to Redis in priority order. The row is handed over first
   * (compare-and-set: one reconciler wins), then enqueued; if Redis refuses, it is taken back.
   */
  async moveToRedis(): Promise<{ moved: number; unrunnable: Unrunnable[] }> {
    let moved = 0;
    const unrunnable: Unrunnable[] = [];
    for (;;) {
      const waiting = await this.dbQueue.waiting(this.batch);
      for (const row of waiting) {
        const job = await this.jobOf(row, unrunnable);
        if (!job || !(await this.dbQueue.handToRedis(row.id, row.attempt))) continue;
        const delayMs = row.availableAt ? Math.max(0, row.availableAt.getTime() - Date.now()) : 0;
        try {
          await this.enqueue({ ...job, afterAttempt: row.attempt, delayMs });
        } catch (error) {
          await this.dbQueue.takeBack(row.id, row.attempt);
          throw error;
        }
        moved++;
      }
      if (waiting.length < this.batch) return { moved, unrunnable };
    }
  }

  /**
   * The job for a row, or none: a row that cannot become one (say, settings a newer schema
   * refuses) ends failed with the reason, rather than stopping every pass at it.
   */
  private async jobOf(row: CaptionTask, unrunnable: Unrunnable[]): Promise<NewJob | undefined> {
    let reason: string;
    try {
      return captionJob(row);
    } catch (error) {
      reason = error instanceof Error ? error.message : String(error);
    }
    const failed = await auditedUpdate(this.em(), {
      id: row.id,
      where: { status: row.status, attempt: row.attempt, queueBackend: row.queueBackend },
      set: {
        status: "failed",
        completedAt: new Date(),
        errorMessage: `cannot be run: ${reason}`.slice(0, 2000),
        currentStep: "Failed",
      },
      action: "failed",
      actor: this.actor,
      reason: `cannot be run: ${reason}`,
    });
    if (failed) unrunnable.push({ id: row.id, reason });
    return undefined;
  }

  /**
   * While Redis is down, tasks that were waiting in it would wait for its return: the database
   * queue takes them over (compare-and-set on the queued row, so a Redis worker that still
   * claims one is refused by the ledger, or a database claim is: never both).
   */
  async takeOverWaiting(): Promise<number> {
    const before = new Date(Date.now() - this.options.graceMs);
    return this.em().nativeUpdate(
      CaptionTask,
      { status: "queued", queueBackend: "redis", createdAt: { $lt: before } },
      { queueBackend: "database", currentStep: "Waiting in the database queue (Redis is down)" },
    );
  }

  /**
   * Active Redis-side rows against Redis: a job it lost is enqueued again (continuing the
   * attempt count, so no fencing token repeats); a job that ended settles the row; a live job
   * gets its user lock back if Redis lost that.
   */
  async repairRedis(): Promise<Omit<ReconcileReport, "expired" | "movedToRedis">> {
    const unrunnable: Unrunnable[] = [];
    const corrupt: string[] = [];
    let reenqueued = 0;
    let settled = 0;
    let locksRestored = 0;
    const before = new Date(Date.now() - this.options.graceMs);
    let after = "";
    for (;;) {
      const rows = await this.em().find(
        CaptionTask,
        {
          status: { $in: ["queued", "running"] },
          queueBackend: "redis",
          createdAt: { $lt: before },
          id: { $gt: after },
        },
        { orderBy: { id: "asc" }, limit: this.batch },
      );
      // All at once, and the timeout bounds the batch, not each call. Each answer on its own: a
      // key of the wrong type is that task's problem, not a reason to stop every later pass.
      const answers = await this.redis(
        Effect.all(
          rows.map((row) => Effect.either(this.queue.getJob(row.id))),
          { concurrency: "unbounded" },
        ),
      );
      const live: Array<{ id: string; userId: string }> = [];
      for (const [i, row] of rows.entries()) {
        const answer = answers[i]!;
        if (Either.isLeft(answer)) {
          if (!isUnreadableJob(answer.left)) throw answer.left;
          corrupt.push(row.id);
          continue;
        }
        const job = answer.right;
        if (job === undefined || (ENDED.has(job.state) && isSkip(job.result))) {
          if (await this.requeue(row, unrunnable)) reenqueued++;
        } else if (ENDED.has(job.state) && job.attempt >= row.attempt) {
          if (await this.settle(row, job)) settled++;
        } else if (LIVE.has(job.state)) {
          live.push({ id: row.id, userId: String(row.userId) });
        }
      }
      locksRestored += await this.redis(this.queue.restoreUserLocks(live));
      if (rows.length < this.batch)
        return { reenqueued, settled, locksRestored, unrunnable: unrunnable.length, corrupt };
      after = rows[rows.length - 1]?.id ?? after;
    }
  }

  private async requeue(row: CaptionTask, unrunnable: Unrunnable[]): Promise<boolean> {
    const job = await this.jobOf(row, unrunnable);
    if (!job) return false;
    if (row.status === "running") {
      // Its worker's later word (same attempt) is refused: the row is queued again first.
      const requeued = await auditedUpdate(this.em(), {
        id: row.id,
        where: { status: "running", attempt: row.attempt, queueBackend: "redis" },
        set: { status: "queued", currentStep: "Requeued: Redis lost it" },
        action: "requeued",
        actor: this.actor,
        reason: "Redis no longer had its job",
      });
      if (!requeued) return false;
    }
    await this.enqueue({ ...job, afterAttempt: row.attempt });
    return true;
  }

  private settle(row: CaptionTask, job: JobView): Promise<boolean> {
    return this.ledger.settleFromRedis(
      row.id,
      job.attempt,
      job.state === "completed"
        ? { state: "completed", resultsJson: job.result }
        : { state: job.state === "failed" ? "failed" : "cancelled", error: job.error ?? job.state },
    );
  }

  /**
   * Enqueues, replacing an ended job of the same id (a leftover of a run the ledger has moved
   * past). A user lock naming another task is stale: the ledger allows one active task.
   */
  private async enqueue(job: NewJob): Promise<void> {
    const once = this.queue.enqueue({ ...job, replaceEnded: true });
    const outcome = await this.redis(
      once.pipe(
        Effect.catchTag("ActiveTaskExists", () =>
          new QueueAdmin(this.queue).releaseUser(job.userId ?? "").pipe(Effect.zipRight(once)),
        ),
        Effect.asVoid,
        // Already there and live: Redis has it, which is all this wanted.
        Effect.catchTag("DuplicateTask", () => Effect.void),
        Effect.either,
      ),
    );
    if (Either.isLeft(outcome)) throw outcome.left;
  }
}
