import { describe, expect, it } from "vitest";
import { JobMetrics } from "../../src/metrics/job-metrics.js";
import { CounterVec, family, HistogramVec } from "../../src/metrics/prometheus.js";

const sampleOf = (
  samples: ReadonlyArray<{ labels?: Record<string, string>; value: number; suffix?: string }>,
  suffix: string,
  labels: Record<string, string>,
) =>
  samples.find((s) => (s.suffix ?? "") === suffix && JSON.stringify(s.labels) === JSON.stringify(labels))
    ?.value;

describe("Prometheus counters and histograms", () => {
  it("counts per label set, through the vector or a held counter", () => {
    const counter = new CounterVec();
    counter.inc({ priority: "high" });
    const held = counter.at({ priority: "high" });
    held.inc();
    held.inc(3);
    counter.inc({ priority: "low" }, 2);
    expect(counter.samples()).toEqual([
      { labels: { priority: "high" }, value: 5 },
      { labels: { priority: "low" }, value: 2 },
    ]);
  });

  it("reports cumulative buckets, +Inf, sum and count, through the vector or a held histogram", () => {
    const histogram = new HistogramVec([0.1, 1, 10]);
    const labels = { priority: "normal" };
    for (const value of [0.05, 0.1, 0.5, 2, 2, 50]) histogram.observe(labels, value);
    const held = histogram.at(labels);
    held.observe(0.01);
    held.observe(20);
    const samples = histogram.samples();
    expect(sampleOf(samples, "_bucket", { ...labels, le: "0.1" })).toBe(3);
    expect(sampleOf(samples, "_bucket", { ...labels, le: "1" })).toBe(4);
    expect(sampleOf(samples, "_bucket", { ...labels, le: "10" })).toBe(6);
    expect(sampleOf(samples, "_bucket", { ...labels, le: "+Inf" })).toBe(8);
    expect(sampleOf(samples, "_count", labels)).toBe(8);
    expect(sampleOf(samples, "_sum", labels)).toBeCloseTo(74.66, 10);
    expect(family("d", "histogram", "h", samples).split("\n").slice(2, 6)).toEqual([
      'd_bucket{priority="normal",le="0.1"} 3',
      'd_bucket{priority="normal",le="1"} 4',
      'd_bucket{priority="normal",le="10"} 6',
      'd_bucket{priority="normal",le="+Inf"} 8',
    ]);
  });
});

describe("JobMetrics", () => {
  it("counts each ending by priority, outcome and backend, and run times of completed attempts", () => {
    const metrics = new JobMetrics();
    metrics.attemptEnded("high", "completed", "redis", 0.2);
    metrics.attemptsCompleted("high", "redis", [0.05, 3]);
    metrics.attemptsCompleted("high", "redis", []);
    metrics.attemptEnded("high", "failed", "redis", 7);
    metrics.attemptEnded("low", "completed", "database", 0.01);
    expect(metrics.ended.samples()).toEqual([
      { labels: { priority: "high", outcome: "completed", backend: "redis" }, value: 3 },
      { labels: { priority: "high", outcome: "failed", backend: "redis" }, value: 1 },
      { labels: { priority: "low", outcome: "completed", backend: "database" }, value: 1 },
    ]);
    const durations = metrics.durations.samples();
    // A failed attempt's time is not a run time.
    expect(sampleOf(durations, "_count", { priority: "high", backend: "redis" })).toBe(3);
    expect(sampleOf(durations, "_sum", { priority: "high", backend: "redis" })).toBeCloseTo(3.25, 10);
    expect(sampleOf(durations, "_bucket", { priority: "high", backend: "redis", le: "0.1" })).toBe(1);
    expect(sampleOf(durations, "_bucket", { priority: "high", backend: "redis", le: "0.5" })).toBe(2);
    expect(sampleOf(durations, "_bucket", { priority: "high", backend: "redis", le: "5" })).toBe(3);
    expect(sampleOf(durations, "_count", { priority: "low", backend: "database" })).toBe(1);
    // Attempts that only failed have no run times: no series of zeros for them.
    metrics.attemptEnded("urgent", "failed", "redis", 1);
    metrics.attemptEnded("urgent", "retried", "redis");
    expect(metrics.durations.samples().filter((s) => s.labels?.priority === "urgent")).toEqual([]);
  });
});
