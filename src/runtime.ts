import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { MikroORM } from "@mikro-orm/core";
import { Effect, Either, Exit, Fiber } from "effect";
import { cancelListener } from "../actors/cancel-listener.js";
import { dispatcher } from "../actors/dispatcher.js";
import { fallbackDispatcher } from "../actors/fallback.js";
import { redisHealth } from "../actors/health.js";
import { makeMailbox } from "../actors/mailbox.js";
import { reconciler } from "../actors/reconciler.js";
import type { RuntimeContext } from "../actors/context.js";
import { heartbeat, janitor, reclaimer, scheduler } from "../actors/services.js";
import { type SupervisionEvent, supervise, supervisorChild } from "../actors/supervisor.js";
import { profiles, type WorkerGroup } from "../config/profiles.js";
import { type Config, loadConfig, queueOptionsFrom, redisAccessFrom } from "../config/schema.js";
import type { JobRegistry } from "./jobs/definition.js";
import { assertMigrated, openDatabase } from "./db/orm.js";
import { loggerLayer } from "./log.js";
import { JobPool } from "./pool/pool.js";
import { bundleThreadCode } from "./pool/thread-bundle.js";
import { Queue } from "./queue/queue.js";
import type { ClaimingWorker } from "./queue/worker.js";
import { WorkerRegistry } from "./queue/workers.js";
import { type HealthSnapshot, RedisHealth } from "./health/redis-health.js";
import { JobMetrics } from "./metrics/job-metrics.js";
import { DatabaseQueue } from "./tasks/database-queue.js";
import type { DatabaseRunner } from "./tasks/database-runner.js";
import { TaskLedger } from "./tasks/ledger.js";
import { Reconciler } from "./tasks/reconciler.js";
import { connectRedis } from "./redis/connection.js";
import { alertsActor, alertWebhookActor } from "../actors/alerts.js";
import { AlertCenter, type AlertSnapshot } from "./alerts/center.js";
import { AlertWebhook } from "./alerts/webhook.js";
import { flushTracing, startTracing } from "./tracing-setup.js";
import { PrivateRedis } from "./redis/private-server.js";

export interface StartOptions {
  readonly config?: Config;
  /** The dispatchers to run here; none runs only the background actors. */
  readonly groups: readonly WorkerGroup[];
  /** Start a private redis-server when the configuration names none (the embedded default). */
  readonly allowPrivateRedis?: boolean;
  /** Keep the database ledger's task rows in step with the queue (the caption runtime does). */
  readonly ledger?: boolean;
}

export interface ActorStatus {
  readonly running: boolean;
  readonly restarts: number;
  readonly lastExit: string | undefined;
}

export interface RuntimeStatus {
  readonly state: "running" | "stopping" | "stopped" | "failed";
  readonly failure: string | undefined;
  readonly actors: Readonly<Record<string, ActorStatus>>;
  readonly health: HealthSnapshot;
  /** This process's alerts: its own, and the queue-wide ones while it evaluates them. */
  readonly alerts: AlertSnapshot;
}

export interface RuntimeHandle {
  readonly workerId: string;
  readonly queue: Queue;
  /** This process's view of Redis; a TaskService given it skips Redis while it is down. */
  readonly health: RedisHealth;
  /** The ledger's ORM, when the runtime keeps it: share it rather than open a second pool. */
  readonly orm: MikroORM | undefined;
  /** This process's job counters, for /metrics. */
  readonly metrics: JobMetrics;
  readonly redisUrl: string;
  status(): RuntimeStatus;
  /**
   * Stops claiming at once; with `graceful` (default) running jobs get `timeoutMs` (default
   * RT_SHUTDOWN_MS) to finish, the rest are left to be reclaimed. Resolves when all is closed.
   */
  stop(options?: { graceful?: boolean; timeoutMs?: number }): Promise<void>;
  /** Settles when the supervision tree ends: after stop(), or when it gave up (`failed`). */
  readonly done: Promise<{ readonly failed: boolean; readonly reason: string | undefined }>;
}

const DEFAULT_JOBS_MODULE = new URL("./jobs/index.ts", import.meta.url).href;

export const jobsModuleUrl = (config: Config): string => {
  const configured = config.RT_JOBS_MODULE;
  if (!configured) return DEFAULT_JOBS_MODULE;
  if (/^[a-z]+:/.test(configured)) return configured;
  return pathToFileURL(isAbsolute(configured) ? configured : resolve(configured)).href;
};

/**
 * Worker threads read their configuration (database, engine, keys) from the environment; give
 * them this runtime's, so a runtime started with a configuration object sees the same in them.
 */
const threadEnv = (config: Config): Record<string, string> => {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  for (const [k, v] of Object.entries(config)) if (v !== undefined) env[k] = String(v);
  return env;
};

/** The worker threads, once the registry is known to have job kinds. */
const openPool = async (config: Config, warnings: string[]): Promise<JobPool> => {
  const registry = jobsModuleUrl(config);
  await checkRegistry(registry);
  return new JobPool({
    registry,
    ...(config.RT_THREAD_CODE === "bundle" ? await threadBundle(registry, warnings) : {}),
    heapMb: config.RT_THREAD_HEAP_MB,
    hosting: config.RT_CLAIM_IN === "threads",
    env: threadEnv(config),
    ...(config.RT_POOL_THREADS === undefined ? {} : { threads: config.RT_POOL_THREADS }),
  });
};

const checkRegistry = async (url: string) => {
  const module = (await import(url)) as { default?: JobRegistry<unknown> };
  const kinds = Object.keys(module.default?.kinds ?? {});
  if (kinds.length === 0) {
    throw new Error(
      `the job registry ${url} has no job kinds; set RT_JOBS_MODULE to a module that registers some`,
    );
  }
  return kinds;
};

/** The registry's thread bundle; if it cannot be built, the threads compile it themselves. */
const threadBundle = async (registry: string, warnings: string[]): Promise<{ bundle?: string }> => {
  try {
    return { bundle: await bundleThreadCode(registry) };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const readOnly = code === "EACCES" || code === "EPERM" || code === "EROFS";
    warnings.push(
      `worker threads compile the job registry themselves (slower to start): its bundle could not be built (${error instanceof Error ? error.message : String(error)})${readOnly ? "; where the install is read-only to this process, run `ratatoskr threads bundle` at install" : ""}`,
    );
    return {};
  }
};

/**
 * Starts the runtime in this process: the background actors (heartbeat, scheduler, reclaimer,
 * janitor) and one dispatcher per worker group, under a supervision tree, with one thread pool.
 * Embedded in a web server, or alone as `ratatoskr supervisor`.
 */
export const start = async (options: StartOptions): Promise<RuntimeHandle> => {
  const config = options.config ?? loadConfig();
  startTracing(config);
  let privateRedis: PrivateRedis | undefined;
  let redisUrl = config.REDIS_URL;
  if (redisUrl === undefined) {
    if (!options.allowPrivateRedis) throw new Error("REDIS_URL is not set");
    privateRedis = await PrivateRedis.start();
    redisUrl = privateRedis.url;
  }
  const workerId = `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
  const access = redisAccessFrom(config);
  const redis = connectRedis(redisUrl, { ...access, name: `ratatoskr:${workerId}` });
  const probe = connectRedis(redisUrl, { ...access, name: `ratatoskr:${workerId}:health`, failFast: true });
  const queue = new Queue(redis, queueOptionsFrom(config));
  const health = new RedisHealth(probe, {
    timeoutMs: config.RT_HEALTH_TIMEOUT_MS,
    failureThreshold: config.RT_HEALTH_FAILURES,
    memoryWarnPercent: config.RT_MEMORY_WARN_PCT,
    backendKey: queue.keys.backend,
    alertsKey: queue.keys.alerts,
    source: workerId,
  });
  const closeConnections = async () => {
    redis.disconnect();
    probe.disconnect();
    await privateRedis?.stop();
  };
  const startupWarnings: string[] = [];

  let pool: JobPool | undefined;
  let orm: MikroORM | undefined;
  // The threads take longest to be ready (each loads its code): started first, they load while
  // Redis and the database are made ready.
  const pooling = options.groups.length > 0 ? openPool(config, startupWarnings) : undefined;
  // Heard now, answered below: a failure before then must not count as unhandled.
  pooling?.catch(() => {});
  try {
    const prepared = await Effect.runPromise(Effect.either(queue.prepare()));
    if (Either.isLeft(prepared)) {
      // With the ledger, a Redis that is away at start is an outage like any other: tasks
      // queue in the database and the scripts load when it answers. Without it, nothing could run.
      if (!options.ledger) throw prepared.left;
      startupWarnings.push(`redis unreachable at start (${prepared.left.message}); using the database queue`);
      health.assumeDown(prepared.left.message);
    }
    if (options.ledger) {
      const settings = { url: config.DATABASE_URL, dataDir: config.RT_DATA_DIR };
      orm = await openDatabase(settings);
      await assertMigrated(orm, settings);
    }
    pool = await pooling;
  } catch (error) {
    await (await pooling?.catch(() => undefined))?.close();
    await orm?.close();
    await closeConnections();
    throw error;
  }

  const closeLedger = async () => {
    await orm?.close();
  };
  let drainMs = config.RT_SHUTDOWN_MS;
  const fork = () => (orm as MikroORM).em.fork();
  const actor = `system:${workerId}`;
  const ledger = orm ? new TaskLedger(fork, actor) : undefined;
  const actors = new Map<string, { running: boolean; restarts: number; lastExit: string | undefined }>();
  const dbQueue = orm ? new DatabaseQueue(fork, actor) : undefined;
  const ctx: RuntimeContext = {
    workerId,
    config,
    queue,
    redisUrl,
    registry: new WorkerRegistry(queue),
    pool,
    groups: options.groups,
    ledger,
    workers: new Map<string, ClaimingWorker>(),
    drainMs: () => drainMs,
    health,
    dbQueue,
    reconciler:
      ledger && dbQueue
        ? new Reconciler(fork, queue, dbQueue, ledger, {
            graceMs: config.RT_RECONCILE_GRACE_MS,
            redisTimeoutMs: Math.max(config.RT_SUBMIT_TIMEOUT_MS, 1_000),
            actor,
          })
        : undefined,
    fallbacks: new Map<string, DatabaseRunner>(),
    reconcile: makeMailbox<"now">(),
    cleanup: makeMailbox<"now">(),
    metrics: new JobMetrics(),
    restarts: () => [...actors.values()].reduce((n, a) => n + a.restarts, 0),
    alerts: new AlertCenter({
      workerId,
      queue,
      repeatMs: config.RT_ALERT_REPEAT_S * 1000,
      holdMs: (rule) => (rule === "pool_saturated" ? config.RT_ALERT_SATURATED_S * 1000 : 0),
      webhook: config.ALERT_WEBHOOK_URL
        ? new AlertWebhook({ url: config.ALERT_WEBHOOK_URL, source: workerId, queue: config.RT_QUEUE })
        : undefined,
    }),
  };

  const observe = (event: SupervisionEvent) => {
    const actor = actors.get(event.child) ?? { running: false, restarts: 0, lastExit: undefined };
    actors.set(event.child, actor);
    if (event.type === "started") actor.running = true;
    if (event.type === "exited") {
      actor.running = false;
      actor.lastExit = event.cause;
    }
    if (event.type === "stopped") actor.running = false;
    if (event.type === "restarting") actor.restarts++;
  };

  const startedAt = Date.now();
  const tree = supervise({
    id: "root",
    strategy: "one_for_one",
    observe,
    children: [
      supervisorChild({
        id: "services",
        strategy: "one_for_one",
        observe,
        children: [
          redisHealth(ctx),
          heartbeat(ctx, startedAt),
          scheduler(ctx),
          reclaimer(ctx),
          janitor(ctx),
          ...(ctx.reconciler ? [reconciler(ctx)] : []),
          alertsActor(ctx),
          ...(ctx.alerts.webhook ? [alertWebhookActor(ctx)] : []),
        ],
      }),
      supervisorChild({
        id: "workers",
        strategy: "one_for_one",
        observe,
        children: [
          ...options.groups.flatMap((g) =>
            ctx.dbQueue ? [dispatcher(ctx, g), fallbackDispatcher(ctx, g)] : [dispatcher(ctx, g)],
          ),
          ...(options.groups.length > 0 ? [cancelListener(ctx)] : []),
        ],
      }),
    ],
  });
  const format = config.RT_LOG_FORMAT ?? profiles[config.RT_PROFILE].logFormat;
  const warnings = Effect.forEach(startupWarnings, (w) => Effect.logWarning(w), { discard: true });
  const fiber = Effect.runFork(
    Effect.zipRight(warnings, tree).pipe(
      Effect.annotateLogs("worker", workerId),
      Effect.provide(loggerLayer(format, config.RT_LOG_LEVEL)),
    ),
  );

  let state: RuntimeStatus["state"] = "running";
  let failure: string | undefined;
  const done = Effect.runPromise(Fiber.await(fiber)).then(async (exit) => {
    if (Exit.isFailure(exit) && !Exit.isInterrupted(exit)) {
      state = "failed";
      failure =
        exit.cause._tag === "Fail" ? String((exit.cause.error as Error).message) : "the runtime crashed";
      // Nothing supervises the root: release what it held so the process can exit.
      await pool?.close();
      await closeLedger();
      await closeConnections();
      return { failed: true, reason: failure };
    }
    return { failed: false, reason: undefined };
  });

  let stopping: Promise<void> | undefined;
  const stop = (stopOptions: { graceful?: boolean; timeoutMs?: number } = {}) => {
    stopping ??= (async () => {
      if (state === "failed") return;
      state = "stopping";
      drainMs = stopOptions.graceful === false ? 0 : (stopOptions.timeoutMs ?? config.RT_SHUTDOWN_MS);
      // Every dispatcher stops claiming now and drains alongside the others; the tree's stop,
      // which goes one child at a time, then only waits for drains already under way.
      const drains = [...ctx.workers.values(), ...ctx.fallbacks.values()].map((w) =>
        w.stop({ timeoutMs: drainMs }),
      );
      await Effect.runPromise(Fiber.interrupt(fiber));
      await Promise.all(drains);
      await pool?.close();
      await closeLedger();
      await closeConnections();
      await flushTracing().catch(() => {});
      state = "stopped";
    })();
    return stopping;
  };

  return {
    workerId,
    queue,
    health,
    orm,
    metrics: ctx.metrics,
    redisUrl,
    status: () => ({
      state,
      failure,
      actors: Object.fromEntries(actors),
      health: health.snapshot(),
      alerts: ctx.alerts.snapshot(),
    }),
    stop,
    done,
  };
};
