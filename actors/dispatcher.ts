import { Effect, Runtime } from "effect";
import { jobTimeoutsMs, type WorkerGroup } from "../config/profiles.js";
import type { Progress } from "../src/jobs/definition.js";
import { throttleProgress } from "../src/jobs/throttle-progress.js";
import { describeFailure, JobPostponed } from "../src/queue/failures.js";
import { isLedgerUnreachable, LedgerOutage } from "../src/tasks/ledger-outage.js";
import type { TaskLedger } from "../src/tasks/ledger.js";
import { isSkip, skipResult } from "../src/tasks/skip.js";
import type { ClaimedJob } from "../src/queue/queue.js";
import { type JobContext, Worker, type WorkerEvent } from "../src/queue/worker.js";
import type { RuntimeContext } from "./context.js";
import { endFailed } from "../src/tracing.js";
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

    const handler = async (job: ClaimedJob, context: JobContext) => {
      const at = { id: job.id, attempt: job.attempt, backend: "redis" } as const;
      if (ctx.ledger) {
        const row = await startInLedger(ctx.ledger, job);
        // The ledger has moved on: the task ended (say, cancelled while Redis was away), a
        // database-fallback dispatcher runs it, or a later attempt started. Nothing to run here.
        if (row !== "started" && row !== undefined) return skipResult(`the ledger has this task as ${row}`);
      }
      // Made at the job's first report: most jobs make none, and it is four closures a job (this
      // wrapper is one).
      let throttled: ReturnType<typeof throttledProgress> | undefined;
      const reportProgress = (progress: Progress) => (throttled ??= throttledProgress(ctx, job))(progress);
      const started = Date.now();
      // Only at debug level: a fiber per job for a line nobody keeps would cost the hot path.
      if (ctx.config.RT_LOG_LEVEL === "debug") {
        logJob(
          job,
          Effect.logDebug(
            `job ${job.id} attempt ${job.attempt} started, ${started - job.createdAt} ms after it was enqueued`,
          ),
        );
      }
      const runSpan = spans.begin(job);
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
          {
            // The job's abort without an AbortController per job (JobContext.onAbort).
            signal: context,
            timeoutMs: timeouts[job.priority],
            onProgress: reportProgress,
            onLog: (level, message) => log(jobLogLine(job, level, message)),
          },
        );
        runSpan.end();
        spans.ran(job);
        throttled?.flush();
        ctx.metrics.attemptEnded(job.priority, "completed", "redis", (Date.now() - started) / 1000);
        // The ledger first: a result must not wait on Redis, which may be away right now. If the
        // queue's acknowledgement is lost, a later attempt finds the row completed and skips.
        if (ctx.ledger) {
          const { ledger } = ctx;
          await ledger
            .markCompleted(at, result || undefined)
            .catch((error: unknown) =>
              logJob(
                job,
                Effect.logWarning(`ledger: could not record ${job.id} completed: ${describeFailure(error)}`),
              ),
            );
        }
        return result;
      } catch (error) {
        endFailed(runSpan, describeFailure(error));
        spans.ran(job);
        throw error;
      } finally {
        throttled?.flush();
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

    const worker = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new Worker({
          queue: ctx.queue,
          consumer: `${ctx.workerId}/${group.name}`,
          priorities: group.queues,
          concurrency: group.concurrency,
          leaseMs: ctx.config.RT_LEASE_MS,
          handler,
          onEvent,
        }).start(),
      ),
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
    yield* Effect.logInfo(`claiming ${group.queues.join(" > ")} with ${group.concurrency} slots`);
    return yield* Effect.never;
  }),
});

/** The metrics' outcome of the attempts a worker event ends. */
const ENDED_AS = {
  retry: "retried",
  dead: "failed",
  cancelled: "cancelled",
  postponed: "postponed",
} as const;

/** Writes a job's progress to Redis and the ledger, throttled. */
const throttledProgress = (ctx: RuntimeContext, job: ClaimedJob) =>
  throttleProgress((progress) => {
    // Progress is advisory: a failed write is dropped, the job goes on.
    Effect.runPromise(ctx.queue.progress({ id: job.id, attempt: job.attempt }, progress)).catch(() => {});
    ctx.ledger
      ?.markProgress({ id: job.id, attempt: job.attempt, backend: "redis" }, progress.percent, progress.step)
      .catch(() => {});
  });
