import { availableParallelism } from "node:os";
import { performance } from "node:perf_hooks";
import { MessageChannel, type MessagePort, type Worker } from "node:worker_threads";
import { Piscina } from "piscina";
import type { JobInfo, LogLevel, Progress } from "../jobs/definition.js";
import { JobFailure } from "../queue/failures.js";
import { type GroupMessage, type GroupSpec, HostedGroup, type HostListener } from "./hosted-group.js";
import {
  describeTimeout,
  type FromThread,
  type JobRequest,
  type ServeTask,
  type ThreadOutcome,
  type ToThread,
} from "./protocol.js";
import { SAMPLE_MS, ThreadCost } from "./thread-cost.js";

export interface PoolOptions {
  /** URL (file:) of the job registry module the threads load. */
  readonly registry: string;
  /**
   * URL of a bundle with the thread's code and the registry in it (`bundleThreadCode`), which
   * thread-entry.js imports; without one, each thread compiles the sources through tsx.
   */
  readonly bundle?: string;
  /** Worker threads; default: one per CPU. */
  readonly threads?: number;
  /** Old-generation heap cap per thread, in MB; a thread over it dies and is replaced. */
  readonly heapMb?: number;
  /** After an abort, how long a job may take to wind down before its thread is terminated. */
  readonly abortGraceMs?: number;
  /** Worker groups will claim in the threads (`host`): each loads that code as it starts. */
  readonly hosting?: boolean;
  /**
   * A thread takes more jobs while those it has would keep it busy this long at most, in ms;
   * past it jobs go to the thread with the fewest running. Default 2.
   */
  readonly packMs?: number;
  /** The threads' environment (they read their configuration from it); default: this process's. */
  readonly env?: Record<string, string>;
}

/**
 * A job's abort as the pool listens to it: the engine worker's JobContext is one (it makes no
 * AbortController for the job), and an AbortSignal is taken as it is.
 */
export interface Abortable {
  onAbort(listener: (reason: unknown) => void): () => void;
}

const unheard = () => {};

const listenTo = (abort: AbortSignal | Abortable, listener: (reason: unknown) => void): (() => void) => {
  if ("onAbort" in abort) return abort.onAbort(listener);
  if (abort.aborted) {
    listener(abort.reason);
    return unheard;
  }
  const heard = () => listener(abort.reason);
  abort.addEventListener("abort", heard, { once: true });
  return () => abort.removeEventListener("abort", heard);
};

export interface RunOptions {
  /** The job's abort: past a grace time, a job that ignores it has its thread terminated. */
  readonly signal: AbortSignal | Abortable;
  /**
   * The job is aborted after this long and fails as retriable ("timed out after N s"). Here
   * rather than as a second signal: a timer controller and AbortSignal.any per job cost more
   * than the job's own message to its thread.
   */
  readonly timeoutMs?: number | undefined;
  /** Called as a method of these options (a class's methods serve, with no closure per job). */
  readonly onProgress?: (progress: Progress) => void;
  /** A line the job logged in its thread, for the process's one logger; also called as a method. */
  readonly onLog?: (level: LogLevel, message: string) => void;
}

interface Pending {
  readonly resolve: (result: string | undefined) => void;
  readonly reject: (error: JobFailure) => void;
  readonly options: RunOptions;
  /** Stops listening to the job's abort. */
  unlisten: () => void;
  /** The job was aborted from outside (not by its own timeout). */
  aborted: boolean;
  graceTimer?: NodeJS.Timeout;
  /** The job's `timeoutMs`, and when (`performance.now()`) it runs out. */
  timeoutMs?: number;
  deadline?: number;
  /** Set when the job's time ran out: its failure is the timeout, whatever the thread says. */
  timedOut?: string;
}

const TSX_PRELOAD = /^(--(?:require|import|loader|experimental-loader))(?:=(.*))?$/;
const isTsx = (module: string) => module === "tsx" || /[\\/]tsx[\\/]/.test(module);

/**
 * A thread that loads a bundle needs no TypeScript loader, though it would inherit this
 * process's (`tsx` registers itself with `--import`): one per thread, each with a loader thread
 * of its own, is most of what the bundle saves. Other preloads are kept. A job's stack trace
 * names its source lines through the bundle's map without Node's source maps
 * (bundle-stacks.ts), which would parse the map as the thread loads.
 */
export const bundleExecArgv = (execArgv: readonly string[]): string[] => {
  const kept: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const match = TSX_PRELOAD.exec(execArgv[i]!);
    if (!match) kept.push(execArgv[i]!);
    else if (match[2] !== undefined) {
      if (!isTsx(match[2])) kept.push(execArgv[i]!);
    } else {
      const module = execArgv[++i] ?? "";
      if (!isTsx(module)) kept.push(execArgv[i - 1]!, module);
    }
  }
  return kept;
};

/**
 * The options a bundle's threads start with: undefined (Node's default, the process's own) when
 * there is no tsx preload to leave out. A list given to a thread is parsed again, and Node
 * refuses V8's options and the process's own there (`--max-old-space-size`, `--expose-gc`,
 * `--title`): a process started with one could not start its pool. Those apply to every thread
 * already, so they need not be passed on.
 */
export const threadExecArgv = (execArgv: readonly string[]): string[] | undefined => {
  const kept = bundleExecArgv(execArgv);
  return kept.length === execArgv.length ? undefined : kept;
};

type PiscinaOptions = NonNullable<ConstructorParameters<typeof Piscina>[0]>;

const REFUSED = /^Initiated Worker with invalid execArgv flags: (.+)$/;

/**
 * `execArgv` without the options a thread refused: each named (as written) in the error, and
 * the value that follows one given apart from its name. Undefined when `error` is no such refusal
 * or names nothing in the list.
 */
export const withoutRefused = (execArgv: readonly string[], error: unknown): string[] | undefined => {
  if ((error as { code?: unknown } | null)?.code !== "ERR_WORKER_INVALID_EXEC_ARGV") return undefined;
  const named = REFUSED.exec((error as Error).message)?.[1]?.split(", ");
  if (!named?.some((option) => execArgv.includes(option))) return undefined;
  const refused = new Set(named);
  const kept: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const option = execArgv[i]!;
    if (!refused.has(option)) kept.push(option);
    else if (!option.includes("=") && execArgv[i + 1] !== undefined && !execArgv[i + 1]!.startsWith("-")) i++;
  }
  return kept;
};

/**
 * Piscina starts its threads as it is made, and a thread refusing its options throws there,
 * before any thread runs: what it names is left out and the pool made again. Node names only
 * the refused options it came to before a value it took for the script, hence the loop.
 */
const startPiscina = (options: PiscinaOptions, threadArgv: string[] | undefined): Piscina => {
  for (let execArgv = threadArgv; ;) {
    try {
      return new Piscina({ ...options, ...(execArgv ? { execArgv } : {}) });
    } catch (error) {
      const kept = execArgv && withoutRefused(execArgv, error);
      if (!kept) throw error;
      execArgv = kept;
    }
  }
};

/** One worker thread as this side sees it: its port, the jobs it runs, those not yet sent. */
interface Lane {
  readonly index: number;
  readonly port: MessagePort;
  readonly pending: Map<number, Pending>;
  outbox: JobRequest[];
  threadId: number | undefined;
  /** The thread, once ready: its busy time is read off it (`ThreadCost`). */
  thread: Worker | undefined;
  readonly cost: ThreadCost;
  /** The job whose ignored abort got this thread terminated. */
  terminatedFor: number | undefined;
  /** When the thread last said anything (a thread that hosts a group speaks every STATUS_MS). */
  lastHeard: number;
}

/** Node's longest timer delay (a signed 32-bit count of ms). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** How often the pool looks for hosting threads gone silent. */
const WATCH_MS = 1_000;

/**
 * A thread takes more jobs while those it has would keep it busy this long at most: a job waits
 * behind that little, where sending it to a sleeping thread wakes one more (a message that wakes
 * a thread cost the sender 30-90 µs on the 2-core machine of bench/README.md).
 */
const DEFAULT_PACK_MS = 2;

/**
 * One Piscina pool per process. Each worker thread runs one long Piscina task that serves jobs
 * sent over its own port: the jobs this process starts in one tick go to a thread in one
 * message, and their outcomes come back batched, where a message channel and a Piscina task per
 * job cost more than a short job itself. Short jobs are packed onto few threads, longer ones go
 * to the thread with the fewest running (`laneFor`).
 * Abort is cooperative first; a thread that ignores it past the grace time is terminated, and
 * Piscina replaces it. A thread that dies fails its jobs as retriable.
 */
export class JobPool {
  private readonly piscina: Piscina;
  readonly abortGraceMs: number;
  private readonly packMs: number;
  private readonly lanes: Lane[];
  private seq = 0;
  private closing = false;
  /** Worker groups the threads claim for (RT_CLAIM_IN=threads), by name. */
  private readonly hosted = new Map<string, { group: HostedGroup; silentMs: number }>();
  private watchdog: NodeJS.Timeout | undefined;
  private sampledAt = 0;
  /**
   * One timer for every timed job, armed for the earliest deadline (`expire`): a timer per job
   * cost an allocation, a timer-list insert and a removal for each, where most jobs end long
   * before their time.
   */
  private deadlineTimer: NodeJS.Timeout | undefined;
  private deadlineAt = Number.POSITIVE_INFINITY;

  constructor(private readonly options: PoolOptions) {
    const threads = options.threads ?? availableParallelism();
    this.abortGraceMs = options.abortGraceMs ?? 5_000;
    this.packMs = options.packMs ?? DEFAULT_PACK_MS;
    this.piscina = startPiscina(
      {
        filename: new URL("./thread-entry.js", import.meta.url).href,
        minThreads: threads,
        maxThreads: threads,
        // Handlers are async (downloads, model calls): a thread must keep its event loop running
        // between messages, which Piscina's default synchronous Atomics wait would freeze.
        atomics: "async",
        // One serve task per thread: it runs that thread's jobs for as long as the pool lives.
        concurrentTasksPerWorker: 1,
        resourceLimits: { maxOldGenerationSizeMb: options.heapMb ?? 512 },
        ...(options.bundle ? { workerData: { ratatoskrBundle: options.bundle } } : {}),
        ...(options.env ? { env: options.env } : {}),
      },
      options.bundle ? threadExecArgv(process.execArgv) : undefined,
    );
    // A thread that dies with no job running (a late rejection of a finished job, memory) is
    // replaced by Piscina; unheard, its 'error' event would bring the whole process down.
    this.piscina.on("error", (error: unknown) => {
      console.error(
        `worker thread died between jobs: ${error instanceof Error ? error.message : String(error)}`,
      );
    });
    this.lanes = Array.from({ length: threads }, (_, index) => this.openLane(index));
  }

  get threads(): number {
    return this.piscina.threads.length;
  }

  run(job: JobInfo, data: string, options: RunOptions): Promise<string | undefined> {
    if (this.closing) return Promise.reject(new JobFailure("transient", "the worker pool is closing"));
    const now = performance.now();
    const lane = this.laneFor(now);
    const seq = ++this.seq;
    // No named closure here: each would cost a property definition per job (keepNames, see
    // SentJob in actors/dispatcher.ts).
    return new Promise((resolve, reject) => {
      const pending: Pending = { resolve, reject, options, unlisten: unheard, aborted: false };
      const timeoutMs = options.timeoutMs;
      if (timeoutMs !== undefined) {
        pending.timeoutMs = timeoutMs;
        pending.deadline = now + timeoutMs;
        if (pending.deadline < this.deadlineAt) this.armDeadline(pending.deadline);
      }
      lane.pending.set(seq, pending);
      if (lane.outbox.push({ seq, job, data }) === 1) queueMicrotask(() => this.flush(lane));
      pending.unlisten = listenTo(options.signal, (reason) => {
        pending.aborted = true;
        this.abort(lane, seq, pending, reason instanceof Error ? reason.message : "aborted");
      });
    });
  }

  private armDeadline(at: number) {
    clearTimeout(this.deadlineTimer);
    this.deadlineAt = at;
    // Unref'd: it must not keep a process alive after its jobs ended (it is not cleared then).
    // At most Node's longest delay: past it a timer fires after 1 ms, and would re-arm every ms.
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, at - performance.now()));
    this.deadlineTimer = setTimeout(() => this.expire(), delay).unref();
  }

  /** Aborts every job whose time ran out, and arms the timer for the next deadline, if any. */
  private expire() {
    this.deadlineTimer = undefined;
    this.deadlineAt = Number.POSITIVE_INFINITY;
    const now = performance.now();
    let next = Number.POSITIVE_INFINITY;
    for (const lane of this.lanes) {
      for (const [seq, pending] of lane.pending) {
        if (pending.deadline === undefined || pending.timedOut !== undefined) continue;
        if (pending.deadline <= now) {
          pending.timedOut = describeTimeout(pending.timeoutMs!);
          this.abort(lane, seq, pending, pending.timedOut);
        } else if (pending.deadline < next) next = pending.deadline;
      }
    }
    if (next < Number.POSITIVE_INFINITY) this.armDeadline(next);
  }

  /** Asks the job's thread to stop it; past the grace time, the thread is terminated. */
  private abort(lane: Lane, seq: number, pending: Pending, reason: string) {
    if (pending.graceTimer) return;
    // The job must reach the thread before its abort does.
    this.flush(lane);
    lane.port.postMessage({ type: "abort", seq, reason } satisfies ToThread);
    pending.graceTimer = setTimeout(() => this.terminate(lane, seq), this.abortGraceMs);
  }

  /**
   * The first thread, in order, that its jobs would keep busy for at most `packMs` more, else the
   * one with the fewest running. Jobs that take their thread little (no-op, or waiting on the
   * network) thus go to one thread, which stays awake, instead of waking each thread for a few
   * of them; jobs that hold their thread spread as before. Until a thread's cost is measured,
   * nothing is packed onto it.
   */
  private laneFor(now: number): Lane {
    if (now - this.sampledAt >= SAMPLE_MS) {
      this.sampledAt = now;
      for (const lane of this.lanes) if (lane.thread) lane.cost.sample(lane.thread);
    }
    for (const lane of this.lanes) {
      const perJobMs = lane.cost.perJobMs;
      if (perJobMs !== undefined && lane.pending.size * perJobMs <= this.packMs) return lane;
    }
    let lane = this.lanes[0]!;
    for (const other of this.lanes) if (other.pending.size < lane.pending.size) lane = other;
    return lane;
  }

  /**
   * The threads claim for this worker group from now on, each at its share of the concurrency,
   * instead of running jobs the main thread claimed and sent: no job crosses between threads.
   * A hosting thread silent for `silentMs` (its event loop blocked) is ended and replaced.
   */
  host(spec: GroupSpec, listener: HostListener, options: { silentMs: number }): HostedGroup {
    if (this.closing) throw new Error("the worker pool is closing");
    if (this.hosted.has(spec.group)) throw new Error(`worker group ${spec.group} is claimed for already`);
    const group = new HostedGroup(
      spec,
      listener,
      this.lanes.length,
      (index, message) => this.lanes[index]?.port.postMessage(message),
      (index, why) => {
        const lane = this.lanes[index];
        if (lane) this.end(lane, why);
      },
      () => {
        if (this.hosted.get(spec.group)?.group === group) this.hosted.delete(spec.group);
      },
    );
    this.hosted.set(spec.group, { group, silentMs: options.silentMs });
    const now = Date.now();
    for (const lane of this.lanes) {
      lane.lastHeard = Math.max(lane.lastHeard, now);
      group.attach(lane.index);
    }
    this.watchdog ??= setInterval(() => this.watch(), WATCH_MS).unref();
    return group;
  }

  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.watchdog);
    clearTimeout(this.deadlineTimer);
    for (const lane of this.lanes) lane.port.postMessage({ type: "close" } satisfies ToThread);
    await this.piscina.close({ force: true });
  }

  private openLane(index: number): Lane {
    const { port1, port2 } = new MessageChannel();
    const lane: Lane = {
      index,
      port: port1,
      pending: new Map(),
      outbox: [],
      threadId: undefined,
      thread: undefined,
      cost: new ThreadCost(),
      terminatedFor: undefined,
      lastHeard: Date.now(),
    };
    port1.on("message", (message: FromThread) => this.hear(lane, message));
    const task: ServeTask = {
      registry: this.options.registry,
      port: port2,
      ...(this.options.hosting ? { hosting: true } : {}),
    };
    this.piscina.run(task, { transferList: [port2] }).then(
      () => this.laneEnded(lane, undefined),
      (error: unknown) => this.laneEnded(lane, error),
    );
    return lane;
  }

  private flush(lane: Lane) {
    if (lane.outbox.length === 0) return;
    const jobs = lane.outbox;
    lane.outbox = [];
    lane.port.postMessage({ type: "run", jobs } satisfies ToThread);
  }

  private hear(lane: Lane, message: FromThread) {
    lane.lastHeard = Date.now();
    switch (message.type) {
      case "ready":
        lane.threadId = message.threadId;
        lane.thread = this.piscina.threads.find((t) => t.threadId === message.threadId);
        return;
      case "progress":
        return lane.pending.get(message.seq)?.options.onProgress?.(message.progress);
      case "log":
        return lane.pending.get(message.seq)?.options.onLog?.(message.level, message.message);
      case "outcomes":
        for (const { seq, outcome } of message.outcomes) this.settle(lane, seq, outcome);
        return;
      case "retire":
        return this.end(lane, `worker thread retired: ${message.reason}`);
      default:
        this.hosted.get(message.group)?.group.hear(lane.index, message as GroupMessage);
    }
  }

  /** Ends a hosting thread gone silent for longer than any of its groups allows. */
  private watch() {
    const now = Date.now();
    for (const lane of this.lanes) {
      let silentMs = Number.POSITIVE_INFINITY;
      for (const { group, silentMs: limit } of this.hosted.values())
        if (group.hosts(lane.index)) silentMs = Math.min(silentMs, limit);
      if (now - lane.lastHeard > silentMs) {
        this.end(
          lane,
          `worker thread silent for ${Math.round((now - lane.lastHeard) / 1000)} s, its event loop blocked`,
        );
      }
    }
  }

  /** Ends a thread whole; Piscina replaces it, and its lane opens again (`laneEnded`). */
  private end(lane: Lane, why: string) {
    const worker = this.piscina.threads.find((t) => t.threadId === lane.threadId);
    if (!worker) return;
    console.error(why);
    // Heard as new: the watchdog must not end it again while it goes.
    lane.lastHeard = Number.POSITIVE_INFINITY;
    void worker.terminate();
  }

  private settle(lane: Lane, seq: number, outcome: ThreadOutcome | JobFailure) {
    const pending = lane.pending.get(seq);
    if (!pending) return;
    lane.pending.delete(seq);
    lane.cost.jobEnded();
    clearTimeout(pending.graceTimer);
    pending.unlisten();
    // A timeout is the job's own failure and retriable, unless it was also aborted from outside.
    const ownTimeout = pending.timedOut !== undefined && !pending.aborted;
    if (ownTimeout && !(outcome instanceof JobFailure || outcome.ok)) {
      pending.reject(new JobFailure("transient", pending.timedOut!));
    } else if (outcome instanceof JobFailure) pending.reject(outcome);
    else if (outcome.ok) pending.resolve(outcome.result);
    else pending.reject(new JobFailure(outcome.kind, outcome.message));
  }

  /** Ends the thread of a job that ignored its abort; its other jobs die with it, retriable. */
  private terminate(lane: Lane, seq: number) {
    const worker = this.piscina.threads.find((t) => t.threadId === lane.threadId);
    if (!worker || !lane.pending.has(seq)) return;
    lane.terminatedFor = seq;
    void worker.terminate();
  }

  /** The thread's serve task ended: a close, or the thread died. Its jobs fail; a new lane opens. */
  private laneEnded(lane: Lane, error: unknown) {
    lane.port.close();
    const message = error instanceof Error ? error.message : "the worker thread stopped";
    const outOfMemory =
      error instanceof Error && "code" in error && error.code === "ERR_WORKER_OUT_OF_MEMORY";
    for (const seq of [...lane.pending.keys()]) {
      const failure =
        seq === lane.terminatedFor
          ? new JobFailure("transient", `did not stop within ${this.abortGraceMs} ms of being aborted`)
          : new JobFailure(outOfMemory ? "exhausted" : "transient", `worker thread died: ${message}`);
      this.settle(lane, seq, failure);
    }
    for (const { group } of this.hosted.values()) group.detach(lane.index);
    if (this.closing || this.lanes[lane.index] !== lane) return;
    const opened = this.openLane(lane.index);
    this.lanes[lane.index] = opened;
    for (const { group } of this.hosted.values()) group.attach(lane.index);
  }
}
