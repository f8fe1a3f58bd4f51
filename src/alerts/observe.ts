import { Effect } from "effect";
import { PRIORITIES, type Priority } from "../domain/priority.js";
import type { RedisHealth } from "../health/redis-health.js";
import { QueueAdmin } from "../queue/admin.js";
import type { RedisError } from "../queue/errors.js";
import type { Queue } from "../queue/queue.js";
import { WorkerRegistry } from "../queue/workers.js";
import type { Observation } from "./rules.js";

/** What the queue-wide rules look at, read from Redis in one go. */
export const observeQueue = (deps: {
  readonly queue: Queue;
  readonly health: RedisHealth;
  /** This process's: how a worker registered by an older version, with no lapse time, is judged. */
  readonly heartbeatMs: number;
  readonly windowMinutes: number;
}): Effect.Effect<Observation, RedisError> => {
  const admin = new QueueAdmin(deps.queue);
  const registry = new WorkerRegistry(deps.queue);
  return Effect.all(
    [
      admin.stats(),
      admin.oldestWaiting(),
      admin.history(deps.windowMinutes),
      registry.list(),
      registry.lapsed(deps.heartbeatMs * 3),
    ],
    { concurrency: "unbounded" },
  ).pipe(
    Effect.map(([stats, oldest, history, workers, lapsed]) => {
      const sum = (pick: (m: (typeof history)[number]) => Readonly<Record<Priority, number>>) =>
        history.reduce((n, m) => n + PRIORITIES.reduce((k, p) => k + pick(m)[p], 0), 0);
      return {
        at: Date.now(),
        waiting: Object.fromEntries(stats.map((s) => [s.priority, s.waiting])) as Record<Priority, number>,
        oldestWaitingAt: oldest,
        paused: new Set(stats.filter((s) => s.paused).map((s) => s.priority)),
        completed: sum((m) => m.completed),
        // Every failed attempt counts, retried or not: the rate is of attempts.
        failed: sum((m) => m.failed) + sum((m) => m.retried),
        deadLettered: sum((m) => m.dead),
        workers: workers.map((w) => ({
          id: w.id,
          active: w.active,
          capacity: w.groups.reduce((n, g) => n + g.concurrency, 0),
          restarts: w.restarts,
          mode: w.mode,
        })),
        lapsed,
        memoryPercent: deps.health.snapshot().memory?.percent,
      };
    }),
  );
};
