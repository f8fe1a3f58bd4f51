import type { MikroORM } from "@mikro-orm/core";
import type { TemplatedApp } from "uWebSockets.js";
import { CaptionTask } from "../db/entities.js";
import { publicFailure } from "./public-error.js";
import type { RedisClient } from "../redis/connection.js";

/** One frame of the progress socket: `{"event": ..., "data": ...}`. */
export const frame = (event: string, data: unknown) => JSON.stringify({ event, data });

export const topicOf = (taskId: string) => `task:${taskId}`;

interface Seen {
  subscribers: number;
  status: string;
  percent: number;
  step: string | null | undefined;
}

const TERMINAL = new Set(["completed", "failed", "cancelled"]);

/** The frames that tell a task's state: a terminal event once it ended, else its progress. */
export const stateFrames = (row: CaptionTask): string => {
  switch (row.status) {
    case "completed":
      return frame("task_completed", {
        task_id: row.id,
        results: row.resultsJson ? (JSON.parse(row.resultsJson) as unknown) : null,
      });
    case "failed": {
      const failure = publicFailure(row.errorMessage);
      return frame("task_error", { task_id: row.id, error: failure.message, category: failure.category });
    }
    case "cancelled":
      return frame("task_cancelled", { task_id: row.id, reason: row.cancellationReason });
    default:
      return frame("progress_update", {
        task_id: row.id,
        status: row.status,
        progress_percent: row.progressPercent,
        current_step: row.currentStep,
        details: {},
      });
  }
};

/**
 * Live task events for the progress socket, from two sources: Redis's events channel (progress
 * from whichever process runs the job, within milliseconds) and the ledger, read every
 * `pollMs` for the tasks someone watches (the ends of tasks, and progress while Redis is away
 * and the database queue runs them). Each change is published once per topic.
 */
export class ProgressHub {
  private readonly watched = new Map<string, Seen>();
  private timer: NodeJS.Timeout | undefined;
  private retry: NodeJS.Timeout | undefined;
  private stopped = false;
  private polling = false;

  constructor(
    private readonly app: TemplatedApp,
    private readonly orm: MikroORM,
    private readonly subscriber: RedisClient,
    private readonly pollMs = 1_000,
    private readonly retryMs = 2_000,
  ) {}

  start(channel: string): void {
    this.subscriber.on("message", (_channel: string, message: string) => this.onRedisEvent(message));
    this.subscribe(channel);
    this.timer = setInterval(() => void this.poll(), this.pollMs);
  }

  /**
   * Redis may be away now, and a queued SUBSCRIBE gives up after a few reconnects: try again
   * until one lands (ioredis then renews it after each reconnect by itself). Meanwhile the
   * ledger poll carries the events.
   */
  private subscribe(channel: string) {
    this.subscriber.subscribe(channel).catch(() => {
      if (!this.stopped) this.retry = setTimeout(() => this.subscribe(channel), this.retryMs);
    });
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.retry);
    this.subscriber.disconnect();
  }

  /** A socket began watching `row`'s task: count it, and note the state it was just sent. */
  watch(row: CaptionTask): void {
    const seen = this.watched.get(row.id);
    if (seen) {
      seen.subscribers++;
      return;
    }
    this.watched.set(row.id, {
      subscribers: 1,
      status: row.status,
      percent: row.progressPercent,
      step: row.currentStep,
    });
  }

  unwatch(taskId: string): void {
    const seen = this.watched.get(taskId);
    if (seen && --seen.subscribers <= 0) this.watched.delete(taskId);
  }

  private onRedisEvent(message: string) {
    let event: { type?: string; id?: string; percent?: number; step?: string; details?: unknown };
    try {
      event = JSON.parse(message) as typeof event;
    } catch {
      return;
    }
    if (event.type !== "progress" || typeof event.id !== "string") return;
    const seen = this.watched.get(event.id);
    if (!seen || TERMINAL.has(seen.status)) return;
    seen.status = "running";
    seen.percent = event.percent ?? seen.percent;
    seen.step = event.step ?? seen.step;
    this.app.publish(
      topicOf(event.id),
      frame("progress_update", {
        task_id: event.id,
        status: "running",
        progress_percent: seen.percent,
        current_step: seen.step,
        details: event.details ?? {},
      }),
    );
    // The last step: the task is ending; look at the ledger now rather than at the next tick.
    if (seen.percent >= 100) void this.poll();
  }

  private async poll() {
    if (this.polling || this.watched.size === 0) return;
    this.polling = true;
    try {
      const rows = await this.orm.em.fork().find(CaptionTask, { id: { $in: [...this.watched.keys()] } });
      for (const row of rows) {
        const seen = this.watched.get(row.id);
        if (!seen) continue;
        const ended = TERMINAL.has(row.status) && row.status !== seen.status;
        // The ledger's progress lags Redis's: only a change of state or a step forward is news.
        const moved =
          !TERMINAL.has(row.status) && (row.status !== seen.status || row.progressPercent > seen.percent);
        if (!ended && !moved) continue;
        seen.status = row.status;
        seen.percent = row.progressPercent;
        seen.step = row.currentStep;
        this.app.publish(topicOf(row.id), stateFrames(row));
      }
    } catch {
      // The database away for a moment: the next tick tries again.
    } finally {
      this.polling = false;
    }
  }
}
