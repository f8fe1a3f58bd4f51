import { Duration, Effect, Runtime } from "effect";
import type { HealthEvent } from "../src/health/redis-health.js";
import type { RuntimeContext } from "./context.js";
import type { ChildSpec } from "./supervisor.js";

/** Every this many probes, the probe also reads INFO (memory, and the run id that tells a restart). */
const DEEP_EVERY = 10;

const describe = (event: HealthEvent) => {
  switch (event.type) {
    case "down":
      return Effect.logWarning(`redis down (${event.reason}): new tasks queue in the database`);
    case "up":
      return Effect.logWarning(`redis back after ${(event.downForMs / 1000).toFixed(1)} s: reconciling`);
    case "restarted":
      return Effect.logWarning(`redis restarted (run id ${event.runId}): reconciling what it lost`);
    case "memory":
      return Effect.logWarning(
        `redis memory at ${event.reading.percent}% of maxmemory: cleaning up expired job data`,
      );
  }
};

/**
 * Pings Redis every RT_HEALTH_INTERVAL_MS and keeps this process's mode: `redis`, or `database`
 * after RT_HEALTH_FAILURES misses. Coming back (or finding a restarted Redis) wakes the
 * reconciler; memory pressure wakes the janitor.
 */
export const redisHealth = (ctx: RuntimeContext): ChildSpec => ({
  id: "redis-health",
  run: Effect.gen(function* () {
    const runtime = yield* Effect.runtime<never>();
    const unsubscribe = ctx.health.on((event) => {
      Runtime.runFork(runtime)(describe(event));
      if (event.type !== "memory") ctx.reconcile.send("now");
      if (event.type === "memory") ctx.cleanup.send("now");
    });
    yield* Effect.addFinalizer(() => Effect.sync(unsubscribe));
    let probes = 0;
    const interval = ctx.config.RT_HEALTH_INTERVAL_MS;
    // One probe per interval, however long the probe took: a timed-out ping must not stretch
    // the cadence, or three misses would take three intervals plus three timeouts to notice.
    return yield* Effect.forever(
      Effect.gen(function* () {
        const started = Date.now();
        yield* Effect.promise(() => ctx.health.check({ deep: probes++ % DEEP_EVERY === 0 }));
        yield* Effect.sleep(Duration.millis(Math.max(0, interval - (Date.now() - started))));
      }),
    );
  }),
});
