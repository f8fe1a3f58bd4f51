import { setTimeout as sleep } from "node:timers/promises";
import { Effect } from "effect";
import { type MinuteCounts, type PriorityStats, QueueAdmin } from "../queue/admin.js";
import { type WorkerInfo, WorkerRegistry } from "../queue/workers.js";
import { connect } from "./connect.js";
import { formatTable, formatWorkers } from "./table.js";

export interface InfoSnapshot {
  readonly at: number;
  readonly mode: "redis" | "database";
  readonly stats: readonly PriorityStats[];
  /** The last 30 minutes, oldest first. */
  readonly history: readonly MinuteCounts[];
  readonly workers: readonly WorkerInfo[];
}

const SPARKS = "▁▂▃▄▅▆▇█";

/** Completions per minute as one character each: a blank for none, then eight heights. */
export const sparkline = (values: readonly number[]): string => {
  const top = Math.max(...values, 1);
  return values.map((v) => (v === 0 ? " " : SPARKS[Math.min(7, Math.floor((v / top) * 7.999))]!)).join("");
};

/**
 * Per minute over the last five, counting the minute under way only for the part of it that
 * has passed, so a rate read early in a minute is not understated.
 */
export const perMinute = (
  history: readonly MinuteCounts[],
  at: number,
  pick: (m: MinuteCounts) => number,
) => {
  const recent = history.slice(-5);
  const elapsed = recent.length - 1 + (at % 60_000) / 60_000;
  return elapsed <= 0 ? 0 : recent.reduce((n, m) => n + pick(m), 0) / elapsed;
};

export const formatInfo = (s: InfoSnapshot): string => {
  const rows = s.stats.map((p) => {
    const done = perMinute(s.history, s.at, (m) => m.completed[p.priority]);
    const failed = perMinute(s.history, s.at, (m) => m.failed[p.priority]);
    return [
      p.priority,
      p.paused ? "yes" : "",
      p.waiting,
      p.running,
      p.delayed,
      p.dead,
      done.toFixed(1),
      failed.toFixed(1),
      p.completedLastHour,
      p.failedLastHour,
      sparkline(s.history.map((m) => m.completed[p.priority])),
    ];
  });
  const total = (pick: (p: PriorityStats) => number) => s.stats.reduce((n, p) => n + pick(p), 0);
  const backend = s.mode === "database" ? "database (held by tasks rollback-to-db)" : "redis";
  return [
    `ratatoskr info  ${new Date(s.at).toISOString().replace(/\.\d+Z$/, "Z")}  queue backend: ${backend}`,
    "",
    formatTable(
      [
        "priority",
        "paused",
        "waiting",
        "running",
        "delayed",
        "dead",
        "done/min",
        "failed/min",
        "done/1h",
        "failed/1h",
        "done, last 30 min",
      ],
      rows,
    ),
    `total: ${total((p) => p.waiting)} waiting, ${total((p) => p.running)} running, ` +
      `${total((p) => p.delayed)} delayed, ${total((p) => p.dead)} dead`,
    "",
    formatWorkers(s.workers, s.at),
  ].join("\n");
};

const snapshot = (admin: QueueAdmin): Promise<InfoSnapshot> =>
  Effect.runPromise(
    Effect.all([
      admin.stats(),
      admin.history(30),
      new WorkerRegistry(admin.queue).list(),
      admin.backendMode(),
    ]).pipe(
      Effect.map(([stats, history, workers, mode]) => ({ at: Date.now(), stats, history, workers, mode })),
      // A Redis that hangs must not hold the watch (nor a Ctrl-C) forever.
      Effect.timeoutFail({
        duration: "5 seconds",
        onTimeout: () => new Error("Redis gave no answer within 5 s"),
      }),
    ),
  );

/**
 * `ratatoskr info [--watch] [--interval S]`: queue depths, rates and workers, like `rq info`.
 * With --watch it redraws in place every interval until Ctrl-C (on a terminal; piped, each frame
 * follows the last).
 */
export const runInfo = async (
  options: { watch: boolean; intervalMs: number },
  write: (text: string) => void,
): Promise<number> => {
  const c = await connect({ allowPrivate: false, name: "ratatoskr-info" });
  const admin = new QueueAdmin(c.queue);
  try {
    if (!options.watch) {
      write(`${formatInfo(await snapshot(admin))}\n`);
      return 0;
    }
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    const tty = process.stdout.isTTY === true;
    try {
      while (!stop.signal.aborted) {
        const frame = formatInfo(await snapshot(admin));
        write(tty ? `\x1b[H\x1b[2J${frame}\n` : `${frame}\n\n`);
        await sleep(options.intervalMs, undefined, { signal: stop.signal }).catch(() => {});
      }
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
    return 0;
  } finally {
    await c.close();
  }
};
