import { Effect } from "effect";
import { PRIORITIES } from "../domain/priority.js";
import { RedisError } from "./errors.js";
import type { RedisClient } from "../redis/connection.js";
import type { Queue } from "./queue.js";
import { scripts } from "./scripts.js";

export interface WorkerGroupInfo {
  readonly name: string;
  readonly queues: readonly string[];
  readonly concurrency: number;
}

export interface WorkerInfo {
  readonly id: string;
  readonly host: string;
  readonly pid: number;
  readonly groups: readonly WorkerGroupInfo[];
  readonly startedAt: number;
  /** Jobs running when it last beat. */
  readonly active: number;
  /** Which (the first 20). */
  readonly jobs: readonly string[];
  /** The process's resident memory, MB. */
  readonly rssMb: number;
  /** Where it sends and takes tasks: `redis`, or `database` while it holds Redis for down. */
  readonly mode: string;
  /** Redis outages it has seen (switches to the database queue) since it started. */
  readonly outages: number;
  /** Actor restarts in the process since it started. */
  readonly restarts: number;
  readonly lastBeatAt: number;
}

/** How long after its registration lapsed a worker is forgotten (see `prune`). */
const FORGET_AFTER_MS = 60_000;

/** Redis's clock in ms: the beats' times are its, and this process's clock may differ. */
const redisNow = async (redis: RedisClient): Promise<number> => {
  const [seconds, micros] = await redis.time();
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
};

const redisCall = <A>(operation: string, f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (cause) => new RedisError({ operation, cause }) });

/** The registry of live worker processes, kept by each process's heartbeat actor. */
export class WorkerRegistry {
  constructor(readonly queue: Queue) {}

  beat(info: Omit<WorkerInfo, "lastBeatAt">, ttlMs: number): Effect.Effect<number, RedisError> {
    const fields = [
      ["host", info.host],
      ["pid", info.pid],
      ["groups", JSON.stringify(info.groups)],
      ["started", info.startedAt],
      ["active", info.active],
      ["jobs", JSON.stringify(info.jobs.slice(0, 20))],
      ["rss", info.rssMb],
      ["mode", info.mode],
      ["outages", info.outages],
      ["restarts", info.restarts],
    ].flat();
    return this.queue.run(scripts.heartbeat, [info.id, ttlMs, ...fields]).pipe(Effect.map(Number));
  }

  remove(id: string): Effect.Effect<void, RedisError> {
    const { keys, redis } = this.queue;
    return redisCall("worker remove", () =>
      redis.multi().del(keys.worker(id)).zrem(keys.workers, id).zrem(keys.workersLapse, id).exec(),
    ).pipe(Effect.asVoid);
  }

  /** Workers whose registration has not expired. */
  list(): Effect.Effect<WorkerInfo[], RedisError> {
    const { keys, redis } = this.queue;
    return redisCall("worker list", async () => {
      const ids = await redis.zrange(keys.workers, "0", "-1");
      const hashes = await Promise.all(ids.map((id) => redis.hgetall(keys.worker(id))));
      return ids.flatMap((id, i) => {
        const h = hashes[i];
        if (!h?.beat) return [];
        return [
          {
            id,
            host: h.host ?? "",
            pid: Number(h.pid ?? 0),
            groups: JSON.parse(h.groups ?? "[]") as WorkerGroupInfo[],
            startedAt: Number(h.started ?? 0),
            active: Number(h.active ?? 0),
            jobs: JSON.parse(h.jobs ?? "[]") as string[],
            rssMb: Number(h.rss ?? 0),
            mode: h.mode ?? "redis",
            outages: Number(h.outages ?? 0),
            restarts: Number(h.restarts ?? 0),
            lastBeatAt: Number(h.beat),
          },
        ];
      });
    });
  }

  /**
   * Workers still in the registry whose registration has lapsed: no beat within their own ttl
   * (three of their own heartbeat intervals), so they stopped (a crash, a hang) without leaving.
   * Each is judged by the interval it beats at, not by the caller's; only a worker registered by
   * an older version, which writes no lapse time, is judged by `fallbackMaxAgeMs` since its last
   * beat. In Redis's time, as the beats are. The janitor forgets them a minute after they lapsed.
   */
  lapsed(fallbackMaxAgeMs: number): Effect.Effect<string[], RedisError> {
    const { keys, redis } = this.queue;
    return redisCall("worker lapsed", async () => {
      const now = await redisNow(redis);
      const lapsed = await redis.zrangebyscore(keys.workersLapse, "-inf", `(${now}`);
      const watched = new Set(await redis.zrange(keys.workersLapse, "0", "-1"));
      const silent = await redis.zrangebyscore(keys.workers, "-inf", `(${now - fallbackMaxAgeMs}`);
      return [...lapsed, ...silent.filter((id) => !watched.has(id))];
    });
  }

  /**
   * Forgets workers whose registration expired and lapsed a minute ago or more (not at once: the
   * alert rules, which look every few seconds, must see a lapsed worker before it goes), and
   * removes their consumers from the streams' groups once they hold no pending entries (the
   * reclaimer takes those first). A worker with no lapse time (registered by an older version)
   * goes as soon as its registration has expired; a lapse time left with no registry entry goes
   * too.
   */
  prune(): Effect.Effect<{ workers: number; consumers: number }, RedisError> {
    const { keys, redis, group } = this.queue;
    return redisCall("worker prune", async () => {
      const now = await redisNow(redis);
      const lapseAt = new Map<string, number>();
      const scores = await redis.zrange(keys.workersLapse, "0", "-1", "WITHSCORES");
      for (let i = 0; i + 1 < scores.length; i += 2) lapseAt.set(scores[i]!, Number(scores[i + 1]));
      const ids = [...new Set([...(await redis.zrange(keys.workers, "0", "-1")), ...lapseAt.keys()])];
      const alive = await Promise.all(ids.map((id) => redis.exists(keys.worker(id))));
      const gone = ids.filter((id, i) => {
        const at = lapseAt.get(id);
        return alive[i] === 0 && (at === undefined || at < now - FORGET_AFTER_MS);
      });
      if (gone.length > 0) {
        await redis
          .multi()
          .zrem(keys.workers, ...gone)
          .zrem(keys.workersLapse, ...gone)
          .exec();
      }
      const live = new Set(ids.filter((_, i) => alive[i] === 1));
      let consumers = 0;
      for (const p of PRIORITIES) {
        const stream = keys.stream(p);
        const list = (await redis.xinfo("CONSUMERS", stream, group).catch(() => [])) as unknown[][];
        for (const c of list) {
          const info = new Map<unknown, unknown>();
          for (let i = 0; i + 1 < c.length; i += 2) info.set(c[i], c[i + 1]);
          const name = String(info.get("name"));
          // Consumers are named `<worker id>/<role>`: one per dispatcher, one for the reclaimer.
          const owner = name.split("/")[0] ?? name;
          // The script checks again: the consumer may have claimed since XINFO answered.
          if (!live.has(owner) && Number(info.get("pending") ?? 0) === 0) {
            const removed = await Effect.runPromise(this.queue.run(scripts.forgetConsumer, [group, p, name]));
            if (removed === 1) consumers++;
          }
        }
      }
      return { workers: gone.length, consumers };
    });
  }
}
