import type { Figures, LatencyLoad } from "../harness.js";
import type { RedisClient } from "../../src/redis/connection.js";

export type SystemName = "ratatoskr" | "bullmq";

/** The private Redis every run uses, and a connection of the harness's own (INFO, FLUSHALL). */
export interface Target {
  readonly url: string;
  readonly port: number;
  readonly admin: RedisClient;
}

/**
 * One job system under test. Each method is one run of a case on an empty Redis (the harness
 * FLUSHALLs before it): it sets up, measures, checks that every job ended as it should (throws
 * otherwise) and closes everything it opened. The figure names are shared by both systems.
 */
export interface System {
  readonly name: SystemName;
  /** `jobsPerSecond`: N single enqueues, IN_FLIGHT at a time. */
  enqueueSingle(jobs: number): Promise<Figures>;
  /** `jobsPerSecond`: N enqueues in calls of BULK_CHUNK, one call at a time. */
  enqueueBulk(jobs: number): Promise<Figures>;
  /**
   * Drain figures (see drainFigures) of N pre-queued jobs and a main-thread no-op handler;
   * `queued`, if given, runs once they are queued, before the worker starts.
   */
  drainMain(
    jobs: number,
    concurrency: number,
    priorities: "single" | "mixed",
    queued?: () => Promise<void>,
  ): Promise<Figures>;
  /**
   * Drain figures of N pre-queued jobs run in worker threads. `claims`, for ours: the main
   * thread claims and sends each job to a thread (`main`, the default), or one worker thread
   * claims for itself at the whole concurrency (`thread`: RT_CLAIM_IN=threads, RT_POOL_THREADS=1).
   * BullMQ's sandbox has one way.
   */
  drainThreads(jobs: number, concurrency: number, claims?: "main" | "thread"): Promise<Figures>;
  /** `start…`/`done…` percentiles of an open-loop load, its warm-up left out. */
  latency(load: LatencyLoad): Promise<Figures>;
  /** `waitingBytesPerJob` and `completedBytesPerJob` of Redis used_memory. */
  memory(jobs: number): Promise<Figures>;
  /** `recoverySeconds`: from SIGKILL of a worker holding `jobs` jobs to all of them restarted here. */
  recovery(jobs: number, leaseMs: number): Promise<Figures>;
}
