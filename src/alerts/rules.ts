import { PRIORITIES, type Priority } from "../domain/priority.js";

/**
 * The alert rules: pure functions from what the evaluator observed to the conditions that hold
 * now. Whether a condition fires, repeats or resolves is the alert book's business (book.ts).
 */
export type Severity = "info" | "warning" | "critical";

export interface Condition {
  /** The rule, e.g. `backlog_age`. */
  readonly rule: string;
  /** The rule and its subject, e.g. `backlog_age:urgent`: one alert per key. */
  readonly key: string;
  readonly severity: Severity;
  readonly message: string;
}

export interface WorkerObservation {
  readonly id: string;
  /** Jobs running, and how many it may run (its groups' concurrency). */
  readonly active: number;
  readonly capacity: number;
  /** Actor restarts in this process since it started. */
  readonly restarts: number;
  readonly mode: string;
}

export interface Observation {
  readonly at: number;
  readonly waiting: Readonly<Record<Priority, number>>;
  /** When the oldest job still waiting in each priority's stream was enqueued (absent: none). */
  readonly oldestWaitingAt: Readonly<Partial<Record<Priority, number>>>;
  readonly paused: ReadonlySet<Priority>;
  /** Attempts ended over the failure window, all priorities. */
  readonly completed: number;
  readonly failed: number;
  readonly deadLettered: number;
  readonly workers: readonly WorkerObservation[];
  /** Registered processes that stopped beating (their registration lapsed). */
  readonly lapsed: readonly string[];
  /** Redis memory use of the fullest node, percent of maxmemory (absent: no limit set). */
  readonly memoryPercent: number | undefined;
}

export interface Thresholds {
  readonly backlogCount: number;
  readonly waitSeconds: Readonly<Record<Priority, number>>;
  readonly failurePercent: number;
  /** Fewer attempts than this in the window say nothing about a rate. */
  readonly failureMinSample: number;
  readonly deadLetters: number;
  readonly restarts: number;
  readonly memoryPercent: number;
  readonly windowMinutes: number;
}

const SEVERITY_OF_AGE: Readonly<Record<Priority, Severity>> = {
  urgent: "critical",
  high: "warning",
  normal: "warning",
  low: "info",
};

const seconds = (ms: number) => `${Math.round(ms / 1000)} s`;

/**
 * Restarts per process over the window, from the cumulative counts each heartbeat reports:
 * the evaluator keeps the counts it saw and when (`seen`), and this reads the growth.
 */
export class RestartWindow {
  private readonly seen = new Map<string, Array<{ at: number; restarts: number }>>();

  constructor(private readonly windowMs: number) {}

  /** Restarts of each worker within the window ending at `at`. */
  update(at: number, workers: readonly WorkerObservation[]): Map<string, number> {
    const growth = new Map<string, number>();
    const live = new Set(workers.map((w) => w.id));
    for (const id of this.seen.keys()) if (!live.has(id)) this.seen.delete(id);
    for (const w of workers) {
      const history = (this.seen.get(w.id) ?? []).filter((h) => h.at >= at - this.windowMs);
      history.push({ at, restarts: w.restarts });
      this.seen.set(w.id, history);
      // Growth since the oldest count in the window; a process seen for the first time has none,
      // since restarts long past should not fire an alert when an evaluator takes over.
      growth.set(w.id, Math.max(0, w.restarts - history[0]!.restarts));
    }
    return growth;
  }
}

/** The conditions the queue-wide rules find in one observation. */
export const evaluateRules = (
  o: Observation,
  t: Thresholds,
  restartsInWindow: ReadonlyMap<string, number>,
): Condition[] => {
  const found: Condition[] = [];
  for (const p of PRIORITIES) {
    const paused = o.paused.has(p) ? " (the priority is paused)" : "";
    if (o.waiting[p] >= t.backlogCount) {
      found.push({
        rule: "backlog_count",
        key: `backlog_count:${p}`,
        severity: "warning",
        message: `${o.waiting[p]} ${p} jobs waiting (alert at ${t.backlogCount})${paused}`,
      });
    }
    const oldest = o.oldestWaitingAt[p];
    if (oldest !== undefined && o.at - oldest >= t.waitSeconds[p] * 1000) {
      found.push({
        rule: "backlog_age",
        key: `backlog_age:${p}`,
        severity: SEVERITY_OF_AGE[p],
        message: `the oldest waiting ${p} job has waited ${seconds(o.at - oldest)} (alert at ${t.waitSeconds[p]} s)${paused}`,
      });
    }
  }
  const ended = o.completed + o.failed;
  if (ended >= t.failureMinSample && (100 * o.failed) / ended >= t.failurePercent) {
    found.push({
      rule: "failure_rate",
      key: "failure_rate",
      severity: "critical",
      message: `${Math.round((100 * o.failed) / ended)}% of attempts failed over the last ${t.windowMinutes} min (${o.failed} of ${ended}; alert at ${t.failurePercent}%)`,
    });
  }
  if (o.deadLettered >= t.deadLetters) {
    found.push({
      rule: "dead_letters",
      key: "dead_letters",
      severity: "warning",
      message: `${o.deadLettered} jobs dead-lettered over the last ${t.windowMinutes} min (ratatoskr dead list)`,
    });
  }
  for (const id of o.lapsed) {
    found.push({
      rule: "heartbeat_lapsed",
      key: `heartbeat_lapsed:${id}`,
      severity: "warning",
      message: `worker ${id} stopped beating; its jobs return when their leases lapse`,
    });
  }
  for (const [id, restarts] of restartsInWindow) {
    if (restarts > t.restarts) {
      found.push({
        rule: "actor_restarts",
        key: `actor_restarts:${id}`,
        severity: "warning",
        message: `worker ${id} restarted actors ${restarts} times over the last ${t.windowMinutes} min (alert above ${t.restarts})`,
      });
    }
  }
  if (o.memoryPercent !== undefined && o.memoryPercent >= t.memoryPercent) {
    found.push({
      rule: "redis_memory",
      key: "redis_memory",
      severity: "critical",
      message: `Redis memory at ${o.memoryPercent}% of maxmemory (alert at ${t.memoryPercent}%)`,
    });
  }
  const running = o.workers.filter((w) => w.capacity > 0);
  const backlog = PRIORITIES.some((p) => o.waiting[p] > 0 && !o.paused.has(p));
  if (running.length > 0 && backlog && running.every((w) => w.active >= w.capacity)) {
    const slots = running.reduce((n, w) => n + w.capacity, 0);
    found.push({
      rule: "pool_saturated",
      key: "pool_saturated",
      severity: "warning",
      message: `every worker slot is busy (${slots} in ${running.length} processes) while jobs wait: add workers or concurrency`,
    });
  }
  return found;
};

/** The one rule each process evaluates for itself, Redis or not: is it on the database queue? */
export const fallbackCondition = (workerId: string, mode: string, reason: string): Condition | undefined =>
  mode === "database"
    ? {
        rule: "fallback_mode",
        key: `fallback_mode:${workerId}`,
        severity: "warning",
        message: `worker ${workerId} queues and runs tasks in the database: ${reason}`,
      }
    : undefined;
