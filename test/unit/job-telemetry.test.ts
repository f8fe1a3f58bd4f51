import { trace } from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AttemptSpans } from "../../actors/job-telemetry.js";
import type { ClaimedJob } from "../../src/queue/queue.js";
import { tracingOn } from "../../src/tracing.js";

const job: ClaimedJob = {
  id: "t1",
  attempt: 1,
  runAttempt: 1,
  priority: "normal",
  maxAttempts: 3,
  data: "{}",
  userId: undefined,
  createdAt: Date.now(),
  meta: {},
  entry: "1-0",
};

/** The dispatcher's spans cost nothing where no tracer provider is installed, and record where one is. */
describe("attempt spans", () => {
  beforeEach(() => trace.disable());
  afterEach(() => trace.disable());

  it("with no tracer provider, makes no span and keeps nothing", () => {
    expect(tracingOn()).toBe(false);
    const spans = new AttemptSpans();
    const run = spans.begin(job);
    expect(run.isRecording()).toBe(false);
    spans.ran(job);
    spans.settle({ type: "completed", job, result: "" });
    run.end();
  });

  it("with one installed (by this process or the application around it), records claim, run and complete", () => {
    const exporter = new InMemorySpanExporter();
    trace.setGlobalTracerProvider(
      new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
    );
    expect(tracingOn()).toBe(true);
    const spans = new AttemptSpans();
    const run = spans.begin(job);
    expect(run.isRecording()).toBe(true);
    run.end();
    spans.ran(job);
    spans.settle({ type: "completed", job, result: "" });
    expect(exporter.getFinishedSpans().map((s) => s.name)).toEqual([
      "ratatoskr run",
      "ratatoskr complete",
      "ratatoskr claim",
    ]);
  });
});
