import type { Schema } from "effect";

/** What a handler may report while it runs; shown to the user and kept for reconnects. */
export interface Progress {
  readonly percent: number;
  readonly step: string;
  readonly details?: Record<string, unknown>;
}

export interface JobInfo {
  readonly id: string;
  readonly attempt: number;
  readonly runAttempt: number;
  readonly priority: string;
  readonly userId: string | undefined;
}

export type LogLevel = "debug" | "info" | "warning" | "error";

export interface JobRunContext<R> {
  readonly job: JobInfo;
  /** Aborted on cancel, lost lease, timeout or shutdown: stop at the next step. */
  readonly signal: AbortSignal;
  readonly progress: (progress: Progress) => void;
  /**
   * A log line about this job. It goes to the process's logger with the task's id, attempt and
   * request id attached (and secrets redacted), wherever the job runs.
   */
  readonly log: (level: LogLevel, message: string) => void;
  /** Whatever the registry's `scope` opened for this job (e.g. a database session). */
  readonly resources: R;
}

export interface JobDefinition<A, R> {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly schema: Schema.Schema<A, any, never>;
  /** Returns the result to keep with the job (serialised as JSON), or nothing. */
  readonly handler: (body: A, context: JobRunContext<R>) => Promise<unknown>;
}

/**
 * Per-job resources, opened in the worker thread before the handler and closed after it on every
 * path: success, failure, abort and timeout. `close` learns whether the handler succeeded (a
 * database session commits or rolls back on it).
 */
export interface JobScope<R> {
  readonly open: (job: JobInfo) => Promise<R>;
  readonly close: (resources: R, outcome: { readonly ok: boolean }) => Promise<void>;
}

/**
 * A module of job kinds, loaded by every worker thread (and never by the dispatcher, which only
 * routes by kind). Its default export is a JobRegistry.
 */
export interface JobRegistry<R = undefined> {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly kinds: Record<string, JobDefinition<any, R>>;
  readonly scope?: JobScope<R>;
}

export const defineRegistry = <R = undefined>(registry: JobRegistry<R>): JobRegistry<R> => registry;
