import { Effect } from "effect";
import type { Queue } from "../queue/queue.js";
import { scripts } from "../queue/scripts.js";
import { type ActiveAlert, AlertBook, type AlertNotice } from "./book.js";
import type { AlertWebhook } from "./webhook.js";

/** Notices kept in memory for the admin API, newest last. */
const RECENT_KEPT = 100;
/** Alerts kept in the Redis stream (approximately), shared with the health actor's. */
const STREAM_KEPT = 1_000;

export interface AlertCenterOptions {
  readonly workerId: string;
  readonly queue: Queue;
  readonly repeatMs: number;
  readonly holdMs: (rule: string) => number;
  readonly webhook: AlertWebhook | undefined;
}

export interface AlertSnapshot {
  /** Firing alerts: this process's own, and the queue-wide ones while it evaluates them. */
  readonly active: readonly ActiveAlert[];
  /** This process's notices, newest first. */
  readonly recent: readonly AlertNotice[];
  /** Whether this process evaluates the queue-wide rules now. */
  readonly evaluator: boolean;
}

/**
 * One process's alerting: two alert books and where their notices go. `own` holds the
 * conditions each process judges for itself (it fell back to the database queue), which must be
 * told even while Redis, and with it the evaluator lock, is away. `shared` holds the queue-wide
 * rules, judged only by the process holding the lock; its state lives in Redis so that the next
 * holder carries on without firing again. Every notice goes to the log (by the actor), this
 * process's recent list, the alerts stream the dashboard and `ratatoskr alerts` read, and the
 * webhook.
 */
export class AlertCenter {
  readonly own: AlertBook;
  readonly shared: AlertBook;
  private evaluating = false;
  private readonly recent: AlertNotice[] = [];
  private readonly unpublished: AlertNotice[] = [];

  constructor(private readonly options: AlertCenterOptions) {
    const book = { repeatMs: options.repeatMs, holdMs: options.holdMs };
    this.own = new AlertBook(book);
    this.shared = new AlertBook(book);
  }

  get webhook(): AlertWebhook | undefined {
    return this.options.webhook;
  }

  get evaluator(): boolean {
    return this.evaluating;
  }

  /** Keeps notices for the API, the stream and the webhook. */
  record(notices: readonly AlertNotice[]): void {
    for (const n of notices) {
      this.recent.push(n);
      this.unpublished.push(n);
      this.options.webhook?.offer(n);
    }
    this.recent.splice(0, Math.max(0, this.recent.length - RECENT_KEPT));
    this.unpublished.splice(0, Math.max(0, this.unpublished.length - RECENT_KEPT));
  }

  /** Writes the notices not yet in the alerts stream; kept for the next try if Redis is away. */
  async publish(): Promise<void> {
    if (this.unpublished.length === 0) return;
    const { redis, keys } = this.options.queue;
    const batch = this.unpublished.splice(0);
    try {
      const pipeline = redis.pipeline();
      for (const n of batch) {
        pipeline.xadd(
          keys.alerts,
          "MAXLEN",
          "~",
          STREAM_KEPT,
          "*",
          ...streamFields(n, this.options.workerId),
        );
      }
      const replies = (await pipeline.exec()) ?? [];
      const failed = replies.find(([error]) => error);
      if (failed) throw failed[0];
    } catch (error) {
      this.unpublished.unshift(...batch);
      throw error;
    }
  }

  /**
   * Takes or keeps the evaluator lock for `ttlMs`. On taking it, loads the alerts the previous
   * evaluator left; on losing it, forgets the shared book (the new holder has it).
   */
  async claimEvaluator(ttlMs: number): Promise<boolean> {
    const { queue, workerId } = this.options;
    const held = Number(await Effect.runPromise(queue.run(scripts.alertLock, [workerId, ttlMs]))) === 1;
    if (held && !this.evaluating) this.shared.load(await readSharedAlerts(queue));
    if (!held) this.shared.load([]);
    this.evaluating = held;
    return held;
  }

  /** Stores the shared book where the API of every process and the next evaluator read it. */
  async saveShared(): Promise<void> {
    const { redis, keys } = this.options.queue;
    const alerts = this.shared.alerts();
    const multi = redis.multi().del(keys.alerting);
    if (alerts.length > 0) multi.hset(keys.alerting, ...alerts.flatMap((a) => [a.key, JSON.stringify(a)]));
    await multi.exec();
  }

  /** Lets go of the evaluator lock at shutdown, so another process takes over at once. */
  async resign(): Promise<void> {
    if (!this.evaluating) return;
    this.evaluating = false;
    const { redis, keys } = this.options.queue;
    const lock = `${keys.alerting}:lock`;
    if ((await redis.get(lock)) === this.options.workerId) await redis.del(lock);
  }

  snapshot(): AlertSnapshot {
    return {
      active: [...this.own.firing(), ...(this.evaluating ? this.shared.firing() : [])],
      recent: [...this.recent].reverse(),
      evaluator: this.evaluating,
    };
  }
}

/** The queue-wide alerts as the evaluator last stored them (firing and pending). */
export const readSharedAlerts = async (queue: Queue): Promise<ActiveAlert[]> => {
  const stored = await queue.redis.hgetall(queue.keys.alerting);
  return Object.values(stored).flatMap((json) => {
    try {
      return [JSON.parse(json) as ActiveAlert];
    } catch {
      return [];
    }
  });
};

const streamFields = (n: AlertNotice, source: string) => [
  "at",
  String(n.at),
  "level",
  n.state === "resolved" ? "info" : n.severity,
  "message",
  n.message,
  "source",
  source,
  "rule",
  n.rule,
  "key",
  n.key,
  "state",
  n.state,
];
