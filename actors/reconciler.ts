import { Duration, Effect } from "effect";
import { describeFailure } from "../src/queue/failures.js";
import type { ReconcileReport } from "../src/tasks/reconciler.js";
import type { RuntimeContext } from "./context.js";
import type { ChildSpec } from "./supervisor.js";

const summary = (r: ReconcileReport) =>
  [
    r.expired.requeued && `${r.expired.requeued} lapsed database attempts requeued`,
    r.expired.failed && `${r.expired.failed} failed out of attempts`,
    r.takenOver && `${r.takenOver} tasks waiting in redis taken over by the database queue`,
    r.movedToRedis && `${r.movedToRedis} waiting tasks moved to redis`,
    r.reenqueued && `${r.reenqueued} tasks redis had lost enqueued again`,
    r.settled && `${r.settled} rows settled from redis`,
    r.unrunnable && `${r.unrunnable} tasks failed: they can no longer become a job`,
    r.locksRestored && `${r.locksRestored} user locks restored`,
  ]
    .filter(Boolean)
    .join(", ");

/**
 * Every RT_RECONCILE_MS, and at once when the health actor says Redis is down, back or
 * restarted: lapsed database-queue leases always; with Redis down, the tasks waiting in it
 * move to the database queue; with Redis up, waiting database tasks move to Redis and
 * the ledger's active tasks are checked against what Redis holds.
 */
export const reconciler = (ctx: RuntimeContext): ChildSpec => ({
  id: "reconciler",
  run: Effect.gen(function* () {
    const reconcile = ctx.reconciler;
    if (!reconcile) return yield* Effect.dieMessage("the reconciler needs the database ledger");
    const round = Effect.tryPromise(async () => {
      if (ctx.health.mode() === "redis") return reconcile.run();
      const expired = await reconcile.recoverExpired();
      const takenOver = await reconcile.takeOverWaiting();
      return {
        expired,
        takenOver,
        movedToRedis: 0,
        unrunnable: 0,
        reenqueued: 0,
        settled: 0,
        locksRestored: 0,
      };
    }).pipe(
      Effect.flatMap((report) => {
        const text = summary(report);
        const corrupt = report.corrupt ?? [];
        return Effect.all([
          text ? Effect.logInfo(`reconciled: ${text}`) : Effect.void,
          // Every pass until a person looks: the task cannot run while its key is in the way.
          corrupt.length > 0
            ? Effect.logWarning(
                `reconcile: ${corrupt.length} active tasks left alone, their redis key holds something other than a job: ${corrupt.slice(0, 5).join(", ")}${corrupt.length > 5 ? ", ..." : ""}`,
              )
            : Effect.void,
        ]);
      }),
      // Redis or the database away mid-pass: the next pass finishes the job; nothing is half-moved.
      Effect.catchAll((error) =>
        Effect.logWarning(`reconcile pass stopped: ${describeFailure(error.error)}`),
      ),
    );
    return yield* Effect.forever(
      round.pipe(
        Effect.zipRight(
          Effect.race(ctx.reconcile.take, Effect.sleep(Duration.millis(ctx.config.RT_RECONCILE_MS))),
        ),
        Effect.zipRight(ctx.reconcile.drain),
      ),
    );
  }),
});
