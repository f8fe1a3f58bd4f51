import type { Priority } from "../domain/priority.js";

/**
 * Every key of a queue starts with `<prefix>:{<queue>}:`. The braces are a Redis Cluster hash tag:
 * all keys of one queue hash to one slot, so each Lua script (which only ever touches one queue)
 * runs on a single node. Scripts get `base` as KEYS[1] and derive the rest the same way as here.
 */
export interface QueueKeys {
  readonly base: string;
  stream(priority: Priority): string;
  delayed(priority: Priority): string;
  dead(priority: Priority): string;
  job(id: string): string;
  /**
   * The live state of every queued, delayed or running job: a hash of job id -> packed state
   * (pack_live in common.lua). An ended job's state is in its own hash.
   */
  readonly live: string;
  user(userId: string): string;
  readonly paused: string;
  /**
   * A short stream per priority that dispatchers taking that priority also block on (through its
   * wake group, as on the priority's stream): a resume writes an entry per job waiting, a woken
   * dispatcher that cannot claim writes one.
   */
  signal(priority: Priority): string;
  /** Pub/sub channel of JSON events: cancel requests and progress (state changes later). */
  readonly events: string;
  /**
   * The buckets of completed jobs' records (hashes of id -> record, one per retention period),
   * scored by when each expires.
   */
  readonly completed: string;
  /** Per-minute counters (completed/failed/retried/dead by priority), kept two hours. */
  metrics(minute: number): string;
  /** Live worker processes: zset of worker id by last heartbeat (ms). */
  readonly workers: string;
  /**
   * The same workers by the moment their registration lapses (ms): its last beat plus its own
   * lease, so each is judged by its own heartbeat interval.
   */
  readonly workersLapse: string;
  /** A worker process's registration (host, pid, groups, ...), expiring unless renewed. */
  worker(id: string): string;
  /** Set to `database` by `tasks rollback-to-db`: every process then queues in the database. */
  readonly backend: string;
  /** Capped stream of operator alerts (Redis down and back, restarts, memory pressure). */
  readonly alerts: string;
  /** Hash of the alert rules' active alerts by key, kept by the process that evaluates them. */
  readonly alerting: string;
}

const QUEUE_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

export const queueKeys = (prefix: string, queue: string): QueueKeys => {
  if (!QUEUE_NAME.test(queue)) {
    throw new Error(`queue name ${JSON.stringify(queue)} must be 1-64 characters of A-Z a-z 0-9 _ . -`);
  }
  if (prefix.includes("{") || prefix.includes("}")) {
    throw new Error(
      `key prefix ${JSON.stringify(prefix)} must not contain braces (the queue name is the hash tag)`,
    );
  }
  const base = `${prefix}:{${queue}}:`;
  return {
    base,
    stream: (p) => `${base}s:${p}`,
    delayed: (p) => `${base}d:${p}`,
    dead: (p) => `${base}x:${p}`,
    job: (id) => `${base}j:${id}`,
    live: `${base}live`,
    user: (u) => `${base}u:${u}`,
    paused: `${base}paused`,
    signal: (p) => `${base}signal:${p}`,
    events: `${base}events`,
    completed: `${base}done`,
    metrics: (minute) => `${base}m:${minute}`,
    workers: `${base}workers`,
    workersLapse: `${base}workers:lapse`,
    worker: (id) => `${base}w:${id}`,
    backend: `${base}backend`,
    alerts: `${base}alerts`,
    alerting: `${base}alerting`,
  };
};
