import { dataNodes, type RedisClient } from "../redis/connection.js";

export type Backend = "redis" | "database";

export interface Alert {
  readonly at: number;
  readonly level: "warning" | "info";
  readonly message: string;
}

export interface MemoryReading {
  readonly usedBytes: number;
  /** 0 when Redis has no maxmemory set. */
  readonly maxBytes: number;
  readonly percent: number | undefined;
}

export interface HealthSnapshot {
  /** Where new tasks go and which dispatchers claim: Redis, or the database fallback. */
  readonly mode: Backend;
  /** `tasks rollback-to-db` holds every process in database mode. */
  readonly forced: boolean;
  readonly since: number;
  readonly misses: number;
  readonly lastPingMs: number | undefined;
  /** Mode changes since start, each way. */
  readonly transitions: { readonly toDatabase: number; readonly toRedis: number };
  readonly memory: MemoryReading | undefined;
  readonly runId: string | undefined;
  readonly alerts: readonly Alert[];
}

export type HealthEvent =
  | { readonly type: "down"; readonly reason: string }
  | { readonly type: "up"; readonly downForMs: number }
  | { readonly type: "restarted"; readonly runId: string }
  | { readonly type: "memory"; readonly reading: MemoryReading };

export interface HealthOptions {
  readonly timeoutMs: number;
  readonly failureThreshold: number;
  readonly memoryWarnPercent: number;
  readonly backendKey: string;
  /** Where alerts are delivered for admins (a capped stream), and who says them. */
  readonly alertsKey?: string;
  readonly source?: string;
  readonly now?: () => number;
}

const MAX_ALERTS = 50;
/** Alerts kept in the Redis stream (approximately). */
const ALERTS_KEPT = 1_000;

const alertFields = (a: Alert, source: string) => [
  "at",
  String(a.at),
  "level",
  a.level,
  "message",
  a.message,
  "source",
  source,
];

/** The node nearest its maxmemory (any node's, when none has a limit). */
const fullest = (infos: readonly string[]): MemoryReading => {
  const readings = infos.map((info) => {
    const usedBytes = Number(infoField(info, "used_memory") ?? 0);
    const maxBytes = Number(infoField(info, "maxmemory") ?? 0);
    const percent = maxBytes > 0 ? Math.round((100 * usedBytes) / maxBytes) : undefined;
    return { usedBytes, maxBytes, percent };
  });
  return readings.reduce((a, b) => ((b.percent ?? -1) > (a.percent ?? -1) ? b : a));
};

const infoField = (info: string, field: string): string | undefined =>
  new RegExp(`^${field}:(.*)$`, "m").exec(info)?.[1]?.trim();

/** Resolves with the command's answer, or rejects after `ms` (a paused Redis never answers). */
const within = <A>(ms: number, promise: Promise<A>): Promise<A> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });

/**
 * What this process believes of Redis: up (tasks go through it) or down (tasks wait in the
 * database and the fallback dispatchers run them). One probe per call of `check`, made by the
 * health actor; everyone else only reads. Down takes `failureThreshold` misses in a row, up one
 * answer: a flapping Redis is used as soon as it answers, and the reconciler sorts out the rest.
 */
export class RedisHealth {
  private state: Backend = "redis";
  private forcedMode = false;
  private sinceMs: number;
  private missCount = 0;
  private pingMs: number | undefined;
  private readonly counts = { toDatabase: 0, toRedis: 0 };
  private memoryReading: MemoryReading | undefined;
  private memoryAlerted = false;
  private knownRunId: string | undefined;
  private readonly alertLog: Alert[] = [];
  /** Said while Redis could not hear it: delivered at the next answer. */
  private readonly undelivered: Alert[] = [];
  private readonly listeners = new Set<(event: HealthEvent) => void>();
  private readonly now: () => number;

  constructor(
    private readonly client: RedisClient,
    private readonly options: HealthOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.sinceMs = this.now();
  }

  mode(): Backend {
    return this.state;
  }

  snapshot(): HealthSnapshot {
    return {
      mode: this.state,
      forced: this.forcedMode,
      since: this.sinceMs,
      misses: this.missCount,
      lastPingMs: this.pingMs,
      transitions: { ...this.counts },
      memory: this.memoryReading,
      runId: this.knownRunId,
      alerts: [...this.alertLog],
    };
  }

  on(listener: (event: HealthEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Start in database mode: Redis did not answer at start-up (the probes take it from here). */
  assumeDown(reason: string): void {
    if (this.state === "redis") this.change("database", `unreachable at start (${reason})`);
  }

  /** One probe: PING (and the rollback flag) within the timeout; with `deep`, INFO as well. */
  async check(options: { deep?: boolean } = {}): Promise<void> {
    const started = this.now();
    let forced: boolean;
    try {
      const [pong, backend] = await within(
        this.options.timeoutMs,
        Promise.all([this.client.ping(), this.client.get(this.options.backendKey)]),
      );
      if (pong !== "PONG") throw new Error(`PING answered ${String(pong)}`);
      forced = backend === "database";
    } catch (error) {
      this.miss(error instanceof Error ? error.message : String(error));
      return;
    }
    this.pingMs = this.now() - started;
    this.missCount = 0;
    this.forcedMode = forced;
    const wasDown = this.state === "database";
    if (forced) {
      if (!wasDown) this.change("database", "tasks rollback-to-db holds the database queue");
    } else if (wasDown) {
      this.change("redis", "Redis answers again");
    }
    // After an outage Redis may be a new, empty instance: read its run id at once.
    if (options.deep || wasDown || this.knownRunId === undefined) await this.inspect();
    await this.deliverAlerts();
  }

  private async deliverAlerts() {
    const key = this.options.alertsKey;
    if (!key || this.undelivered.length === 0) return;
    const batch = this.undelivered.splice(0);
    try {
      const pipeline = this.client.pipeline();
      for (const a of batch) {
        pipeline.xadd(key, "MAXLEN", "~", ALERTS_KEPT, "*", ...alertFields(a, this.options.source ?? ""));
      }
      await within(this.options.timeoutMs, pipeline.exec());
    } catch {
      this.undelivered.unshift(...batch);
      this.undelivered.splice(0, Math.max(0, this.undelivered.length - MAX_ALERTS));
    }
  }

  private miss(reason: string) {
    this.missCount++;
    if (this.state === "redis" && this.missCount >= this.options.failureThreshold) {
      this.change("database", `${this.missCount} pings missed in a row (last: ${reason})`);
    }
  }

  private change(mode: Backend, reason: string) {
    const downFor = this.now() - this.sinceMs;
    this.state = mode;
    this.sinceMs = this.now();
    if (mode === "database") {
      this.counts.toDatabase++;
      this.alert("warning", `Redis is down: ${reason}; tasks now queue in the database`);
      this.emit({ type: "down", reason });
    } else {
      this.counts.toRedis++;
      this.alert("info", `Redis is back after ${(downFor / 1000).toFixed(1)} s; tasks move back to it`);
      this.emit({ type: "up", downForMs: downFor });
    }
  }

  private async inspect() {
    let infos: string[];
    try {
      // Each master of a Cluster has its own memory and run id: watch all of them.
      const nodes = dataNodes(this.client);
      infos = await within(this.options.timeoutMs, Promise.all(nodes.map((node) => node.info())));
    } catch {
      return; // The next PING tells whether Redis is away; INFO alone decides nothing.
    }
    const runId = infos.map((info) => infoField(info, "run_id") ?? "?").join(",");
    if (runId && this.knownRunId && runId !== this.knownRunId) {
      this.alert("warning", `Redis restarted (run id ${runId}); the ledger will re-enqueue what it lost`);
      this.emit({ type: "restarted", runId });
    }
    if (runId) this.knownRunId = runId;
    this.memoryReading = fullest(infos);
    const { percent } = this.memoryReading;
    const high = percent !== undefined && percent >= this.options.memoryWarnPercent;
    if (high && !this.memoryAlerted) {
      this.alert(
        "warning",
        `Redis memory at ${percent}% of maxmemory (warning at ${this.options.memoryWarnPercent}%); cleaning up expired job data`,
      );
      this.emit({ type: "memory", reading: this.memoryReading });
    }
    this.memoryAlerted = high;
  }

  private alert(level: Alert["level"], message: string) {
    const alert = { at: this.now(), level, message };
    this.alertLog.push(alert);
    if (this.alertLog.length > MAX_ALERTS) this.alertLog.shift();
    this.undelivered.push(alert);
  }

  private emit(event: HealthEvent) {
    for (const listener of this.listeners) listener(event);
  }
}
