import type { MikroORM } from "@mikro-orm/core";
import { Effect } from "effect";
import { CaptionTask } from "../db/entities.js";
import { inPriorityOrder, isPriority, PRIORITIES, type Priority } from "../domain/priority.js";
import { QueueAdmin } from "../queue/admin.js";
import type { Queue } from "../queue/queue.js";
import { captionJob } from "./caption-job.js";
import { DatabaseQueue } from "./database-queue.js";
import { TaskLedger } from "./ledger.js";
import { Reconciler } from "./reconciler.js";

export interface MigrationReport {
  readonly dryRun: boolean;
  /** Tasks waiting in the database queue when the command began, by priority. */
  readonly waiting: Readonly<Record<Priority, number>>;
  readonly moved: number;
  /** Rows that cannot become a job (say, settings no longer valid): left in the database. */
  readonly invalid: ReadonlyArray<{ readonly id: string; readonly reason: string }>;
  /** Priorities resumed because `rollback-to-db` had paused them. */
  readonly resumed: readonly Priority[];
}

export interface RollbackReport {
  readonly dryRun: boolean;
  /** Tasks waiting in Redis moved to the database queue. */
  readonly moved: number;
  /** Tasks running from Redis: left to finish there (their outcome still reaches the ledger). */
  readonly running: number;
  /** Priorities paused in Redis so no process takes from it. */
  readonly paused: readonly Priority[];
}

/** The priorities `rollback-to-db` paused (not those an operator had paused before). */
const pausedByRollbackKey = (queue: Queue) => `${queue.keys.backend}:paused`;

const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(effect);

const countWaiting = async (orm: MikroORM): Promise<Record<Priority, number>> => {
  const em = orm.em.fork();
  const entries = await Promise.all(
    PRIORITIES.map(
      async (p) =>
        [
          p,
          await em.count(CaptionTask, { status: "queued", queueBackend: "database", priority: p }),
        ] as const,
    ),
  );
  return Object.fromEntries(entries) as Record<Priority, number>;
};

/**
 * `ratatoskr tasks migrate-to-redis`: tasks queued in the database (a database-polling
 * deployment's, or a rollback's) go into the streams, highest priority first; rows that cannot
 * become a job are reported and stay. Ends a rollback: the database mode flag is cleared and
 * the priorities it paused resume. Running it twice moves nothing the second time.
 */
export const migrateToRedis = async (
  orm: MikroORM,
  queue: Queue,
  options: { dryRun: boolean },
): Promise<MigrationReport> => {
  const waiting = await countWaiting(orm);
  const invalid: Array<{ id: string; reason: string }> = [];
  const fork = () => orm.em.fork();
  const dbQueue = new DatabaseQueue(fork);
  for (const row of await fork().find(CaptionTask, { status: "queued", queueBackend: "database" })) {
    try {
      captionJob(row);
    } catch (error) {
      invalid.push({ id: row.id, reason: error instanceof Error ? error.message : String(error) });
    }
  }
  const toResume = inPriorityOrder(
    (await queue.redis.smembers(pausedByRollbackKey(queue))).filter(isPriority),
  );
  if (options.dryRun) return { dryRun: true, waiting, moved: 0, invalid, resumed: toResume };

  // The unusable rows are parked first so the move below does not trip over them.
  for (const bad of invalid)
    await fork().nativeUpdate(
      CaptionTask,
      { id: bad.id, status: "queued" },
      {
        status: "failed",
        completedAt: new Date(),
        errorMessage: `not migrated: ${bad.reason}`.slice(0, 2000),
      },
    );
  const reconciler = new Reconciler(fork, queue, dbQueue, new TaskLedger(fork), { graceMs: 0 });
  const moved = await reconciler.moveToRedis();
  await queue.redis.del(queue.keys.backend);
  const admin = new QueueAdmin(queue);
  for (const p of toResume) await run(admin.resume(p));
  await queue.redis.del(pausedByRollbackKey(queue));
  return { dryRun: false, waiting, moved, invalid, resumed: toResume };
};

/**
 * `ratatoskr tasks rollback-to-db`: every process stops taking from Redis (the priorities are
 * paused, and the database mode flag makes each process's health actor switch to the database
 * queue), and the tasks waiting in Redis move to the database queue. Running tasks finish where
 * they are. Idempotent; undone by `migrate-to-redis`.
 */
export const rollbackToDb = async (
  orm: MikroORM,
  queue: Queue,
  options: { dryRun: boolean },
): Promise<RollbackReport> => {
  const em = orm.em.fork();
  const waiting = await em.find(CaptionTask, { status: "queued", queueBackend: "redis" });
  const running = await em.count(CaptionTask, { status: "running", queueBackend: "redis" });
  const admin = new QueueAdmin(queue);
  const stats = await run(admin.stats());
  const toPause = stats.filter((s) => !s.paused).map((s) => s.priority);
  if (options.dryRun) return { dryRun: true, moved: waiting.length, running, paused: toPause };

  await queue.redis.set(queue.keys.backend, "database");
  if (toPause.length > 0) await queue.redis.sadd(pausedByRollbackKey(queue), ...toPause);
  for (const p of toPause) await run(admin.pause(p));
  let moved = 0;
  for (const row of waiting) {
    // Paused, so no worker claims it meanwhile; a job that is running after all stays there.
    const removed = await run(
      queue.cancel(row.id, "moved to the database queue", { waitingOnly: true }).pipe(
        Effect.map((answer) => answer.outcome === "cancelled"),
        Effect.catchTag("TaskNotFound", () => Effect.succeed(true)),
      ),
    );
    if (!removed) continue;
    moved += await orm.em
      .fork()
      .nativeUpdate(
        CaptionTask,
        { id: row.id, status: "queued", queueBackend: "redis" },
        { queueBackend: "database", currentStep: "Waiting in the database queue (rollback)" },
      );
  }
  return { dryRun: false, moved, running, paused: toPause };
};
