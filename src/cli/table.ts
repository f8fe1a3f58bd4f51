import type { AlertEntry, PriorityStats } from "../queue/admin.js";
import type { WorkerInfo } from "../queue/workers.js";

/** A plain left-aligned text table; numbers (and numbers written out, like rates) right-aligned. */
export const formatTable = (
  header: readonly string[],
  rows: ReadonlyArray<ReadonlyArray<string | number>>,
): string => {
  const cells = [header, ...rows].map((r) => r.map(String));
  const widths = header.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? "").length)));
  return cells
    .map((r, i) =>
      r
        .map((cell, c) => {
          const value = rows[i - 1]?.[c];
          const numeric = i > 0 && (typeof value === "number" || /^-?\d+(\.\d+)?$/.test(value ?? ""));
          return numeric ? cell.padStart(widths[c] ?? 0) : cell.padEnd(widths[c] ?? 0);
        })
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
};

export const formatStats = (stats: readonly PriorityStats[]): string =>
  formatTable(
    ["priority", "paused", "waiting", "running", "delayed", "dead", "done/1h", "failed/1h", "retried/1h"],
    stats.map((s) => [
      s.priority,
      s.paused ? "yes" : "",
      s.waiting,
      s.running,
      s.delayed,
      s.dead,
      s.completedLastHour,
      s.failedLastHour,
      s.retriedLastHour,
    ]),
  );

export const formatWorkers = (workers: readonly WorkerInfo[], now = Date.now()): string =>
  workers.length === 0
    ? "no live workers"
    : formatTable(
        ["worker", "groups", "active", "mode", "outages", "beat"],
        workers.map((w) => [
          w.id,
          w.groups.map((g) => `${g.name}[${g.queues.join(">")}]x${g.concurrency}`).join(" "),
          w.active,
          w.mode,
          w.outages,
          `${Math.max(0, Math.round((now - w.lastBeatAt) / 1000))}s ago`,
        ]),
      );

export const formatAlerts = (alerts: readonly AlertEntry[]): string =>
  alerts.length === 0
    ? "no alerts"
    : formatTable(
        ["at", "level", "source", "message"],
        alerts.map((a) => [new Date(a.at).toISOString(), a.level, a.source, a.message]),
      );
