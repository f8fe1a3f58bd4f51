import type { MessagePort } from "node:worker_threads";
import type { FailureKind } from "../queue/failures.js";
import type { JobInfo, LogLevel, Progress } from "../jobs/definition.js";

/** What the main thread hands a worker thread for one job. */
export interface ThreadTask {
  /** URL of the job registry module (its default export is a JobRegistry). */
  readonly registry: string;
  readonly job: JobInfo;
  /** The envelope, decoded (and validated against the kind's schema) in the thread. */
  readonly data: string;
  /** Progress goes out, abort requests come in. */
  readonly port: MessagePort;
}

export type ToThread = { readonly type: "abort"; readonly reason: string };
/**
 * `started` names the thread (so a job that ignores an abort can have its thread terminated);
 * `done` is the last message: progress sent before it has all arrived.
 */
export type FromThread =
  | { readonly type: "started"; readonly threadId: number }
  | { readonly type: "progress"; readonly progress: Progress }
  | { readonly type: "log"; readonly level: LogLevel; readonly message: string }
  | { readonly type: "done" };

/**
 * Errors lose their class crossing threads, so the thread answers with a plain outcome and the
 * failure kind spelled out.
 */
export type ThreadOutcome =
  | { readonly ok: true; readonly result: string | undefined }
  | { readonly ok: false; readonly kind: FailureKind; readonly message: string };
