import { Duration, Effect } from "effect";
import type { AlertNotice } from "../src/alerts/book.js";
import { observeQueue } from "../src/alerts/observe.js";
import { evaluateRules, fallbackCondition, RestartWindow, type Thresholds } from "../src/alerts/rules.js";
import { webhookBackoffMs } from "../src/alerts/webhook.js";
import type { Config } from "../config/schema.js";
import type { RuntimeContext } from "./context.js";
import type { ChildSpec } from "./supervisor.js";

export const thresholdsFrom = (config: Config): Thresholds => ({
  backlogCount: config.RT_ALERT_BACKLOG,
  waitSeconds: {
    urgent: config.RT_ALERT_WAIT_URGENT_S,
    high: config.RT_ALERT_WAIT_HIGH_S,
    normal: config.RT_ALERT_WAIT_NORMAL_S,
    low: config.RT_ALERT_WAIT_LOW_S,
  },
  failurePercent: config.RT_ALERT_FAILURE_PCT,
  failureMinSample: config.RT_ALERT_FAILURE_MIN,
  deadLetters: config.RT_ALERT_DEAD_LETTERS,
  restarts: config.RT_ALERT_RESTARTS,
  memoryPercent: config.RT_MEMORY_WARN_PCT,
  windowMinutes: config.RT_ALERT_WINDOW_MIN,
});

/** One structured line per notice: a firing critical alert is an error, a resolution is info. */
const logNotice = (n: AlertNotice) =>
  (n.state === "resolved" ? Effect.logInfo : n.severity === "critical" ? Effect.logError : Effect.logWarning)(
    `alert ${n.state}: ${n.message}`,
  ).pipe(
    Effect.annotateLogs({ alert_rule: n.rule, alert_key: n.key, alert_state: n.state, severity: n.severity }),
  );

/**
 * Evaluates the alert rules every RT_ALERT_INTERVAL_MS. Each process judges its own fallback
 * mode; the queue-wide rules are judged by whichever process holds the evaluator lock, so there
 * is one voice however many processes run. Redis trouble skips a round's Redis part, never the
 * process's own rule: an outage is exactly when that alert matters.
 */
export const alertsActor = (ctx: RuntimeContext): ChildSpec => ({
  id: "alerts",
  run: Effect.gen(function* () {
    const interval = ctx.config.RT_ALERT_INTERVAL_MS;
    const thresholds = thresholdsFrom(ctx.config);
    const restarts = new RestartWindow(thresholds.windowMinutes * 60_000);
    const center = ctx.alerts;
    const redisPart = (promise: () => Promise<unknown>) =>
      Effect.tryPromise(promise).pipe(Effect.timeout(Duration.millis(interval)));
    yield* Effect.addFinalizer(() => redisPart(() => center.resign()).pipe(Effect.ignore));

    const round = Effect.gen(function* () {
      const now = Date.now();
      const health = ctx.health.snapshot();
      const reason = health.forced ? "held there by tasks rollback-to-db" : "Redis is unreachable";
      const own = fallbackCondition(ctx.workerId, health.mode, reason);
      const notices = center.own.apply(own ? [own] : [], now);
      if (health.mode === "redis") {
        const leader = yield* redisPart(() => center.claimEvaluator(interval * 3)).pipe(
          Effect.map(() => center.evaluator),
          Effect.orElseSucceed(() => false),
        );
        if (leader) {
          const observed = yield* observeQueue({
            queue: ctx.queue,
            health: ctx.health,
            heartbeatMs: ctx.config.RT_HEARTBEAT_MS,
            windowMinutes: thresholds.windowMinutes,
          }).pipe(Effect.timeout(Duration.millis(interval)), Effect.either);
          if (observed._tag === "Right") {
            const o = observed.right;
            const conditions = evaluateRules(o, thresholds, restarts.update(o.at, o.workers));
            notices.push(...center.shared.apply(conditions, o.at));
            yield* redisPart(() => center.saveShared()).pipe(Effect.ignore);
          } else {
            yield* Effect.logDebug(`alert rules skipped a round: ${String(observed.left)}`);
          }
        }
      }
      center.record(notices);
      yield* Effect.forEach(notices, logNotice, { discard: true });
      if (health.mode === "redis") yield* redisPart(() => center.publish()).pipe(Effect.ignore);
    });
    return yield* Effect.forever(round.pipe(Effect.zipRight(Effect.sleep(Duration.millis(interval)))));
  }),
});

/** Carries notices to ALERT_WEBHOOK_URL, retrying with backoff; only runs when it is set. */
export const alertWebhookActor = (ctx: RuntimeContext): ChildSpec => ({
  id: "alert-webhook",
  run: Effect.suspend(() => {
    const webhook = ctx.alerts.webhook;
    if (!webhook) return Effect.never;
    let failures = 0;
    return Effect.forever(
      Effect.gen(function* () {
        const result = yield* Effect.promise(() => webhook.deliverNext());
        switch (result.outcome) {
          case "idle":
            return yield* Effect.sleep(Duration.millis(200));
          case "sent":
            if (failures > 0)
              yield* Effect.logInfo(`alert webhook reachable again after ${failures} failed tries`);
            failures = 0;
            return;
          case "refused":
            failures = 0;
            return yield* Effect.logError(
              `alert webhook refused a notice (HTTP ${result.status}); dropped it`,
            );
          case "failed": {
            failures++;
            const wait = webhookBackoffMs(failures);
            // The first failure and then one line a minute or so: a long outage is not a log flood.
            if (failures === 1 || wait === 60_000) {
              yield* Effect.logWarning(
                `alert webhook failed (${result.reason}); ${webhook.waiting} notices wait, next try in ${wait / 1000} s`,
              );
            }
            return yield* Effect.sleep(Duration.millis(wait));
          }
        }
      }),
    );
  }),
});
