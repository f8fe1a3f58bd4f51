import { Effect } from "effect";
import { inPriorityOrder, isPriority, PRIORITIES, type Priority } from "../domain/priority.js";
import type { RedisClient } from "../redis/connection.js";
import type { LuaScript } from "../redis/lua-library.js";
import {
  ActiveTaskExists,
  DuplicateTask,
  InvalidJob,
  isWrongType,
  RedisError,
  TaskNotFound,
} from "./errors.js";
import { type QueueKeys, queueKeys } from "./keys.js";
import { LIVE_FIELDS, liveBounds, liveFields, numberAt } from "./live-state.js";
import { contextFrom, endFailed, SpanKind, startSpan, traceparentOf, tracingOn } from "../tracing.js";
import { library, scripts } from "./scripts.js";

export interface QueueOptions {
  /** Key prefix before the hash tag; default `rt`. */
  readonly prefix?: string;
  /** Queue name, also the Cluster hash tag; default `caption`. */
  readonly name?: string;
  /**
   * Consumer group on every priority stream; default `ratatoskr`. Every process of a queue must
   * use the same one: a stream is read by one group, and an entry is deleted (or trimmed) once
   * that group is done with it.
   */
  readonly group?: string;
  /** Dead letters kept per priority (approximate trim); default 10,000. */
  readonly deadLetterMax?: number;
  /** How long finished job data stays in Redis, in seconds. */
  readonly retention?: Partial<Retention>;
}

export interface Retention {
  readonly completedSeconds: number;
  readonly failedSeconds: number;
  readonly cancelledSeconds: number;
}

const DEFAULT_RETENTION: Retention = {
  completedSeconds: 24 * 3600,
  failedSeconds: 7 * 24 * 3600,
  cancelledSeconds: 24 * 3600,
};

export interface NewJob {
  readonly id: string;
  readonly priority: Priority;
  /** The envelope, as stored and handed to the worker. */
  readonly data: string;
  /** Set for jobs under the one-active-task-per-user rule. */
  readonly userId?: string;
  /** Attempts in all, first one included; default 4 (three retries). */
  readonly maxAttempts?: number;
  readonly delayMs?: number;
  /**
   * Attempts this task already used elsewhere (the database ledger's count): the next claim is
   * attempt `afterAttempt + 1`, and `maxAttempts` more are allowed from there.
   */
  readonly afterAttempt?: number;
  /** An ended job of the same id is replaced instead of refusing the enqueue as a duplicate. */
  readonly replaceEnded?: boolean;
  /** Where the job came from, carried to whoever runs it (the enqueue adds its trace context). */
  readonly meta?: JobMeta;
}

/**
 * What a job carries for observability, never for its work: the id of the HTTP request that
 * submitted it, and the W3C traceparent of its `enqueue` span when traces are recorded.
 */
export interface JobMeta {
  readonly requestId?: string;
  readonly traceparent?: string;
}

const parseMeta = (text: string): JobMeta => {
  if (text === "") return {};
  try {
    const value = JSON.parse(text) as Record<string, unknown>;
    return {
      ...(typeof value.r === "string" ? { requestId: value.r } : {}),
      ...(typeof value.t === "string" ? { traceparent: value.t } : {}),
    };
  } catch {
    return {}; // Only ever observability: a damaged value costs the log its ids, nothing more.
  }
};

/** Stored as `{"r":…,"t":…}`: short, since every job hash keeps it. */
const formatMeta = (meta: JobMeta): string =>
  meta.requestId === undefined && meta.traceparent === undefined
    ? ""
    : JSON.stringify({
        ...(meta.requestId === undefined ? {} : { r: meta.requestId }),
        ...(meta.traceparent === undefined ? {} : { t: meta.traceparent }),
      });

export interface Enqueued {
  readonly id: string;
  /** The stream entry id, or undefined for a delayed job. */
  readonly entry: string | undefined;
}

/** One job's answer from `enqueueMany`, in the order given. */
export type BulkOutcome =
  | { readonly id: string; readonly outcome: "ok"; readonly entry: string | undefined }
  | { readonly id: string; readonly outcome: "active"; readonly activeTaskId: string }
  | { readonly id: string; readonly outcome: "duplicate" };

/** One attempt of a job, as the places that track attempts key it (an attempt's id, not its job's). */
export const attemptKey = (attempt: { readonly id: string; readonly attempt: number }): string =>
  `${attempt.id}#${attempt.attempt}`;

export interface ClaimedJob {
  readonly id: string;
  /** The fencing token: every later transition of this run must carry it. */
  readonly attempt: number;
  /** 1 for the first attempt of this run (a redrive starts a new run), for the backoff schedule. */
  readonly runAttempt: number;
  readonly priority: Priority;
  readonly maxAttempts: number;
  readonly data: string;
  readonly userId: string | undefined;
  readonly createdAt: number;
  /** Where the job came from, for logs and traces. */
  readonly meta: JobMeta;
  /** The stream entry this attempt was read from, which its completion acknowledges and deletes. */
  readonly entry: string;
}

export interface Claim {
  readonly jobs: ClaimedJob[];
  /**
   * Fewer jobs than asked for: the streams ran dry, and the claim set their wake groups so that
   * `waitForWork` blocks for anything added after it.
   */
  readonly dry: boolean;
  /** The answers to the completions the claim carried, in their order. */
  readonly completed: readonly CompleteOutcome[];
}

/**
 * An idle worker of this process that an enqueue may hand its new job to (`Queue.acceptHandoffs`):
 * the enqueue's own script claims for it, as its next claim would, and the answer carries the
 * job, a round trip sooner than the worker's wake and claim.
 */
export interface HandoffTarget {
  /**
   * Whom to claim one job for, when idle and the job's priority is one it takes: it holds a slot
   * for the job until `handed`. Undefined when it takes none now.
   */
  offer(
    priority: Priority,
  ): { readonly consumer: string; readonly priorities: readonly Priority[] } | undefined;
  /** What the claim of an offer brought (nothing, when it found nothing or the call failed). */
  handed(jobs: readonly ClaimedJob[]): void;
}

export interface Lease {
  readonly id: string;
  readonly attempt: number;
}

/** A finished attempt and the result to keep with the job. */
export type Completion = Lease & { readonly result?: string };

/** `stale`: another attempt owns the job now, and this answer changed nothing. */
export type CompleteOutcome = "ok" | "stale";

export type RenewOutcome = "ok" | "lost" | "cancel";

export interface Failure extends Lease {
  readonly error: string;
  readonly retriable: boolean;
  /** Wait before the retry; 0 puts the job straight back on its stream. */
  readonly delayMs: number;
}

export type FailOutcome =
  | { readonly outcome: "retry"; readonly dueAt: number }
  | { readonly outcome: "dead" }
  | { readonly outcome: "cancelled" }
  | { readonly outcome: "stale" };

export type CancelOutcome =
  | { readonly outcome: "cancelled" }
  | { readonly outcome: "flagged"; readonly attempt: number }
  /** Only with `waitingOnly`: the job runs and was left alone. */
  | { readonly outcome: "running" }
  | { readonly outcome: "ended"; readonly state: string };

export interface ReclaimOptions {
  /** Entries idle longer than this lost their lease. */
  readonly leaseMs: number;
  /** A job reclaimed more often than this is dead-lettered as poison; default 3. */
  readonly maxReclaims?: number;
  readonly batch?: number;
  /** Where the previous call's scan of each priority stopped (its `cursors`); default: the start. */
  readonly cursors?: readonly string[];
}

export type JobState = "queued" | "delayed" | "running" | "completed" | "failed" | "cancelled";

export interface JobView {
  readonly id: string;
  readonly state: JobState;
  readonly priority: Priority;
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly userId: string | undefined;
  readonly data: string;
  readonly createdAt: number;
  readonly startedAt: number | undefined;
  readonly endedAt: number | undefined;
  readonly dueAt: number | undefined;
  readonly owner: string | undefined;
  readonly error: string | undefined;
  readonly result: string | undefined;
  readonly cancelRequested: boolean;
  readonly reclaims: number;
  /**
   * Attempts that do not count against this run's `maxAttempts`: those of earlier runs (before a
   * redrive, or on the database queue) and those given back uncharged (a shutdown, a postponement).
   */
  readonly uncounted: number;
  readonly progress: number | undefined;
  readonly step: string | undefined;
  /** The last 30 progress reports, across attempts, oldest first. */
  readonly steps: ReadonlyArray<{ at: number; attempt: number; percent: number; step: string }>;
}

const JOB_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
const USER_ID = /^[A-Za-z0-9_.:@-]{1,128}$/;

/**
 * A priority queue on Redis Streams: one stream and consumer group per priority, one Lua script
 * per transition, the attempt number as fencing token. Every method is one round trip (batches
 * included) and fails only with the typed errors in its signature.
 */
export class Queue {
  readonly keys: QueueKeys;
  readonly group: string;
  /** The streams' second group, which idle workers block on (`waitForWork`; wake_group in Lua). */
  readonly wakeGroup: string;
  readonly deadLetterMax: number;
  readonly retention: Retention;
  /** Idle workers of this process that single enqueues hand their jobs to (`acceptHandoffs`). */
  private readonly handoffTargets = new Set<HandoffTarget>();

  constructor(
    readonly redis: RedisClient,
    options: QueueOptions = {},
  ) {
    // ioredis prefixes the key arguments of each command it sends, so keys Redis hands back and
    // the queue names again (a SCAN's, in QueueAdmin) would be prefixed twice, and a SCAN's
    // pattern not at all: keys written under one name and looked for under another. The queue's
    // own `prefix` option puts every key under it.
    if (redis.options.keyPrefix)
      throw new Error(
        `a Redis client with ioredis's keyPrefix (${JSON.stringify(redis.options.keyPrefix)}) cannot carry a queue: ` +
          "give the queue its own prefix option instead",
      );
    this.keys = queueKeys(options.prefix ?? "rt", options.name ?? "caption");
    this.group = options.group ?? "ratatoskr";
    this.wakeGroup = `${this.group}:wake`;
    this.deadLetterMax = options.deadLetterMax ?? 10_000;
    this.retention = { ...DEFAULT_RETENTION, ...options.retention };
  }

  /** Runs one of the queue's scripts; any Redis failure becomes a RedisError naming it. */
  run(script: LuaScript, args: ReadonlyArray<string | number>): Effect.Effect<unknown, RedisError> {
    return fromNow(() => this.runNow(script, args), script.name);
  }

  /** `run` as a promise that rejects with the same RedisError: for the worker's hot path. */
  private runNow(
    script: LuaScript,
    args: ReadonlyArray<string | number>,
    buffers = false,
    operation = script.name,
  ): Promise<unknown> {
    const keys = [this.keys.base];
    const reply = buffers ? script.runBuffer(this.redis, keys, args) : script.run(this.redis, keys, args);
    return reply.catch((cause: unknown) => {
      throw new RedisError({ operation, cause });
    });
  }

  /** Loads every script into Redis up front (they also reload themselves after a Redis restart). */
  prepare(): Effect.Effect<void, RedisError> {
    return Effect.tryPromise({
      try: () => library.load(this.redis),
      catch: (cause) => new RedisError({ operation: "script load", cause }),
    });
  }

  enqueue(job: NewJob): Effect.Effect<Enqueued, EnqueueError> {
    // The job is validated, and its span started, when the effect runs: a caller may build it early.
    return Effect.tryPromise({
      try: () => this.enqueueNow(job),
      catch: (error) =>
        isEnqueueError(error) ? error : new RedisError({ operation: "enqueue", cause: error }),
    });
  }

  /**
   * `enqueue` as a promise, rejecting with the same typed errors: for a caller outside Effect,
   * and for one that enqueues job after job. A suspended Effect fiber per call left work that
   * outlived the young generation's collections: with `Effect.runPromise` per enqueue at 500
   * jobs/s, each of those collections paused the process 2-4 ms where 1.2-1.7 ms without
   * (bench/PERFORMANCE.md, "Latency p99").
   */
  async enqueueNow(job: NewJob): Promise<Enqueued> {
    const invalid = validateJob(job);
    if (invalid) throw new InvalidJob({ reason: invalid });
    // With no tracer provider, a span (and the context, attributes and traceparent made for
    // it) is a fifth of what an enqueue costs this process, and records nothing.
    if (!tracingOn()) return enqueueAnswer(job, await this.enqueueOne(job, undefined));
    // A job that comes back (from the ledger, a redrive) continues the trace it started in.
    const span = enqueueSpan({ "ratatoskr.task_id": job.id, "ratatoskr.priority": job.priority }, job.meta);
    try {
      const enqueued = enqueueAnswer(job, await this.enqueueOne(job, traceparentOf(span)));
      span.end();
      return enqueued;
    } catch (error) {
      endFailed(span, error instanceof Error ? error.message : String(error));
      throw error;
    }
  }

  /**
   * Lets single enqueues through this queue hand their jobs to `target` while it is idle (see
   * `HandoffTarget`); the function returned ends that. Jobs enqueued in bulk, delayed, or while
   * no target offers, wait in their streams as before.
   */
  acceptHandoffs(target: HandoffTarget): () => void {
    this.handoffTargets.add(target);
    return () => this.handoffTargets.delete(target);
  }

  /** One job's enqueue: handed to an idle worker of this process when one offers, else enqueued alone. */
  private async enqueueOne(job: NewJob, traceparent: string | undefined): Promise<unknown> {
    const args = enqueueArgs(job, traceparent);
    // A delayed job enters no stream now: nothing to hand over.
    if ((job.delayMs ?? 0) === 0) {
      for (const target of this.handoffTargets) {
        const offer = target.offer(job.priority);
        if (offer !== undefined) return this.enqueueHandingOff(target, offer, args);
      }
    }
    return this.runNow(scripts.enqueue, args);
  }

  /**
   * enqueue-handoff.lua: the enqueue, then a claim of one job for the target. Its answer is
   * enqueue's; the target has what was claimed (nothing, if the call failed: a job claimed for it
   * all the same comes back when its lease lapses, as after any claim whose answer was lost).
   */
  private async enqueueHandingOff(
    target: HandoffTarget,
    offer: { readonly consumer: string; readonly priorities: readonly Priority[] },
    enqueue: ReadonlyArray<string | number>,
  ): Promise<unknown> {
    const ordered = inPriorityOrder(offer.priorities);
    const args = [
      this.group,
      offer.consumer,
      1,
      this.deadLetterMax,
      this.retention.failedSeconds,
      ordered.length,
      ...ordered,
      ...enqueue,
    ];
    const jobs: ClaimedJob[] = [];
    try {
      const reply = await this.runNow(scripts.enqueueHandoff, args, true, "enqueue");
      const [answer, flat] = reply as [Buffer[], Buffer[]];
      for (let i = 0; i < flat.length; i += 3) jobs.push(claimedJob(flat[i]!, flat[i + 1]!, flat[i + 2]!));
      return answer.map((value) => value.toString());
    } finally {
      target.handed(jobs);
    }
  }

  /**
   * Many jobs in as few round trips as possible (a script call per BULK_CHUNK jobs, all sent
   * at once). Each job is judged on its own, as `enqueue` would: a refusal (the user has an
   * active task, the id is taken) is that job's outcome and leaves the others in. A job that is
   * not valid fails the whole call before anything is sent, naming it.
   */
  enqueueMany(jobs: readonly NewJob[]): Effect.Effect<BulkOutcome[], InvalidJob | RedisError> {
    for (const [n, job] of jobs.entries()) {
      const invalid = validateJob(job);
      if (invalid)
        return Effect.fail(new InvalidJob({ reason: `job ${n} (${JSON.stringify(job.id)}): ${invalid}` }));
    }
    if (jobs.length === 0) return Effect.succeed([]);
    return Effect.suspend(() => {
      // One span for the batch: a span per job would cost more than the enqueue itself.
      const span = enqueueSpan({ "ratatoskr.jobs": jobs.length }, undefined);
      const traceparent = traceparentOf(span);
      const chunks: NewJob[][] = [];
      for (let i = 0; i < jobs.length; i += BULK_CHUNK) chunks.push(jobs.slice(i, i + BULK_CHUNK));
      return Effect.forEach(
        chunks,
        (chunk) =>
          this.run(
            scripts.enqueue,
            chunk.flatMap((job) => enqueueArgs(job, traceparent)),
          ),
        { concurrency: "unbounded" },
      ).pipe(
        Effect.map((replies) =>
          replies.flatMap((reply, c) =>
            chunks[c]!.map((job, j): BulkOutcome => {
              const [status, value] = [(reply as string[])[2 * j], (reply as string[])[2 * j + 1] ?? ""];
              if (status === "ACTIVE") return { id: job.id, outcome: "active", activeTaskId: value };
              if (status === "DUPLICATE") return { id: job.id, outcome: "duplicate" };
              return { id: job.id, outcome: "ok", entry: value === "" ? undefined : value };
            }),
          ),
        ),
        Effect.tapBoth({
          onFailure: (error) => Effect.sync(() => endFailed(span, error.message)),
          onSuccess: () => Effect.sync(() => span.end()),
        }),
      );
    });
  }

  /**
   * Up to `want` jobs, strictly by priority. `done` are completions to record first, exactly as
   * `complete` would (its answers come back as `completed`): a busy worker sends one script per
   * batch instead of two.
   */
  claim(
    consumer: string,
    priorities: readonly Priority[],
    want: number,
    done: readonly Completion[] = [],
  ): Effect.Effect<Claim, RedisError> {
    return fromNow(() => this.claimNow(consumer, priorities, want, done), "claim");
  }

  /**
   * `claim` as a promise (rejecting with a RedisError), and the other `…Now` methods likewise:
   * the worker calls these once per batch or per job, where an Effect fiber per call cost more
   * than the call itself (bench/PERFORMANCE.md). Everything else uses the Effect methods.
   */
  claimNow(
    consumer: string,
    priorities: readonly Priority[],
    want: number,
    done: readonly Completion[] = [],
  ): Promise<Claim> {
    const ordered = inPriorityOrder(priorities);
    const args: Array<string | number> = [
      this.group,
      consumer,
      want,
      this.deadLetterMax,
      this.retention.failedSeconds,
      this.retention.completedSeconds,
      ordered.length,
      ...ordered,
    ];
    pushCompletions(args, done);
    // As Buffers: each job's live state comes back as the claim wrote it (MessagePack), three
    // values a job where the fields one by one were ten (bench/PERFORMANCE.md, item 14).
    return this.runNow(scripts.claim, args, true).then((reply) => {
      const [flat, answers] = reply as [Buffer[], Buffer[]];
      const jobs: ClaimedJob[] = [];
      for (let i = 0; i < flat.length; i += 3) jobs.push(claimedJob(flat[i]!, flat[i + 1]!, flat[i + 2]!));
      const completed = answers.map((answer) => answer.toString("latin1") as CompleteOutcome);
      return { jobs, dry: jobs.length < want, completed };
    });
  }

  /**
   * Blocks (on a connection of its own: `blocking`) until something is added to the stream or
   * the signal stream of one of `priorities` after the last claim that came back short, or
   * `timeoutMs` passes. Each entry wakes one waiting worker, in any process (the streams' wake
   * groups, claim.lua): the one woken claims, or passes the wake on (`passWakeNow`). Resolves
   * with the priorities whose streams woke it, in priority order (one read can take a wake of
   * each; none when a stream it waited on was deleted, which also calls for a claim), or
   * undefined after the timeout. No polling: an idle dispatcher costs one command per timeout.
   * A promise, as only the worker's loop waits (rejects with a RedisError).
   */
  async waitForWork(
    blocking: RedisClient,
    priorities: readonly Priority[],
    timeoutMs: number,
  ): Promise<readonly Priority[] | undefined> {
    const ordered = inPriorityOrder(priorities);
    const byKey = new Map<string, Priority>();
    for (const p of ordered) byKey.set(this.keys.stream(p), p).set(this.keys.signal(p), p);
    const keys = [...byKey.keys()];
    let reply: Array<[string, unknown[]]> | null;
    try {
      reply = (await blocking.xreadgroup(
        "GROUP",
        this.wakeGroup,
        WAKE_CONSUMER,
        "COUNT",
        1,
        "BLOCK",
        timeoutMs,
        "NOACK",
        "STREAMS",
        ...keys,
        ...keys.map(() => ">"),
      )) as Array<[string, unknown[]]> | null;
    } catch (cause) {
      // The stream or its group went away (a flushed Redis, a stream deleted while waited on):
      // a claim makes them again, so this is a wake, not a failure.
      if (cause instanceof Error && /^(NOGROUP|UNBLOCKED)\b/.test(cause.message)) return [];
      throw new RedisError({ operation: "wait for work", cause });
    }
    if (reply === null) return undefined;
    const woken = new Set(reply.map(([key]) => byKey.get(key)));
    return ordered.filter((p) => woken.has(p));
  }

  /**
   * Wakes one waiting worker that takes each of `priorities`, through their signal streams: for
   * a worker woken for jobs it cannot take (its slots filled meanwhile, it is stopping, or its
   * claim filled up before the rest of what woke it), so they do not wait for another wake.
   */
  passWakeNow(priorities: readonly Priority[]): Promise<void> {
    return this.runNow(scripts.wake, priorities, false, "pass a wake on").then(() => undefined);
  }

  /** Extends the leases of running jobs; 'lost' means the job was reclaimed: abort it. */
  renew(consumer: string, leases: readonly Lease[]): Effect.Effect<RenewOutcome[], RedisError> {
    if (leases.length === 0) return Effect.succeed([]);
    const args: Array<string | number> = [this.group, consumer];
    for (const l of leases) args.push(l.id, l.attempt);
    return this.run(scripts.renew, args).pipe(Effect.map((reply) => reply as RenewOutcome[]));
  }

  /**
   * Puts back the user locks of live jobs whose lock is missing (the ledger knows the tasks are
   * active); returns how many were restored.
   */
  restoreUserLocks(tasks: ReadonlyArray<{ readonly id: string; readonly userId: string }>) {
    if (tasks.length === 0) return Effect.succeed(0);
    return this.run(
      scripts.restoreLocks,
      tasks.flatMap((t) => [t.id, t.userId]),
    ).pipe(Effect.map(Number));
  }

  /** Moves a waiting (or delayed) job to another priority; a running or ended one stays. */
  reprioritize(
    id: string,
    priority: Priority,
  ): Effect.Effect<"ok" | { readonly state: string }, TaskNotFound | RedisError> {
    return this.run(scripts.reprioritize, [id, priority]).pipe(
      Effect.flatMap((reply) => {
        const [outcome, state] = reply as [string, string | undefined];
        if (outcome === "missing") return Effect.fail(new TaskNotFound({ taskId: id }));
        return Effect.succeed(outcome === "ok" ? ("ok" as const) : { state: state ?? "unknown" });
      }),
    );
  }

  /**
   * Gives a running job back, uncharged: to its stream at once (the worker is shutting down and
   * stopped it), or after `delayMs` (it could not start for want of something outside it, such
   * as the task ledger). 'cancel' if a cancel waits (it is not given back: a failure reported
   * ends it cancelled), 'stale' if the attempt is no longer this consumer's.
   */
  release(consumer: string, lease: Lease, delayMs = 0): Effect.Effect<"ok" | "cancel" | "stale", RedisError> {
    const delay = Number.isFinite(delayMs) ? Math.max(0, Math.round(delayMs)) : 0;
    return this.run(scripts.release, [this.group, consumer, lease.id, lease.attempt, delay]).pipe(
      Effect.map((reply) => (reply === "ok" || reply === "cancel" ? reply : "stale")),
    );
  }

  /** Completes jobs in one round trip; 'stale' for an attempt that is no longer current. */
  complete(done: readonly Completion[]): Effect.Effect<CompleteOutcome[], RedisError> {
    return fromNow(() => this.completeNow(done), "complete");
  }

  async completeNow(done: readonly Completion[]): Promise<CompleteOutcome[]> {
    if (done.length === 0) return [];
    const args: Array<string | number> = [this.group, this.retention.completedSeconds];
    pushCompletions(args, done);
    return (await this.runNow(scripts.complete, args)) as CompleteOutcome[];
  }

  fail(failure: Failure): Effect.Effect<FailOutcome, RedisError> {
    const { retentionArgs } = this;
    const args = [
      this.group,
      failure.id,
      failure.attempt,
      failure.error.slice(0, 4000),
      failure.retriable ? 1 : 0,
      Math.max(0, Math.round(failure.delayMs)),
      this.deadLetterMax,
      ...retentionArgs,
    ];
    return this.run(scripts.fail, args).pipe(
      Effect.map((reply) => {
        const [outcome, dueAt] = reply as [FailOutcome["outcome"], number?];
        return outcome === "retry" ? { outcome, dueAt: Number(dueAt) } : ({ outcome } as FailOutcome);
      }),
    );
  }

  /** Moves due delayed jobs to their streams; `nextDueAt` tells the scheduler when to look again. */
  promote(limit = 1000): Effect.Effect<{ moved: number; nextDueAt: number | undefined }, RedisError> {
    return this.run(scripts.promote, [limit, this.deadLetterMax, this.retention.failedSeconds]).pipe(
      Effect.map((reply) => {
        const [moved, next] = reply as [number, number];
        return { moved, nextDueAt: next < 0 ? undefined : next };
      }),
    );
  }

  /**
   * Cancels a job: a waiting one is removed, a running one flagged for its worker to abort. With
   * `waitingOnly`, a running job is left alone (answer `running`).
   */
  cancel(
    id: string,
    reason = "cancelled",
    options: { waitingOnly?: boolean } = {},
  ): Effect.Effect<CancelOutcome, TaskNotFound | RedisError> {
    const args = [id, reason.slice(0, 1000), this.retention.cancelledSeconds, options.waitingOnly ? 1 : 0];
    return this.run(scripts.cancel, args).pipe(
      Effect.flatMap((reply): Effect.Effect<CancelOutcome, TaskNotFound> => {
        const [outcome, value] = reply as [string, string | number];
        switch (outcome) {
          case "missing":
            return Effect.fail(new TaskNotFound({ taskId: id }));
          case "flagged":
            return Effect.succeed({ outcome, attempt: Number(value) } as const);
          case "ended":
            return Effect.succeed({ outcome, state: String(value) } as const);
          case "running":
            return Effect.succeed({ outcome } as const);
          default:
            return Effect.succeed({ outcome: "cancelled" } as const);
        }
      }),
    );
  }

  /** Takes over entries whose lease lapsed; run by the reclaimer under its own consumer name. */
  reclaim(
    consumer: string,
    options: ReclaimOptions,
  ): Effect.Effect<{ requeued: number; dead: number; cursors: string[]; more: boolean }, RedisError> {
    const args = [
      this.group,
      consumer,
      options.leaseMs,
      options.maxReclaims ?? 3,
      options.batch ?? 100,
      this.deadLetterMax,
      this.retention.failedSeconds,
      this.retention.cancelledSeconds,
      ...(options.cursors ?? []),
    ];
    return this.run(scripts.reclaim, args).pipe(
      Effect.map((reply) => {
        const [requeued, dead, cursors] = reply as [number, number, string[]];
        return { requeued, dead, cursors, more: cursors.some((c) => c !== "0-0") };
      }),
    );
  }

  /** Records a running attempt's progress; false when the attempt is no longer current. */
  progress(
    lease: Lease,
    progress: { readonly percent: number; readonly step: string; readonly details?: Record<string, unknown> },
  ): Effect.Effect<boolean, RedisError> {
    const percent = Math.max(0, Math.min(100, Math.round(progress.percent)));
    const details = JSON.stringify(progress.details ?? {});
    return this.run(scripts.progress, [
      lease.id,
      lease.attempt,
      percent,
      progress.step.slice(0, 500),
      details,
    ]).pipe(Effect.map((recorded) => recorded === 1));
  }

  /** Drops dead letters older than `maxAgeMs` (entry ids are times); returns how many. */
  trimDeadLetters(maxAgeMs: number): Effect.Effect<number, RedisError> {
    return Effect.tryPromise({
      try: async () => {
        const { redis } = this;
        const [seconds] = await redis.time();
        const minId = `${Number(seconds) * 1000 - maxAgeMs}-0`;
        const counts = await Promise.all(
          PRIORITIES.map((p) => redis.xtrim(this.keys.dead(p), "MINID", minId) as Promise<number>),
        );
        return counts.reduce((a, b) => a + b, 0);
      },
      catch: (cause) => new RedisError({ operation: "trim dead letters", cause }),
    });
  }

  /**
   * A waiting or running job's data is read from its stream entry, where it lives until the job
   * ends; an ended job's data is no longer in Redis (the ledger and the dead letters keep theirs).
   * A completed job's view comes from its record (complete-jobs.lua), which keeps less than a
   * hash: no start time, owner, reclaims, meta, or error of an earlier attempt; its progress and
   * step are the last of its history.
   */
  getJob(id: string): Effect.Effect<JobView | undefined, RedisError> {
    return Effect.tryPromise({
      try: async (): Promise<JobView | undefined> => {
        // One MULTI: a job ending between two reads would be in neither (its live state gone, its
        // end state not yet written) and read as lost.
        const replies = (await this.redis
          .multi()
          .hgetBuffer(this.keys.live, id)
          .hgetall(this.keys.job(id))
          .exec()) as [[Error | null, Buffer | null], [Error | null, Record<string, string>]] | null;
        if (replies === null) throw new Error("get job: the transaction was discarded");
        const [[liveError, live], [ownError, own]] = replies;
        if (liveError) throw liveError;
        // A live job's own key of another type is not read by the scripts either (they run the
        // job on its live state): it hides only what it would have added. Without a live state
        // the key is the job, and its error is the answer.
        if (ownError && (live === null || !isWrongType(ownError))) throw ownError;
        const h = live === null ? own : { ...(ownError ? {} : own), ...liveFields(id, live) };
        if (h.state === undefined) {
          const record = await this.completedRecord(id);
          return record === undefined ? undefined : fromCompletedRecord(id, record);
        }
        if (h.data === undefined && h.entry && isPriority(h.prio)) {
          const [found] = await this.redis.xrange(this.keys.stream(h.prio), h.entry, h.entry);
          const fields = found?.[1] ?? [];
          const at = fields.findIndex((f, i) => i % 2 === 0 && f === "d");
          if (at >= 0) return toJobView(id, { ...h, data: fields[at + 1] ?? "" });
        }
        return toJobView(id, h);
      },
      catch: (cause) => new RedisError({ operation: "get job", cause }),
    });
  }

  /** A completed job's record, looked for as done_record (common.lua) looks: newest bucket first. */
  private async completedRecord(id: string): Promise<Buffer | undefined> {
    const buckets = await this.redis.zrange(this.keys.completed, "0", "-1");
    for (const bucket of buckets.reverse()) {
      const record = await this.redis.hgetBuffer(bucket, id);
      if (record !== null) return record;
    }
    return undefined;
  }

  private get retentionArgs(): [number, number] {
    return [this.retention.failedSeconds, this.retention.cancelledSeconds];
  }
}

/** A `…Now` method as an Effect: its RedisError as the failure, anything else wrapped in one. */
const fromNow = <A>(now: () => Promise<A>, operation: string): Effect.Effect<A, RedisError> =>
  Effect.tryPromise({
    try: now,
    catch: (cause) => (cause instanceof RedisError ? cause : new RedisError({ operation, cause })),
  });

/** Where each string of a claimed job's live state lies: one array for every claim reply. */
const BOUNDS: number[] = [];
/** Where a field's start lies in BOUNDS (its end is the next number). */
const startOf = (name: (typeof LIVE_FIELDS)[number]) => 2 * LIVE_FIELDS.indexOf(name);
const [ATTEMPT, ENTRY, SPENT, MAX] = [startOf("attempt"), startOf("entry"), startOf("spent"), startOf("max")];
const [CREATED, PRIO, USER, META] = [startOf("created"), startOf("prio"), startOf("user"), startOf("meta")];

/**
 * A job of a claim's reply: its id, its data, and the live state the claim wrote for it (as
 * pack_values writes it, so it always parses: a value that does not is a script of another version).
 */
const claimedJob = (id: Buffer, data: Buffer, value: Buffer): ClaimedJob => {
  const at = BOUNDS;
  if (!liveBounds(value, at))
    throw new Error(`the claim answered an unreadable state for task ${id.toString()}`);
  const attempt = numberAt(value, at[ATTEMPT]!, at[ATTEMPT + 1]!);
  return {
    id: id.toString(),
    attempt,
    runAttempt: attempt - numberAt(value, at[SPENT]!, at[SPENT + 1]!),
    priority: priorityAt(value, at[PRIO]!),
    maxAttempts: numberAt(value, at[MAX]!, at[MAX + 1]!),
    data: data.toString(),
    userId: at[USER] === at[USER + 1] ? undefined : value.toString("utf8", at[USER], at[USER + 1]),
    createdAt: numberAt(value, at[CREATED]!, at[CREATED + 1]!),
    meta: at[META] === at[META + 1] ? {} : parseMeta(value.toString("utf8", at[META], at[META + 1])),
    entry: value.toString("latin1", at[ENTRY], at[ENTRY + 1]),
  };
};

/** The priority a claimed job's state names: the stream the claim read it from, always one of the four. */
const priorityAt = (value: Buffer, at: number): Priority => {
  switch (value[at]) {
    case 117: // u
      return "urgent";
    case 104: // h
      return "high";
    case 108: // l
      return "low";
    case 110: // n
      return "normal";
    default:
      throw new Error(`the claim answered an unknown priority for a job`);
  }
};

/**
 * A completion's three arguments to complete-jobs.lua, each pushed (no array per job): its lease
 * and result. The record's other fields the script reads from the job's state, which it reads
 * anyway to fence the attempt.
 */
const pushCompletions = (args: Array<string | number>, done: readonly Completion[]) => {
  for (const { id, attempt, result = "" } of done) args.push(id, attempt, result);
};

/**
 * The one consumer of every wake group: its reads take no entries (NOACK), so the name only keeps
 * the group from growing a consumer per worker ever started.
 */
const WAKE_CONSUMER = "any";

/** Jobs per script call in a bulk enqueue: big enough to amortise the call, small enough not to block Redis long. */
const BULK_CHUNK = 500;

/**
 * enqueue.lua's answer for one job: enqueued (with its entry, none when delayed), or refused
 * (thrown as the refusal's typed error).
 */
const enqueueAnswer = (job: NewJob, reply: unknown): Enqueued => {
  const [status, value] = reply as [string, string];
  if (status === "ACTIVE") throw new ActiveTaskExists({ userId: job.userId ?? "", activeTaskId: value });
  if (status === "DUPLICATE") throw new DuplicateTask({ taskId: job.id });
  return { id: job.id, entry: value === "" ? undefined : value };
};

export type EnqueueError = ActiveTaskExists | DuplicateTask | InvalidJob | RedisError;

const isEnqueueError = (error: unknown): error is EnqueueError =>
  error instanceof ActiveTaskExists ||
  error instanceof DuplicateTask ||
  error instanceof InvalidJob ||
  error instanceof RedisError;

const enqueueSpan = (attributes: Record<string, string | number>, meta: JobMeta | undefined) =>
  startSpan("ratatoskr enqueue", { kind: SpanKind.PRODUCER, attributes }, contextFrom(meta?.traceparent));

/** One job's nine arguments to enqueue.lua; the trace context of its enqueue span goes in its meta. */
const enqueueArgs = (job: NewJob, traceparent: string | undefined): Array<string | number> => [
  job.id,
  job.userId ?? "",
  job.priority,
  job.data,
  job.maxAttempts ?? 4,
  job.delayMs ?? 0,
  job.afterAttempt ?? 0,
  job.replaceEnded ? 1 : 0,
  formatMeta(traceparent === undefined ? (job.meta ?? {}) : { ...job.meta, traceparent }),
];

const MAX_AFTER_ATTEMPT = 99_999_999_999_999;

const validateJob = (job: NewJob): string | undefined => {
  if (!JOB_ID.test(job.id))
    return `id ${JSON.stringify(job.id)} must be 1-128 characters of A-Z a-z 0-9 _ . : -`;
  if (!isPriority(job.priority))
    return `priority ${JSON.stringify(job.priority)} is not urgent, high, normal or low`;
  if (typeof job.data !== "string") return "data must be a string (an encoded envelope)";
  if (job.userId !== undefined && !USER_ID.test(job.userId)) {
    return `user id ${JSON.stringify(job.userId)} must be 1-128 characters of A-Z a-z 0-9 _ . : @ -`;
  }
  const attempts = job.maxAttempts ?? 4;
  if (!Number.isInteger(attempts) || attempts < 1 || attempts > 1000)
    return "maxAttempts must be an integer 1-1000";
  const after = job.afterAttempt ?? 0;
  // The scripts hold counters to 15 digits (exact as a Lua number); the next claim adds one.
  if (!Number.isInteger(after) || after < 0 || after > MAX_AFTER_ATTEMPT)
    return "afterAttempt must be an integer 0-99999999999999";
  const delay = job.delayMs ?? 0;
  if (!Number.isFinite(delay) || delay < 0) return "delayMs must be a finite number >= 0";
  return undefined;
};

const optionalNumber = (value: string | undefined) =>
  value === undefined || value === "" ? undefined : Number(value);
const optionalString = (value: string | undefined) =>
  value === undefined || value === "" ? undefined : value;

const toJobView = (id: string, h: Record<string, string>): JobView => ({
  id,
  state: h.state as JobState,
  priority: h.prio as Priority,
  attempt: Number(h.attempt ?? 0),
  maxAttempts: Number(h.max ?? 1),
  userId: optionalString(h.user),
  data: h.data ?? "",
  createdAt: Number(h.created ?? 0),
  startedAt: optionalNumber(h.started),
  endedAt: optionalNumber(h.ended),
  dueAt: optionalNumber(h.due),
  owner: optionalString(h.owner),
  error: optionalString(h.error),
  result: optionalString(h.result),
  cancelRequested: h.cancel === "1",
  reclaims: Number(h.reclaims ?? 0),
  uncounted: Number(h.spent ?? 0),
  progress: optionalNumber(h.progress),
  step: optionalString(h.step),
  steps: parseSteps(h.steps),
});

/**
 * A record as done_record_of writes it: six values and two lengths in bytes (the user's, the
 * progress history's), each followed by a space; then the user, the history and the result.
 * Bytes, as Lua counts them.
 */
const fromCompletedRecord = (id: string, record: Buffer): JobView => {
  const head: string[] = [];
  let from = 0;
  for (let n = 0; n < 8; n++) {
    const space = record.indexOf(0x20, from);
    if (space < 0) break;
    // The head is ASCII: numbers and a priority.
    head.push(record.toString("latin1", from, space));
    from = space + 1;
  }
  const [attempt, prio, ended, spent, max, created, userBytes, stepsBytes] = head;
  const userEnd = from + Number(userBytes ?? 0);
  const stepsEnd = userEnd + Number(stepsBytes ?? 0);
  const whole = head.length === 8 && stepsEnd <= record.length;
  const steps = whole ? record.toString("utf8", userEnd, stepsEnd) : "";
  const last = parseSteps(steps).at(-1);
  return toJobView(id, {
    state: "completed",
    attempt: attempt ?? "0",
    prio: prio ?? "",
    ended: ended ?? "",
    spent: spent ?? "0",
    max: max ?? "1",
    created: created ?? "0",
    user: whole ? record.toString("utf8", from, userEnd) : "",
    steps,
    ...(last === undefined ? {} : { progress: String(last.percent), step: last.step }),
    result: whole ? record.toString("utf8", stepsEnd) : "",
  });
};

const parseSteps = (value: string | undefined): JobView["steps"] => {
  if (!value) return [];
  try {
    const steps = JSON.parse(value) as unknown;
    // cjson encodes an empty table as {}: no steps.
    return Array.isArray(steps) ? (steps as JobView["steps"]) : [];
  } catch {
    return [];
  }
};
