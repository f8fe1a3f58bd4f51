import { redactText } from "../log.js";

/**
 * How a job failed decides whether and when it runs again (ARCHITECTURE "Failure policy"):
 * - transient (network reset, timeout, 5xx): one immediate retry, then exponential backoff;
 * - unavailable (connection refused, 503): 1 min, 4 min, 16 min, ...;
 * - invalid (bad input, 4xx): never retried, dead-lettered with the reason;
 * - exhausted (out of memory, disk, quota): requeued later.
 */
export type FailureKind = "transient" | "unavailable" | "invalid" | "exhausted";

export class JobFailure extends Error {
  constructor(
    readonly kind: FailureKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "JobFailure";
  }
}

const MIN_POSTPONE_MS = 100;

/**
 * Thrown by a handler before the job's own work began, when something outside the job (the task
 * ledger, say) is unreachable: the worker gives the job back for `delayMs`, and the attempt is
 * not charged to it. An outage of a dependency must not use up a task's attempts.
 */
export class JobPostponed extends Error {
  /** At least MIN_POSTPONE_MS: a job given back for no time at all would come straight back. */
  readonly delayMs: number;

  constructor(delayMs: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "JobPostponed";
    this.delayMs = Number.isFinite(delayMs) ? Math.max(MIN_POSTPONE_MS, delayMs) : MIN_POSTPONE_MS;
  }
}

export const invalidInput = (message: string, cause?: unknown) =>
  new JobFailure("invalid", message, { cause });
export const unavailable = (message: string, cause?: unknown) =>
  new JobFailure("unavailable", message, { cause });

/** Anything a handler throws that says nothing of itself is treated as transient. */
export const failureKindOf = (error: unknown): FailureKind =>
  error instanceof JobFailure ? error.kind : "transient";

const SECOND = 1000;
const MINUTE = 60 * SECOND;

/** ±`spread` of `ms`, so retries of jobs that failed together do not return together. */
const jitter = (ms: number, spread: number, random: () => number) =>
  Math.round(ms * (1 - spread + 2 * spread * random()));

/**
 * Wait before the next attempt after run attempt `runAttempt` (1-based) failed, or undefined for
 * no retry. Whether attempts are left is the queue's decision; this only says when.
 */
export const retryDelayMs = (kind: FailureKind, runAttempt: number, random: () => number = Math.random) => {
  const n = Number.isFinite(runAttempt) ? Math.max(1, Math.floor(runAttempt)) : 1;
  switch (kind) {
    case "invalid":
      return undefined;
    case "transient":
      return n === 1 ? 0 : jitter(Math.min(2 * SECOND * 2 ** (n - 2), 5 * MINUTE), 0.2, random);
    case "unavailable":
      return jitter(Math.min(MINUTE * 4 ** (n - 1), 60 * MINUTE), 0.1, random);
    case "exhausted":
      return jitter(Math.min(30 * SECOND * 2 ** (n - 1), 10 * MINUTE), 0.2, random);
  }
};

/** The message kept with a failed job: no stack, bounded length. */
export const describeFailure = (error: unknown): string => {
  let text: string;
  try {
    // A plain Error or one of our own says enough by its message; a TypeError et al. by both.
    const ours = error instanceof JobFailure || error instanceof JobPostponed;
    const named = error instanceof Error && error.name !== "Error" && !ours;
    text = error instanceof Error ? `${named ? `${error.name}: ` : ""}${error.message}` : String(error);
  } catch {
    // A thrown value with no prototype, or whose toString throws: describe its type instead.
    text = Object.prototype.toString.call(error);
  }
  // Stored, shown to operators and logged: a token an error message carried must go no further.
  return [...redactText(text)].slice(0, 2000).join("");
};
