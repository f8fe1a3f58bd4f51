import { availableParallelism } from "node:os";
import { MessageChannel } from "node:worker_threads";
import { Piscina } from "piscina";
import type { JobInfo, LogLevel, Progress } from "../jobs/definition.js";
import { JobFailure } from "../queue/failures.js";
import type { FromThread, ThreadOutcome, ThreadTask, ToThread } from "./protocol.js";

export interface PoolOptions {
  /** URL (file:) of the job registry module the threads load. */
  readonly registry: string;
  /** Worker threads; default: one per CPU. */
  readonly threads?: number;
  /** Old-generation heap cap per thread, in MB; a thread over it dies and is replaced. */
  readonly heapMb?: number;
  /** After an abort, how long a job may take to wind down before its thread is terminated. */
  readonly abortGraceMs?: number;
  /**
   * Jobs this pool runs at once (the dispatchers' slots together). They are spread over the
   * threads so a claimed job starts at once instead of waiting in the pool while its lease runs.
   */
  readonly capacity?: number;
  /** The threads' environment (they read their configuration from it); default: this process's. */
  readonly env?: Record<string, string>;
}

export interface RunOptions {
  readonly signal: AbortSignal;
  readonly onProgress?: (progress: Progress) => void;
  /** A line the job logged in its thread, for the process's one logger. */
  readonly onLog?: (level: LogLevel, message: string) => void;
}

/**
 * One Piscina pool per process. A job runs in a worker thread with a MessagePort for progress
 * (out) and abort requests (in). Abort is cooperative first; a thread that ignores it past the
 * grace time is terminated (Piscina replaces it). A thread that dies fails its job as retriable.
 */
export class JobPool {
  private readonly piscina: Piscina;
  private readonly abortGraceMs: number;

  constructor(private readonly options: PoolOptions) {
    const threads = options.threads ?? availableParallelism();
    this.abortGraceMs = options.abortGraceMs ?? 5_000;
    this.piscina = new Piscina({
      filename: new URL("./thread-entry.js", import.meta.url).href,
      minThreads: threads,
      maxThreads: threads,
      // Handlers are async (downloads, model calls): a thread must keep its event loop running
      // between messages, which Piscina's default synchronous Atomics wait would freeze.
      atomics: "async",
      // Several jobs per thread: caption jobs mostly wait on the network.
      concurrentTasksPerWorker: Math.max(1, Math.ceil((options.capacity ?? threads * 4) / threads)),
      idleTimeout: 60_000,
      resourceLimits: { maxOldGenerationSizeMb: options.heapMb ?? 512 },
      ...(options.env ? { env: options.env } : {}),
    });
    // A thread that dies with no task running (a late rejection of a finished job, memory) is
    // replaced by Piscina; unheard, its 'error' event would bring the whole process down.
    this.piscina.on("error", (error: unknown) => {
      console.error(
        `worker thread died between jobs: ${error instanceof Error ? error.message : String(error)}`,
      );
    });
  }

  get threads(): number {
    return this.piscina.threads.length;
  }

  get utilization(): number {
    return this.piscina.utilization;
  }

  async run(job: JobInfo, data: string, options: RunOptions): Promise<string | undefined> {
    const { port1, port2 } = new MessageChannel();
    let thread: number | undefined;
    let terminated = false;
    let graceTimer: NodeJS.Timeout | undefined;
    // Piscina's own abort signal would give every job a thread to itself (aborting it kills the
    // thread); instead the job is asked to stop, and only if it ignores that is its thread ended.
    const terminate = () => {
      const worker = this.piscina.threads.find((t) => t.threadId === thread);
      if (!worker) return;
      terminated = true;
      void worker.terminate();
    };
    const onAbort = () => {
      const reason = options.signal.reason instanceof Error ? options.signal.reason.message : "aborted";
      port1.postMessage({ type: "abort", reason } satisfies ToThread);
      graceTimer = setTimeout(terminate, this.abortGraceMs);
    };
    // Port messages and the task's result travel separately: wait for the thread's `done` so
    // the last progress is not lost behind the result.
    let portDone: () => void = () => {};
    const drained = new Promise<void>((resolve) => {
      portDone = resolve;
    });
    port1.on("message", (message: FromThread) => {
      if (message.type === "progress") options.onProgress?.(message.progress);
      else if (message.type === "log") options.onLog?.(message.level, message.message);
      else if (message.type === "started") thread = message.threadId;
      else portDone();
    });
    if (options.signal.aborted) onAbort();
    else options.signal.addEventListener("abort", onAbort, { once: true });

    const task: ThreadTask = { registry: this.options.registry, job, data, port: port2 };
    let outcome: ThreadOutcome;
    try {
      outcome = await this.piscina.run(task, { transferList: [port2] });
      await Promise.race([drained, new Promise((resolve) => setTimeout(resolve, 1_000).unref())]);
    } catch (error) {
      if (terminated) {
        throw new JobFailure("transient", `did not stop within ${this.abortGraceMs} ms of being aborted`);
      }
      const message = error instanceof Error ? error.message : String(error);
      const outOfMemory =
        error instanceof Error && "code" in error && error.code === "ERR_WORKER_OUT_OF_MEMORY";
      throw new JobFailure(outOfMemory ? "exhausted" : "transient", `worker thread died: ${message}`);
    } finally {
      clearTimeout(graceTimer);
      options.signal.removeEventListener("abort", onAbort);
      port1.close();
    }
    if (outcome.ok) return outcome.result;
    throw new JobFailure(outcome.kind, outcome.message);
  }

  async close(): Promise<void> {
    await this.piscina.close({ force: true });
  }
}
