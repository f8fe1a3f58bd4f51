import { Effect } from "effect";
import { scanKeys } from "../redis/connection.js";
import { isPriority, PRIORITIES, type Priority } from "../domain/priority.js";
import { InvalidJob, isWrongType, RedisError } from "./errors.js";
import type { Queue } from "./queue.js";
import { scripts } from "./scripts.js";

export interface PriorityStats {
  readonly priority: Priority;
  readonly paused: boolean;
  /** In the stream, not yet claimed. */
  readonly waiting: number;
  /** Claimed and not yet acknowledged (running, or stalled until reclaimed). */
  readonly running: number;
  readonly delayed: number;
  readonly dead: number;
  readonly completedLastHour: number;
  readonly failedLastHour: number;
  readonly retriedLastHour: number;
}

export interface MinuteCounts {
  /** The minute's start, epoch milliseconds. */
  readonly minute: number;
  readonly completed: Readonly<Record<Priority, number>>;
  readonly failed: Readonly<Record<Priority, number>>;
  readonly retried: Readonly<Record<Priority, number>>;
  readonly dead: Readonly<Record<Priority, number>>;
}

export interface AlertEntry {
  readonly at: number;
  readonly level: string;
  readonly message: string;
  /** The worker process that raised it. */
  readonly source: string;
  /** For an alert rule's notice: the rule, its subject key, and firing / repeat / resolved. */
  readonly rule?: string;
  readonly key?: string;
  readonly state?: string;
}

export interface DeadLetter {
  readonly priority: Priority;
  /** The dead-letter stream entry id: what redrive and purge take. */
  readonly entryId: string;
  /** Empty for a corrupt stream entry that named no task. */
  readonly taskId: string;
  readonly reason: string;
  readonly attempt: number;
  readonly userId: string | undefined;
  readonly at: number;
  readonly data: string;
}

export type RedriveOutcome = "ok" | "missing" | "corrupt" | { readonly activeTaskId: string };

const requirePriority = (priority: string): Effect.Effect<Priority, InvalidJob> =>
  isPriority(priority)
    ? Effect.succeed(priority)
    : Effect.fail(
        new InvalidJob({ reason: `priority ${JSON.stringify(priority)} is not urgent, high, normal or low` }),
      );

/** What an operator does to a queue: look, pause, clear, and deal with dead letters. */
export class QueueAdmin {
  constructor(readonly queue: Queue) {}

  private redis<A>(operation: string, f: () => Promise<A>): Effect.Effect<A, RedisError> {
    return Effect.tryPromise({ try: f, catch: (cause) => new RedisError({ operation, cause }) });
  }

  stats(): Effect.Effect<PriorityStats[], RedisError> {
    const { keys, group } = this.queue;
    return this.redis("stats", async () => {
      const minute = Math.floor(Date.now() / 60_000);
      const p = this.queue.redis.pipeline();
      for (const prio of PRIORITIES) {
        p.xlen(keys.stream(prio))
          .xinfo("GROUPS", keys.stream(prio))
          .zcard(keys.delayed(prio))
          .xlen(keys.dead(prio));
      }
      p.smembers(keys.paused);
      for (let m = minute - 59; m <= minute; m++) p.hgetall(keys.metrics(m));
      const replies = (await p.exec()) ?? [];
      const value = (i: number) => {
        const [error, result] = replies[i] ?? [null, undefined];
        // XINFO on a stream that does not exist yet is an error that just means "empty".
        return error ? undefined : result;
      };
      const paused = new Set((value(PRIORITIES.length * 4) as string[] | undefined) ?? []);
      const buckets = replies
        .slice(PRIORITIES.length * 4 + 1)
        .map(([, h]) => (h ?? {}) as Record<string, string>);
      const sum = (field: string) => buckets.reduce((n, h) => n + Number(h[field] ?? 0), 0);
      return PRIORITIES.map((priority, i) => {
        const length = Number(value(i * 4) ?? 0);
        const running = pendingOf((value(i * 4 + 1) as unknown[][] | undefined) ?? [], group);
        return {
          priority,
          paused: paused.has(priority),
          waiting: Math.max(0, length - running),
          running,
          delayed: Number(value(i * 4 + 2) ?? 0),
          dead: Number(value(i * 4 + 3) ?? 0),
          completedLastHour: sum(`completed:${priority}`),
          failedLastHour: sum(`failed:${priority}`),
          retriedLastHour: sum(`retried:${priority}`),
        };
      });
    });
  }

  /**
   * Attempts ended per minute over the last `minutes` (oldest first, the current minute last),
   * by priority: the counters the queue's scripts keep, for rates and charts.
   */
  history(minutes = 60): Effect.Effect<MinuteCounts[], RedisError> {
    const { keys } = this.queue;
    return this.redis("history", async () => {
      const now = Math.floor(Date.now() / 60_000);
      const p = this.queue.redis.pipeline();
      for (let m = now - minutes + 1; m <= now; m++) p.hgetall(keys.metrics(m));
      const replies = (await p.exec()) ?? [];
      return replies.map(([, h], i) => {
        const bucket = (h ?? {}) as Record<string, string>;
        const count = (outcome: string) =>
          Object.fromEntries(
            PRIORITIES.map((prio) => [prio, Number(bucket[`${outcome}:${prio}`] ?? 0)]),
          ) as Record<Priority, number>;
        return {
          minute: (now - minutes + 1 + i) * 60_000,
          completed: count("completed"),
          failed: count("failed"),
          retried: count("retried"),
          dead: count("dead"),
        };
      });
    });
  }

  /**
   * When the oldest job still waiting (not yet claimed) in each priority's stream was enqueued:
   * the time in the id of the first entry after the group's last delivered one.
   */
  oldestWaiting(): Effect.Effect<Partial<Record<Priority, number>>, RedisError> {
    const { keys, group } = this.queue;
    return this.redis("oldest waiting", async () => {
      const oldest: Partial<Record<Priority, number>> = {};
      await Promise.all(
        PRIORITIES.map(async (prio) => {
          const groups = (await this.queue.redis
            .xinfo("GROUPS", keys.stream(prio))
            .catch(() => [])) as unknown[][];
          const info = groups.map((g) => new Map(pairs(g))).find((g) => g.get("name") === group);
          const last = String(info?.get("last-delivered-id") ?? "0-0");
          const [next] = await this.queue.redis.xrange(keys.stream(prio), `(${last}`, "+", "COUNT", 1);
          if (next) oldest[prio] = Number(next[0].split("-")[0]);
        }),
      );
      return oldest;
    });
  }

  /** Dispatchers stop claiming from this priority; waiting jobs stay where they are. */
  pause(priority: Priority): Effect.Effect<boolean, InvalidJob | RedisError> {
    return requirePriority(priority).pipe(
      Effect.flatMap((p) => this.queue.run(scripts.pause, [p, 1, this.queue.group])),
      Effect.map((changed) => changed === 1),
    );
  }

  resume(priority: Priority): Effect.Effect<boolean, InvalidJob | RedisError> {
    return requirePriority(priority).pipe(
      Effect.flatMap((p) => this.queue.run(scripts.pause, [p, 0, this.queue.group])),
      Effect.map((changed) => changed === 1),
    );
  }

  /**
   * Cancels every waiting job of a priority (not running or delayed ones); returns which, with
   * the attempt each was at, so the ledger can follow.
   */
  clear(
    priority: Priority,
    reason = "cleared by an administrator",
  ): Effect.Effect<
    ReadonlyArray<{ readonly id: string; readonly attempt: number }>,
    InvalidJob | RedisError
  > {
    const batch = 500;
    const { queue } = this;
    return requirePriority(priority).pipe(
      Effect.flatMap((p) => {
        const cleared: Array<{ id: string; attempt: number }> = [];
        return Effect.iterate(batch, {
          while: (read) => read === batch,
          body: () =>
            queue.run(scripts.clear, [queue.group, p, batch, reason, queue.retention.cancelledSeconds]).pipe(
              Effect.map((answer) => {
                const [read, flat] = answer as [number, string[]];
                for (let i = 0; i < flat.length; i += 2)
                  cleared.push({ id: flat[i]!, attempt: Number(flat[i + 1] ?? 0) });
                return Number(read);
              }),
            ),
        }).pipe(Effect.as(cleared));
      }),
    );
  }

  /** Newest first, across the given priorities (all by default). */
  listDead(options: { priority?: Priority; limit?: number } = {}): Effect.Effect<DeadLetter[], RedisError> {
    const limit = Math.max(1, Math.min(options.limit ?? 100, 10_000));
    const priorities = options.priority ? [options.priority] : PRIORITIES;
    return this.redis("list dead letters", async () => {
      const lists = await Promise.all(
        priorities.map(async (priority) => {
          const entries = await this.queue.redis.xrevrange(
            this.queue.keys.dead(priority),
            "+",
            "-",
            "COUNT",
            limit,
          );
          return entries.map(([entryId, fields]) => toDeadLetter(priority, entryId, fields));
        }),
      );
      return lists
        .flat()
        .sort((a, b) => compareEntryIds(b.entryId, a.entryId))
        .slice(0, limit);
    });
  }

  /** Puts dead letters back on their stream as fresh runs; each answer says how that one went. */
  redriveDead(
    priority: Priority,
    entryIds: readonly string[],
  ): Effect.Effect<RedriveOutcome[], InvalidJob | RedisError> {
    if (entryIds.length === 0) return Effect.succeed([]);
    return requirePriority(priority).pipe(
      Effect.flatMap((p) => this.queue.run(scripts.redrive, [p, ...entryIds])),
      Effect.map((reply) =>
        (reply as string[]).map((r): RedriveOutcome =>
          r.startsWith("active:")
            ? { activeTaskId: r.slice("active:".length) }
            : (r as "ok" | "missing" | "corrupt"),
        ),
      ),
    );
  }

  /** Deletes the given dead letters of a priority, or all of them when no ids are given. */
  purgeDead(
    priority: Priority,
    entryIds?: readonly string[],
  ): Effect.Effect<number, InvalidJob | RedisError> {
    const key = this.queue.keys.dead(priority);
    return requirePriority(priority).pipe(
      Effect.flatMap(() =>
        this.redis("purge dead letters", async () => {
          if (entryIds === undefined) {
            const n = await this.queue.redis.xlen(key);
            await this.queue.redis.del(key);
            return n;
          }
          return entryIds.length === 0 ? 0 : await this.queue.redis.xdel(key, ...entryIds);
        }),
      ),
    );
  }

  /**
   * The user's queued, delayed or running task, if any (a lock naming an ended task is ignored).
   * A key of another type under the lock's name, or a lock naming a task whose key is not a hash,
   * is judged as the scripts judge it (user_lock, enqueue): no active task, the lock stale. WRONGTYPE
   * is that answer, not a failure; any other error still is one.
   */
  activeTaskOf(userId: string): Effect.Effect<string | undefined, RedisError> {
    return this.redis("active task lookup", async () => {
      const id = await this.queue.redis.get(this.queue.keys.user(userId)).catch(noneIfWrongType);
      if (!id) return undefined;
      if ((await this.queue.redis.hexists(this.queue.keys.live, id)) === 1) return id;
      // A job queued before the live hash existed keeps its state in its own hash.
      const state = await this.queue.redis.hget(this.queue.keys.job(id), "state").catch(noneIfWrongType);
      return state === "queued" || state === "delayed" || state === "running" ? id : undefined;
    });
  }

  /**
   * Deletes the data of completed jobs now rather than at the end of their retention (memory
   * pressure, or an operator's cleanup). Only completed ones: failed and cancelled jobs explain
   * themselves to whoever looks. Returns how many were deleted.
   */
  purgeFinished(): Effect.Effect<number, RedisError> {
    return this.redis("purge finished jobs", async () => {
      const { redis, keys } = this.queue;
      const prefix = keys.job("");
      // The records first (one step for all), then the hashes of jobs completed before records
      // moved out of them.
      let removed = Number(await Effect.runPromise(this.queue.run(scripts.purgeCompleted, [1])));
      for await (const found of scanKeys(redis, `${prefix}*`)) {
        const ids = found.map((key) => key.slice(prefix.length));
        removed += Number(await Effect.runPromise(this.queue.run(scripts.purgeCompleted, [0, ...ids])));
      }
      return removed;
    });
  }

  /** `database` while `tasks rollback-to-db` holds every process on the database queue. */
  backendMode(): Effect.Effect<"redis" | "database", RedisError> {
    return this.redis("backend mode", async () =>
      (await this.queue.redis.get(this.queue.keys.backend)) === "database" ? "database" : "redis",
    );
  }

  /** The newest operator alerts first (outages, Redis restarts, memory pressure). */
  alerts(limit = 20): Effect.Effect<AlertEntry[], RedisError> {
    return this.redis("alerts", async () => {
      const entries = await this.queue.redis.xrevrange(this.queue.keys.alerts, "+", "-", "COUNT", limit);
      return entries.map(([, fields]) => {
        const f = new Map<string, string>();
        for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i]!, fields[i + 1]!);
        return {
          at: Number(f.get("at") ?? 0),
          level: f.get("level") ?? "info",
          message: f.get("message") ?? "",
          source: f.get("source") ?? "",
          ...(f.has("rule")
            ? { rule: f.get("rule") ?? "", key: f.get("key") ?? "", state: f.get("state") ?? "" }
            : {}),
        };
      });
    });
  }

  /**
   * Frees the user's slot whatever holds it, so a new task can be submitted. The old task keeps
   * running: use it when the lock is wrong, not to cancel.
   */
  releaseUser(userId: string): Effect.Effect<boolean, RedisError> {
    return this.redis(
      "release user",
      async () => (await this.queue.redis.del(this.queue.keys.user(userId))) === 1,
    );
  }
}

/** A reply error for a key of another type reads as no value; every other error is rethrown. */
const noneIfWrongType = (error: unknown): undefined => {
  if (isWrongType(error)) return undefined;
  throw error;
};

/** XINFO's flat `[name, value, name, value, ...]` reply as pairs. */
const pairs = (flat: readonly unknown[]): Array<[unknown, unknown]> => {
  const out: Array<[unknown, unknown]> = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i], flat[i + 1]]);
  return out;
};

const pendingOf = (groups: unknown[][], group: string): number => {
  const info = groups.map((g) => new Map(pairs(g))).find((g) => g.get("name") === group);
  return Number(info?.get("pending") ?? 0);
};

const toDeadLetter = (priority: Priority, entryId: string, fields: string[]): DeadLetter => {
  const f = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i] as string, fields[i + 1] as string);
  const user = f.get("user") ?? "";
  return {
    priority,
    entryId,
    taskId: f.get("i") ?? "",
    reason: f.get("reason") ?? "",
    attempt: Number(f.get("attempt") ?? 0),
    userId: user === "" ? undefined : user,
    at: Number(f.get("at") ?? 0),
    data: f.get("data") ?? "",
  };
};

const compareEntryIds = (a: string, b: string): number => {
  const [am = 0, as = 0] = a.split("-").map(Number);
  const [bm = 0, bs = 0] = b.split("-").map(Number);
  return am - bm || as - bs;
};
