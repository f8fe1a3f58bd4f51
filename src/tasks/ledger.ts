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

  markCancelled(
    id: string,
    cancel: { reason: string; byAdmin?: { adminUserId: number } | undefined },
  ): Promise<boolean> {
    return this.update(
      { id, status: { $in: ["queued", "running"] } },
      {
        status: "cancelled",
        completedAt: new Date(),
        cancellationReason: cancel.reason.slice(0, 500),
        cancelledByAdmin: cancel.byAdmin !== undefined,
        adminUserId: cancel.byAdmin?.adminUserId ?? null,
        currentStep: "Cancelled",
      },
    );
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
