import type { ComparedCase, Metric } from "./case.js";

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

export const latencyCases: ComparedCase[] = [latency(500), latency(2000)];
