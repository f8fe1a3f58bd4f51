/**
 * Ratatoskr against BullMQ (and python-rq for scale), side by side on one private redis-server:
 * enqueue, drain (main thread and worker threads), latency under steady load, memory per job,
 * recovery after a worker is killed. Each case runs R rounds, the two systems alternating which
 * goes first. A measurement, never a test: it asserts only that every job ended as it should.
 * Usage, what each case measures, and figures: bench/README.md.
 *
 *   npm run bench -- [--quick] [--jobs N] [--rounds R] [--seconds S] [--cases a,b,...] [--list]
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { cpus, platform, release } from "node:os";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { connectRedis } from "../src/redis/connection.js";
import { PrivateRedis } from "../src/redis/private-server.js";
import type { Case, ComparedCase } from "./cases/case.js";
import { CASES, selectCases } from "./cases/index.js";
import { rqVersion } from "./cases/rq.js";
import { writeChart } from "./chart.js";
import { collectGarbage, infoField } from "./harness.js";
import { parseOptions, type Options, USAGE, UsageError } from "./options.js";
import { formatNumber, renderTable, type Run, summarise } from "./report.js";
import { Bullmq } from "./systems/bullmq.js";
import { prepareThreadCode, Ratatoskr } from "./systems/ratatoskr.js";
import type { System, Target } from "./systems/system.js";

/** As typed: npm sets npm_lifecycle_event when the benchmark runs through `npm run bench`. */
const commandLine = (): string => {
  const args = process.argv.slice(2).join(" ");
  if (process.env.npm_lifecycle_event === "bench") return args ? `npm run bench -- ${args}` : "npm run bench";
  return `npx tsx bench/main.ts ${args}`.trim();
};

const osName = async (): Promise<string> => {
  const osRelease = await readFile("/etc/os-release", "utf8").catch(() => "");
  const pretty = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(osRelease)?.[1];
  return `${platform()} ${release()}${pretty ? ` (${pretty})` : ""}`;
};

const DAMON = "/sys/kernel/mm/damon/admin/kdamonds";

/**
 * Whether the kernel's DAMON samples memory accesses here, and how often. Its thread (kdamond)
 * walks the sampled pages' mappings at each sample, holding a core for 2-12 ms on the machines
 * this ran on, and the job path stalls meanwhile; those pauses, not either queue, set both
 * sides' p99 in the latency cases (bench/PERFORMANCE.md, "What sets the p99 at 500 jobs/s").
 */
const damonSampling = async (): Promise<string> => {
  const numbered = (names: string[]) => names.filter((name) => /^\d+$/.test(name));
  // A value that cannot be read says so: reading it as "off" or 0 ms would misreport the machine.
  const read = (path: string) =>
    readFile(`${DAMON}/${path}`, "utf8").then(
      (text) => text.trim(),
      () => "unreadable",
    );
  const kdamonds = await readdir(DAMON).then(numbered, (error: NodeJS.ErrnoException) =>
    error.code === "ENOENT" ? [] : undefined,
  );
  if (kdamonds === undefined) return `DAMON unknown (${DAMON} unreadable)`;
  const running: string[] = [];
  const unread: string[] = [];
  for (const kdamond of kdamonds) {
    const state = await read(`${kdamond}/state`);
    if (state === "unreadable") unread.push(`kdamond ${kdamond}'s state unreadable`);
    if (state !== "on") continue;
    for (const context of numbered(await readdir(`${DAMON}/${kdamond}/contexts`).catch(() => []))) {
      const at = `${kdamond}/contexts/${context}`;
      const sampleUs = Number(await read(`${at}/monitoring_attrs/intervals/sample_us`));
      const every = Number.isFinite(sampleUs)
        ? `a sample every ${sampleUs / 1000} ms`
        : "interval unreadable";
      running.push(`kdamond ${kdamond} (${await read(`${at}/operations`)}, ${every})`);
    }
  }
  if (running.length > 0) return `DAMON on: ${running.join(", ")}`;
  return unread.length > 0 ? `DAMON unknown (${unread.join(", ")})` : "DAMON off";
};

/**
 * The commit, and whether the engine had uncommitted changes (with a short hash of that diff, to
 * tell two such runs apart): the engine is being optimised while these figures are taken.
 */
const gitCommit = (): string => {
  try {
    const git = (...args: string[]) =>
      execFileSync("git", args, { cwd: fileURLToPath(new URL("../", import.meta.url)), encoding: "utf8" });
    const commit = git("rev-parse", "--short", "HEAD").trim();
    const diff = git("diff", "HEAD", "--", "src", "actors", "config");
    if (diff === "") return commit;
    const digest = createHash("sha1").update(diff).digest("hex").slice(0, 8);
    return `${commit} + uncommitted changes in src/actors/config (diff ${digest})`;
  } catch {
    return "unknown";
  }
};

const bullmqVersion = async (): Promise<string> => {
  const file = new URL("./node_modules/bullmq/package.json", import.meta.url);
  return (JSON.parse(await readFile(file, "utf8")) as { version: string }).version;
};

const listCases = () => {
  const width = Math.max(...CASES.map((c) => c.name.length));
  for (const c of CASES)
    console.log(`${c.name.padEnd(width)}  ${c.what}${c.fullOnly ? " [full run only]" : ""}`);
};

/** The first figure of a run, for the progress line. */
const headline = (c: Case, figures: Record<string, number>) => {
  const metric = c.metrics[0]!;
  return `${formatNumber(figures[metric.key] ?? Number.NaN)} ${metric.unit}`;
};

const runCompared = async (c: ComparedCase, systems: readonly System[], target: Target, options: Options) => {
  const runs: Run[] = [];
  for (let round = 1; round <= options.rounds; round++) {
    // A/B then B/A: neither side always gets the warmer JIT or the Redis the other just used.
    const order = round % 2 === 1 ? systems : [...systems].reverse();
    const fresh = async () => {
      await target.admin.flushall();
      collectGarbage();
    };
    for (const system of order) {
      await fresh();
      const began = performance.now();
      const figures = await c.run(system, options, { round, fresh });
      runs.push({ case: c.name, round, side: system.name, figures });
      console.log(
        `  ${c.name} round ${round} ${system.name.padEnd(9)} ${headline(c, figures)}` +
          `  (run took ${((performance.now() - began) / 1000).toFixed(1)} s)`,
      );
    }
  }
  return runs;
};

const main = async () => {
  const options = parseOptions(process.argv.slice(2));
  if (options.list) {
    listCases();
    return;
  }
  const cases = selectCases(options.patterns, options.quick);
  const began = performance.now();
  // BullMQ pipes each of its sandbox threads' stdout and stderr into ours (up to 100 of them in
  // drain-threads-c100): Node's warning past 10 listeners would be noise, not a leak.
  process.stdout.setMaxListeners(256);
  process.stderr.setMaxListeners(256);

  const server = await PrivateRedis.start();
  // Ctrl-C must not leave our redis-server (or its temp dir) behind.
  const onSignal = (signal: NodeJS.Signals) => {
    void server.stop().finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", onSignal).once("SIGTERM", onSignal);
  const admin = connectRedis(server.url, { name: "bench-admin" });
  const target: Target = { url: server.url, port: server.port, admin };
  try {
    const machine = {
      cpu: cpus()[0]?.model ?? "unknown",
      cores: cpus().length,
      os: await osName(),
      node: process.version,
      redis: await infoField(admin, "server", "redis_version"),
      bullmq: await bullmqVersion(),
      rq: rqVersion() ?? "not installed",
      commit: gitCommit(),
      memorySampling: await damonSampling(),
    };
    console.log(
      `Ratatoskr vs BullMQ ${machine.bullmq}: ${cases.length} cases, ${options.rounds} rounds, ` +
        `${options.jobs.toLocaleString("en-US")} jobs, Redis ${machine.redis} on port ${server.port}`,
    );
    if (machine.memorySampling.startsWith("DAMON on"))
      console.log(
        `${machine.memorySampling}: its pauses can set the latency cases' p99 on this machine ` +
          `(bench/PERFORMANCE.md, "What sets the p99 at 500 jobs/s").`,
      );
    let threadCodeSeconds: number | undefined;
    if (cases.some((c) => c.kind === "compared" && c.threadCode)) {
      try {
        threadCodeSeconds = await prepareThreadCode();
        console.log(
          `Our worker threads' code made ready, as \`ratatoskr threads bundle\` at install: ` +
            `${threadCodeSeconds.toFixed(2)} s (built where its sources changed; not timed by any case).`,
        );
      } catch (error) {
        // start() copes as a deployment would (it builds the code, or its threads compile it
        // themselves, with a warning): the cases still run, and time what start() does then.
        console.log(
          `Our worker threads' code could not be made ready ahead; the drain-thread runs time what start() does instead: ` +
            `${error instanceof Error ? error.message : String(error)}`,
        );
      }
    }
    const systems: System[] = [new Ratatoskr(target), new Bullmq(target)];
    const runs: Run[] = [];
    const skipped: string[] = [];
    for (const c of cases) {
      if (c.kind === "compared") {
        runs.push(...(await runCompared(c, systems, target, options)));
        continue;
      }
      const reason = c.unavailable();
      if (reason !== undefined) {
        console.log(reason);
        skipped.push(reason);
        continue;
      }
      for (let round = 1; round <= options.rounds; round++) {
        await admin.flushall();
        collectGarbage();
        const figures = await c.run(target, options);
        runs.push({ case: c.name, round, side: "reference", figures });
        console.log(`  ${c.name} round ${round} ${headline(c, figures)}`);
      }
    }

    const rows = summarise(cases, runs);
    const elapsedSeconds = (performance.now() - began) / 1000;
    console.log(`\n${renderTable(rows)}\n`);
    const date = new Date().toISOString();
    const report = {
      date,
      command: commandLine(),
      machine,
      options,
      ...(threadCodeSeconds === undefined ? {} : { threadCodeSeconds }),
      cases: cases.map((c) => c.name),
      skipped,
      elapsedSeconds,
      runs,
      summaries: rows,
    };
    const dir = new URL("./results/", import.meta.url);
    await mkdir(dir, { recursive: true });
    const stem = `bench-${date.replace(/:/g, "-")}`;
    const json = fileURLToPath(new URL(`${stem}.json`, dir));
    const png = fileURLToPath(new URL(`${stem}.png`, dir));
    await writeFile(json, `${JSON.stringify(report, null, 2)}\n`);
    await writeChart(png, rows, {
      title: "Ratatoskr vs BullMQ",
      subtitle:
        `${date} · ${machine.cpu}, ${machine.cores} cores · Node ${machine.node} · Redis ${machine.redis} · ` +
        `BullMQ ${machine.bullmq} · ${options.jobs.toLocaleString("en-US")} jobs × ${options.rounds} rounds · commit ${machine.commit}`,
    });
    console.log(`Every job verified. ${elapsedSeconds.toFixed(0)} s in all.`);
    console.log(`Results: ${json}\nChart:   ${png}`);
  } finally {
    admin.disconnect();
    await server.stop();
  }
};

main().then(
  // BullMQ's and the runtime's closed connections can leave a timer behind: do not wait for it.
  () => process.exit(0),
  (error: unknown) => {
    if (error instanceof UsageError) console.error(`${error.message}\nusage: ${USAGE}`);
    else console.error(error instanceof Error ? (error.stack ?? error.message) : error);
    process.exit(1);
  },
);
