import type { EventLoopUtilization } from "node:perf_hooks";
import type { Worker } from "node:worker_threads";

/** How often a thread's busy time is read, at most (when jobs are being sent). */
export const SAMPLE_MS = 20;

/**
 * How much of a thread's time its jobs took lately: the time its event loop was busy, read off
 * the thread from this side (no message), over the jobs that ended meanwhile. The pool packs
 * short jobs onto few threads with it (`JobPool.laneFor`).
 */
export class ThreadCost {
  private last: EventLoopUtilization | undefined;
  private ended = 0;
  /** Milliseconds of the thread's time a job took in the last window that said; undefined until one did. */
  perJobMs: number | undefined;

  jobEnded(): void {
    this.ended++;
  }

  sample(thread: Worker): void {
    const now = thread.performance.eventLoopUtilization();
    const last = this.last;
    this.last = now;
    if (!last) return;
    const busyMs = now.active - last.active;
    const ended = this.ended;
    this.ended = 0;
    // A window with no job ended and the thread idle says nothing (nor does one read off a
    // thread that has just exited, whose reading is zero); busy with none ended, its jobs hold
    // it (a long synchronous stretch): as costly as that window so far. The last window alone
    // counts, not an average: a window that took in the thread's start (its registry loading)
    // must not keep it from packing for long after.
    if (busyMs < 0 || (ended === 0 && busyMs < SAMPLE_MS / 2)) return;
    this.perJobMs = busyMs / Math.max(ended, 1);
  }
}
