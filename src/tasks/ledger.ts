import type { EntityManager } from "@mikro-orm/core";
import { CaptionTask } from "../db/entities.js";

/**
 * The task rows' state transitions, each a single compare-and-set UPDATE: it only changes a row
 * that is in the state, and at the attempt, the transition expects. A duplicate or late
 * delivery (a stale attempt) therefore changes nothing, and reports so (false).
 */
export class TaskLedger {
  constructor(private readonly em: () => EntityManager) {}

  private async update(where: object, set: object): Promise<boolean> {
    const changed = await this.em().nativeUpdate(CaptionTask, where as never, set as never);
    return changed > 0;
  }

  /**
   * Attempt `attempt` of a Redis job started: only forward, never back to an older attempt, and
   * never over an attempt a database-fallback dispatcher is running. A task waiting in the
   * database queue is taken over: Redis delivered it, so Redis runs it. It also counts the
   * attempts before it as retries, because the previous attempt's own "retrying" write may land
   * after this one (the writes race) and would then find the row moved on.
   */
  markRunning(id: string, attempt: number): Promise<boolean> {
    return this.update(
      {
        id,
        attempt: { $lt: attempt },
        $or: [{ status: "queued" }, { status: "running", queueBackend: "redis" }],
      },
      {
        status: "running",
        queueBackend: "redis",
        attempt,
        retryCount: attempt - 1,
        startedAt: new Date(),
        progressPercent: 0,
        currentStep: "Starting",
        availableAt: null,
        leaseUntil: null,
        leaseOwner: null,
      },
    );
  }

  markProgress(id: string, attempt: number, percent: number, step: string): Promise<boolean> {
    return this.update(
      { id, status: "running", attempt },
      { progressPercent: Math.max(0, Math.min(100, Math.round(percent))), currentStep: step.slice(0, 500) },
    );
  }

  markCompleted(id: string, attempt: number, resultsJson: string | undefined): Promise<boolean> {
    return this.update(
      { id, status: "running", attempt },
      {
        status: "completed",
        completedAt: new Date(),
        resultsJson: resultsJson ?? null,
        progressPercent: 100,
        currentStep: "Completed",
        errorMessage: null,
      },
    );
  }

  /** Redis says attempt `attempt` completed, and the ledger missed it: settle the row. */
  settleCompleted(id: string, attempt: number, resultsJson: string | undefined): Promise<boolean> {
    return this.update(
      { id, status: { $in: ["queued", "running"] }, attempt: { $lte: attempt } },
      {
        status: "completed",
        attempt,
        completedAt: new Date(),
        resultsJson: resultsJson || null,
        progressPercent: 100,
        currentStep: "Completed",
        errorMessage: null,
      },
    );
  }

  /** The attempt was stopped by a shutdown and the task waits to run again, uncharged. */
  markReleased(id: string, attempt: number): Promise<boolean> {
    return this.update(
      { id, status: "running", attempt },
      { status: "queued", currentStep: "Requeued: its worker shut down" },
    );
  }

  /** The attempt failed and the queue will run the task again. */
  markRetrying(id: string, attempt: number, error: string): Promise<boolean> {
    return this.update(
      { id, status: "running", attempt },
      {
        status: "queued",
        retryCount: attempt,
        errorMessage: error.slice(0, 2000),
        currentStep: "Waiting to retry",
      },
    );
  }

  markFailed(id: string, attempt: number, error: string): Promise<boolean> {
    return this.update(
      { id, status: { $in: ["queued", "running"] }, attempt: { $lte: attempt } },
      {
        status: "failed",
        completedAt: new Date(),
        errorMessage: error.slice(0, 2000),
        currentStep: "Failed",
      },
    );
  }

  /**
   * The task ended cancelled. Without a reason (the queue's word about a running task), the one
   * noted when the cancel was asked for stays.
   */
  markCancelled(
    id: string,
    cancel: { reason?: string | undefined; byAdmin?: { adminUserId: number } | undefined },
  ): Promise<boolean> {
    return this.update(
      { id, status: { $in: ["queued", "running"] } },
      {
        status: "cancelled",
        completedAt: new Date(),
        ...(cancel.reason === undefined ? {} : { cancellationReason: cancel.reason.slice(0, 500) }),
        // An admin's cancel of a running task is noted when asked; its worker's word later
        // must not erase who asked.
        ...(cancel.byAdmin ? { cancelledByAdmin: true, adminUserId: cancel.byAdmin.adminUserId } : {}),
        currentStep: "Cancelled",
      },
    );
  }

  /** Why a running task is being cancelled (and which admin asked), before its worker stops. */
  noteCancel(id: string, reason: string, byAdmin: { adminUserId: number } | undefined): Promise<boolean> {
    return this.update(
      { id, status: "running" },
      {
        cancellationReason: reason.slice(0, 500),
        ...(byAdmin ? { cancelledByAdmin: true, adminUserId: byAdmin.adminUserId } : {}),
      },
    );
  }

  /** A failed task runs again (its dead letter redriven): back to queued, if the user has room. */
  reopenFailed(id: string): Promise<boolean> {
    return this.update(
      { id, status: "failed" },
      {
        status: "queued",
        completedAt: null,
        errorMessage: null,
        currentStep: "Requeued by an administrator",
      },
    );
  }

  /** Undo of `reopenFailed` when the queue could not take the task after all. */
  markFailedAgain(id: string, error: string): Promise<boolean> {
    return this.update(
      { id, status: "queued" },
      {
        status: "failed",
        completedAt: new Date(),
        errorMessage: error.slice(0, 2000),
        currentStep: "Failed",
      },
    );
  }

  setPriority(id: string, priority: CaptionTask["priority"]): Promise<boolean> {
    return this.update({ id, status: "queued" }, { priority });
  }

  async status(id: string): Promise<string | undefined> {
    const row = await this.em().findOne(CaptionTask, { id }, { fields: ["status"] });
    return row?.status;
  }

  /** A new task Redis could not take waits in the database queue instead. */
  keepInDatabase(id: string): Promise<boolean> {
    return this.update(
      { id, status: "queued", attempt: 0, queueBackend: "redis" },
      { queueBackend: "database" },
    );
  }
}
