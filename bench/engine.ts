/**
 * Benchmark of the queue engine alone (Queue + Worker on Redis, no web server, no real work):
 * how fast jobs go in, how fast a worker drains them, and what a waiting job costs in Redis.
 * A measurement, never a test: nothing here asserts a speed. Usage and figures: bench/README.md.
 *
 *   npm run bench -- [--quick] [--jobs N] [--concurrency 1,16,100] [--priorities mixed|single]
 *                    [--redis-url URL]
 */
import { mkdir, writeFile } from "node:fs/promises";
import { cpus, platform, release } from "node:os";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { Effect } from "effect";
import { PRIORITIES, type Priority } from "../src/domain/priority.js";
import { QueueAdmin } from "../src/queue/admin.js";
import { Queue } from "../src/queue/queue.js";
import { Worker } from "../src/queue/worker.js";
import { connectRedis, type RedisClient } from "../src/redis/connection.js";
import { PrivateRedis } from "../src/redis/private-server.js";

/** Enqueues in flight at once: what a busy web server has outstanding, so auto-pipelining kicks in. */
const IN_FLIGHT = 16;
/** Roughly the size of a real caption envelope. */
const PAYLOAD = JSON.stringify({ kind: "caption", note: "x".repeat(170) }).padEnd(200, " ");
/** A drain that sees no completion for this long has lost jobs: give up instead of hanging. */
const STALL_MS = 30_000;

interface Options {
  readonly jobs: number;
  readonly concurrencies: number[];
  readonly priorities: "mixed" | "single";
  readonly redisUrl: string | undefined;
}

interface CycleResult {
  readonly concurrency: number;
  readonly jobs: number;
  readonly enqueue: { jobsPerSecond: number; p50Ms: number; p99Ms: number; maxMs: number };
  readonly memoryBytesPerJob: number;
  readonly drain: { seconds: number; jobsPerSecond: number };
  readonly verified: boolean;
}

const parseOptions = (): Options => {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      jobs: { type: "string" },
      concurrency: { type: "string" },
      priorities: { type: "string", default: "mixed" },
      "redis-url": { type: "string" },
    },
  });
  const jobs = Number(values.jobs ?? (values.quick ? 10_000 : 50_000));
  const concurrencies = (values.concurrency ?? (values.quick ? "16" : "16,100")).split(",").map(Number);
  if (!Number.isInteger(jobs) || jobs < 1) throw new Error(`--jobs must be a positive integer`);
  if (concurrencies.some((c) => !Number.isInteger(c) || c < 1)) {
    throw new Error("--concurrency must be a comma list of positive integers, e.g. 1,16,100");
  }
  if (values.priorities !== "mixed" && values.priorities !== "single") {
    throw new Error("--priorities must be mixed or single");
  }
  return { jobs, concurrencies, priorities: values.priorities, redisUrl: values["redis-url"] };
};

const infoField = async (redis: RedisClient, section: string, field: string): Promise<string> => {
  const info = await redis.info(section);
  const line = info.split("\r\n").find((l) => l.startsWith(`${field}:`));
  if (line === undefined) throw new Error(`INFO ${section} has no ${field}`);
  return line.slice(field.length + 1);
};

const usedMemory = async (redis: RedisClient) => Number(await infoField(redis, "memory", "used_memory"));

const percentile = (sorted: Float64Array, p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;

/** N enqueues, IN_FLIGHT at a time; each latency runs from the call to its resolution. */
const enqueueAll = async (queue: Queue, cycle: number, options: Options) => {
  const latencies = new Float64Array(options.jobs);
  let next = 0;
  const lane = async () => {
    while (next < options.jobs) {
      const i = next++;
      const priority: Priority =
        options.priorities === "single" ? "normal" : (PRIORITIES[Math.floor(Math.random() * 4)] ?? "normal");
      const started = performance.now();
      await Effect.runPromise(queue.enqueue({ id: `bench-${cycle}-${i}`, priority, data: PAYLOAD }));
      latencies[i] = performance.now() - started;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  const seconds = (performance.now() - started) / 1000;
  latencies.sort();
  return {
    jobsPerSecond: options.jobs / seconds,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    maxMs: latencies[latencies.length - 1] ?? Number.NaN,
  };
};

/** Runs a no-op Worker until it has completed `jobs` jobs; fails if completions stop coming. */
const drainAll = async (queue: Queue, jobs: number, concurrency: number) => {
  let completed = 0;
  let lastProgress = performance.now();
  let finish: () => void = () => {};
  const allDone = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const problems: string[] = [];
  const worker = new Worker({
    queue,
    consumer: "bench-worker",
    priorities: PRIORITIES,
    concurrency,
    handler: async () => undefined,
    onEvent: (event) => {
      if (event.type === "completed") {
        lastProgress = performance.now();
        if (++completed === jobs) finish();
      } else if (problems.length < 5) {
        problems.push("error" in event ? `${event.type}: ${event.error}` : event.type);
      }
    },
  });
  const started = performance.now();
  worker.start();
  const watchdog = setInterval(() => {
    if (performance.now() - lastProgress > STALL_MS) finish();
  }, 1000);
  await allDone;
  const seconds = (performance.now() - started) / 1000;
  clearInterval(watchdog);
  await worker.stop();
  if (completed !== jobs) {
    throw new Error(
      `drain stalled at ${completed}/${jobs} completed; events: ${problems.join("; ") || "none"}`,
    );
  }
  return { seconds, jobsPerSecond: jobs / seconds };
};

/** Every job must have ended completed: nothing waiting or running, and the counters add up to N. */
const verify = async (queue: Queue, jobs: number): Promise<void> => {
  const stats = await Effect.runPromise(new QueueAdmin(queue).stats());
  const completed = stats.reduce((n, s) => n + s.completedLastHour, 0);
  const leftover = stats.filter((s) => s.waiting + s.running + s.delayed + s.dead > 0);
  if (completed !== jobs || leftover.length > 0) {
    throw new Error(
      `verification failed: ${completed}/${jobs} completed, left over: ${JSON.stringify(leftover)}`,
    );
  }
};

/** One fresh enqueue + drain on an empty Redis. */
const runCycle = async (redis: RedisClient, cycle: number, concurrency: number, options: Options) => {
  await redis.flushall();
  const queue = new Queue(redis);
  await Effect.runPromise(queue.prepare());
  // Measured after FLUSHALL so the difference is the jobs alone (scripts survive FLUSHALL).
  const emptyMemory = await usedMemory(redis);
  const enqueue = await enqueueAll(queue, cycle, options);
  const memoryBytesPerJob = (await usedMemory(redis)) - emptyMemory;
  const drain = await drainAll(queue, options.jobs, concurrency);
  await verify(queue, options.jobs);
  return {
    concurrency,
    jobs: options.jobs,
    enqueue,
    memoryBytesPerJob: memoryBytesPerJob / options.jobs,
    drain,
    verified: true,
  } satisfies CycleResult;
};

const printTable = (results: CycleResult[]) => {
  const rows = [
    ["concurrency", "jobs", "enqueue/s", "p50 ms", "p99 ms", "max ms", "bytes/job", "drain/s", "verified"],
    ...results.map((r) => [
      String(r.concurrency),
      String(r.jobs),
      r.enqueue.jobsPerSecond.toFixed(0),
      r.enqueue.p50Ms.toFixed(2),
      r.enqueue.p99Ms.toFixed(2),
      r.enqueue.maxMs.toFixed(2),
      r.memoryBytesPerJob.toFixed(0),
      r.drain.jobsPerSecond.toFixed(0),
      r.verified ? "verified" : "FAILED",
    ]),
  ];
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((row) => row[c]?.length ?? 0))) ?? [];
  for (const row of rows) console.log(row.map((cell, c) => cell.padStart(widths[c] ?? 0)).join("  "));
};

/** As typed: npm sets npm_lifecycle_event when the benchmark runs through `npm run bench`. */
const commandLine = (): string => {
  const args = process.argv.slice(2).join(" ");
  if (process.env.npm_lifecycle_event === "bench") return args ? `npm run bench -- ${args}` : "npm run bench";
  return `npx tsx bench/engine.ts ${args}`.trim();
};

const main = async () => {
  const options = parseOptions();
  const server = options.redisUrl ? undefined : await PrivateRedis.start();
  // Ctrl-C must not leave our redis-server (or its temp dir) behind.
  const onSignal = (signal: NodeJS.Signals) => {
    void (server?.stop() ?? Promise.resolve()).finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", onSignal).once("SIGTERM", onSignal);
  const redis = connectRedis(options.redisUrl ?? server?.url ?? "", { name: "bench" });
  try {
    if (options.redisUrl && /^db\d+:/m.test(await redis.info("keyspace"))) {
      // Every cycle starts with FLUSHALL: refuse to wipe a Redis that holds data.
      throw new Error(
        `${options.redisUrl} is not empty; the benchmark FLUSHALLs it, give it a scratch Redis`,
      );
    }
    const redisVersion = await infoField(redis, "server", "redis_version");
    console.log(`Ratatoskr engine benchmark: ${options.jobs} jobs, priorities ${options.priorities}`);
    const results: CycleResult[] = [];
    for (const [cycle, concurrency] of options.concurrencies.entries()) {
      results.push(await runCycle(redis, cycle, concurrency, options));
      console.log(`  concurrency ${concurrency}: done and verified`);
    }
    console.log();
    printTable(results);
    const report = {
      date: new Date().toISOString(),
      command: commandLine(),
      machine: {
        cpu: cpus()[0]?.model ?? "unknown",
        cpus: cpus().length,
        os: `${platform()} ${release()}`,
        node: process.version,
        redis: redisVersion,
        redisUrl: options.redisUrl ?? "private redis-server",
      },
      options: { ...options, inFlight: IN_FLIGHT, payloadBytes: PAYLOAD.length },
      results,
    };
    const dir = new URL("./results/", import.meta.url);
    await mkdir(dir, { recursive: true });
    const file = new URL(`engine-${report.date.replace(/:/g, "-")}.json`, dir);
    await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`\nverified: every job completed. Results written to ${file.pathname}`);
  } finally {
    redis.disconnect();
    await server?.stop();
  }
};

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
