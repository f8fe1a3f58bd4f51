import { setTimeout as sleep } from "node:timers/promises";
import { drainRunning } from "../jobs/drain.js";
import { LazyAbort } from "../jobs/lazy-abort.js";
import { Effect } from "effect";
import { isPriority, type Priority, priorityRank } from "../domain/priority.js";
import { duplicateConnection, type RedisClient } from "../redis/connection.js";
import { describeFailure, failureKindOf, JobPostponed, retryDelayMs } from "./failures.js";
import {
  attemptKey,
  type ClaimedJob,
  type CompleteOutcome,
  type Completion,
  type HandoffTarget,
  type Queue,
} from "./queue.js";

export interface JobContext {
  /** Aborted when the job is cancelled, its lease is lost, or the worker is stopped by force. */
  readonly signal: AbortSignal;
  /**
   * The same abort as `signal`, for a handler that only hands it on (the runtime's, to its
   * thread pool): the listener is called once with the reason, at once if the job is aborted
   * already; the function returned removes it. Reading `signal` makes an AbortController for the
   * job; this does not.
   */
  readonly onAbort: (listener: (reason: unknown) => void) => () => void;
}

/** Returns the result to store with the job (a string, e.g. JSON), or nothing. */
export type JobHandler = (job: ClaimedJob, context: JobContext) => Promise<string | undefined>;

export type WorkerEvent =
  | { readonly type: "completed"; readonly job: ClaimedJob; readonly result: string }
  | { readonly type: "retry" | "dead" | "cancelled"; readonly job: ClaimedJob; readonly error: string }
  /** The queue refused this attempt's answer: another attempt owns the job now. */
  | { readonly type: "stale"; readonly job: ClaimedJob }
  | { readonly type: "lost" | "cancel-requested"; readonly job: ClaimedJob }
  /**
   * Given back to the queue, uncharged: stopped by a shutdown, or claimed ahead of a free slot
   * and not started (see `Worker.claimAhead`).
   */
  | { readonly type: "released"; readonly job: ClaimedJob }
  /** Could not start (its handler threw `JobPostponed`): waits `delayMs`, uncharged. */
  | { readonly type: "postponed"; readonly job: ClaimedJob; readonly error: string; readonly delayMs: number }
  | { readonly type: "error"; readonly error: string };

export interface WorkerOptions {
  readonly queue: Queue;
  /** Unique per worker; the consumer name in the streams' group. */
  readonly consumer: string;
  readonly priorities: readonly Priority[];
  readonly concurrency: number;
  readonly handler: JobHandler;
  /** Checks a job's data before it runs; a reason string sends it to the dead letters unrun. */
  readonly validate?: (job: ClaimedJob) => string | undefined;
  /** A connection for the blocking wait; one is made from the queue's when not given. */
  readonly blocking?: RedisClient;
  /** The reclaimer takes jobs not renewed for this long; renewed every third of it. */
  readonly leaseMs?: number;
  /** Longest single blocking wait when idle (a resume or new job wakes it sooner). */
  readonly idleBlockMs?: number;
  /**
   * Claims out at once (default 2): while Redis answers one, this worker starts the jobs of
   * another. A worker that runs its jobs' code itself between claims (a pool thread claiming for
   * itself) keeps Redis busier with three, as long as each still carries a few jobs.
   */
  readonly claimsInFlight?: number;
  /**
   * Claims jobs ahead of free slots while jobs run about as fast as a claim comes back (default
   * true; see `Worker.claimAhead`).
   */
  readonly claimAhead?: boolean;
  /**
   * While idle, takes jobs handed over by single enqueues through this same queue object, claimed
   * in the enqueue's own call (default true; see `HandoffTarget`): a job enqueued in this process
   * starts a round trip sooner than when the worker is woken and claims it.
   */
  readonly handoffs?: boolean;
  readonly onEvent?: (event: WorkerEvent) => void;
}

/**
 * What the runtime needs of a worker group's claims, wherever they run: this engine `Worker` in
 * the main thread, or the pool's threads claiming for themselves (pool/hosted-group.ts).
 */
export interface ClaimingWorker {
  /** Jobs running now. */
  readonly active: number;
  /** Which (task ids). */
  readonly runningIds: string[];
  cancelRunning(id: string, attempt: number): boolean;
  stop(options?: { timeoutMs?: number }): Promise<{ abandoned: number }>;
}

/** Claims in flight at once by default: while Redis answers one, this process starts the jobs of the other. */
const CLAIMS_IN_FLIGHT = 2;

/**
 * A job claimed ahead that finds no free slot within this long goes back to its stream, where
 * another worker may take it: the jobs holding the slots turned out long.
 */
const AHEAD_WAIT_LIMIT_MS = 1_000;
/** Weight of the newest sample in the running averages of run and claim times. */
const SMOOTHING = 0.1;

interface Running {
  readonly job: ClaimedJob;
  readonly controller: LazyAbort;
  /** The handler is done and its answer is on its way: a renewal's word no longer matters. */
  settled: boolean;
}

/** A job claimed ahead, waiting here for a slot. */
interface Waiting {
  readonly entry: Running;
  readonly key: string;
  readonly rank: number;
  /** performance.now() when it was claimed. */
  readonly since: number;
}

/** How a handler's run ended, before Redis hears of it. */
type Outcome =
  | { readonly type: "completed"; readonly result: string }
  | { readonly type: "failed"; readonly message: string; readonly kind: ReturnType<typeof failureKindOf> }
  | { readonly type: "invalid"; readonly reason: string }
  | { readonly type: "postponed"; readonly message: string; readonly delayMs: number }
  | { readonly type: "lease-lost" | "shutdown" };

/**
 * A handler's result on its way to Redis, as the claim or completion script takes it; its job
 * stays in `running` (under `key`) until Redis has answered.
 */
interface PendingCompletion extends Completion {
  readonly job: ClaimedJob;
  readonly result: string;
  readonly key: string;
}

const smoothed = (average: number, sample: number) =>
  average === 0 ? sample : average + SMOOTHING * (sample - average);

const LEASE_LOST = "lease lost";
const CANCELLED = "cancelled";
const SHUTDOWN = "worker shut down";

/**
 * The engine-level consume loop: claims as many jobs as it has free slots (one round trip),
 * blocks on the streams when there is nothing to claim, renews leases of what it runs, and
 * acknowledges completions in batches. One failing job never stops it.
 */
export class Worker implements ClaimingWorker, HandoffTarget {
  private readonly running = new Map<string, Running>();
  /**
   * Handlers running now: what concurrency limits. A job whose handler has returned stays in
   * `running` until Redis has its answer, but no longer holds a slot, so the next claim goes out
   * in the same round trip as the acknowledgement instead of after it.
   */
  private executing = 0;
  /**
   * Jobs claimed ahead of a free slot (`claimAhead`), highest priority first, in claim order
   * within a priority: each starts as a slot frees. They are in `running` (their leases renewed, a
   * cancel heard) but hold no slot.
   */
  private readonly waiting: Waiting[] = [];
  /** Running averages, in ms: a handler's run, a claim's round trip (0: none measured yet). */
  private runMs = 0;
  private claimMs = 0;
  /** Gives back jobs claimed ahead that waited too long; armed while any waits. */
  private waitTimer: NodeJS.Timeout | undefined;
  private readonly completions: PendingCompletion[] = [];
  private flushScheduled = false;
  private stopping = false;
  private stopped: Promise<{ abandoned: number }> | undefined;
  private wakeLoop: (() => void) | undefined;
  private wakeSignal: Promise<void> | undefined;
  /** The blocking read out, if any. */
  private pendingWait: Promise<void> | undefined;
  /**
   * The blocking read ended (woken, timed out or failed) and no claim has gone out since: the
   * next claim answers it.
   */
  private woken = false;
  /** The priorities whose streams woke it (`Queue.waitForWork`), for the claim that answers it. */
  private wokenBy: readonly Priority[] = [];
  /** Offers made to enqueues (`offer`), and how many of those enqueues have answered. */
  private offersMade = 0;
  private offersAnswered = 0;
  private stopHandoffs: (() => void) | undefined;
  /** Slots promised to claims still out. */
  private reserved = 0;
  private claimsOut = 0;
  /** The last claim came back short: nothing more to claim until the blocking read ends. */
  private dry = false;
  /**
   * The last claim came back full, so more is likely waiting: keep `claimsInFlight` out. After a
   * dry spell one claim goes first, since a wake often means a single new job.
   */
  private flowing = false;
  private errors = 0;
  private backoffUntil = 0;
  private loopDone: Promise<void> | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private readonly blocking: RedisClient;
  private readonly ownsBlocking: boolean;
  private readonly leaseMs: number;
  private readonly claimsInFlight: number;

  constructor(private readonly options: WorkerOptions) {
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
      throw new Error(`concurrency must be a positive integer, got ${options.concurrency}`);
    }
    // Its wait blocks on its priorities' streams: with none (or an unknown one) Redis refuses
    // the read, and the worker would retry it every two seconds, never claiming.
    if (options.priorities.length === 0 || !options.priorities.every(isPriority)) {
      throw new Error(
        `priorities must be one or more of urgent, high, normal, low, got ${JSON.stringify(options.priorities)}`,
      );
    }
    this.claimsInFlight = options.claimsInFlight ?? CLAIMS_IN_FLIGHT;
    if (!Number.isInteger(this.claimsInFlight) || this.claimsInFlight < 1) {
      throw new Error(`claimsInFlight must be a positive integer, got ${options.claimsInFlight}`);
    }
    this.ownsBlocking = options.blocking === undefined;
    this.blocking = options.blocking ?? duplicateConnection(options.queue.redis);
    // Its failures surface as failed waits (the loop backs off); no stderr line per reconnect.
    if (this.ownsBlocking) this.blocking.on("error", () => {});
    this.leaseMs = options.leaseMs ?? 30_000;
  }

  /** Jobs whose handlers started and whose answers Redis has not yet had (not those claimed ahead). */
  get active(): number {
    return this.running.size - this.waiting.length;
  }

  /** The tasks running now (the keys are `<id>#<attempt>`), not those claimed ahead. */
  get runningIds(): string[] {
    const waiting = new Set(this.waiting.map((w) => w.key));
    return [...this.running.keys()]
      .filter((key) => !waiting.has(key))
      .map((key) => key.slice(0, key.lastIndexOf("#")));
  }

  start(): this {
    if (this.loopDone) return this;
    this.renewTimer = setInterval(() => void this.renewLeases(), Math.max(10, Math.floor(this.leaseMs / 3)));
    if (this.options.handoffs !== false) this.stopHandoffs = this.options.queue.acceptHandoffs(this);
    this.loopDone = this.loop();
    return this;
  }

  /**
   * Stops claiming at once; waits up to `timeoutMs` for running jobs; aborts the rest, which
   * keep their stream entries and are reclaimed by another worker once their lease lapses.
   */
  stop(options: { timeoutMs?: number } = {}): Promise<{ abandoned: number }> {
    // Every caller shares the first stop: a runtime drains all its workers at once, and each
    // dispatcher's own release then only waits for that same drain.
    this.stopped ??= this.drain(options.timeoutMs ?? 30_000);
    return this.stopped;
  }

  private async drain(timeoutMs: number): Promise<{ abandoned: number }> {
    this.stopping = true;
    this.stopHandoffs?.();
    this.wake();
    // Jobs claimed ahead have not started: they go back now, uncharged, rather than wait for
    // slots that a stop is emptying; so do those that claims still out bring with no slot free.
    const early = this.giveBack(this.waiting.splice(0));
    await this.loopDone;
    const late = this.giveBack(this.waiting.splice(0));
    clearTimeout(this.waitTimer);
    // Handlers that heed the abort settle quickly and give their job back.
    const abandoned = await drainRunning(
      this.running,
      (job, reason) => LazyAbort.abort(job.controller, reason),
      timeoutMs,
      SHUTDOWN,
    );
    clearInterval(this.renewTimer);
    // One that Redis did not take back waits out its lease: left to the reclaimer, as abandoned.
    const unreturned = (await early) + (await late);
    // A wake Redis gave the read as the connection closes is lost with it: its job waits for
    // another wake or another worker's idle timeout (docs/architecture.md, "Claim").
    if (this.ownsBlocking) this.blocking.disconnect();
    return { abandoned: abandoned + unreturned };
  }

  /**
   * A cancel heard on the events channel: abort that attempt now rather than at its next lease
   * renewal (which still catches a cancel whose message was missed). False if it is not here.
   */
  cancelRunning(id: string, attempt: number): boolean {
    const entry = this.running.get(`${id}#${attempt}`);
    if (!entry || entry.settled || entry.controller.aborted) return false;
    this.emit({ type: "cancel-requested", job: entry.job });
    LazyAbort.abort(entry.controller, new Error(CANCELLED));
    this.endIfWaiting(`${id}#${attempt}`);
    return true;
  }

  /**
   * A listener that throws must not stop the worker: thrown inside a settle, it skipped the
   * `done` of the batch's other completions, whose runs then hung until the worker stopped.
   */
  private emit(event: WorkerEvent) {
    try {
      this.options.onEvent?.(event);
    } catch (error) {
      console.error(`worker event listener threw on a ${event.type} event: ${describeFailure(error)}`);
    }
  }

  /**
   * Keeps up to `claimsInFlight` claims out while slots are free, so Redis answers one while the
   * jobs of the last one start here: a claim takes every free slot (up to the concurrency), and
   * another goes beside it once a share of the slots is free again (`mayClaim`). A claim that
   * comes back short means the streams ran dry: once no claim is out, block on them until
   * something new.
   */
  private async loop(): Promise<void> {
    const { concurrency } = this.options;
    const batch = Math.ceil(concurrency / this.claimsInFlight);
    while (!this.stopping) {
      const ahead = this.claimAhead(concurrency);
      const free = this.claimable(ahead);
      const backoff = this.backoffUntil - Date.now();
      if (backoff > 0) {
        await Promise.race([sleep(backoff), this.nextWake()]);
      } else if (free > 0 && !this.dry && this.mayClaim(free, batch, ahead)) {
        // Not capped at the share: jobs that end faster than a claim comes back free the slots
        // all at once, and splitting them cost a script call and a write on each side per share
        // (no-op jobs at concurrency 16 drained about a sixth faster in claims of 16 than of 8).
        this.claimSome(Math.min(free, concurrency));
      } else if (free > 0 && this.claimsOut === 0 && this.dry) {
        // Only something new in the streams (or the wait's own timeout or failure) ends the dry
        // spell. A slot freeing meanwhile wakes the loop too, but there is nothing new to claim:
        // claiming anyway cost two claim scripts per finished job whenever the queue ran near empty.
        if (!this.woken) await Promise.race([this.waitForWork(), this.nextWake()]);
        if (this.woken) this.dry = false;
      } else {
        await this.nextWake();
      }
    }
    // A claim still out (or an enqueue handing a job over) may yet start jobs: stop() waits
    // for them like for any other.
    while (this.claimsOut > 0 || this.offersAnswered < this.offersMade) await this.nextWake();
  }

  /**
   * A slot for a job an enqueue claims for this worker, while it waits for work with a slot free
   * (not while claims are out: they bring what is there) and takes the job's priority.
   */
  offer(priority: Priority): { consumer: string; priorities: readonly Priority[] } | undefined {
    const { concurrency, consumer, priorities } = this.options;
    if (this.stopping || !this.dry || this.claimsOut > 0 || this.backoffUntil > Date.now()) return undefined;
    const free = concurrency - this.executing - this.waiting.length - this.reserved;
    if (free <= 0 || !priorities.includes(priority)) return undefined;
    this.reserved++;
    this.offersMade++;
    return { consumer, priorities };
  }

  handed(jobs: readonly ClaimedJob[]) {
    this.reserved--;
    this.offersAnswered++;
    for (const job of jobs) this.startJob(job);
    this.wake();
  }

  /**
   * Jobs to claim beyond the free slots: as many as the slots finish during one claim's round
   * trip (concurrency × claim time / run time, at most the concurrency). A claim holds its slots
   * for its round trip; with short jobs that is as long as the jobs themselves, and at
   * concurrency 16 only half the slots ran jobs (a thread pool's no-op jobs: 0.45 ms a job, a
   * claim 0.42 ms). So a job claimed ahead waits here about one claim's round trip, which it
   * saves. A job that runs longer than the claim round trip times the concurrency (a download,
   * a model call: any job of more than a few ms) is not claimed ahead: it waits in Redis, where
   * another worker or a higher priority can still come first.
   */
  private claimAhead(concurrency: number): number {
    if (this.options.claimAhead === false || this.runMs === 0 || this.claimMs === 0) return 0;
    return Math.min(concurrency, Math.floor((concurrency * this.claimMs) / this.runMs));
  }

  /**
   * With no claim out, any free slot is worth one. Beside a claim already out, only a full batch:
   * slots that free a few at a time (handlers on threads answer in small groups) would otherwise
   * each send a claim of a few jobs, and a script call costs Redis about as much as three of the
   * jobs in it; the claim out comes back soon and wakes this loop to take what freed meanwhile.
   */
  private mayClaim(free: number, batch: number, ahead: number): boolean {
    if (this.claimsOut === 0) return true;
    // Jobs claimed ahead ride in any claim (one takes up to the concurrency), and may take
    // claims of their own beside those for the slots: one more out per share ahead.
    const limit = this.claimsInFlight + Math.ceil(ahead / batch);
    return this.flowing && this.claimsOut < limit && free >= batch;
  }

  private claimSome(want: number) {
    const { queue, consumer, priorities } = this.options;
    this.reserved += want;
    this.claimsOut++;
    // Completions waiting for their flush ride with the claim: one script for both.
    const done = this.completions.splice(0);
    const sent = performance.now();
    // A claim sent now takes whatever a wake that ended the blocking read was for; if it comes
    // back full, the wakes of lower priorities that came with the first may be for jobs it left.
    const wakes = this.wokenBy;
    this.woken = false;
    this.wokenBy = [];
    void queue
      .claimNow(consumer, priorities, want, done)
      .then(
        (claim) => {
          this.errors = 0;
          this.claimMs = smoothed(this.claimMs, performance.now() - sent);
          // Claims answer in the order sent: the last one says whether the streams are dry now.
          this.dry = claim.dry;
          this.flowing = !claim.dry;
          if (!claim.dry && wakes.length > 1) this.passWake(wakes.slice(1));
          for (const job of claim.jobs) this.startJob(job);
          this.settle(done, claim.completed);
        },
        (error) => {
          // Redis away or refusing: report, back off (up to 2 s) and try again; nothing is lost.
          // The completions it carried go out again, alone or with a claim still out, retried
          // through the outage.
          this.completions.unshift(...done);
          if (done.length > 0) this.scheduleFlush();
          this.emit({ type: "error", error: describeFailure(error) });
          this.errors++;
          this.backoffUntil = Date.now() + Math.min(2000, 50 * 2 ** this.errors);
        },
      )
      .finally(() => {
        this.reserved -= want;
        this.claimsOut--;
        // Completions held for this claim's successor go on their own if none follows.
        if (this.completions.length > 0) this.scheduleFlush();
        this.wake();
      });
  }

  /**
   * One blocking read at a time: it outlives the loop's turns (a slot that frees meanwhile does not
   * end it), and the next turn that waits takes it up again.
   */
  private waitForWork(): Promise<void> {
    if (!this.pendingWait) {
      const { queue, priorities, idleBlockMs = 5_000 } = this.options;
      this.pendingWait = queue
        .waitForWork(this.blocking, priorities, idleBlockMs)
        .then(
          (wokenBy) => {
            // Its timeout ends a dry spell too: a claim then finds anything a lost wake left.
            this.woken = true;
            this.wokenBy = wokenBy ?? [];
            if (
              this.wokenBy.length > 0 &&
              (this.stopping || this.claimable(this.claimAhead(this.options.concurrency)) <= 0)
            ) {
              this.passWake(this.wokenBy);
              this.woken = false;
              this.wokenBy = [];
            }
          },
          (error) => {
            // Cut short by stop() (the connection closed): nobody waits for it any more.
            if (!this.stopping) {
              this.emit({ type: "error", error: describeFailure(error) });
              this.errors++;
              this.backoffUntil = Date.now() + Math.min(2000, 50 * 2 ** this.errors);
            }
            this.woken = true;
          },
        )
        .finally(() => {
          this.pendingWait = undefined;
          this.wake();
        });
    }
    return this.pendingWait;
  }

  /**
   * Jobs that woke this worker are another's to take: its slots filled after it blocked (a job
   * handed over by an enqueue), it is stopping, or its claim filled up before the rest of what
   * woke it. Each entry wakes one waiting worker, so one that cannot claim wakes another that
   * takes the same priority, through its signal stream (or, with none waiting, itself once it
   * waits again).
   */
  private passWake(priorities: readonly Priority[]) {
    this.options.queue.passWakeNow(priorities).catch((error: unknown) => {
      if (!this.stopping) this.emit({ type: "error", error: describeFailure(error) });
    });
  }

  /**
   * How many jobs a claim may take now (`ahead` of them beyond the free slots): with none, the
   * loop does not claim, so a wake is passed on and no read is started.
   */
  private claimable(ahead: number): number {
    return this.options.concurrency + ahead - this.executing - this.waiting.length - this.reserved;
  }

  /** Resolves at the next `wake()` (a slot freed, or stop); every waiter shares one promise. */
  private nextWake(): Promise<void> {
    if (!this.wakeSignal) {
      this.wakeSignal = new Promise((resolve) => {
        this.wakeLoop = resolve;
      });
    }
    return this.wakeSignal;
  }

  private wake() {
    const wake = this.wakeLoop;
    this.wakeSignal = undefined;
    this.wakeLoop = undefined;
    wake?.();
  }

  private startJob(job: ClaimedJob) {
    const entry: Running = { job, controller: new LazyAbort(), settled: false };
    // By attempt, not id: an attempt that lost its lease may still be winding down here when the
    // job's next attempt is claimed by this same worker.
    const key = attemptKey(job);
    this.running.set(key, entry);
    if (this.executing < this.options.concurrency && this.waiting.length === 0) {
      this.launch(entry, key);
      return;
    }
    const rank = priorityRank(job.priority);
    let at = this.waiting.length;
    while (at > 0 && this.waiting[at - 1]!.rank > rank) at--;
    this.waiting.splice(at, 0, { entry, key, rank, since: performance.now() });
    this.waitTimer ??= setTimeout(() => this.giveBackLongWaits(), AHEAD_WAIT_LIMIT_MS).unref();
    this.startWaiting();
  }

  /**
   * Jobs claimed ahead that have waited their limit go back to their streams; the jobs holding
   * the slots are long, so none is claimed ahead until shorter runs bring the average down.
   */
  private giveBackLongWaits() {
    this.waitTimer = undefined;
    const now = performance.now();
    const over = this.waiting.filter((w) => now - w.since >= AHEAD_WAIT_LIMIT_MS);
    if (over.length > 0) {
      this.waiting.splice(0, this.waiting.length, ...this.waiting.filter((w) => !over.includes(w)));
      // As if a run took the limit in every slot: no claim short of that limit claims ahead.
      this.runMs = Math.max(this.runMs, AHEAD_WAIT_LIMIT_MS * this.options.concurrency);
      void this.giveBack(over);
    }
    if (this.waiting.length === 0) return;
    const oldest = Math.min(...this.waiting.map((w) => w.since));
    this.waitTimer = setTimeout(
      () => this.giveBackLongWaits(),
      Math.max(1, AHEAD_WAIT_LIMIT_MS - (now - oldest)),
    ).unref();
  }

  /**
   * Jobs claimed ahead that will not run here go back, uncharged, and leave `running` at once (no
   * renewal or cancel concerns them now). One with a cancel waiting ends cancelled instead. One
   * try: where Redis does not answer, the lease lapses and the reclaimer gives the job out again.
   * Resolves with how many Redis did not take.
   */
  private async giveBack(waiting: readonly Waiting[]): Promise<number> {
    for (const { key } of waiting) this.running.delete(key);
    const answered = await Promise.all(
      waiting.map(async ({ entry: { job } }) => {
        try {
          const lease = { id: job.id, attempt: job.attempt };
          const answer = await Effect.runPromise(this.options.queue.release(this.options.consumer, lease));
          if (answer === "ok") this.emit({ type: "released", job });
          else if (answer === "cancel") await this.reportFailure(job, CANCELLED, "transient");
          else this.emit({ type: "stale", job });
          return true;
        } catch (error) {
          this.emit({ type: "error", error: describeFailure(error) });
          return false;
        }
      }),
    );
    if (waiting.length > 0) this.wake();
    return answered.filter((taken) => !taken).length;
  }

  /**
   * A job claimed ahead and aborted (a cancel, a lost lease) ends now rather than at a free
   * slot: its handler does not run (`runHandler`), so it holds no slot in any real sense.
   */
  private endIfWaiting(key: string) {
    const at = this.waiting.findIndex((w) => w.key === key);
    if (at < 0) return;
    const [waiting] = this.waiting.splice(at, 1);
    this.launch(waiting!.entry, waiting!.key);
  }

  /** Jobs claimed ahead take the slots free now, highest priority first. */
  private startWaiting() {
    while (this.waiting.length > 0 && this.executing < this.options.concurrency) {
      const { entry, key } = this.waiting.shift()!;
      this.launch(entry, key);
    }
  }

  private launch(entry: Running, key: string) {
    this.executing++;
    this.execute(entry, key).then(
      (answering) => {
        if (!answering) this.ended(key);
      },
      (error: unknown) => {
        this.emit({ type: "error", error: describeFailure(error) });
        this.ended(key);
      },
    );
  }

  private ended(key: string) {
    this.running.delete(key);
    this.wake();
  }

  /**
   * Runs the job and reports its outcome. True when a completion went to the next batch: the job
   * leaves `running` when Redis answers it (`settle`), with no promise per job waiting for that.
   */
  private async execute(entry: Running, key: string): Promise<boolean> {
    let outcome: Outcome;
    const began = performance.now();
    const abortedBefore = entry.controller.aborted;
    try {
      outcome = await this.runHandler(entry);
    } finally {
      this.executing--;
      this.startWaiting();
      this.wake();
    }
    // Only runs the handler answered: a postponed start (the ledger away) or a job aborted
    // before its slot says nothing of how long jobs take.
    if (!abortedBefore && (outcome.type === "completed" || outcome.type === "failed")) {
      this.runMs = smoothed(this.runMs, performance.now() - began);
    }
    const { job } = entry;
    switch (outcome.type) {
      case "invalid":
        await this.reportFailure(job, outcome.reason, "invalid");
        return false;
      case "lease-lost":
        // Another attempt owns the job now: this one's answer would be refused.
        return false;
      case "shutdown":
        await this.release(job);
        return false;
      case "postponed":
        await this.postpone(job, outcome.message, outcome.delayMs);
        return false;
      case "failed":
        await this.reportFailure(job, outcome.message, outcome.kind);
        return false;
      case "completed":
        this.completions.push({ id: job.id, attempt: job.attempt, result: outcome.result, job, key });
        this.scheduleFlush();
        return true;
    }
  }

  private async runHandler(entry: Running): Promise<Outcome> {
    const { job, controller } = entry;
    let invalid: string | undefined;
    try {
      invalid = this.options.validate?.(job);
    } catch (error) {
      // A check that throws on this data (e.g. a payload nested deep enough to overflow a
      // recursive formatter) would throw again on every attempt; uncaught, it left the job
      // running with nobody renewing it, its entry pending until the reclaimer ran it again.
      invalid = `validation failed: ${describeFailure(error)}`;
    }
    if (invalid !== undefined) return { type: "invalid", reason: invalid };
    try {
      // Aborted while it waited for a slot (claimed ahead): its abort decides, as if the handler
      // had heeded it at once.
      if (controller.aborted) throw controller.reason;
      const result = await this.options.handler(job, controller);
      entry.settled = true;
      return { type: "completed", result: result ?? "" };
    } catch (error) {
      const reason = controller.aborted ? describeFailure(controller.reason) : undefined;
      // A cancel is reported, and the queue records it as cancelled.
      // A lost lease belongs to another attempt now: not reported. A shutdown gives the job back.
      if (reason === LEASE_LOST) return { type: "lease-lost" };
      if (reason === SHUTDOWN) return { type: "shutdown" };
      entry.settled = true;
      if (reason === undefined && error instanceof JobPostponed) {
        return { type: "postponed", message: describeFailure(error), delayMs: error.delayMs };
      }
      return { type: "failed", message: reason ?? describeFailure(error), kind: failureKindOf(error) };
    }
  }

  /** One try: if Redis cannot take it back now, the lease lapses and the reclaimer does. */
  private async release(job: ClaimedJob) {
    try {
      const answer = await Effect.runPromise(
        this.options.queue.release(this.options.consumer, { id: job.id, attempt: job.attempt }),
      );
      if (answer === "ok") this.emit({ type: "released", job });
    } catch (error) {
      this.emit({ type: "error", error: describeFailure(error) });
    }
  }

  /**
   * Gives the job back for a while, uncharged. A job with a cancel waiting is reported as failed
   * instead, which ends it cancelled; an attempt no longer ours is left to its owner.
   */
  private async postpone(job: ClaimedJob, message: string, delayMs: number) {
    const answer = await this.retryingRedis(() =>
      Effect.runPromise(
        this.options.queue.release(this.options.consumer, { id: job.id, attempt: job.attempt }, delayMs),
      ),
    );
    if (answer === "ok") this.emit({ type: "postponed", job, error: message, delayMs });
    else if (answer === "cancel") await this.reportFailure(job, message, "transient");
    else if (answer === "stale") this.emit({ type: "stale", job });
  }

  private async reportFailure(job: ClaimedJob, message: string, kind: ReturnType<typeof failureKindOf>) {
    const delay = retryDelayMs(kind, job.runAttempt);
    const outcome = await this.retryingRedis(() =>
      Effect.runPromise(
        this.options.queue.fail({
          id: job.id,
          attempt: job.attempt,
          error: message,
          retriable: delay !== undefined,
          delayMs: delay ?? 0,
        }),
      ),
    );
    if (outcome === undefined) return;
    if (outcome.outcome === "stale") this.emit({ type: "stale", job });
    else this.emit({ type: outcome.outcome, job, error: message });
  }

  /**
   * Acknowledges every completion of this tick in one script call, unless a claim takes them
   * first. While jobs flow and a claim is out, they wait for the next claim: one script call for
   * both, not two. When that claim comes back it schedules this again, so if no claim follows
   * (dry streams, backoff, stopping) they go alone then, a claim's round trip later.
   */
  private scheduleFlush() {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      if (this.claimsOut > 0 && this.flowing) return;
      this.flushCompletions();
    });
  }

  private flushCompletions() {
    if (this.completions.length === 0) return;
    const batch = this.completions.splice(0);
    void this.retryingRedis(() => this.options.queue.completeNow(batch)).then((answers) =>
      this.settle(batch, answers),
    );
  }

  /**
   * Tells of each completion as Redis answered it (no answer: it gave up, the reclaimer runs it),
   * and the job leaves `running`.
   */
  private settle(batch: readonly PendingCompletion[], answers: readonly CompleteOutcome[] | undefined) {
    if (batch.length === 0) return;
    batch.forEach((c, i) => {
      if (answers?.[i] === "ok") this.emit({ type: "completed", job: c.job, result: c.result });
      else if (answers?.[i] === "stale") this.emit({ type: "stale", job: c.job });
      this.running.delete(c.key);
    });
    this.wake();
  }

  /**
   * A job's outcome must reach Redis: retried through short outages (the lease keeps the job
   * ours meanwhile). After a minute it is left to the reclaimer, which runs the job again.
   */
  private async retryingRedis<A>(call: () => Promise<A>): Promise<A | undefined> {
    const deadline = Date.now() + 60_000;
    for (let n = 0; ; n++) {
      try {
        return await call();
      } catch (error) {
        this.emit({ type: "error", error: describeFailure(error) });
        if (Date.now() > deadline) return undefined;
        await sleep(Math.min(2000, 50 * 2 ** n));
      }
    }
  }

  private async renewLeases() {
    const entries = [...this.running.values()];
    if (entries.length === 0) return;
    const leases = entries.map((r) => ({ id: r.job.id, attempt: r.job.attempt }));
    try {
      const answers = await Effect.runPromise(this.options.queue.renew(this.options.consumer, leases));
      answers.forEach((answer, i) => {
        const entry = entries[i];
        // A renewal that crossed the job's completion answers 'lost': the job is done, not lost.
        if (!entry || entry.settled || entry.controller.aborted) return;
        if (answer === "lost") {
          this.emit({ type: "lost", job: entry.job });
          LazyAbort.abort(entry.controller, new Error(LEASE_LOST));
        } else if (answer === "cancel") {
          this.emit({ type: "cancel-requested", job: entry.job });
          LazyAbort.abort(entry.controller, new Error(CANCELLED));
        } else return;
        this.endIfWaiting(attemptKey(entry.job));
      });
    } catch (error) {
      this.emit({ type: "error", error: describeFailure(error) });
    }
  }
}
