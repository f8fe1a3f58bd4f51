import { drainRunning } from "../jobs/drain.js";
import type { Priority } from "../domain/priority.js";
import type { LogLevel, Progress } from "../jobs/definition.js";
import { throttleProgress } from "../jobs/throttle-progress.js";
import type { JobPool } from "../pool/pool.js";
import { describeFailure, failureKindOf, retryDelayMs } from "../queue/failures.js";
import { captionEnvelope } from "./caption-job.js";
import type { DatabaseClaim, DatabaseQueue } from "./database-queue.js";
import type { TaskLedger } from "./ledger.js";
import { attemptKey } from "../queue/queue.js";

interface Attempt {
  readonly id: string;
  readonly attempt: number;
  readonly priority: Priority;
}

export type DatabaseRunnerEvent =
  | (Attempt & { readonly type: "started" | "cancelled" | "released" })
  | (Attempt & { readonly type: "completed"; readonly seconds: number })
  | (Attempt & { readonly type: "retry" | "failed"; readonly error: string })
  /** A line the job logged in its worker thread. */
  | (Attempt & { readonly type: "log"; readonly level: LogLevel; readonly message: string })
  | { readonly type: "error"; readonly error: string };

export interface DatabaseRunnerOptions {
  readonly queue: DatabaseQueue;
  readonly ledger: TaskLedger;
  readonly pool: JobPool;
  /** Claims only while this says `database`: with Redis up, the reconciler hands tasks to it. */
  readonly active: () => boolean;
  readonly owner: string;
  readonly priorities: readonly Priority[];
  readonly concurrency: number;
  readonly leaseMs: number;
  readonly timeoutMs: (priority: Priority) => number;
  /** How often an idle runner looks for work while active. */
  readonly pollMs?: number;
  readonly onEvent?: (event: DatabaseRunnerEvent) => void;
}

const CANCELLED = "cancelled while running";
const SHUTDOWN = "runner shut down";

interface Running {
  readonly claim: DatabaseClaim;
  readonly controller: AbortController;
}

/**
 * The database-fallback dispatcher's engine: while Redis is down, it claims tasks from the
 * database queue by priority, runs them on the same thread pool under the same timeouts and
 * retry rules as Redis jobs, and keeps each attempt's lease renewed (a cancel is seen there).
 */
export class DatabaseRunner {
  private readonly running = new Map<string, Running>();
  private stopping = false;
  private loopDone: Promise<void> | undefined;
  private stopped: Promise<{ abandoned: number }> | undefined;
  private wakeUp: (() => void) | undefined;
  private renewTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: DatabaseRunnerOptions) {}

  get active(): number {
    return this.running.size;
  }

  /** The tasks running now (the keys are `<id>#<attempt>`). */
  get runningIds(): string[] {
    return [...this.running.keys()].map((key) => key.slice(0, key.lastIndexOf("#")));
  }

  start(): this {
    if (this.loopDone) return this;
    // Often enough that a cancel is seen within a second or two, whatever the lease.
    const every = Math.max(50, Math.min(1_000, Math.floor(this.options.leaseMs / 3)));
    this.renewTimer = setInterval(() => void this.renew(), every);
    this.loopDone = this.loop();
    return this;
  }

  stop(options: { timeoutMs?: number } = {}): Promise<{ abandoned: number }> {
    this.stopped ??= this.drain(options.timeoutMs ?? 30_000);
    return this.stopped;
  }

  private async drain(timeoutMs: number) {
    this.stopping = true;
    this.wake();
    await this.loopDone;
    // Handlers that heed the abort settle quickly and give their job back.
    const abandoned = await drainRunning(
      this.running,
      (job, reason) => job.controller.abort(reason),
      timeoutMs,
      SHUTDOWN,
    );
    clearInterval(this.renewTimer);
    return { abandoned };
  }

  private emit(event: DatabaseRunnerEvent) {
    this.options.onEvent?.(event);
  }

  private wake() {
    const wake = this.wakeUp;
    this.wakeUp = undefined;
    wake?.();
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private async loop() {
    const { queue, owner, priorities, concurrency, leaseMs } = this.options;
    const pollMs = this.options.pollMs ?? 250;
    let errors = 0;
    while (!this.stopping) {
      const free = concurrency - this.running.size;
      if (free === 0 || !this.options.active()) {
        await this.pause(pollMs);
        continue;
      }
      try {
        const claims = await queue.claim(owner, priorities, free, leaseMs);
        errors = 0;
        for (const claim of claims) this.startTask(claim);
        if (claims.length < free) await this.pause(pollMs);
      } catch (error) {
        // The database away too: nothing can run; back off and look again.
        this.emit({ type: "error", error: describeFailure(error) });
        errors++;
        await this.pause(Math.min(5_000, 100 * 2 ** errors));
      }
    }
  }

  private startTask(claim: DatabaseClaim) {
    const key = attemptKey(claim);
    const entry = { claim, controller: new AbortController() };
    this.running.set(key, entry);
    this.emit({ type: "started", id: claim.id, attempt: claim.attempt, priority: claim.priority });
    void this.execute(entry)
      .catch((error: unknown) => this.emit({ type: "error", error: describeFailure(error) }))
      .finally(() => {
        this.running.delete(key);
        this.wake();
      });
  }

  private async execute({ claim, controller }: Running) {
    const { ledger, queue, pool } = this.options;
    const { id, attempt, priority } = claim;
    const at = { id, attempt, backend: "database" } as const;
    const progress = throttleProgress((p: Progress) => {
      ledger.markProgress(at, p.percent, p.step).catch(() => {});
    });
    let result: string | undefined;
    const started = Date.now();
    try {
      result = await pool.run(
        { id, attempt, runAttempt: attempt, priority, userId: String(claim.userId) },
        captionEnvelope(claim.row),
        {
          signal: controller.signal,
          timeoutMs: this.options.timeoutMs(priority),
          onProgress: progress,
          onLog: (level, message) => this.emit({ type: "log", id, attempt, priority, level, message }),
        },
      );
    } catch (error) {
      const reason = controller.signal.aborted ? describeFailure(controller.signal.reason) : undefined;
      if (reason === CANCELLED) {
        this.emit({ type: "cancelled", id, attempt, priority });
        return;
      }
      if (reason === SHUTDOWN) {
        // Not this task's fault: back to the queue now rather than after its lease.
        await queue.release(id, attempt).catch(() => {});
        this.emit({ type: "released", id, attempt, priority });
        return;
      }
      await this.fail(claim, describeFailure(error), failureKindOf(error));
      return;
    } finally {
      progress.flush();
    }
    await ledger.markCompleted(at, result || undefined);
    this.emit({ type: "completed", id, attempt, priority, seconds: (Date.now() - started) / 1000 });
  }

  private async fail(claim: DatabaseClaim, error: string, kind: ReturnType<typeof failureKindOf>) {
    const { id, attempt, maxRetries, priority } = claim;
    // Judged by the run's charged attempts, as the Redis queue judges it: attempts given back
    // uncharged (a shutdown, a postponement) do not use up the task's retries.
    const runAttempt = claim.retries + 1;
    const delay = retryDelayMs(kind, runAttempt);
    if (delay !== undefined && runAttempt <= maxRetries) {
      await this.options.queue.retryLater(id, attempt, runAttempt, error, delay);
      this.emit({ type: "retry", id, attempt, priority, error });
    } else {
      await this.options.ledger.markFailed({ id, attempt, backend: "database" }, error);
      this.emit({ type: "failed", id, attempt, priority, error });
    }
  }

  private async renew() {
    const { queue, owner, leaseMs } = this.options;
    await Promise.all(
      [...this.running.values()].map(async ({ claim, controller }) => {
        if (controller.signal.aborted) return;
        try {
          // False: the row left this attempt (a cancel, or the reconciler took it back).
          if (!(await queue.renew(claim.id, claim.attempt, owner, leaseMs)))
            controller.abort(new Error(CANCELLED));
        } catch (error) {
          this.emit({ type: "error", error: describeFailure(error) });
        }
      }),
    );
  }
}
