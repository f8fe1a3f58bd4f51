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
  /** Rows that cannot become a job (say, settings no longer valid): failed, with the reason. */
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
 * become a job are failed with the reason, and reported. Ends a rollback: the database mode flag
 * is cleared and the priorities it paused resume first; the move waits `settleMs` (a health
 * probe or two) so that no process, still in database mode, takes the moved tasks back.
 * Running it twice moves nothing the second time.
 */
export const migrateToRedis = async (
  orm: MikroORM,
  queue: Queue,
  options: { dryRun: boolean; settleMs?: number },
): Promise<MigrationReport> => {
  const waiting = await countWaiting(orm);
  const fork = () => orm.em.fork();
  const toResume = inPriorityOrder(
    (await queue.redis.smembers(pausedByRollbackKey(queue))).filter(isPriority),
  );
  if (options.dryRun) {
    const invalid: Array<{ id: string; reason: string }> = [];
    for (const row of await fork().find(CaptionTask, { status: "queued", queueBackend: "database" })) {
      try {
        captionJob(row);
      } catch (error) {
        invalid.push({ id: row.id, reason: error instanceof Error ? error.message : String(error) });
      }
    }
    return { dryRun: true, waiting, moved: 0, invalid, resumed: toResume };
  }

  // Back to Redis first, whole: the flag goes and the paused priorities resume. From here a
  // failure (or Ctrl-C) midway leaves a working Redis mode, whose reconcilers move the rest.
  const held = (await queue.redis.del(queue.keys.backend)) > 0;
  const admin = new QueueAdmin(queue);
  for (const p of toResume) await run(admin.resume(p));
  await queue.redis.del(pausedByRollbackKey(queue));
  if (held && (options.settleMs ?? 0) > 0)
    await new Promise((resolve) => setTimeout(resolve, options.settleMs));
  const reconciler = new Reconciler(fork, queue, new DatabaseQueue(fork), new TaskLedger(fork), {
    graceMs: 0,
  });
  const { moved, unrunnable } = await reconciler.moveToRedis();
  return { dryRun: false, waiting, moved, invalid: unrunnable, resumed: toResume };
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
    // The row first: once it says database, Redis's copy can no longer settle or run it (the
    // ledger refuses a Redis worker's word on it), so a crash between the two steps loses nothing.
    const flipped = await orm.em
      .fork()
      .nativeUpdate(
        CaptionTask,
        { id: row.id, status: "queued", queueBackend: "redis" },
        { queueBackend: "database", currentStep: "Waiting in the database queue (rollback)" },
      );
    if (flipped === 0) continue;
    moved++;
    // Paused, so no worker claims it meanwhile; if one did, the ledger decides which queue runs it.
    await run(Effect.ignore(queue.cancel(row.id, "moved to the database queue", { waitingOnly: true })));
  }
  return { dryRun: false, moved, running, paused: toPause };
};
