import { type Context, type Span, trace } from "@opentelemetry/api";
import { Effect } from "effect";
import type { LogLevel } from "../src/jobs/definition.js";
import { logAtLevel } from "../src/log.js";
import { attemptKey, type ClaimedJob } from "../src/queue/queue.js";
import type { WorkerEvent } from "../src/queue/worker.js";
import { contextFrom, endFailed, NO_SPAN, SpanKind, startSpan, tracingOn } from "../src/tracing.js";

/** What every log line about a job carries: its task, attempt, and the request that made it. */
export const jobAnnotations = (job: ClaimedJob): Record<string, string | number> => ({
  task_id: job.id,
  attempt: job.attempt,
  ...(job.meta.requestId === undefined ? {} : { request_id: job.meta.requestId }),
});

/** A log line of a job's own (from its worker thread), at its level, with the job's ids. */
export const jobLogLine = (job: ClaimedJob, level: LogLevel, message: string): Effect.Effect<void> => {
  return logAtLevel(level, message).pipe(Effect.annotateLogs({ ...jobAnnotations(job), source: "job" }));
};

interface OpenAttempt {
  readonly claim: Span;
  readonly context: Context;
  /** When the handler returned: the queue's answer (ack, retry, dead letter) starts there. */
  ranUntil: number | undefined;
}

/**
 * The spans of the attempts a dispatcher runs: `claim` for the whole attempt, continuing the
 * trace its `enqueue` started (the job's traceparent), and under it `run` (the thread pool) and
 * `complete` or `fail` (the queue's answer, which the worker reports as an event). With tracing
 * off (`tracingOn`) no span is made and nothing is kept.
 */
export class AttemptSpans {
  private readonly open = new Map<string, OpenAttempt>();

  /**
   * Starts the attempt's `claim` span and its `run` span under it; returns the `run` span. With
   * tracing off, a span that records nothing, and nothing is kept.
   */
  begin(job: ClaimedJob): Span {
    if (!tracingOn()) return NO_SPAN;
    const parent = contextFrom(job.meta.traceparent);
    const claim = startSpan(
      "ratatoskr claim",
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          "ratatoskr.task_id": job.id,
          "ratatoskr.attempt": job.attempt,
          "ratatoskr.priority": job.priority,
          "ratatoskr.waited_ms": Math.max(0, Date.now() - job.createdAt),
        },
      },
      parent,
    );
    const context = trace.setSpan(parent, claim);
    this.open.set(attemptKey(job), { claim, context, ranUntil: undefined });
    return startSpan(
      "ratatoskr run",
      { attributes: { "ratatoskr.task_id": job.id, "ratatoskr.attempt": job.attempt } },
      context,
    );
  }

  ran(job: ClaimedJob): void {
    if (this.open.size === 0) return;
    const attempt = this.open.get(attemptKey(job));
    if (attempt) attempt.ranUntil = Date.now();
  }

  /** Ends the attempt's spans with the queue's answer. */
  settle(event: WorkerEvent): void {
    if (this.open.size === 0 || !("job" in event) || event.type === "cancel-requested") return;
    const key = attemptKey(event.job);
    const attempt = this.open.get(key);
    if (!attempt) return;
    this.open.delete(key);
    const done = event.type === "completed";
    const answer = startSpan(
      done ? "ratatoskr complete" : "ratatoskr fail",
      {
        attributes: { "ratatoskr.task_id": event.job.id, "ratatoskr.outcome": event.type },
        startTime: attempt.ranUntil ?? Date.now(),
      },
      attempt.context,
    );
    const reason = "error" in event ? event.error : event.type;
    if (done) {
      answer.end();
      attempt.claim.end();
    } else {
      endFailed(answer, reason);
      endFailed(attempt.claim, reason);
    }
  }

  /** Ends an attempt whose answer will not come here (its worker thread died): failed, with why. */
  lose(job: ClaimedJob, reason: string): void {
    const key = attemptKey(job);
    const attempt = this.open.get(key);
    if (!attempt) return;
    this.open.delete(key);
    endFailed(attempt.claim, reason);
  }

  /** Ends what a stopping dispatcher leaves open (its jobs go back to the queue). */
  closeAll(): void {
    for (const attempt of this.open.values()) endFailed(attempt.claim, "the dispatcher stopped");
    this.open.clear();
  }
}
