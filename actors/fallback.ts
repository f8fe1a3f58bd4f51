import { Effect, Runtime } from "effect";
import { jobTimeoutsMs, type WorkerGroup } from "../config/profiles.js";
import { logAtLevel } from "../src/log.js";
import { DatabaseRunner, type DatabaseRunnerEvent } from "../src/tasks/database-runner.js";
import type { RuntimeContext } from "./context.js";
import type { ChildSpec } from "./supervisor.js";

const describe = (event: DatabaseRunnerEvent) => {
  switch (event.type) {
    case "error":
      return Effect.logWarning(`database queue: ${event.error}`);
    case "log":
      return logAtLevel(event.level, event.message).pipe(Effect.annotateLogs("source", "job"));
    default:
      return Effect.logDebug(`task ${event.id} attempt ${event.attempt} ${event.type}`);
  }
};

/**
 * One per worker group, beside its Redis dispatcher: while the health actor says Redis is down
 * (or `tasks rollback-to-db` holds the database queue), it runs the group's priorities from the
 * database queue on the same pool; otherwise it sits idle.
 */
export const fallbackDispatcher = (ctx: RuntimeContext, group: WorkerGroup): ChildSpec => ({
  id: `fallback:${group.name}`,
  restart: "permanent",
  shutdownMs: () => ctx.drainMs() + 5_000,
  run: Effect.gen(function* () {
    const { pool, ledger, dbQueue } = ctx;
    if (!pool || !ledger || !dbQueue)
      return yield* Effect.dieMessage("a fallback dispatcher needs the pool and the ledger");
    const runtime = yield* Effect.runtime<never>();
    const timeouts = jobTimeoutsMs(ctx.config);
    const runner = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new DatabaseRunner({
          queue: dbQueue,
          ledger,
          pool,
          active: () => ctx.health.mode() === "database",
          owner: `${ctx.workerId}/${group.name}`,
          priorities: group.queues,
          concurrency: group.concurrency,
          leaseMs: ctx.config.RT_LEASE_MS,
          timeoutMs: (priority) => timeouts[priority],
          onEvent: (event) => {
            if (event.type === "completed")
              ctx.metrics.attemptEnded(event.priority, "completed", "database", event.seconds);
            else if (event.type === "retry" || event.type === "failed" || event.type === "cancelled")
              ctx.metrics.attemptEnded(
                event.priority,
                event.type === "retry" ? "retried" : event.type,
                "database",
              );
            const line = describe(event);
            Runtime.runFork(runtime)(
              event.type === "error"
                ? line
                : line.pipe(Effect.annotateLogs({ task_id: event.id, attempt: event.attempt })),
            );
          },
        }).start(),
      ),
      (r) =>
        Effect.promise(() => r.stop({ timeoutMs: ctx.drainMs() })).pipe(
          Effect.tap(({ abandoned }) =>
            abandoned > 0
              ? Effect.logWarning(`stopped; ${abandoned} unfinished tasks given back to the database queue`)
              : Effect.void,
          ),
          Effect.ensuring(Effect.sync(() => ctx.fallbacks.delete(group.name))),
        ),
    );
    ctx.fallbacks.set(group.name, runner);
    return yield* Effect.never;
  }),
});
