/**
 * The least latency a queue on Redis Streams could have on this machine, against ours and
 * BullMQ's in the same rounds: the `latency-500` case of bench/main.ts (an open-loop load, single
 * enqueues, a worker at concurrency 16, enqueue→start and enqueue→completion per job), with a
 * side that keeps no job record at all. Its enqueue is one `XADD`; its idle worker blocks in
 * `XREADGROUP` itself, so an entry arrives already claimed (no wake, then claim); its completion
 * is one `XACK` + `XDEL`: two round trips after the enqueue's (wake, completion) where BullMQ
 * takes three (wake, claim, completion). Ours takes one: its enqueue hands the job to the idle
 * worker of its own queue, claimed (docs/architecture.md, "Handoffs"), and only the completion
 * follows; "ours, enqueued apart" sends the jobs through a queue of their own, as another process
 * would, and takes three, as BullMQ. "Two round trips, nothing else" is the least of all: a
 * `PING` and, once it answered, another, per job. Each side's Redis commands a job are counted
 * too (`INFO commandstats`: a script call and each command it runs). Not a test, and not part of
 * `npm run bench`: it backs the latency paragraphs of bench/PERFORMANCE.md ("Where the time goes").
 *
 *   npm run bench:latency-floor                          # 500 jobs/s for 10 s after 3 s, 3 rounds
 *   npm run bench:latency-floor -- --rate 2000 --seconds 5 --warmup 2 --rounds 2
 */
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { connectRedis, duplicateConnection, type RedisClient } from "../src/redis/connection.js";
import {
  type Figures,
  type LatencyLoad,
  LatencySamples,
  loadJobs,
  median,
  payload,
  runLoad,
  waitFor,
} from "./harness.js";
import { formatNumber } from "./report.js";
import { Bullmq } from "./systems/bullmq.js";
import { runStandalone, wholeNumbers } from "./standalone.js";
import { roundTripsLatency } from "./round-trips.js";
import { Ratatoskr } from "./systems/ratatoskr.js";

const STREAM = "floor:s:normal";
const GROUP = "g";

/** One run of the streams-only side: the same load, latencies and checks as the other two. */
const floorLatency = async (url: string, load: LatencyLoad): Promise<Figures> => {
  const commands = connectRedis(url, { name: "latency-floor" });
  const blocking = duplicateConnection(commands);
  const total = loadJobs(load);
  const samples = new LatencySamples(load);
  let started = 0;
  let done = 0;
  let stopping = false;
  let problem: string | undefined;
  try {
    await commands.xgroup("CREATE", STREAM, GROUP, "0", "MKSTREAM");
    const worker = (async () => {
      while (!stopping) {
        const reply = (await blocking.xreadgroup(
          "GROUP",
          GROUP,
          "w",
          "COUNT",
          16,
          "BLOCK",
          200,
          "STREAMS",
          STREAM,
          ">",
        )) as Array<[string, Array<[string, string[]]>]> | null;
        const entries = reply?.[0]?.[1] ?? [];
        if (entries.length === 0) continue;
        const sent: Array<{ i: number; sentAt: number }> = [];
        for (const [, fields] of entries) {
          // The handler's first line: a no-op job that notes when it started.
          const job = JSON.parse(fields[1]!) as { i: number; sentAt: number };
          samples.started(job.i, job.sentAt);
          started++;
          sent.push(job);
        }
        const ids = entries.map(([id]) => id);
        // Not awaited: the next read goes out at once, as a worker with free slots would.
        void commands
          .multi()
          .xack(STREAM, GROUP, ...ids)
          .xdel(STREAM, ...ids)
          .exec()
          .then(
            (answers) => {
              if (answers?.[0]?.[1] !== ids.length) problem ??= `acknowledged ${String(answers?.[0]?.[1])}`;
              for (const job of sent) samples.completed(job.i, job.sentAt);
              done += sent.length;
            },
            (error: unknown) => (problem ??= String(error)),
          );
      }
    })();
    // Cut short by the disconnect below when the run fails: that error is the run's, not this.
    worker.catch(() => {});
    await sleep(200);
    await runLoad(load, (i, due) => {
      commands
        .xadd(STREAM, "*", "d", JSON.stringify(payload({ sentAt: due, i })))
        .catch((error: unknown) => (problem ??= `enqueue: ${String(error)}`));
    });
    await waitFor("floor latency", {
      done: () => done >= total,
      progress: () => done,
      failure: () => problem,
    });
    stopping = true;
    await worker;
    const left = await commands.xlen(STREAM);
    if (started !== total || left !== 0)
      throw new Error(`floor latency: ${started}/${total} started, ${left} entries left`);
    return samples.figures();
  } finally {
    stopping = true;
    blocking.disconnect();
    commands.disconnect();
  }
};

/**
 * Commands Redis ran since its counters were reset (`INFO commandstats`; those inside scripts
 * count too), less the benchmark's own `INFO` and `CONFIG`.
 */
const commandsSent = async (admin: RedisClient): Promise<number> => {
  let calls = 0;
  for (const line of (await admin.info("commandstats")).split("\n")) {
    const match = /^cmdstat_([^:]+):calls=(\d+)/.exec(line);
    if (match && !/^(info|config)/.test(match[1]!)) calls += Number(match[2]);
  }
  return calls;
};

runStandalone(async (target) => {
  const { values } = parseArgs({
    options: {
      rate: { type: "string", default: "500" },
      seconds: { type: "string", default: "10" },
      warmup: { type: "string", default: "3" },
      rounds: { type: "string", default: "3" },
    },
  });
  const [rate, seconds, rounds] = wholeNumbers("--rate, --seconds and --rounds", [
    values.rate,
    values.seconds,
    values.rounds,
  ]) as [number, number, number];
  const [warmupSeconds] = wholeNumbers("--warmup", [values.warmup], 0) as [number];
  const load: LatencyLoad = { rate, seconds, warmupSeconds };
  const ours = new Ratatoskr(target);
  const bullmq = new Bullmq(target);
  const sides: Record<string, () => Promise<Figures>> = {
    ours: () => ours.latency(load),
    "ours, enqueued apart": () => ours.latency(load, { apart: true }),
    "streams only": () => floorLatency(target.url, load),
    "two round trips, nothing else": () => roundTripsLatency(target.url, load),
    BullMQ: () => bullmq.latency(load),
  };
  const names = Object.keys(sides);
  const runs = new Map<string, Figures[]>(names.map((side) => [side, []]));
  for (let round = 0; round < rounds; round++) {
    for (const side of round % 2 === 0 ? names : [...names].reverse()) {
      await target.admin.flushall();
      await target.admin.config("RESETSTAT");
      const figures = await sides[side]!();
      runs
        .get(side)!
        .push({ ...figures, commandsPerJob: (await commandsSent(target.admin)) / loadJobs(load) });
    }
  }
  const med = (side: string, key: string) => median(runs.get(side)!.map((f) => f[key]!));
  console.log(
    `\n${rate} jobs/s for ${seconds} s after ${warmupSeconds} s of warm-up, ${rounds} rounds; medians over the rounds, in ms`,
  );
  console.log(
    "| side | start p50 | start p99 | done p50 | done p95 | done p99 | done p99 ÷ BullMQ | Redis commands a job |",
  );
  console.log("|---|---|---|---|---|---|---|---|");
  for (const side of names) {
    const cells = ["startP50Ms", "startP99Ms", "doneP50Ms", "doneP95Ms", "doneP99Ms"].map((key) =>
      formatNumber(med(side, key)),
    );
    const ratio = (med(side, "doneP99Ms") / med("BullMQ", "doneP99Ms")).toFixed(2);
    console.log(`| ${side} | ${cells.join(" | ")} | ${ratio} | ${med(side, "commandsPerJob").toFixed(1)} |`);
  }
});
