import type { WorkerGroup } from "../config/profiles.js";
import type { Config } from "../config/schema.js";
import type { JobPool } from "../src/pool/pool.js";
import type { TaskLedger } from "../src/tasks/ledger.js";
import type { Queue } from "../src/queue/queue.js";
import type { ClaimingWorker } from "../src/queue/worker.js";
import type { WorkerRegistry } from "../src/queue/workers.js";
import type { RedisHealth } from "../src/health/redis-health.js";
import type { DatabaseQueue } from "../src/tasks/database-queue.js";
import type { DatabaseRunner } from "../src/tasks/database-runner.js";
import type { Reconciler } from "../src/tasks/reconciler.js";
import type { JobMetrics } from "../src/metrics/job-metrics.js";
import type { Mailbox } from "./mailbox.js";
import type { AlertCenter } from "../src/alerts/center.js";

/** What every actor of one runtime shares. */
export interface RuntimeContext {
  /** Unique per process: `<host>:<pid>:<random>`; consumers are named `<workerId>/<role>`. */
  readonly workerId: string;
  readonly config: Config;
  readonly queue: Queue;
  /** The Redis the runtime uses (a private server's, when it started one). */
  readonly redisUrl: string;
  readonly registry: WorkerRegistry;
  readonly pool: JobPool | undefined;
  /** The worker groups this runtime runs, one dispatcher each. */
  readonly groups: readonly WorkerGroup[];
  /** Running dispatchers' workers by group name, for heartbeats and stats. */
  readonly workers: Map<string, ClaimingWorker>;
  /** The database ledger, when this runtime keeps task rows in step with the queue. */
  readonly ledger: TaskLedger | undefined;
  /** How long a stopping dispatcher lets running jobs finish; a forced stop sets it to 0. */
  drainMs(): number;
  /** This process's view of Redis, kept by the redis-health actor. */
  readonly health: RedisHealth;
  /** The database queue and its reconciler, with the ledger. */
  readonly dbQueue: DatabaseQueue | undefined;
  readonly reconciler: Reconciler | undefined;
  /** Running fallback dispatchers' runners by group name. */
  readonly fallbacks: Map<string, DatabaseRunner>;
  /** Wakes the reconciler now (Redis came back, or restarted). */
  readonly reconcile: Mailbox<"now">;
  /** Wakes the janitor now (Redis memory pressure). */
  readonly cleanup: Mailbox<"now">;
  /** Counters for /metrics: attempts ended, and how long they ran. */
  readonly metrics: JobMetrics;
  /** Actor restarts in this process so far, for the heartbeat (and the restart alert). */
  restarts(): number;
  /** This process's alerts: the ones it evaluates and the webhook that carries them. */
  readonly alerts: AlertCenter;
}
