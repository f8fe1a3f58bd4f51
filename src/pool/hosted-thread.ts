import type { MessagePort } from "node:worker_threads";
import { Effect } from "effect";
import { LazyAbort } from "../jobs/lazy-abort.js";
import { throttleProgress } from "../jobs/throttle-progress.js";
import type { LogLevel, Progress } from "../jobs/definition.js";
import { describeFailure, JobFailure, JobPostponed } from "../queue/failures.js";
import { type ClaimedJob, Queue } from "../queue/queue.js";
import { type JobContext, Worker, type WorkerEvent } from "../queue/worker.js";
import { connectRedis, type RedisClient } from "../redis/connection.js";
import { skipResult } from "../tasks/skip.js";
import { type JobLines, runJob } from "./job-runner.js";
import type { Priority } from "../domain/priority.js";
import {
  describeTimeout,
  type FromThread,
  type GateRequest,
  type GateVerdict,
  type HostedEvent,
  type HostedJob,
  type HostSpec,
  type JobRequest,
  STATUS_MS,
  type ThreadOutcome,
  type ToThread,
} from "./protocol.js";

/** A job on its way to the main thread: its data is what the main thread has no use for. */
const withoutData = (job: ClaimedJob): HostedJob => ({ ...job, data: "" });

type Hosted = Extract<ToThread, { type: "host" | "unhost" | "cancel" | "verdicts" }>;

/**
 * The worker groups one thread claims for (RT_CLAIM_IN=threads), and what they share: the
 * port to the main thread, the tickets of jobs waiting at its gate, and the thread's retirement.
 */
export class ThreadHosting {
  private readonly groups = new Map<string, HostedWorker>();
  private readonly waiting = new Map<number, (verdict: GateVerdict) => void>();
  private tickets = 0;
  private retiring = false;

  constructor(
    readonly registry: string,
    readonly port: MessagePort,
  ) {}

  hear(message: Hosted): void {
    switch (message.type) {
      case "host":
        // A retiring thread is about to be ended: its replacement hosts the group.
        if (this.retiring || this.groups.has(message.spec.group)) return;
        try {
          this.groups.set(message.spec.group, new HostedWorker(message.spec, this));
        } catch (error) {
          const reason = error instanceof Error ? error.message : String(error);
          this.post({ type: "host-failed", group: message.spec.group, reason });
        }
        return;
      case "unhost": {
        const group = this.groups.get(message.group);
        if (!group) {
          this.post({ type: "unhosted", group: message.group, abandoned: 0 });
          return;
        }
        void group.stop(message.timeoutMs).then((abandoned) => {
          this.groups.delete(message.group);
          this.post({ type: "unhosted", group: message.group, abandoned });
        });
        return;
      }
      case "cancel":
        for (const group of this.groups.values()) group.cancel(message.id, message.attempt);
        return;
      case "verdicts":
        for (const { ticket, verdict } of message.verdicts) {
          const resolve = this.waiting.get(ticket);
          this.waiting.delete(ticket);
          resolve?.(verdict);
        }
    }
  }

  ticket(resolve: (verdict: GateVerdict) => void): number {
    const ticket = ++this.tickets;
    this.waiting.set(ticket, resolve);
    return ticket;
  }

  /** A ticket nobody waits on any more: its answer, if one comes, is dropped. */
  forget(ticket: number): void {
    this.waiting.delete(ticket);
  }

  post(message: FromThread): void {
    this.port.postMessage(message);
  }

  /**
   * A job's code still runs past its abort's grace, or past a stop: only the thread's end stops
   * it. Stop claiming, let the other jobs drain for `graceMs`, then ask the main thread for that.
   */
  retire(reason: string, graceMs: number): void {
    if (this.retiring) return;
    this.retiring = true;
    void Promise.all([...this.groups.values()].map((group) => group.stop(graceMs))).then(() =>
      this.post({ type: "retire", reason }),
    );
  }

  async close(): Promise<void> {
    await Promise.all([...this.groups.values()].map((group) => group.stop(0)));
    this.groups.clear();
  }
}

/** A hosted job as it runs: under its timeout, and the grace after its abort. */
interface Guarded {
  readonly job: ClaimedJob;
  readonly abort: LazyAbort;
  readonly deadline: number;
  /** When the sweep first saw it aborted. */
  abortedAt: number;
  /** Past its grace: its thread retires, and the job is left to the reclaimer. */
  stuck: boolean;
  timedOut: string | undefined;
  /** Its progress, throttled; made at its first report. */
  throttled: ReturnType<typeof throttleProgress> | undefined;
  readonly resolve: (outcome: ThreadOutcome) => void;
}

/** A hosted job's run request: the same as a sent job's, and its guard, for its lines. */
interface HostedRequest extends JobRequest {
  readonly guarded: Guarded;
}

/** What a job waiting at the gate hears when its group's stop has given it up. */
const GIVEN_UP: GateVerdict = {
  type: "fail",
  kind: "transient",
  message: "its group stopped while it waited at the gate",
};

/**
 * How often a group's running jobs are checked against their timeout and abort grace: one timer
 * for all of them, where a timer and an abort listener per job cost more than a no-op job. A
 * timeout (whole seconds) or a grace (seconds) fires up to this late.
 */
const SWEEP_MS = 100;

/**
 * Claims out at once for a thread's share of a group. Here the jobs' own code runs between
 * claims (decode, scope, handler), so a third claim keeps Redis busy meanwhile, unless it makes
 * every claim too small to be worth its call: with one thread, no-op jobs at c16 (claims of 6)
 * drained 10-20 % faster with three than with two, at c12 (claims of 4) the same, at c8 (claims
 * of 3) slower, at c100 the same (bench/PERFORMANCE.md, "Three claims out in a thread"). Measured when
 * a claim asked for one share of the slots at most; a claim now asks for every free slot, and the
 * share is what must be free for another to go out beside it.
 */
export const threadClaimsInFlight = (concurrency: number): number => (concurrency >= 15 ? 3 : 2);

/**
 * One worker group's claims in this thread: the engine `Worker` on a connection of its own,
 * running each job here as a sent job runs (`runJob`), under its priority's timeout. What the
 * main thread must hear (events, jobs waiting at the gate, completions for the metrics) goes once
 * per tick, not once per job.
 */
class HostedWorker implements JobLines {
  readonly group: string;
  private readonly redis: RedisClient;
  private readonly queue: Queue;
  private readonly worker: Worker;
  private readonly timers: NodeJS.Timeout[];
  private readonly timeouts: Readonly<Record<Priority, string>>;
  private readonly guarded = new Set<Guarded>();
  private events: HostedEvent[] = [];
  private requests: GateRequest[] = [];
  /** How long each job completed since the last flush ran, by priority (ungated only). */
  private completed: Partial<Record<Priority, number[]>> = {};
  private completedCount = 0;
  private flushing = false;
  private stopped: Promise<number> | undefined;
  /** Jobs waiting at the gate, by ticket: a stop that gives them up answers them itself. */
  private readonly asking = new Map<number, (verdict: GateVerdict) => void>();
  /** The stop is over: the main thread no longer hears this group, so nothing is asked of it. */
  private closed = false;

  constructor(
    private readonly spec: HostSpec,
    private readonly host: ThreadHosting,
  ) {
    this.group = spec.group;
    this.timeouts = Object.fromEntries(
      Object.entries(spec.timeoutsMs).map(([priority, ms]) => [priority, describeTimeout(ms)]),
    ) as Record<Priority, string>;
    this.redis = connectRedis(spec.redisUrl, { ...spec.redisAccess, name: `ratatoskr:${spec.consumer}` });
    // Its failures surface as the worker's `error` events, which the main thread logs.
    this.redis.on("error", () => {});
    this.queue = new Queue(this.redis, spec.queue);
    this.worker = new Worker({
      queue: this.queue,
      consumer: spec.consumer,
      priorities: spec.priorities,
      concurrency: spec.concurrency,
      claimsInFlight: threadClaimsInFlight(spec.concurrency),
      leaseMs: spec.leaseMs,
      handler: (job, context) => this.handle(job, context),
      onEvent: (event) => this.event(event),
    }).start();
    this.status();
    this.timers = [setInterval(() => this.status(), STATUS_MS), setInterval(() => this.sweep(), SWEEP_MS)];
  }

  cancel(id: string, attempt: number): void {
    this.worker.cancelRunning(id, attempt);
  }

  /** Drains (see Worker.stop); resolves with how many jobs were abandoned. */
  stop(timeoutMs: number): Promise<number> {
    this.stopped ??= this.worker.stop({ timeoutMs }).then(({ abandoned }) => {
      // The jobs still at the gate were given up by the stop: they must not start when an answer
      // comes after all (the reclaimer gives them out again elsewhere).
      this.closed = true;
      for (const [ticket, resolve] of this.asking) {
        this.host.forget(ticket);
        resolve(GIVEN_UP);
      }
      this.asking.clear();
      for (const timer of this.timers) clearInterval(timer);
      this.flush();
      this.sendCompleted();
      this.redis.disconnect();
      // A job that ignored the stop's abort still runs its code here: only the thread's end stops it.
      if (this.guarded.size > 0)
        this.host.retire(`${this.guarded.size} jobs of group ${this.group} still running after its stop`, 0);
      return abandoned;
    });
    return this.stopped;
  }

  /** JobLines: progress is written to Redis from here, throttled, the last report before the answer. */
  progress(request: JobRequest, progress: Progress): void {
    const guarded = (request as HostedRequest).guarded;
    (guarded.throttled ??= throttleProgress((p) => this.writeProgress(guarded.job, p)))(progress);
  }

  log(request: JobRequest, level: LogLevel, message: string): void {
    const { job } = (request as HostedRequest).guarded;
    this.host.post({
      type: "job-log",
      group: this.group,
      job: withoutData(job),
      level,
      message: String(message),
    });
  }

  /** Progress is advisory: a failed write is dropped, the job goes on. */
  private writeProgress(job: ClaimedJob, progress: Progress): void {
    Effect.runPromise(this.queue.progress({ id: job.id, attempt: job.attempt }, progress)).catch(() => {});
    // The ledger's copy, where the main thread keeps one.
    if (this.spec.gated)
      this.host.post({ type: "job-progress", group: this.group, job: withoutData(job), progress });
  }

  private status() {
    this.sendCompleted();
    this.host.post({
      type: "status",
      group: this.group,
      active: this.worker.active,
      jobs: this.worker.runningIds.slice(0, 20),
    });
  }

  private async handle(job: ClaimedJob, context: JobContext): Promise<string | undefined> {
    const { gated } = this.spec;
    const abort = LazyAbort.of(context);
    if (gated) {
      const verdict = await this.ask({ step: "start", job: withoutData(job) });
      // Aborted while it waited (a stop, a cancel, a lost lease): it does not start. Where the
      // main thread let it through, it hears that it did not run (its spans end), and the engine
      // hears the abort (a stop gives the job back, a cancel records it).
      if (abort.aborted) {
        if (verdict.type === "run") {
          const outcome = { ok: false, kind: "transient", message: describeFailure(abort.reason) } as const;
          await this.ask({ step: "ran", job: withoutData(job), outcome, seconds: 0 });
        }
        throw abort.reason;
      }
      if (verdict.type === "skip") return skipResult(verdict.reason);
      if (verdict.type === "postpone") throw new JobPostponed(verdict.delayMs, verdict.message);
      if (verdict.type === "fail") throw new JobFailure(verdict.kind, verdict.message);
    }
    const started = performance.now();
    const outcome = await this.runGuarded(job, abort);
    const seconds = (performance.now() - started) / 1000;
    // The main thread records the result (the ledger) before Redis hears of it, as it does for a
    // job it sent.
    if (gated) await this.ask({ step: "ran", job: withoutData(job), outcome, seconds });
    else if (outcome.ok) {
      // Counted when the handler returns, as the main thread counts a job it sent, and sent with
      // the next status: a message wakes the main thread, which costs this thread more than a
      // no-op job, and the metrics need not be more recent than that.
      (this.completed[job.priority] ??= []).push(seconds);
      this.completedCount++;
    }
    if (outcome.ok) return outcome.result;
    throw new JobFailure(outcome.kind, outcome.message);
  }

  private runGuarded(job: ClaimedJob, abort: LazyAbort): Promise<ThreadOutcome> {
    return new Promise<ThreadOutcome>((resolve) => {
      const guarded: Guarded = {
        job,
        abort,
        deadline: Date.now() + this.spec.timeoutsMs[job.priority],
        abortedAt: 0,
        stuck: false,
        timedOut: undefined,
        throttled: undefined,
        resolve,
      };
      this.guarded.add(guarded);
      const { id, attempt, runAttempt, priority, userId } = job;
      const request: HostedRequest = {
        seq: 0,
        job: { id, attempt, runAttempt, priority, userId },
        data: job.data,
        guarded,
      };
      void runJob(this.host.registry, request, abort, this).then((outcome) => this.ran(guarded, outcome));
    });
  }

  private ran(guarded: Guarded, outcome: ThreadOutcome) {
    this.guarded.delete(guarded);
    guarded.throttled?.flush();
    // A timeout is the job's own failure and retriable, unless it was aborted from outside first.
    guarded.resolve(
      guarded.timedOut !== undefined && !outcome.ok
        ? { ok: false, kind: "transient", message: guarded.timedOut }
        : outcome,
    );
  }

  /**
   * Aborts jobs past their timeout. A job still running the grace time after its abort (for
   * whatever reason) retires the thread: its code may still be running, and only the thread's end
   * stops it. It is not answered here: a retry elsewhere must not start while it runs, so it
   * stays pending in Redis and the reclaimer gives it out again once its lease lapses.
   */
  private sweep() {
    if (this.guarded.size === 0) return;
    const now = Date.now();
    const grace = this.spec.abortGraceMs;
    for (const guarded of this.guarded) {
      if (guarded.stuck) continue;
      if (!guarded.abort.aborted) {
        if (now < guarded.deadline) continue;
        guarded.timedOut = this.timeouts[guarded.job.priority];
        LazyAbort.abort(guarded.abort, new Error(guarded.timedOut));
      }
      if (guarded.abortedAt === 0) guarded.abortedAt = now;
      if (now - guarded.abortedAt < grace) continue;
      guarded.stuck = true;
      const { job } = guarded;
      this.host.retire(
        `job ${job.id} attempt ${job.attempt} did not stop within ${grace} ms of being aborted`,
        grace,
      );
    }
  }

  private ask(request: GateRequest extends infer R ? (R extends R ? Omit<R, "ticket"> : never) : never) {
    if (this.closed) return Promise.resolve(GIVEN_UP);
    return new Promise<GateVerdict>((resolve) => {
      const ticket = this.host.ticket((verdict) => {
        this.asking.delete(ticket);
        resolve(verdict);
      });
      this.asking.set(ticket, resolve);
      this.requests.push({ ...request, ticket } as GateRequest);
      this.scheduleFlush();
    });
  }

  private event(event: WorkerEvent) {
    // Ungated, nothing on the main thread follows a completion but its metrics, sent apart.
    if (event.type === "completed" && !this.spec.gated) return;
    this.events.push("job" in event ? { ...event, job: withoutData(event.job) } : event);
    this.scheduleFlush();
  }

  private scheduleFlush() {
    if (this.flushing) return;
    this.flushing = true;
    setImmediate(() => this.flush());
  }

  private flush() {
    this.flushing = false;
    if (this.requests.length > 0) {
      const requests = this.requests;
      this.requests = [];
      this.host.post({ type: "gate", group: this.group, requests });
    }
    if (this.events.length > 0) {
      const events = this.events;
      this.events = [];
      this.host.post({ type: "events", group: this.group, events });
    }
  }

  private sendCompleted() {
    if (this.completedCount === 0) return;
    const seconds = this.completed;
    this.completed = {};
    this.completedCount = 0;
    this.host.post({ type: "completed", group: this.group, seconds });
  }
}
