import { CounterVec, HistogramVec } from "./prometheus.js";

/** How long jobs ran, in seconds: caption jobs take seconds to many minutes. */
const DURATION_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900];

/** How an attempt ended; "postponed" gave the job back uncharged (something it needs was away). */
export type JobOutcome = "completed" | "retried" | "failed" | "cancelled" | "postponed";

/**
 * What this process counted: tasks it took in, attempts its dispatchers ended (Redis or the
 * database queue) and how long they ran. Gauges (queue depth, mode, restarts) are read when
 * scraped, not kept here.
 */
export class JobMetrics {
  readonly enqueued = new CounterVec();
  readonly ended = new CounterVec();
  readonly durations = new HistogramVec(DURATION_BUCKETS);

  submitted(priority: string, backend: string): void {
    this.enqueued.inc({ priority, backend });
  }

  /** Attempts that completed, each with how long it ran: counted at once. */
  attemptsCompleted(priority: string, backend: string, seconds: readonly number[]): void {
    if (seconds.length === 0) return;
    this.ended.inc({ priority, outcome: "completed", backend }, seconds.length);
    this.durations.observeAll({ priority, backend }, seconds);
  }

  attemptEnded(priority: string, outcome: JobOutcome, backend: string, seconds?: number): void {
    this.ended.inc({ priority, outcome, backend });
    if (seconds !== undefined && outcome === "completed")
      this.durations.observe({ priority, backend }, seconds);
  }
}
