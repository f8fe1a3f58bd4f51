import { roundTripsLatency } from "../round-trips.js";
import type { ComparedCase, Metric, ReferenceCase } from "./case.js";

const percentiles = (prefix: "start" | "done", what: string): Metric[] =>
  ([50, 95, 99] as const).map((p) => ({
    key: `${prefix}P${p}Ms`,
    label: `${what} p${p}`,
    unit: "ms",
    better: "lower",
  }));

const latency = (rate: number): ComparedCase => ({
  kind: "compared",
  name: `latency-${rate}`,
  what: `open-loop ${rate} enqueues/s after a warm-up, worker at concurrency 16: enqueue→start and enqueue→completion`,
  metrics: [...percentiles("start", "enqueue→start"), ...percentiles("done", "enqueue→completion")],
  ...(rate === 500 ? { goals: [{ kind: "vs-bullmq", metric: "doneP99Ms", atMost: 0.5 }] } : {}),
  run: (system, options) =>
    system.latency({ rate, seconds: options.latencySeconds, warmupSeconds: options.latencyWarmupSeconds }),
});

/**
 * latency-500's load on two bare round trips a job (a `PING`, then another), right after that
 * case: the tail this machine gives any queue on Redis before it does anything, beside ours'
 * (bench/PERFORMANCE.md, "The floor of any queue on Redis, measured"). Its p99 against BullMQ's in
 * latency-500 says where the goal's line falls on the day's machine.
 */
export const latencyFloorCase: ReferenceCase = {
  kind: "reference",
  name: "latency-floor-500",
  what: "latency-500's load on two bare round trips a job (PING, then PING), no queue: the floor, beside ours",
  unavailable: () => undefined,
  theirName: "two bare round trips",
  metrics: (["P50", "P99"] as const).map((p) => ({
    key: `done${p}Ms`,
    label: `enqueue→completion ${p.toLowerCase()} vs the bare round trips'`,
    unit: "ms",
    better: "lower" as const,
    ours: { case: "latency-500", key: `done${p}Ms` },
  })),
  run: (target, options) =>
    roundTripsLatency(target.url, {
      rate: 500,
      seconds: options.latencySeconds,
      warmupSeconds: options.latencyWarmupSeconds,
    }),
};

export const [latency500, latency2000] = [latency(500), latency(2000)];
