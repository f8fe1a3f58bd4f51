import { Effect, Runtime } from "effect";
import { jobTimeoutsMs, type WorkerGroup } from "../config/profiles.js";
import type { LogLevel, Progress } from "../src/jobs/definition.js";
import { throttleProgress } from "../src/jobs/throttle-progress.js";
import { describeFailure, failureKindOf, JobPostponed } from "../src/queue/failures.js";
import { isLedgerUnreachable, LedgerOutage } from "../src/tasks/ledger-outage.js";
import type { TaskLedger } from "../src/tasks/ledger.js";
import { isSkip, skipResult } from "../src/tasks/skip.js";
import { attemptKey, type ClaimedJob } from "../src/queue/queue.js";
import { type ClaimingWorker, type JobContext, Worker, type WorkerEvent } from "../src/queue/worker.js";
import { HostedGroup, type HostListener } from "../src/pool/hosted-group.js";
import type { RunOptions } from "../src/pool/pool.js";
import type { GateVerdict, ThreadOutcome } from "../src/pool/protocol.js";
import { queueOptionsFrom, redisAccessFrom } from "../config/schema.js";
import type { RuntimeContext } from "./context.js";
import type { Span } from "@opentelemetry/api";
import { endFailed, NO_SPAN, tracingOn } from "../src/tracing.js";
import { AttemptSpans, jobAnnotations, jobLogLine } from "./job-telemetry.js";
import type { ChildSpec } from "./supervisor.js";

/**
 * One dispatcher per worker group: claims from the group's priorities (strictly in order, up to
 * its free slots, blocking when idle) and runs each job on the thread pool under the priority's
 * timeout. Stopping it is the graceful drain: running jobs get `drainMs` to finish.
 */
export const dispatcher = (ctx: RuntimeContext, group: WorkerGroup): ChildSpec => ({
  id: `dispatcher:${group.name}`,
  restart: "permanent",
  shutdownMs: () => ctx.drainMs() + 5_000,
  run: Effect.gen(function* () {
    const pool = ctx.pool;
    if (!pool) return yield* Effect.dieMessage("a dispatcher needs the thread pool");
    const runtime = yield* Effect.runtime<never>();
    const log = (effect: Effect.Effect<void>) => Runtime.runFork(runtime)(effect);
    const timeouts = jobTimeoutsMs(ctx.config);
    const spans = new AttemptSpans();
    yield* Effect.addFinalizer(() => Effect.sync(() => spans.closeAll()));
    /** A line about one job, with its task id, attempt and request id. */
    const logJob = (job: ClaimedJob, effect: Effect.Effect<void>) =>
      log(effect.pipe(Effect.annotateLogs(jobAnnotations(job))));

    const outage = new LedgerOutage();
    /**
     * The row moves to running at this attempt ("started"), or says why not. A ledger that cannot
     * be reached postpones the job, uncharged: running it unrecorded could run a task twice (the
     * database-fallback dispatcher may have it), and failing it would spend its attempts on an
     * outage that is not its fault.
     */
    const startInLedger = async (ledger: TaskLedger, job: ClaimedJob) => {
      let row: string | undefined;
      const startedAt = Date.now();
      try {
        const started = await ledger.markRunning(job.id, job.attempt, job.runAttempt);
        row = started ? "started" : await ledger.status(job.id);
      } catch (error) {
        // Anything else (a statement refused, a fault of this row) fails the job as before.
        if (!isLedgerUnreachable(error)) throw error;
        const { delayMs, began } = outage.failed();
        const why = describeFailure(error);
        if (began)
          log(Effect.logWarning(`ledger unreachable, job starts postponed until it answers: ${why}`));
        throw new JobPostponed(delayMs, `the task ledger could not be reached: ${why}`);
      }
      const over = outage.answered(startedAt);
      if (over) {
        const seconds = (over.lastedMs / 1000).toFixed(1);
        log(
          Effect.logInfo(`ledger reachable again: ${over.postponed} job starts postponed over ${seconds} s`),
        );
      }
      return row;
    };

    const runSpans = new Map<string, Span>();
    /** A job about to run, wherever it runs: its spans start, its debug line. */
    const announce = (job: ClaimedJob) => {
      // Only at debug level: a fiber per job for a line nobody keeps would cost the hot path.
      if (ctx.config.RT_LOG_LEVEL === "debug") {
        logJob(
          job,
          Effect.logDebug(
            `job ${job.id} attempt ${job.attempt} started, ${Date.now() - job.createdAt} ms after it was enqueued`,
          ),
        );
      }
      const runSpan = spans.begin(job);
      if (runSpan !== NO_SPAN) runSpans.set(attemptKey(job), runSpan);
    };
    /**
     * Before a job runs, wherever it runs: its ledger row moves to running (or the job is not
     * run: the reason comes back), then `announce`. Throws to postpone or fail it.
     */
    const begin = async (job: ClaimedJob): Promise<string | undefined> => {
      if (ctx.ledger) {
        const row = await startInLedger(ctx.ledger, job);
        // The ledger has moved on: the task ended (say, cancelled while Redis was away), a
        // database-fallback dispatcher runs it, or a later attempt started. Nothing to run here.
        if (row !== "started" && row !== undefined) return `the ledger has this task as ${row}`;
      }
      announce(job);
      return undefined;
    };

    /**
     * After the handler, before Redis hears of it: its spans, its metrics, and a result recorded
     * in the ledger first, as a result must not wait on Redis, which may be away right now. If the
     * queue's acknowledgement is lost, a later attempt finds the row completed and skips. Returns
     * that write, if there is one to wait for (with no ledger, a job's dispatch awaits nothing).
     */
    const finish = (job: ClaimedJob, outcome: ThreadOutcome, seconds: number): Promise<void> | undefined => {
      if (runSpans.size > 0) {
        const key = attemptKey(job);
        const runSpan = runSpans.get(key);
        runSpans.delete(key);
        if (outcome.ok) runSpan?.end();
        else if (runSpan) endFailed(runSpan, outcome.message);
      }
      spans.ran(job);
      if (!outcome.ok) return undefined;
      ctx.metrics.attemptEnded(job.priority, "completed", "redis", seconds);
      if (!ctx.ledger) return undefined;
      const at = { id: job.id, attempt: job.attempt, backend: "redis" } as const;
      return ctx.ledger.markCompleted(at, outcome.result || undefined).then(
        () => undefined,
        (error: unknown) => {
          logJob(
            job,
            Effect.logWarning(`ledger: could not record ${job.id} completed: ${describeFailure(error)}`),
          );
        },
      );
    };

    /** The job claimed here and sent to a thread of the pool (RT_CLAIM_IN=main). */
    const handler = async (job: ClaimedJob, context: JobContext) => {
      if (ctx.ledger) {
        const skip = await begin(job);
        if (skip !== undefined) return skipResult(skip);
      } else announce(job);
      const sent = new SentJob(ctx, job, log, context, timeouts[job.priority]);
      const started = Date.now();
      try {
        const result = await pool.run(
          {
            id: job.id,
            attempt: job.attempt,
            runAttempt: job.runAttempt,
            priority: job.priority,
            userId: job.userId,
          },
          job.data,
          sent,
        );
        sent.flushProgress();
        const recording = finish(job, { ok: true, result }, (Date.now() - started) / 1000);
        if (recording) await recording;
        return result;
      } catch (error) {
        finish(job, { ok: false, kind: failureKindOf(error), message: describeFailure(error) }, 0);
        throw error;
      } finally {
        sent.flushProgress();
      }
    };

    const ledger = ctx.ledger;
    // The ledger follows the queue's decisions; a failed write is logged and left to the
    // reconciler rather than failing a job that the queue already settled.
    const record = (what: string, write: () => Promise<boolean>) => {
      void write().catch((error: unknown) =>
        log(
          Effect.logWarning(
            `ledger: could not record ${what}: ${error instanceof Error ? error.message : String(error)}`,
          ),
        ),
      );
    };
    const onEvent = (event: WorkerEvent) => {
      spans.settle(event);
      if (
        event.type === "retry" ||
        event.type === "dead" ||
        event.type === "cancelled" ||
        event.type === "postponed"
      ) {
        const outcome = ENDED_AS[event.type];
        ctx.metrics.attemptEnded(event.job.priority, outcome, "redis");
      }
      if (ledger && "job" in event) {
        const at = { id: event.job.id, attempt: event.job.attempt, backend: "redis" } as const;
        if (event.type === "completed" && !isSkip(event.result))
          record(`${at.id} completed`, () => ledger.markCompleted(at, event.result || undefined));
        if (event.type === "retry")
          record(`${at.id} retrying`, () => ledger.markRetrying(at, event.error, event.job.runAttempt));
        if (event.type === "dead") record(`${at.id} failed`, () => ledger.markFailed(at, event.error));
        if (event.type === "released") record(`${at.id} released`, () => ledger.markReleased(at));
        if (event.type === "cancelled")
          // The reason was noted when the cancel was asked for; the worker's word is only "cancelled".
          record(`${at.id} cancelled`, () => ledger.markCancelled(at.id, {}, at));
      }
      switch (event.type) {
        case "error":
          // Declared outages are reported once by the health actor, not at every claim.
          return log(
            (ctx.health.mode() === "database" ? Effect.logDebug : Effect.logWarning)(`redis: ${event.error}`),
          );
        case "dead":
          return logJob(event.job, Effect.logWarning(`job ${event.job.id} dead-lettered: ${event.error}`));
        case "retry":
          return logJob(
            event.job,
            Effect.logInfo(
              `job ${event.job.id} attempt ${event.job.attempt} failed, retrying: ${event.error}`,
            ),
          );
        case "lost":
          return logJob(
            event.job,
            Effect.logWarning(`job ${event.job.id} attempt ${event.job.attempt}: lease lost, aborted`),
          );
        case "stale":
          return logJob(
            event.job,
            Effect.logWarning(`job ${event.job.id} attempt ${event.job.attempt}: answer refused (stale)`),
          );
        case "postponed":
          // The outage is told once, when it begins and ends; each job's postponement is detail.
          return logJob(
            event.job,
            Effect.logDebug(
              `job ${event.job.id} attempt ${event.job.attempt} postponed ${event.delayMs} ms: ${event.error}`,
            ),
          );
        case "cancel-requested":
          return logJob(event.job, Effect.logInfo(`job ${event.job.id} cancelled while running, aborting`));
        default:
          // A fiber per completed job for a line nobody keeps would cost more than the job.
          if (ctx.config.RT_LOG_LEVEL !== "debug") return;
          return logJob(event.job, Effect.logDebug(`job ${event.job.id} ${event.type}`));
      }
    };

    /** What the main thread does for the jobs the threads claim (RT_CLAIM_IN=threads). */
    const hostListener: HostListener = {
      event: onEvent,
      completed: (seconds) => {
        for (const [priority, ran] of Object.entries(seconds))
          ctx.metrics.attemptsCompleted(priority, "redis", ran);
      },
      gate: async (request): Promise<GateVerdict> => {
        if (request.step === "ran") {
          await finish(request.job, request.outcome, request.seconds);
          return RUN;
        }
        try {
          const skip = await begin(request.job);
          return skip === undefined ? RUN : { type: "skip", reason: skip };
        } catch (error) {
          if (error instanceof JobPostponed)
            return { type: "postpone", delayMs: error.delayMs, message: describeFailure(error) };
          return { type: "fail", kind: failureKindOf(error), message: describeFailure(error) };
        }
      },
      // The thread writes progress to Redis itself, throttled; the ledger's copy is written here.
      progress: (job, progress) => {
        ctx.ledger
          ?.markProgress(
            { id: job.id, attempt: job.attempt, backend: "redis" },
            progress.percent,
            progress.step,
          )
          .catch(() => {});
      },
      log: (job, level, message) => log(jobLogLine(job, level, message)),
      // Their spans end failed here; the jobs themselves wait in Redis for the reclaimer.
      lost: (jobs, reason) => {
        for (const job of jobs) {
          const key = attemptKey(job);
          const runSpan = runSpans.get(key);
          runSpans.delete(key);
          if (runSpan) endFailed(runSpan, reason);
          spans.lose(job, reason);
        }
      },
    };

    const claimInThreads = (): HostedGroup =>
      pool.host(
        {
          group: group.name,
          redisUrl: ctx.redisUrl,
          redisAccess: redisAccessFrom(ctx.config),
          queue: queueOptionsFrom(ctx.config),
          consumer: `${ctx.workerId}/${group.name}`,
          priorities: group.queues,
          concurrency: group.concurrency,
          leaseMs: ctx.config.RT_LEASE_MS,
          timeoutsMs: timeouts,
          abortGraceMs: pool.abortGraceMs,
          // The main thread's part of each job, when there is one to do.
          gated: ctx.ledger !== undefined || tracingOn() || ctx.config.RT_LOG_LEVEL === "debug",
        },
        hostListener,
        // A thread silent past the longest a job may run (and its grace) has its loop blocked.
        { silentMs: Math.max(...Object.values(timeouts)) + pool.abortGraceMs + WATCHDOG_SLACK_MS },
      );

    const claimHere = (): ClaimingWorker =>
      new Worker({
        queue: ctx.queue,
        consumer: `${ctx.workerId}/${group.name}`,
        priorities: group.queues,
        concurrency: group.concurrency,
        leaseMs: ctx.config.RT_LEASE_MS,
        handler,
        onEvent,
      }).start();

    const worker = yield* Effect.acquireRelease(
      Effect.sync(() => (ctx.config.RT_CLAIM_IN === "threads" ? claimInThreads() : claimHere())),
      (w) =>
        Effect.promise(() => w.stop({ timeoutMs: ctx.drainMs() })).pipe(
          Effect.tap(({ abandoned }) =>
            abandoned > 0
              ? Effect.logWarning(`stopped; ${abandoned} unfinished jobs given back to the queue`)
              : Effect.logInfo("stopped; every running job finished"),
          ),
          Effect.ensuring(Effect.sync(() => ctx.workers.delete(group.name))),
        ),
    );
    ctx.workers.set(group.name, worker);
    if (worker instanceof HostedGroup) {
      yield* Effect.logInfo(
        `claiming ${group.queues.join(" > ")} with ${group.concurrency} slots, in the worker threads`,
      );
      const reason = yield* Effect.promise(() => worker.failed);
      return yield* Effect.fail(new Error(reason));
    }
    yield* Effect.logInfo(`claiming ${group.queues.join(" > ")} with ${group.concurrency} slots`);
    return yield* Effect.never;
  }),
});

const RUN: GateVerdict = { type: "run" };

/** Beyond the longest job and its abort grace, before a silent hosting thread is ended. */
const WATCHDOG_SLACK_MS = 5_000;

/** The metrics' outcome of the attempts a worker event ends. */
const ENDED_AS = {
  retry: "retried",
  dead: "failed",
  cancelled: "cancelled",
  postponed: "postponed",
} as const;

/**
 * A job the dispatcher sent to the pool, as the pool's options for it: its progress and log
 * lines come back through these methods. Closures made per job cost more than the rest of its
 * dispatch here: tsx compiles with esbuild's keepNames, so each named one also defines its
 * `name` (about 1 µs a job in all, with the pool's, in a CPU profile of a drain-threads-c16).
 */
class SentJob implements RunOptions {
  /** Made at the job's first report: most jobs make none, and it is four closures. */
  private throttled: ReturnType<typeof throttledProgress> | undefined;

  constructor(
    private readonly ctx: RuntimeContext,
    private readonly job: ClaimedJob,
    private readonly log: (effect: Effect.Effect<void>) => void,
    /** The job's abort without an AbortController per job (JobContext.onAbort). */
    readonly signal: JobContext,
    readonly timeoutMs: number | undefined,
  ) {}

  onProgress(progress: Progress): void {
    (this.throttled ??= throttledProgress(this.ctx, this.job))(progress);
  }

  onLog(level: LogLevel, message: string): void {
    this.log(jobLogLine(this.job, level, message));
  }

  flushProgress(): void {
    this.throttled?.flush();
  }
}

/** Writes a job's progress to Redis and the ledger, throttled. */
const throttledProgress = (ctx: RuntimeContext, job: ClaimedJob) =>
  throttleProgress((progress) => {
    // Progress is advisory: a failed write is dropped, the job goes on.
    Effect.runPromise(ctx.queue.progress({ id: job.id, attempt: job.attempt }, progress)).catch(() => {});
    ctx.ledger
      ?.markProgress({ id: job.id, attempt: job.attempt, backend: "redis" }, progress.percent, progress.step)
      .catch(() => {});
  });
