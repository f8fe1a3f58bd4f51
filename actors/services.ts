import { hostname } from "node:os";
import { Duration, Effect } from "effect";
import { QueueAdmin } from "../src/queue/admin.js";
import type { RedisError } from "../src/queue/errors.js";
import type { RuntimeContext } from "./context.js";
import type { ChildSpec } from "./supervisor.js";

/**
 * The background duties every process runs, one small actor each (Oban's plugins are the model).
 * Each is safe to run in many processes at once: the scripts behind them are atomic.
 */

const PROMOTE_BATCH = 1000;

/**
 * One round of a periodic duty. Redis being away is weather, not a bug: the round is logged and
 * skipped, and the actor goes on; restarting it would only burn the supervisor's restart
 * intensity and bring the process down over a blip. A defect still fails the actor. Once the
 * health actor has declared the outage (and said so), the skipped rounds are only debug lines.
 */
const tolerateRedis = (
  ctx: RuntimeContext,
  round: Effect.Effect<void, RedisError>,
  retryMs: number,
): Effect.Effect<void> =>
  round.pipe(
    Effect.catchTag("RedisError", (error) =>
      (ctx.health.mode() === "database" ? Effect.logDebug : Effect.logWarning)(
        `skipped a round: ${error.message}`,
      ).pipe(Effect.zipRight(Effect.sleep(Duration.millis(retryMs)))),
    ),
  );

/** Moves delayed jobs to their streams when due; sleeps until the next due time (at most 1 s). */
export const scheduler = (ctx: RuntimeContext): ChildSpec => ({
  id: "scheduler",
  run: Effect.forever(
    tolerateRedis(
      ctx,
      Effect.gen(function* () {
        const { moved, nextDueAt } = yield* ctx.queue.promote(PROMOTE_BATCH);
        if (moved > 0) yield* Effect.logDebug(`promoted ${moved} delayed jobs`);
        if (moved === PROMOTE_BATCH) return;
        const wait = nextDueAt === undefined ? 1_000 : Math.min(1_000, Math.max(10, nextDueAt - Date.now()));
        yield* Effect.sleep(Duration.millis(wait));
      }),
      1_000,
    ),
  ),
});

/** Takes over jobs whose worker stopped renewing their lease (checked every half lease). */
export const reclaimer = (ctx: RuntimeContext): ChildSpec => ({
  id: "reclaimer",
  run: Effect.suspend(() => {
    // Each pass walks every pending list once, a step a call, then sleeps: no spinning on a long
    // list of live jobs, and lapsed ones behind them are reached.
    let cursors: readonly string[] = [];
    return Effect.forever(
      tolerateRedis(
        ctx,
        Effect.gen(function* () {
          const result = yield* ctx.queue.reclaim(`${ctx.workerId}/reclaimer`, {
            leaseMs: ctx.config.RT_LEASE_MS,
            maxReclaims: ctx.config.RT_MAX_RECLAIMS,
            cursors,
          });
          cursors = result.cursors;
          if (result.requeued > 0 || result.dead > 0) {
            yield* Effect.logWarning(
              `reclaimed ${result.requeued} jobs from lapsed leases; ${result.dead} dead-lettered as poison or corrupt`,
            );
          }
          if (!result.more) yield* Effect.sleep(Duration.millis(Math.max(250, ctx.config.RT_LEASE_MS / 2)));
        }),
        1_000,
      ),
    );
  }),
});

/** Keeps this process in the worker registry while it lives, and takes it out when it stops. */
export const heartbeat = (ctx: RuntimeContext, startedAt: number): ChildSpec => ({
  id: "heartbeat",
  run: Effect.gen(function* () {
    const interval = ctx.config.RT_HEARTBEAT_MS;
    const beat = Effect.suspend(() =>
      ctx.registry.beat(
        {
          id: ctx.workerId,
          host: hostname(),
          pid: process.pid,
          startedAt,
          // The configured groups, known from the first beat (dispatchers start after this actor).
          groups: ctx.groups.map((g) => ({ name: g.name, queues: g.queues, concurrency: g.concurrency })),
          active: [...ctx.workers.values(), ...ctx.fallbacks.values()].reduce((n, w) => n + w.active, 0),
          jobs: [...ctx.workers.values(), ...ctx.fallbacks.values()].flatMap((w) => w.runningIds),
          rssMb: Math.round(process.memoryUsage.rss() / 1_048_576),
          mode: ctx.health.mode(),
          outages: ctx.health.snapshot().transitions.toDatabase,
          restarts: ctx.restarts(),
        },
        interval * 3,
      ),
    );
    // Leaving is a courtesy: with Redis away the registration simply lapses, so do not wait long.
    yield* Effect.addFinalizer(() =>
      ctx.registry.remove(ctx.workerId).pipe(Effect.timeout(Duration.seconds(1)), Effect.ignore),
    );
    return yield* Effect.forever(
      tolerateRedis(ctx, beat.pipe(Effect.asVoid), interval).pipe(
        Effect.zipRight(Effect.sleep(Duration.millis(interval))),
      ),
    );
  }),
});

/**
 * Clears what nothing else clears: registrations and stream consumers of workers gone for good,
 * and dead letters older than the failed-job retention; and, when the health actor reports Redis
 * short of memory, the data of completed jobs.
 */
export const janitor = (ctx: RuntimeContext, everyMs = 60_000): ChildSpec => ({
  id: "janitor",
  run: Effect.suspend(() => {
    let pressed = false;
    return Effect.forever(
      tolerateRedis(
        ctx,
        Effect.gen(function* () {
          if (pressed) {
            // Short of memory: completed jobs' data goes now instead of at the end of its retention.
            const purged = yield* new QueueAdmin(ctx.queue).purgeFinished();
            yield* Effect.logWarning(`memory pressure: deleted the data of ${purged} completed jobs`);
            pressed = false;
          }
          const pruned = yield* ctx.registry.prune();
          if (pruned.workers > 0 || pruned.consumers > 0) {
            yield* Effect.logInfo(
              `forgot ${pruned.workers} lapsed workers and ${pruned.consumers} idle consumers`,
            );
          }
          const trimmed = yield* ctx.queue.trimDeadLetters(ctx.config.RT_KEEP_FAILED_S * 1000);
          if (trimmed > 0) yield* Effect.logInfo(`trimmed ${trimmed} expired dead letters`);
          // The next round comes after the interval, or at once when Redis runs short of memory.
          pressed = yield* Effect.race(
            ctx.cleanup.take.pipe(Effect.as(true)),
            Effect.sleep(Duration.millis(everyMs)).pipe(Effect.as(false)),
          );
          yield* ctx.cleanup.drain;
        }),
        everyMs,
      ),
    );
  }),
});
