import { createServer, type Server } from "node:http";
import { propagation, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { PRIORITIES } from "../../src/domain/priority.js";
import { User } from "../../src/db/entities.js";
import { type RuntimeHandle, start } from "../../src/runtime.js";
import { hashToken, newApiToken } from "../../src/security/tokens.js";
import { freePort } from "../../src/redis/private-server.js";
import { type LedgerDb, openLedgerDb, seedUser } from "../support/ledger.js";
import { supervisors } from "../support/processes.js";
import { eventually, makeQueue } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";
import { testConfig, testJob } from "../support/runtime.js";

const LEDGER_JOBS = new URL("../support/ledger-jobs.ts", import.meta.url).href;

/** Runs `body` with spans kept in memory as the global tracer, and takes the tracer away after. */
const withTracing = async (body: (exporter: InMemorySpanExporter) => Promise<void>) => {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  trace.setGlobalTracerProvider(provider);
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  try {
    await body(exporter);
  } finally {
    trace.disable();
    propagation.disable();
  }
};

/**
 * What an operator follows a task by: its trace (enqueue, claim, run, complete, across Redis and
 * processes) and its log lines (the request id and the task id on every one, from the HTTP
 * request through the dispatcher into the worker thread).
 */
describe("telemetry", () => {
  const redis = useRedis();
  const processes = supervisors();
  let runtime: RuntimeHandle | undefined;
  let db: LedgerDb | undefined;
  let collector: Server | undefined;
  afterEach(async () => {
    await runtime?.stop({ graceful: false });
    runtime = undefined;
    await processes.killAll();
    collector?.close();
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  it.each(["main", "threads"] as const)(
    "traces one task: enqueue, then claim with run and complete under it, one trace, the task id on each (claims in %s)",
    async (claimIn) => {
      await withTracing(async (exporter) => {
        runtime = await start({
          config: testConfig(redis.server.url, { RT_CLAIM_IN: claimIn }),
          groups: [{ name: "all", queues: PRIORITIES, concurrency: 2 }],
        });
        const job = testJob("sleep", { ms: 50 });
        await run(runtime.queue.enqueue(job));
        await eventually(
          async () => (await run(runtime!.queue.getJob(job.id)))?.state === "completed",
          15_000,
          "the job",
        );
        await eventually(
          () => exporter.getFinishedSpans().some((s) => s.name === "ratatoskr claim"),
          5_000,
          "the claim span to end",
        );
        const spans = exporter.getFinishedSpans();
        const byName = new Map(spans.map((s) => [s.name, s]));
        const [enqueue, claim, runSpan, complete] = [
          "ratatoskr enqueue",
          "ratatoskr claim",
          "ratatoskr run",
          "ratatoskr complete",
        ].map((name) => {
          const span = byName.get(name);
          if (!span) throw new Error(`no ${name} span among ${spans.map((s) => s.name).join(", ")}`);
          return span;
        });
        const traceId = enqueue!.spanContext().traceId;
        for (const span of [enqueue, claim, runSpan, complete]) {
          expect(span!.spanContext().traceId).toBe(traceId);
          expect(span!.attributes["ratatoskr.task_id"]).toBe(job.id);
        }
        expect(enqueue!.kind).toBe(SpanKind.PRODUCER);
        expect(claim!.kind).toBe(SpanKind.CONSUMER);
        expect(claim!.parentSpanContext?.spanId).toBe(enqueue!.spanContext().spanId);
        expect(runSpan!.parentSpanContext?.spanId).toBe(claim!.spanContext().spanId);
        expect(complete!.parentSpanContext?.spanId).toBe(claim!.spanContext().spanId);
        expect(claim!.attributes).toMatchObject({ "ratatoskr.attempt": 1, "ratatoskr.priority": "normal" });
        // The run lasted the job's 50 ms sleep, inside its claim.
        const ms = (t: [number, number]) => t[0] * 1000 + t[1] / 1e6;
        expect(ms(runSpan!.endTime) - ms(runSpan!.startTime)).toBeGreaterThanOrEqual(45);
        // The queue's answer comes after the run (a millisecond of slack: two clocks are involved).
        expect(ms(complete!.startTime)).toBeGreaterThanOrEqual(ms(runSpan!.endTime) - 1);
      });
    },
  );

  it("ends the spans of a job whose claiming thread died, failed, with why (claims in threads)", async () => {
    await withTracing(async (exporter) => {
      runtime = await start({
        config: testConfig(redis.server.url, { RT_CLAIM_IN: "threads", RT_POOL_THREADS: "1" }),
        groups: [{ name: "all", queues: PRIORITIES, concurrency: 2 }],
      });
      // Its first run ends its thread (process.exit in the thread); nothing answers for it there.
      const job = testJob("exit", {});
      await run(runtime.queue.enqueue(job));
      const ended = (name: string) =>
        exporter
          .getFinishedSpans()
          .find((s) => s.name === name && s.attributes["ratatoskr.task_id"] === job.id);
      await eventually(() => ended("ratatoskr claim") !== undefined, 15_000, "the claim span to end");
      for (const name of ["ratatoskr claim", "ratatoskr run"]) {
        expect(ended(name)?.status).toEqual({
          code: SpanStatusCode.ERROR,
          message: "its worker thread died",
        });
      }
    });
  });

  it("exports traces over OTLP/HTTP when OTEL_TRACES_EXPORTER=otlp, from a supervisor process", async () => {
    const port = await freePort();
    const received: Array<{ type: string; body: string }> = [];
    collector = createServer((request, response) => {
      let body = "";
      request.on("data", (chunk: Buffer) => (body += chunk.toString()));
      request.on("end", () => {
        received.push({ type: `${request.url} ${request.headers["content-type"]}`, body });
        response.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((resolve) => collector!.listen(port, "127.0.0.1", resolve));
    db ??= await openLedgerDb("sqlite");
    processes.spawnSupervisor({
      REDIS_URL: redis.server.url,
      DATABASE_URL: db.url,
      OTEL_TRACES_EXPORTER: "otlp",
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
      OTEL_SERVICE_NAME: "rt-telemetry-test",
      OTEL_BSP_SCHEDULE_DELAY: "100",
    });
    const queue = await makeQueue(redis);
    const job = testJob("echo", { text: "traced" });
    await run(queue.enqueue(job));
    await eventually(
      () => received.some((r) => r.body.includes("ratatoskr complete")),
      30_000,
      "an OTLP export with the task's spans",
    );
    const exported = received.map((r) => r.body).join("\n");
    expect(received[0]?.type).toBe("/v1/traces application/json");
    for (const name of ["ratatoskr claim", "ratatoskr run", "ratatoskr complete"])
      expect(exported).toContain(name);
    expect(exported).toContain("rt-telemetry-test");
    expect(exported).toContain(job.id);
  }, 60_000);

  it.each(["main", "threads"] as const)(
    "carries the request id and the task id on every log line, through HTTP, the dispatcher and the worker thread (claims in %s)",
    async (claimIn) => {
      db ??= await openLedgerDb("sqlite");
      const serve = await processes.spawnServe({
        RT_CLAIM_IN: claimIn,
        REDIS_URL: redis.server.url,
        DATABASE_URL: db.url,
        RT_JOBS_MODULE: LEDGER_JOBS,
        WORKER_MODE: "integrated",
        RT_LOG_FORMAT: "json",
        RT_LOG_LEVEL: "debug",
      });
      const { userId } = await seedUser(db.orm);
      const token = newApiToken();
      await db.orm.em.fork().nativeUpdate(User, { id: userId }, { apiTokenHash: hashToken(token) });
      const response = await fetch(`${serve.base}/caption/start`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${token}`,
          "content-type": "application/json",
          "x-request-id": "req-telemetry-42",
        },
        body: JSON.stringify({}),
      });
      expect(response.status).toBe(202);
      const taskId = ((await response.json()) as { data: { task_id: string } }).data.task_id;
      const lines = () =>
        serve
          .output()
          .split("\n")
          .filter((l) => l.startsWith("{"))
          .map((l) => JSON.parse(l) as { message: string; annotations: Record<string, unknown> });
      const about = () => lines().filter((l) => l.annotations.task_id === taskId);
      await eventually(
        () => about().some((l) => String(l.message).includes(`job ${taskId} completed`)),
        30_000,
        "the task's log lines",
      );
      const messages = about().map((l) => String(l.message));
      expect(messages).toEqual(
        expect.arrayContaining([
          "POST /caption/start 202",
          expect.stringMatching(
            new RegExp(`^job ${taskId} attempt 1 started, \\d+ ms after it was enqueued$`),
          ),
          `walking the steps of ${taskId}`,
          `job ${taskId} completed`,
        ]),
      );
      for (const line of about()) expect(line.annotations.request_id).toBe("req-telemetry-42");
      const own = about().find((l) => l.message === `walking the steps of ${taskId}`);
      expect(own?.annotations).toMatchObject({ source: "job", attempt: 1 });
    },
    60_000,
  );
});
