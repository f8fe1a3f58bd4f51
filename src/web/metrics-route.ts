import type { MikroORM } from "@mikro-orm/core";
import { Duration, Effect, Either } from "effect";
import { CaptionTask } from "../db/entities.js";
import type { JobMetrics } from "../metrics/job-metrics.js";
import { family, type Sample } from "../metrics/prometheus.js";
import { QueueAdmin } from "../queue/admin.js";
import type { Queue } from "../queue/queue.js";
import type { RuntimeStatus } from "../runtime.js";
import { textReply } from "./http.js";
import type { Router } from "./router.js";

/**
 * `GET /metrics` in Prometheus's text format: this process's counters (tasks taken in, attempts
 * ended, run times) and what is read at each scrape (queue depth by priority and state, the
 * database queue, the backend mode and its changes, actor restarts). Redis away: its gauges are
 * left out and `ratatoskr_redis_up` says 0.
 */
export const metricsRoute = (
  router: Router,
  deps: { orm: MikroORM; queue: Queue; metrics: JobMetrics; runtime: () => RuntimeStatus },
): Router =>
  router.add("GET", "/metrics", async () => {
    const status = deps.runtime();
    const stats = await Effect.runPromise(
      new QueueAdmin(deps.queue).stats().pipe(Effect.timeout(Duration.seconds(1)), Effect.either),
    );
    const waitingInDatabase = await deps.orm.em
      .fork()
      .count(CaptionTask, { status: "queued", queueBackend: "database" })
      .catch(() => Number.NaN);
    const depth: Sample[] = Either.isRight(stats)
      ? stats.right.flatMap((s) =>
          (["waiting", "running", "delayed", "dead"] as const).map((state) => ({
            labels: { priority: s.priority, state },
            value: s[state],
          })),
        )
      : [];
    const { metrics } = deps;
    const text = [
      family(
        "ratatoskr_tasks_submitted_total",
        "counter",
        "Tasks this process took in, by priority and queue.",
        metrics.enqueued.samples(),
      ),
      family(
        "ratatoskr_attempts_total",
        "counter",
        "Attempts this process's dispatchers ended, by outcome.",
        metrics.ended.samples(),
      ),
      family(
        "ratatoskr_job_duration_seconds",
        "histogram",
        "How long completed attempts ran.",
        metrics.durations.samples(),
      ),
      family("ratatoskr_redis_up", "gauge", "Whether Redis answered this scrape's queue read.", [
        { value: Either.isRight(stats) ? 1 : 0 },
      ]),
      family(
        "ratatoskr_queue_jobs",
        "gauge",
        "Jobs in Redis by priority and state (running = pending, leased).",
        depth,
      ),
      family("ratatoskr_database_queue_waiting", "gauge", "Tasks waiting in the database queue.", [
        { value: waitingInDatabase },
      ]),
      family("ratatoskr_fallback_mode", "gauge", "1 while this process queues in the database.", [
        { value: status.health.mode === "database" ? 1 : 0 },
      ]),
      family("ratatoskr_backend_switches_total", "counter", "Mode changes of this process.", [
        { labels: { to: "database" }, value: status.health.transitions.toDatabase },
        { labels: { to: "redis" }, value: status.health.transitions.toRedis },
      ]),
      family(
        "ratatoskr_actor_restarts_total",
        "counter",
        "Restarts of each supervised actor.",
        Object.entries(status.actors).map(([actor, a]) => ({ labels: { actor }, value: a.restarts })),
      ),
    ].join("\n\n");
    return textReply(200, `${text}\n`, "text/plain; version=0.0.4; charset=utf-8");
  });
