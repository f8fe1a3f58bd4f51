/**
 * Benchmark of the full runtime (dispatcher + Piscina pool + ack) against BullMQ with sandboxed
 * worker threads, both draining no-op jobs at concurrency 16 from the same private Redis, in
 * alternating rounds. A measurement, never a test. Usage and figures: bench/README.md.
 *
 *   npm run bench:runtime -- [--quick] [--jobs N] [--rounds R]
 */
import { randomUUID } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { cpus, platform, release } from "node:os";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
// Resolves from bench/node_modules: BullMQ stays out of the root package (see bench/README.md).
import { Queue as BullQueue, Worker as BullWorker } from "bullmq";
import { Effect } from "effect";
import { loadConfig, queueOptionsFrom } from "../config/schema.js";
import { QueueAdmin } from "../src/queue/admin.js";
import { Queue } from "../src/queue/queue.js";
import { connectRedis, type RedisClient } from "../src/redis/connection.js";
import { PrivateRedis } from "../src/redis/private-server.js";
import { start } from "../src/runtime.js";

const CONCURRENCY = 16;
/** Enqueues in flight at once, as in bench/engine.ts. */
const IN_FLIGHT = 16;
const POLL_MS = 20;
/** A drain with no progress for this long has lost jobs: fail instead of hanging. */
const STALL_MS = 30_000;
const NOOP = JSON.stringify({ v: 1, kind: "noop", body: {} });

type Case = "ratatoskr" | "bullmq";

interface Drain {
  /** From start until the N-th completion: what jobs/s is computed from. */
  readonly seconds: number;
  readonly jobsPerSecond: number;
  /** From start until the first completion: mostly worker threads starting and loading code. */
  readonly firstJobSeconds: number;
  /** The rate once the first job is done: throughput with the start-up cost taken out. */
  readonly afterFirstJobsPerSecond: number;
}

interface Run extends Drain {
  readonly round: number;
  readonly case: Case;
}

const parseOptions = () => {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      jobs: { type: "string" },
      rounds: { type: "string" },
    },
  });
  const jobs = Number(values.jobs ?? (values.quick ? 5_000 : 20_000));
  const rounds = Number(values.rounds ?? (values.quick ? 2 : 3));
  if (!Number.isInteger(jobs) || jobs < 1) throw new Error("--jobs must be a positive integer");
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error("--rounds must be a positive integer");
  return { jobs, rounds };
};

/** Calls `step` until it returns true; throws if `progress()` has not changed for STALL_MS. */
const waitUntil = async (what: string, step: () => Promise<boolean>, progress: () => number) => {
  let last = progress();
  let lastChange = performance.now();
  while (!(await step())) {
    const now = progress();
    if (now !== last) [last, lastChange] = [now, performance.now()];
    if (performance.now() - lastChange > STALL_MS) throw new Error(`${what} stalled at ${now}`);
    await sleep(POLL_MS);
  }
};

const drained = (
  jobs: number,
  started: number,
  firstAt: number | undefined,
  completed: number,
  finishedAt: number,
): Drain => {
  if (completed !== jobs || firstAt === undefined) throw new Error(`${completed} of ${jobs} completed`);
  const seconds = (finishedAt - started) / 1000;
  const firstJobSeconds = (firstAt - started) / 1000;
  const afterFirstJobsPerSecond = (jobs - 1) / (seconds - firstJobSeconds);
  return { seconds, jobsPerSecond: jobs / seconds, firstJobSeconds, afterFirstJobsPerSecond };
};

/** Ratatoskr: enqueue N, then time start() → N completed (per the queue's own counters) → stop. */
const runRatatoskr = async (redisUrl: string, redis: RedisClient, jobs: number, round: number) => {
  const config = loadConfig({
    REDIS_URL: redisUrl,
    RT_PROFILE: "test",
    RT_QUEUE: `bench${round}`,
    RT_JOBS_MODULE: new URL("./noop-jobs.ts", import.meta.url).href,
    RT_POOL_THREADS: "2",
    RT_LOG_LEVEL: "error",
  });
  const queue = new Queue(redis, queueOptionsFrom(config));
  await Effect.runPromise(queue.prepare());
  let next = 0;
  const lane = async () => {
    while (next < jobs) {
      next++;
      await Effect.runPromise(queue.enqueue({ id: randomUUID(), priority: "normal", data: NOOP }));
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));

  const admin = new QueueAdmin(queue);
  let completed = 0;
  let firstAt: number | undefined;
  let finishedAt = Number.NaN;
  const poll = async () => {
    const stats = await Effect.runPromise(admin.stats());
    completed = stats.reduce((n, s) => n + s.completedLastHour, 0);
    if (completed > 0) firstAt ??= performance.now();
    const failed = stats.reduce((n, s) => n + s.failedLastHour + s.retriedLastHour + s.dead, 0);
    if (failed > 0) throw new Error(`ratatoskr: ${failed} jobs failed, retried or died`);
    if (completed >= jobs) finishedAt = performance.now();
    return completed >= jobs;
  };
  const runtime = await start({
    config,
    groups: [{ name: "bench", queues: ["urgent", "high", "normal", "low"], concurrency: CONCURRENCY }],
  });
  const started = performance.now();
  try {
    await waitUntil("ratatoskr drain", poll, () => completed);
  } finally {
    await runtime.stop();
  }
  // The clock stops at the N-th completion; stop() (closing threads) is not measured.
  return drained(jobs, started, firstAt, completed, finishedAt);
};

/** BullMQ: addBulk N, then time new Worker (sandboxed, worker threads) → N `completed` → close. */
const runBullmq = async (port: number, jobs: number, round: number) => {
  const connection = { host: "127.0.0.1", port };
  const name = `bench${round}`;
  const queue = new BullQueue(name, { connection });
  for (let i = 0; i < jobs; i += 1000) {
    const chunk = Math.min(1000, jobs - i);
    await queue.addBulk(Array.from({ length: chunk }, () => ({ name: "noop", data: {} })));
  }
  let completed = 0;
  let failed = 0;
  let firstAt: number | undefined;
  let finishedAt = Number.NaN;
  const started = performance.now();
  // BullMQ's defaults otherwise: it keeps completed jobs (removeOnComplete off), as we keep ours
  // for RT_KEEP_COMPLETED_S, so neither side saves work by throwing finished jobs away.
  const worker = new BullWorker(name, new URL("./bullmq-noop-processor.js", import.meta.url), {
    connection,
    concurrency: CONCURRENCY,
    useWorkerThreads: true,
  });
  worker.on("completed", () => {
    if (++completed === 1) firstAt = performance.now();
    if (completed === jobs) finishedAt = performance.now();
  });
  worker.on("failed", () => void failed++);
  try {
    await waitUntil(
      "bullmq drain",
      async () => {
        if (failed > 0) throw new Error(`bullmq: ${failed} jobs failed`);
        return completed >= jobs;
      },
      () => completed,
    );
  } finally {
    await worker.close();
  }
  const counts = await queue.getJobCounts("completed", "failed", "wait", "active");
  await queue.close();
  if (counts.completed !== jobs) throw new Error(`bullmq: counts ${JSON.stringify(counts)}`);
  return drained(jobs, started, firstAt, completed, finishedAt);
};

const median = (sorted: number[]) => {
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

const summary = (runs: Run[], which: Case) => {
  const mine = runs.filter((r) => r.case === which);
  const rates = mine.map((r) => r.jobsPerSecond).sort((a, b) => a - b);
  const of = (f: (r: Run) => number) => median(mine.map(f).sort((a, b) => a - b));
  return {
    median: median(rates),
    min: rates[0]!,
    max: rates.at(-1)!,
    firstJobSeconds: of((r) => r.firstJobSeconds),
    afterFirstJobsPerSecond: of((r) => r.afterFirstJobsPerSecond),
  };
};

const printTable = (jobs: number, runs: Run[]) => {
  const ours = summary(runs, "ratatoskr");
  const theirs = summary(runs, "bullmq");
  const f = (n: number) => Math.round(n).toLocaleString("en-US");
  const rows = [
    ["case", "jobs", "median jobs/s", "min", "max", "first job s", "jobs/s after first"],
    ...(
      [
        ["ratatoskr", ours],
        ["bullmq", theirs],
      ] as const
    ).map(([name, s]) => [
      name,
      f(jobs),
      f(s.median),
      f(s.min),
      f(s.max),
      s.firstJobSeconds.toFixed(2),
      f(s.afterFirstJobsPerSecond),
    ]),
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  for (const row of rows) {
    console.log(
      row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  "),
    );
  }
  const ratio = ours.median / theirs.median;
  console.log("(first job s and jobs/s after first are medians too)");
  console.log(`\nratatoskr / bullmq (median jobs/s): ${ratio.toFixed(2)}`);
  return { ratatoskr: ours, bullmq: theirs, ratio };
};

/** As typed: npm sets npm_lifecycle_event when the benchmark runs through `npm run bench:runtime`. */
const commandLine = (): string => {
  const args = process.argv.slice(2).join(" ");
  if (process.env.npm_lifecycle_event === "bench:runtime") {
    return args ? `npm run bench:runtime -- ${args}` : "npm run bench:runtime";
  }
  return `npx tsx bench/runtime.ts ${args}`.trim();
};

const main = async () => {
  const { jobs, rounds } = parseOptions();
  // BullMQ pipes each of its 16 worker threads' stdout and stderr into ours: past 10 pipes Node
  // prints a MaxListenersExceededWarning that is noise here, not a leak.
  process.stdout.setMaxListeners(64);
  process.stderr.setMaxListeners(64);
  const server = await PrivateRedis.start();
  // Ctrl-C must not leave our redis-server (or its temp dir) behind.
  const onSignal = (signal: NodeJS.Signals) => {
    void server.stop().finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", onSignal).once("SIGTERM", onSignal);
  const redis = connectRedis(server.url, { name: "bench" });
  try {
    const info = await redis.info("server");
    const redisVersion = /redis_version:(\S+)/.exec(info)?.[1] ?? "unknown";
    console.log(`Full runtime vs BullMQ: ${jobs} no-op jobs, concurrency ${CONCURRENCY}, ${rounds} rounds`);
    const runs: Run[] = [];
    for (let round = 1; round <= rounds; round++) {
      // A/B then B/A: neither side always runs first (JIT warm-up, a Redis grown by earlier runs).
      const order: Case[] = round % 2 ? ["ratatoskr", "bullmq"] : ["bullmq", "ratatoskr"];
      for (const which of order) {
        await redis.flushall();
        const result =
          which === "ratatoskr"
            ? await runRatatoskr(server.url, redis, jobs, round)
            : await runBullmq(server.port, jobs, round);
        runs.push({ round, case: which, ...result });
        console.log(
          `  round ${round} ${which.padEnd(9)} ${Math.round(result.jobsPerSecond)} jobs/s` +
            ` (first job after ${result.firstJobSeconds.toFixed(2)} s)`,
        );
      }
    }
    console.log();
    const figures = printTable(jobs, runs);
    const report = {
      date: new Date().toISOString(),
      command: commandLine(),
      machine: {
        cpu: cpus()[0]?.model ?? "unknown",
        cpus: cpus().length,
        os: `${platform()} ${release()}`,
        node: process.version,
        redis: redisVersion,
      },
      options: { jobs, rounds, concurrency: CONCURRENCY, ratatoskrThreads: 2, inFlight: IN_FLIGHT },
      figures,
      runs,
    };
    const dir = new URL("./results/", import.meta.url);
    await mkdir(dir, { recursive: true });
    const file = new URL(`runtime-${report.date.replace(/:/g, "-")}.json`, dir);
    await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`Results written to ${file.pathname}`);
  } finally {
    redis.disconnect();
    await server.stop();
  }
};

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
