import type { MikroORM } from "@mikro-orm/core";
import { Effect, Either } from "effect";
import { CaptionTask } from "../db/entities.js";
import { type AlertEntry, type MinuteCounts, type PriorityStats, QueueAdmin } from "../queue/admin.js";
import type { Queue } from "../queue/queue.js";
import { type WorkerInfo, WorkerRegistry } from "../queue/workers.js";
import type { ActorStatus, RuntimeStatus } from "../runtime.js";

/** Everything the dashboard shows at once; sent on load and pushed over the socket. */
export interface DashboardSnapshot {
  readonly at: number;
  readonly backend: {
    readonly mode: "redis" | "database";
    readonly forced: boolean;
    readonly since: number;
    readonly outages: number;
  };
  readonly redis: {
    readonly usedMb: number | null;
    readonly maxMb: number | null;
    readonly percent: number | null;
    /** Why the Redis figures below are missing (Redis away). */
    readonly error: string | null;
  };
  /** Null while Redis is away: the ledger's counts still show. */
  readonly priorities: readonly PriorityStats[] | null;
  /** Attempts ended per minute over the last hour, oldest first. */
  readonly history: readonly MinuteCounts[];
  /** Run time of the tasks completed in the last hour, from the ledger (every process's). */
  readonly durations: { readonly count: number; readonly p50: number | null; readonly p95: number | null };
  readonly workers: readonly WorkerInfo[] | null;
  /** This process's supervision tree. */
  readonly actors: Readonly<Record<string, ActorStatus>>;
  readonly tasks: { readonly queued: number; readonly running: number; readonly inDatabaseQueue: number };
  /** The newest operator alerts (outages, Redis restarts, memory pressure), newest first. */
  readonly alerts: readonly AlertEntry[];
}

/** The value below which `share` of the sorted values lie (nearest rank). */
export const percentile = (sorted: readonly number[], share: number): number | null => {
  if (sorted.length === 0) return null;
  const rank = Math.max(1, Math.ceil(share * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1]!;
};

const durationsOf = async (orm: MikroORM, since: Date) => {
  const rows = await orm.em
    .fork()
    .find(
      CaptionTask,
      { status: "completed", completedAt: { $gte: since }, startedAt: { $ne: null } },
      { fields: ["startedAt", "completedAt"], orderBy: { completedAt: "desc" }, limit: 5_000 },
    );
  const seconds = rows
    .map((r) => (r.completedAt!.getTime() - r.startedAt!.getTime()) / 1000)
    .filter((s) => s >= 0)
    .sort((a, b) => a - b);
  return { count: seconds.length, p50: percentile(seconds, 0.5), p95: percentile(seconds, 0.95) };
};

export const dashboardSnapshot = async (deps: {
  readonly orm: MikroORM;
  readonly queue: Queue;
  readonly runtime: () => RuntimeStatus;
}): Promise<DashboardSnapshot> => {
  const now = Date.now();
  const status = deps.runtime();
  const admin = new QueueAdmin(deps.queue);
  const fromRedis = Effect.all(
    [admin.stats(), admin.history(60), new WorkerRegistry(deps.queue).list(), admin.alerts(10)],
    { concurrency: "unbounded" },
  ).pipe(Effect.timeout("2 seconds"), Effect.either);
  const em = deps.orm.em.fork();
  const [redis, durations, queued, running, inDatabaseQueue] = await Promise.all([
    Effect.runPromise(fromRedis),
    durationsOf(deps.orm, new Date(now - 3_600_000)),
    em.count(CaptionTask, { status: "queued" }),
    em.count(CaptionTask, { status: "running" }),
    em.count(CaptionTask, { status: "queued", queueBackend: "database" }),
  ]);
  const memory = status.health.memory;
  const mb = (bytes: number) => Math.round((bytes / 1_048_576) * 10) / 10;
  return {
    at: now,
    backend: {
      mode: status.health.mode,
      forced: status.health.forced,
      since: status.health.since,
      outages: status.health.transitions.toDatabase,
    },
    redis: {
      usedMb: memory ? mb(memory.usedBytes) : null,
      maxMb: memory && memory.maxBytes > 0 ? mb(memory.maxBytes) : null,
      percent: memory?.percent ?? null,
      error: Either.isLeft(redis) ? "Redis did not answer" : null,
    },
    priorities: Either.isRight(redis) ? redis.right[0] : null,
    history: Either.isRight(redis) ? redis.right[1] : [],
    durations,
    workers: Either.isRight(redis) ? redis.right[2] : null,
    actors: status.actors,
    tasks: { queued, running, inDatabaseQueue },
    alerts: Either.isRight(redis) ? redis.right[3] : [],
  };
};
