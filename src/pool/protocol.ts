import type { MessagePort } from "node:worker_threads";
import type { FailureKind } from "../queue/failures.js";
import type { JobInfo, LogLevel, Progress } from "../jobs/definition.js";

/**
 * What the main thread hands each worker thread once, as its one long Piscina task: the
 * registry to load and the port every job of that thread then travels over, in batches.
 */
export interface ServeTask {
  /** URL of the job registry module (its default export is a JobRegistry). */
  readonly registry: string;
  readonly port: MessagePort;
}

/** One job for a thread, named by a number unique in its pool. */
export interface JobRequest {
  readonly seq: number;
  readonly job: JobInfo;
  /** The envelope, decoded (and validated against the kind's schema) in the thread. */
  readonly data: string;
}

export type ToThread =
  /** Every job claimed in one tick goes in one message: a message per job cost more than the job. */
  | { readonly type: "run"; readonly jobs: readonly JobRequest[] }
  | { readonly type: "abort"; readonly seq: number; readonly reason: string }
  /** The pool is closing: end the serve task. */
  | { readonly type: "close" };

/**
 * `ready` names the thread (so one whose job ignores an abort can be terminated). Progress and
 * log lines of a job are sent as they happen; the outcomes of all jobs that ended in one tick
 * go together, after them.
 */
export type FromThread =
  | { readonly type: "ready"; readonly threadId: number }
  | { readonly type: "progress"; readonly seq: number; readonly progress: Progress }
  | { readonly type: "log"; readonly seq: number; readonly level: LogLevel; readonly message: string }
  | { readonly type: "outcomes"; readonly outcomes: ReadonlyArray<{ seq: number; outcome: ThreadOutcome }> };

/**
 * Errors lose their class crossing threads, so the thread answers with a plain outcome and the
 * failure kind spelled out.
 */
export type ThreadOutcome =
  | { readonly ok: true; readonly result: string | undefined }
  | { readonly ok: false; readonly kind: FailureKind; readonly message: string };
