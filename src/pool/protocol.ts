import type { MessagePort } from "node:worker_threads";
import type { FailureKind } from "../queue/failures.js";
import type { JobInfo, LogLevel, Progress } from "../jobs/definition.js";
import type { Priority } from "../domain/priority.js";
import type { ClaimedJob, QueueOptions } from "../queue/queue.js";
import type { WorkerEvent } from "../queue/worker.js";

/**
 * What the main thread hands each worker thread once, as its one long Piscina task: the
 * registry to load and the port every job of that thread then travels over, in batches.
 */
export interface ServeTask {
  /** URL of the job registry module (its default export is a JobRegistry). */
  readonly registry: string;
  readonly port: MessagePort;
  /** The pool's groups will claim in the threads: load that code now, with the registry. */
  readonly hosting?: boolean;
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
  | { readonly type: "close" }
  /** Claim for this worker group in the thread from now on (RT_CLAIM_IN=threads). */
  | { readonly type: "host"; readonly spec: HostSpec }
  /** Stop claiming for the group and drain its jobs; answered with `unhosted`. */
  | { readonly type: "unhost"; readonly group: string; readonly timeoutMs: number }
  /** A cancel heard on the events channel: abort the attempt if it runs here. */
  | { readonly type: "cancel"; readonly id: string; readonly attempt: number }
  | { readonly type: "verdicts"; readonly verdicts: ReadonlyArray<{ ticket: number; verdict: GateVerdict }> };

/**
 * `ready` names the thread (so one whose job ignores an abort can be terminated). Progress and
 * log lines of a job are sent as they happen; the outcomes of all jobs that ended in one tick
 * go together, after them.
 */
export type FromThread =
  | { readonly type: "ready"; readonly threadId: number }
  | { readonly type: "progress"; readonly seq: number; readonly progress: Progress }
  | { readonly type: "log"; readonly seq: number; readonly level: LogLevel; readonly message: string }
  | { readonly type: "outcomes"; readonly outcomes: ReadonlyArray<{ seq: number; outcome: ThreadOutcome }> }
  /**
   * A hosted group's worker events of one tick (the jobs without their data); an ungated group's
   * completions go as `completed` instead.
   */
  | { readonly type: "events"; readonly group: string; readonly events: readonly HostedEvent[] }
  /** How long each job that completed since the last ran, by priority: for the metrics. */
  | {
      readonly type: "completed";
      readonly group: string;
      readonly seconds: Readonly<Partial<Record<Priority, readonly number[]>>>;
    }
  /** A hosted group's jobs that wait for the main thread (before they run, after they ran). */
  | { readonly type: "gate"; readonly group: string; readonly requests: readonly GateRequest[] }
  /** What a hosted group runs now; sent every STATUS_MS while it is hosted, as a sign of life. */
  | {
      readonly type: "status";
      readonly group: string;
      readonly active: number;
      readonly jobs: readonly string[];
    }
  | {
      readonly type: "job-progress";
      readonly group: string;
      readonly job: HostedJob;
      readonly progress: Progress;
    }
  | {
      readonly type: "job-log";
      readonly group: string;
      readonly job: HostedJob;
      readonly level: LogLevel;
      readonly message: string;
    }
  | { readonly type: "unhosted"; readonly group: string; readonly abandoned: number }
  /** The thread could not claim for the group (its code would not load, say). */
  | { readonly type: "host-failed"; readonly group: string; readonly reason: string }
  /**
   * A hosted job ignored its abort past the grace time, or a stop's: the thread has stopped
   * claiming and drained, and asks to be ended (the job's code with it) and replaced.
   */
  | { readonly type: "retire"; readonly reason: string };

/**
 * Errors lose their class crossing threads, so the thread answers with a plain outcome and the
 * failure kind spelled out.
 */
export type ThreadOutcome =
  | { readonly ok: true; readonly result: string | undefined }
  | { readonly ok: false; readonly kind: FailureKind; readonly message: string };

/** A job's failure when its priority's timeout ran out. */
export const describeTimeout = (ms: number): string =>
  `timed out after ${ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`}`;

/** How often a thread that claims for a group reports what it runs. */
export const STATUS_MS = 250;

/**
 * A worker group claimed for in the threads: each thread runs the engine `Worker` on a
 * connection of its own, at its share of the group's concurrency, so a job never crosses
 * between threads to run.
 */
export interface HostSpec {
  readonly group: string;
  readonly redisUrl: string;
  readonly redisAccess: { readonly tlsCaFile?: string; readonly sentinelPassword?: string };
  readonly queue: QueueOptions;
  /** This thread's consumer name in the streams' group. */
  readonly consumer: string;
  readonly priorities: readonly Priority[];
  /** This thread's share of the group's concurrency. */
  readonly concurrency: number;
  readonly leaseMs: number;
  readonly timeoutsMs: Readonly<Record<Priority, number>>;
  /** After an abort, how long a job may take to wind down before its thread is retired. */
  readonly abortGraceMs: number;
  /**
   * Each job waits for the main thread before it runs and after (`gate`): for the ledger's
   * rows, trace spans or debug lines, which the main thread keeps. Without, no job waits.
   */
  readonly gated: boolean;
}

/** A claimed job as it travels back to the main thread: its data stays behind (`""`). */
export type HostedJob = ClaimedJob;

/** A worker event of a hosted group. */
export type HostedEvent = WorkerEvent;

export type GateRequest =
  | { readonly ticket: number; readonly step: "start"; readonly job: HostedJob }
  | {
      readonly ticket: number;
      readonly step: "ran";
      readonly job: HostedJob;
      readonly outcome: ThreadOutcome;
      readonly seconds: number;
    };

/**
 * The main thread's answer at a gate. Before a job runs: `run`, or `skip` it (the ledger has
 * moved on), `postpone` it uncharged (the ledger is away), or `fail` it. After: `run` (go on).
 */
export type GateVerdict =
  | { readonly type: "run" }
  | { readonly type: "skip"; readonly reason: string }
  | { readonly type: "postpone"; readonly delayMs: number; readonly message: string }
  | { readonly type: "fail"; readonly kind: FailureKind; readonly message: string };
