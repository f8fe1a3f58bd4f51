import type { Priority } from "../domain/priority.js";
import type { LogLevel, Progress } from "../jobs/definition.js";
import { describeFailure } from "../queue/failures.js";
import type { ClaimingWorker } from "../queue/worker.js";
import { attemptKey } from "../queue/queue.js";
import type {
  FromThread,
  GateRequest,
  GateVerdict,
  HostedEvent,
  HostedJob,
  HostSpec,
  ToThread,
} from "./protocol.js";

/** A worker group for the threads to claim for; the pool splits its concurrency among them. */
export type GroupSpec = Omit<HostSpec, "consumer" | "concurrency"> & {
  /** The group's consumer name; each thread's is this with `/t<n>` after it. */
  readonly consumer: string;
  /** The whole group's concurrency. */
  readonly concurrency: number;
};

/** What the main thread does for a hosted group's jobs. */
export interface HostListener {
  /** A thread's worker event (they come once per tick, in order). */
  event(event: HostedEvent): void;
  /** How long jobs that completed ran, by priority, where no gate saw them end. */
  completed(seconds: Readonly<Partial<Record<Priority, readonly number[]>>>): void;
  /** A job waiting at the gate (HostSpec.gated); a rejection fails the job, retriable. */
  gate(request: GateRequest): Promise<GateVerdict>;
  progress(job: HostedJob, progress: Progress): void;
  log(job: HostedJob, level: LogLevel, message: string): void;
  /**
   * Jobs let through the gate's start whose thread died before their end came: nothing else
   * will end what their start began (spans). Each job may come more than once.
   */
  lost(jobs: readonly HostedJob[], reason: string): void;
}

export type GroupMessage = Extract<FromThread, { readonly group: string }>;

/** As the engine's worker events: a listener that throws must not stop the others, nor the process. */
const heard = (what: string, listen: () => void) => {
  try {
    listen();
  } catch (error) {
    console.error(`a hosted group's listener threw on ${what}: ${describeFailure(error)}`);
  }
};

/** A thread that neither answers an unhost nor dies (its loop blocked) is not waited on for ever. */
const UNHOST_SLACK_MS = 10_000;

interface ThreadShare {
  /** Counts the threads at this index: a dead one's gate answers must not reach its replacement. */
  generation: number;
  hosted: boolean;
  active: number;
  jobs: readonly string[];
  verdicts: Array<{ ticket: number; verdict: GateVerdict }>;
  /** Jobs at or past the gate's start and not yet at its end, by `<id>#<attempt>`. */
  begun: Map<string, HostedJob>;
  unhosted: ((abandoned: number) => void) | undefined;
}

const THREAD_DIED = "its worker thread died";

/**
 * A worker group claimed for in the pool's threads, as the main thread sees it: what they run
 * (from their status every STATUS_MS), the cancel sent to all of them, and the stop. A thread
 * that dies leaves its jobs pending in Redis until their leases lapse and the reclaimer takes
 * them; its replacement hosts the group again.
 */
export class HostedGroup implements ClaimingWorker {
  private readonly threads: ThreadShare[];
  private stopping: Promise<{ abandoned: number }> | undefined;
  private fail: (reason: string) => void = () => {};
  /**
   * Settles if a thread could not claim for the group: the dispatcher fails with it, and its
   * supervisor decides (a restart, or giving up), rather than the group claiming in no thread.
   */
  readonly failed = new Promise<string>((resolve) => {
    this.fail = resolve;
  });

  constructor(
    private readonly spec: GroupSpec,
    private readonly listener: HostListener,
    threads: number,
    private readonly send: (thread: number, message: ToThread) => void,
    /** Ends thread `index` (it is replaced): one that will not stop claiming for the group. */
    private readonly end: (thread: number, why: string) => void,
    /** Called once the group is stopped: the pool forgets it. */
    private readonly forget: () => void,
  ) {
    this.threads = Array.from({ length: threads }, () => ({
      generation: 0,
      hosted: false,
      active: 0,
      jobs: [],
      verdicts: [],
      begun: new Map(),
      unhosted: undefined,
    }));
  }

  get name(): string {
    return this.spec.group;
  }

  /** Thread `index`'s share of the concurrency, as even as it goes. */
  share(index: number): number {
    const { concurrency } = this.spec;
    const n = this.threads.length;
    return Math.floor(concurrency / n) + (index < concurrency % n ? 1 : 0);
  }

  hosts(index: number): boolean {
    return this.threads[index]?.hosted ?? false;
  }

  /** Thread `index` (new, or a replacement) is there: it claims for the group from now on. */
  attach(index: number): void {
    const thread = this.threads[index];
    const concurrency = this.share(index);
    if (!thread || this.stopping || concurrency === 0) return;
    thread.hosted = true;
    this.send(index, {
      type: "host",
      spec: {
        group: this.spec.group,
        redisUrl: this.spec.redisUrl,
        redisAccess: this.spec.redisAccess,
        queue: this.spec.queue,
        consumer: `${this.spec.consumer}/t${index}`,
        priorities: this.spec.priorities,
        concurrency,
        leaseMs: this.spec.leaseMs,
        timeoutsMs: this.spec.timeoutsMs,
        abortGraceMs: this.spec.abortGraceMs,
        gated: this.spec.gated,
      },
    });
  }

  /** Thread `index` died; its jobs wait in Redis for the reclaimer. */
  detach(index: number): void {
    const thread = this.threads[index];
    if (!thread) return;
    const { active, begun } = thread;
    Object.assign(thread, {
      generation: thread.generation + 1,
      hosted: false,
      active: 0,
      jobs: [],
      verdicts: [],
      begun: new Map(),
    });
    if (begun.size > 0) this.lose([...begun.values()]);
    thread.unhosted?.(active);
  }

  hear(index: number, message: GroupMessage): void {
    const thread = this.threads[index];
    if (!thread) return;
    switch (message.type) {
      case "events":
        // One at a time: a listener that throws on one must not lose the others.
        for (const event of message.events) heard(`a ${event.type} event`, () => this.listener.event(event));
        return;
      case "completed":
        return heard("completions", () => this.listener.completed(message.seconds));
      case "gate": {
        const { generation } = thread;
        for (const request of message.requests) {
          const key = attemptKey(request.job);
          if (request.step === "start") thread.begun.set(key, request.job);
          else thread.begun.delete(key);
          Promise.resolve()
            .then(() => this.listener.gate(request))
            .catch((error: unknown): GateVerdict => ({
              type: "fail",
              kind: "transient",
              message: describeFailure(error),
            }))
            .then((verdict) => {
              const started = request.step === "start" && verdict.type === "run";
              // Tickets are numbered per thread: a dead thread's answer would find its
              // replacement's job of the same number. A start let through after the thread's
              // death (the ledger answered late) is lost as the others were.
              if (thread.generation !== generation) {
                if (started) this.lose([request.job]);
                return;
              }
              if (request.step === "start" && !started) thread.begun.delete(key);
              this.answer(index, thread, request.ticket, verdict);
            });
        }
        return;
      }
      case "status":
        thread.active = message.active;
        thread.jobs = message.jobs;
        return;
      case "job-progress":
        return heard("progress", () => this.listener.progress(message.job, message.progress));
      case "job-log":
        return heard("a log line", () => this.listener.log(message.job, message.level, message.message));
      case "unhosted":
        thread.hosted = false;
        thread.unhosted?.(message.abandoned);
        return;
      case "host-failed":
        thread.hosted = false;
        // A stop waiting on this thread has nothing to wait for.
        thread.unhosted?.(0);
        this.fail(`worker thread ${index} cannot claim for group ${message.group}: ${message.reason}`);
    }
  }

  private lose(jobs: readonly HostedJob[]) {
    heard("lost jobs", () => this.listener.lost(jobs, THREAD_DIED));
  }

  get active(): number {
    return this.threads.reduce((n, t) => n + t.active, 0);
  }

  get runningIds(): string[] {
    return this.threads.flatMap((t) => t.jobs);
  }

  /** Sent to every thread of the group: only the one running the attempt has it. */
  cancelRunning(id: string, attempt: number): boolean {
    this.threads.forEach((thread, index) => {
      if (thread.hosted) this.send(index, { type: "cancel", id, attempt });
    });
    return this.runningIds.includes(id);
  }

  /**
   * Every thread stops claiming at once and drains (see Worker.stop); resolves with the jobs
   * abandoned in all of them.
   */
  stop(options: { timeoutMs?: number } = {}): Promise<{ abandoned: number }> {
    this.stopping ??= (async () => {
      const timeoutMs = options.timeoutMs ?? 30_000;
      const counts = await Promise.all(
        this.threads.map((thread, index) => {
          if (!thread.hosted) return 0;
          return new Promise<number>((resolve) => {
            let last: NodeJS.Timeout | undefined;
            // Ended, so that it claims for the group no longer: `detach` then answers for it. One
            // that cannot be found to end (it never said it was ready) is not waited on for ever.
            const slack = setTimeout(() => {
              this.end(index, `worker thread did not stop claiming for group ${this.spec.group}`);
              last = setTimeout(() => thread.unhosted?.(thread.active), UNHOST_SLACK_MS);
            }, timeoutMs + UNHOST_SLACK_MS);
            thread.unhosted = (abandoned) => {
              clearTimeout(slack);
              clearTimeout(last);
              thread.unhosted = undefined;
              resolve(abandoned);
            };
            this.send(index, { type: "unhost", group: this.spec.group, timeoutMs });
          });
        }),
      );
      this.forget();
      return { abandoned: counts.reduce((n, c) => n + c, 0) };
    })();
    return this.stopping;
  }

  /** Verdicts go back to their thread once per tick. */
  private answer(index: number, thread: ThreadShare, ticket: number, verdict: GateVerdict) {
    if (thread.verdicts.push({ ticket, verdict }) > 1) return;
    setImmediate(() => {
      const verdicts = thread.verdicts;
      thread.verdicts = [];
      if (verdicts.length > 0) this.send(index, { type: "verdicts", verdicts });
    });
  }
}
