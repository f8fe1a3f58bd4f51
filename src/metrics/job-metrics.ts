import { type Counter, CounterVec, type Histogram, HistogramVec } from "./prometheus.js";

/** How long jobs ran, in seconds: caption jobs take seconds to many minutes. */
const DURATION_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900];

/** How an attempt ended; "postponed" gave the job back uncharged (something it needs was away). */
export type JobOutcome = "completed" | "retried" | "failed" | "cancelled" | "postponed";

interface Ending {
  readonly ended: Counter;
  /** Run times, kept of completed attempts only (so no empty series for other endings). */
  readonly ran: Histogram | undefined;
}

/**
 * What this process counted: tasks it took in, attempts its dispatchers ended (Redis or the
 * database queue) and how long they ran. Gauges (queue depth, mode, restarts) are read when
 * scraped, not kept here.
 */
export class JobMetrics {
  readonly enqueued = new CounterVec();
  readonly ended = new CounterVec();
  readonly durations = new HistogramVec(DURATION_BUCKETS);
  /**
   * Each ending's counter and run-time histogram, by priority, outcome and backend: found once,
   * as every job that ends (tens of thousands a second) counts in one.
   */
  private readonly endings = new Map<string, Map<string, Map<string, Ending>>>();

  submitted(priority: string, backend: string): void {
    this.enqueued.inc({ priority, backend });
  }

  /** Attempts that completed, each with how long it ran: counted at once. */
  attemptsCompleted(priority: string, backend: string, seconds: readonly number[]): void {
    if (seconds.length === 0) return;
    const ending = this.ending(priority, "completed", backend);
    ending.ended.inc(seconds.length);
    for (const value of seconds) ending.ran?.observe(value);
  }

  attemptEnded(priority: string, outcome: JobOutcome, backend: string, seconds?: number): void {
    const ending = this.ending(priority, outcome, backend);
    ending.ended.inc();
    if (seconds !== undefined) ending.ran?.observe(seconds);
  }

  private ending(priority: string, outcome: JobOutcome, backend: string): Ending {
    // Maps within maps: a key made of the three would be a new string to hash at every call.
    let byOutcome = this.endings.get(priority);
    if (!byOutcome) this.endings.set(priority, (byOutcome = new Map()));
    let byBackend = byOutcome.get(outcome);
    if (!byBackend) byOutcome.set(outcome, (byBackend = new Map()));
    let ending = byBackend.get(backend);
    if (!ending) {
      ending = {
        ended: this.ended.at({ priority, outcome, backend }),
        // Kept by priority and backend: one histogram for the completions of every worker.
        ran: outcome === "completed" ? this.durations.at({ priority, backend }) : undefined,
      };
      byBackend.set(backend, ending);
    }
    return ending;
  }
}
