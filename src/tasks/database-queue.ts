import type { EntityManager } from "@mikro-orm/core";
import { CaptionTask } from "../db/entities.js";
import { onSqlite, sqlTime } from "../db/raw-sql.js";
import { auditedUpdate } from "./audit.js";
import { inPriorityOrder, PRIORITIES, type Priority } from "../domain/priority.js";

/** A task a database-fallback dispatcher claimed: attempt `attempt`, leased until renewed. */
export interface DatabaseClaim {
  readonly id: string;
  readonly attempt: number;
  readonly priority: Priority;
  readonly userId: number;
  readonly maxRetries: number;
  /**
   * The attempts of this run charged before this one: the row's retry count. Attempts given back
   * (a shutdown, a postponement in Redis) are not among them, nor those of an earlier run.
   */
  readonly retries: number;
  readonly row: CaptionTask;
}

const TABLE = "caption_generation_tasks";

/**
 * The task table as a queue, for when Redis is away: rows `queued` with backend `database`,
 * claimed by priority then age, each attempt under a lease like a Redis job's. Every change is a
 * compare-and-set on (status, backend, attempt), so several processes can share it.
 */
export class DatabaseQueue {
  constructor(
    private readonly em: () => EntityManager,
    /** Who its moves are by, in the audit log. */
    private readonly actor = "system",
  ) {}

  /**
   * Up to `limit` due tasks of `priorities`, highest priority first, oldest first within one,
   * in one statement: PostgreSQL skips rows another claim has locked; SQLite has one writer.
   */
  async claim(
    owner: string,
    priorities: readonly Priority[],
    limit: number,
    leaseMs: number,
  ): Promise<DatabaseClaim[]> {
    const ordered = inPriorityOrder(priorities);
    if (ordered.length === 0 || limit < 1) return [];
    const em = this.em();
    const sqlite = onSqlite(em);
    const now = new Date();
    const at = (d: Date) => sqlTime(sqlite, d);
    const rank = `case priority ${ordered.map((p, i) => `when '${p}' then ${i}`).join(" ")} end`;
    const marks = ordered.map(() => "?").join(", ");
    // PostgreSQL: a materialized CTE picks the rows once (an `in (select ... limit)` may be
    // re-run by the planner and overshoot the limit), skipping rows another claim has locked.
    const pick = `select id from ${TABLE}
        where status = 'queued' and queue_backend = 'database' and priority in (${marks})
          and (available_at is null or available_at <= ?)
        order by ${rank}, created_at, id
        limit ?`;
    // The audit columns make the table's trigger log each claim as the task's start.
    const set = `set status = 'running', attempt = attempt + 1, started_at = ?,
        lease_until = ?, lease_owner = ?, progress_percent = 0, current_step = 'Starting',
        audit_seq = audit_seq + 1, audit_action = 'started', audit_actor = ?,
        audit_reason = 'from the database queue'`;
    const sql = sqlite
      ? `update ${TABLE} ${set} where status = 'queued' and queue_backend = 'database' and id in (${pick})
          returning id`
      : `with picked as materialized (${pick} for update skip locked)
          update ${TABLE} ${set} from picked where ${TABLE}.id = picked.id returning ${TABLE}.id`;
    const setParams = [at(now), at(new Date(now.getTime() + leaseMs)), owner, this.actor.slice(0, 200)];
    const pickParams = [...ordered, at(now), limit];
    const params = sqlite ? [...setParams, ...pickParams] : [...pickParams, ...setParams];
    const claimed = (await em.getConnection().execute(sql, params, "all")) as Array<{ id: string }>;
    if (claimed.length === 0) return [];
    const rows = await this.em().find(CaptionTask, { id: { $in: claimed.map((c) => c.id) } });
    return rows
      .filter((row) => row.leaseOwner === owner && row.status === "running")
      .sort(
        (a, b) => ordered.indexOf(a.priority) - ordered.indexOf(b.priority) || +a.createdAt - +b.createdAt,
      )
      .map((row) => ({
        id: row.id,
        attempt: row.attempt,
        priority: row.priority,
        userId: row.userId,
        maxRetries: row.maxRetries,
        retries: row.retryCount,
        row,
      }));
  }

  /** Extends the lease; false when the attempt is no longer this one's (cancelled, or taken). */
  async renew(id: string, attempt: number, owner: string, leaseMs: number): Promise<boolean> {
    const changed = await this.em().nativeUpdate(
      CaptionTask,
      { id, attempt, status: "running", queueBackend: "database", leaseOwner: owner },
      { leaseUntil: new Date(Date.now() + leaseMs) },
    );
    return changed > 0;
  }

  /**
   * The attempt failed and the task runs again after `delayMs`, from the database queue; it was
   * the run's `runAttempt`-th charged attempt, which is now its retry count.
   */
  retryLater(
    id: string,
    attempt: number,
    runAttempt: number,
    error: string,
    delayMs: number,
  ): Promise<boolean> {
    return auditedUpdate(this.em(), {
      id,
      where: { status: "running", attempt, queueBackend: "database" },
      set: {
        status: "queued",
        availableAt: new Date(Date.now() + delayMs),
        retryCount: runAttempt,
        errorMessage: error.slice(0, 2000),
        currentStep: "Waiting to retry",
        leaseUntil: null,
        leaseOwner: null,
      },
      action: "retrying",
      actor: this.actor,
      reason: error,
    });
  }

  /** A shut-down runner gives its attempt back at once instead of waiting for the lease. */
  release(id: string, attempt: number): Promise<boolean> {
    return auditedUpdate(this.em(), {
      id,
      where: { status: "running", attempt, queueBackend: "database" },
      set: {
        status: "queued",
        currentStep: "Requeued: its worker shut down",
        leaseUntil: null,
        leaseOwner: null,
      },
      action: "released",
      actor: this.actor,
    });
  }

  /**
   * Attempts whose lease lapsed (their process died) go back to the queue, or fail when they
   * used up their attempts. Returns how many of each.
   */
  async recoverExpired(): Promise<{ requeued: number; failed: number }> {
    const em = this.em();
    const expired = await em.find(
      CaptionTask,
      { status: "running", queueBackend: "database", leaseUntil: { $lt: new Date() } },
      { limit: 500 },
    );
    let requeued = 0;
    let failed = 0;
    for (const row of expired) {
      const move = {
        id: row.id,
        where: { status: "running", attempt: row.attempt, queueBackend: "database" },
      };
      // A lapsed lease is charged: the attempt may have been what stopped its worker.
      const runAttempt = row.retryCount + 1;
      if (runAttempt > row.maxRetries) {
        const error = `its worker stopped answering on attempt ${runAttempt} of ${row.maxRetries + 1}`;
        const landed = await auditedUpdate(this.em(), {
          ...move,
          set: {
            status: "failed",
            completedAt: new Date(),
            errorMessage: error,
            currentStep: "Failed",
            leaseUntil: null,
            leaseOwner: null,
          },
          action: "failed",
          actor: this.actor,
          reason: error,
        });
        if (landed) failed++;
      } else {
        const landed = await auditedUpdate(this.em(), {
          ...move,
          set: {
            status: "queued",
            retryCount: runAttempt,
            currentStep: "Requeued: its worker stopped answering",
            leaseUntil: null,
            leaseOwner: null,
          },
          action: "requeued",
          actor: this.actor,
          reason: "its worker stopped answering (lease lapsed)",
        });
        if (landed) requeued++;
      }
    }
    return { requeued, failed };
  }

  /** Tasks waiting in the database queue, highest priority first, then oldest. */
  async waiting(limit: number): Promise<CaptionTask[]> {
    const found: CaptionTask[] = [];
    for (const priority of PRIORITIES) {
      if (found.length >= limit) break;
      found.push(
        ...(await this.em().find(
          CaptionTask,
          { status: "queued", queueBackend: "database", priority },
          { orderBy: { createdAt: "asc", id: "asc" }, limit: limit - found.length },
        )),
      );
    }
    return found;
  }

  /** Hands a waiting task to Redis's side of the ledger; false if it changed meanwhile. */
  async handToRedis(id: string, attempt: number): Promise<boolean> {
    const changed = await this.em().nativeUpdate(
      CaptionTask,
      { id, attempt, status: "queued", queueBackend: "database" },
      { queueBackend: "redis", availableAt: null },
    );
    return changed > 0;
  }

  /** Takes a waiting task back into the database queue (Redis could not take it). */
  async takeBack(id: string, attempt: number): Promise<boolean> {
    const changed = await this.em().nativeUpdate(
      CaptionTask,
      { id, attempt, status: "queued", queueBackend: "redis" },
      { queueBackend: "database" },
    );
    return changed > 0;
  }
}
