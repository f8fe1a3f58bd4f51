import type { EntityManager } from "@mikro-orm/core";
import { CaptionTask } from "../db/entities.js";
import { TASK_STATUSES, type TaskStatus } from "../domain/status.js";
import { type AuditAction, auditedUpdate } from "./audit.js";

/**
 * One attempt of a task, as the queue that runs it knows it. Its writes only land while the row
 * is at that attempt on that queue: a Redis worker's late word never settles a task the
 * database queue now runs, nor the other way round.
 */
export interface AttemptOf {
  readonly id: string;
  readonly attempt: number;
  readonly backend: "redis" | "database";
}

interface Transition {
  readonly id: string;
  /** The states it may leave (the audit row says which one it did). */
  readonly from: readonly TaskStatus[];
  /** What else the row must match (attempt, backend). */
  readonly where?: object;
  readonly set: { readonly status?: TaskStatus } & Record<string, unknown>;
  readonly action: AuditAction;
  readonly actor?: string | undefined;
  readonly reason?: string | null | undefined;
}

/**
 * The task rows' state transitions, each a compare-and-set UPDATE: it only changes a row that is
 * in the state, and at the attempt, the transition expects. A duplicate or late delivery (a stale
 * attempt) therefore changes nothing, and reports so (false). Each transition that lands writes
 * its audit row in the same statement (`auditedUpdate`).
 */
export class TaskLedger {
  constructor(
    private readonly em: () => EntityManager,
    /** Who the runtime's own moves are by, in the audit log. */
    private readonly actor = "system",
  ) {}

  private async update(where: object, set: object): Promise<boolean> {
    const changed = await this.em().nativeUpdate(CaptionTask, where as never, set as never);
    return changed > 0;
  }

  private transition(t: Transition): Promise<boolean> {
    return auditedUpdate(this.em(), {
      id: t.id,
      where: { ...(t.where ?? {}), status: t.from.length === 1 ? t.from[0] : { $in: [...t.from] } },
      set: t.set,
      action: t.action,
      actor: t.actor ?? this.actor,
      reason: t.reason,
    });
  }

  /**
   * Attempt `attempt` of a Redis job started: only forward, never back to an older attempt, and
   * never over an attempt a database-fallback dispatcher is running. A task waiting in the
   * database queue is taken over: Redis delivered it, so Redis runs it. It also counts the
   * attempts before it as retries, because the previous attempt's own "retrying" write may land
   * after this one (the writes race) and would then find the row moved on: those of its run that
   * were charged (`runAttempt` is this attempt's number within its run; attempts given back by a
   * shutdown or postponed, and those of an earlier run, are not retries).
   */
  markRunning(id: string, attempt: number, runAttempt = attempt): Promise<boolean> {
    return this.transition({
      id,
      from: ["queued", "running"],
      where: { attempt: { $lt: attempt }, $or: [{ status: "queued" }, { queueBackend: "redis" }] },
      set: {
        status: "running",
        queueBackend: "redis",
        attempt,
        retryCount: runAttempt - 1,
        startedAt: new Date(),
        progressPercent: 0,
        currentStep: "Starting",
        availableAt: null,
        leaseUntil: null,
        leaseOwner: null,
      },
      action: "started",
    });
  }

  /** Progress is not a transition: no audit row (there are many). */
  markProgress(at: AttemptOf, percent: number, step: string): Promise<boolean> {
    return this.update(
      { id: at.id, status: "running", attempt: at.attempt, queueBackend: at.backend },
      { progressPercent: Math.max(0, Math.min(100, Math.round(percent))), currentStep: step.slice(0, 500) },
    );
  }

  markCompleted(at: AttemptOf, resultsJson: string | undefined): Promise<boolean> {
    return this.transition({
      id: at.id,
      from: ["running"],
      where: { attempt: at.attempt, queueBackend: at.backend },
      set: {
        status: "completed",
        completedAt: new Date(),
        resultsJson: resultsJson ?? null,
        progressPercent: 100,
        currentStep: "Completed",
        errorMessage: null,
      },
      action: "completed",
    });
  }

  /** The attempt was stopped by a shutdown and the task waits to run again, uncharged. */
  markReleased(at: AttemptOf): Promise<boolean> {
    return this.transition({
      id: at.id,
      from: ["running"],
      where: { attempt: at.attempt, queueBackend: at.backend },
      set: { status: "queued", currentStep: "Requeued: its worker shut down" },
      action: "released",
    });
  }

  /**
   * The attempt failed and the queue will run the task again; `runAttempt` as for `markRunning`
   * (the database queue's attempts are all charged: its attempt number).
   */
  markRetrying(at: AttemptOf, error: string, runAttempt = at.attempt): Promise<boolean> {
    return this.transition({
      id: at.id,
      from: ["running"],
      where: { attempt: at.attempt, queueBackend: at.backend },
      set: {
        status: "queued",
        retryCount: runAttempt,
        errorMessage: error.slice(0, 2000),
        currentStep: "Waiting to retry",
      },
      action: "retrying",
      reason: error,
    });
  }

  /**
   * The task's last attempt failed. The row may still read queued at an earlier attempt: the
   * queue's word on the attempt before may not have landed yet.
   */
  markFailed(at: AttemptOf, error: string): Promise<boolean> {
    return this.transition({
      id: at.id,
      from: ["running", "queued"],
      where: { attempt: { $lte: at.attempt }, queueBackend: at.backend },
      set: {
        status: "failed",
        attempt: at.attempt,
        completedAt: new Date(),
        errorMessage: error.slice(0, 2000),
        currentStep: "Failed",
      },
      action: "failed",
      reason: error,
    });
  }

  /**
   * Redis says the task ended (attempt `attempt`) and the ledger missed it: settle the row, if
   * it is still Redis's and not past that attempt.
   */
  settleFromRedis(
    id: string,
    attempt: number,
    end:
      | { readonly state: "completed"; readonly resultsJson: string | undefined }
      | { readonly state: "failed" | "cancelled"; readonly error: string },
  ): Promise<boolean> {
    const where = { attempt: { $lte: attempt }, queueBackend: "redis" };
    const now = new Date();
    switch (end.state) {
      case "completed":
        return this.transition({
          id,
          from: ["running", "queued"],
          where,
          set: {
            status: "completed",
            attempt,
            completedAt: now,
            resultsJson: end.resultsJson || null,
            progressPercent: 100,
            currentStep: "Completed",
            errorMessage: null,
          },
          action: "completed",
          reason: "settled from Redis",
        });
      case "failed":
        return this.markFailed({ id, attempt, backend: "redis" }, end.error);
      case "cancelled":
        return this.transition({
          id,
          from: ["running", "queued"],
          where,
          set: {
            status: "cancelled",
            attempt,
            completedAt: now,
            cancellationReason: end.error.slice(0, 500),
            currentStep: "Cancelled",
          },
          action: "cancelled",
          reason: end.error,
        });
    }
  }

  /**
   * The task ended cancelled. Without a reason (the queue's word about a running task), the one
   * noted when the cancel was asked for stays. With `of`, only up to that attempt on that queue
   * (a worker's word that it stopped; the row may be at an earlier attempt when the job never
   * began, say cancelled while claimed ahead of a free slot, as `markFailed`). `actor` is who
   * asked (absent: the runtime).
   */
  markCancelled(
    id: string,
    cancel: {
      reason?: string | undefined;
      byAdmin?: { adminUserId: number } | undefined;
      actor?: string | undefined;
    },
    of?: AttemptOf,
  ): Promise<boolean> {
    return this.transition({
      id,
      from: ["queued", "running"],
      where: of ? { attempt: { $lte: of.attempt }, queueBackend: of.backend } : {},
      set: {
        status: "cancelled",
        ...(of ? { attempt: of.attempt } : {}),
        completedAt: new Date(),
        ...(cancel.reason === undefined ? {} : { cancellationReason: cancel.reason.slice(0, 500) }),
        // An admin's cancel of a running task is noted when asked; its worker's word later
        // must not erase who asked.
        ...(cancel.byAdmin ? { cancelledByAdmin: true, adminUserId: cancel.byAdmin.adminUserId } : {}),
        currentStep: "Cancelled",
      },
      action: "cancelled",
      actor: cancel.actor,
      reason: cancel.reason,
    });
  }

  /**
   * Why a running task is being cancelled (and which admin asked), before its worker stops. The
   * row may still read queued: the worker's "running" write can land after the cancel.
   */
  noteCancel(
    id: string,
    reason: string,
    byAdmin: { adminUserId: number } | undefined,
    actor?: string,
  ): Promise<boolean> {
    return this.transition({
      id,
      from: ["running", "queued"],
      set: {
        cancellationReason: reason.slice(0, 500),
        ...(byAdmin ? { cancelledByAdmin: true, adminUserId: byAdmin.adminUserId } : {}),
      },
      action: "cancel_requested",
      actor,
      reason,
    });
  }

  /** A failed task runs again (its dead letter redriven): back to queued, if the user has room. */
  reopenFailed(id: string, actor?: string): Promise<boolean> {
    return this.transition({
      id,
      from: ["failed"],
      set: {
        status: "queued",
        completedAt: null,
        errorMessage: null,
        currentStep: "Requeued by an administrator",
      },
      action: "reopened",
      actor,
      reason: "dead letter retried",
    });
  }

  /** Undo of `reopenFailed` when the queue could not take the task after all. */
  markFailedAgain(id: string, error: string): Promise<boolean> {
    return this.transition({
      id,
      from: ["queued"],
      set: {
        status: "failed",
        completedAt: new Date(),
        errorMessage: error.slice(0, 2000),
        currentStep: "Failed",
      },
      action: "failed",
      reason: error,
    });
  }

  /**
   * A waiting task's new priority, on the record. Once Redis has moved the job (`movedInRedis`),
   * a worker may claim it at the new priority at once, before this write: the row then records
   * the move whatever status it has reached.
   */
  setPriority(
    id: string,
    priority: CaptionTask["priority"],
    actor?: string,
    movedInRedis = false,
  ): Promise<boolean> {
    return this.transition({
      id,
      from: movedInRedis ? TASK_STATUSES : ["queued"],
      set: { priority },
      action: "priority_changed",
      actor,
      reason: `to ${priority}`,
    });
  }

  async status(id: string): Promise<string | undefined> {
    const row = await this.em().findOne(CaptionTask, { id }, { fields: ["status"] });
    return row?.status;
  }

  /** A new task Redis could not take waits in the database queue instead (not a transition). */
  keepInDatabase(id: string): Promise<boolean> {
    return this.update(
      { id, status: "queued", attempt: 0, queueBackend: "redis" },
      { queueBackend: "database" },
    );
  }
}
