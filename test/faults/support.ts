import { mkdtempSync, readFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MikroORM } from "@mikro-orm/core";
import { Either } from "effect";
import { CaptionTask } from "../../src/db/entities.js";
import { PRIORITIES, type Priority } from "../../src/domain/priority.js";
import { start } from "../../src/runtime.js";
import type { TaskService } from "../../src/tasks/service.js";
export { seedUsers } from "../support/ledger.js";
import { testConfig } from "../support/runtime.js";

export const FAULT_JOBS = new URL("../support/fault-jobs.ts", import.meta.url).href;

/** A fresh log of finished runs for this scenario; worker threads read its path from the env. */
export const runLog = (): string => {
  const log = join(mkdtempSync(join(tmpdir(), "rt-fault-")), "runs");
  process.env.RT_TEST_LOG = log;
  return log;
};

/** Finished runs per task, from the log. */
export const runsByTask = (log: string): Map<string, number[]> => {
  const runs = new Map<string, number[]>();
  if (!existsSync(log)) return runs;
  for (const line of readFileSync(log, "utf8").split("\n")) {
    const [word, id, attempt] = line.split(" ");
    if (word !== "ran" || !id) continue;
    runs.set(id, [...(runs.get(id) ?? []), Number(attempt)]);
  }
  return runs;
};

/** A caption runtime (workers and ledger) tuned for quick faults: short leases and reconciles. */
export const startCaptionRuntime = (
  redisUrl: string,
  databaseUrl: string,
  env: Record<string, string> = {},
) =>
  start({
    config: testConfig(redisUrl, {
      DATABASE_URL: databaseUrl,
      RT_JOBS_MODULE: FAULT_JOBS,
      RT_LEASE_MS: "2000",
      RT_RECONCILE_MS: "1000",
      RT_RECONCILE_GRACE_MS: "1000",
      ...env,
    }),
    groups: [{ name: "all", queues: PRIORITIES, concurrency: 16 }],
    ledger: true,
  });

/** Submits one task for `userId`; a refusal or an exception is a failed submission. */
export const submitOne = async (
  service: TaskService,
  userId: number,
  priority: Priority,
  seconds: number,
): Promise<{ taskId: string; backend: string; ms: number }> => {
  const started = Date.now();
  const submitted = await service.submit({ userId, priority, settings: { processing_delay: seconds } });
  if (Either.isLeft(submitted)) throw new Error(`submission refused: ${submitted.left._tag}`);
  return { ...submitted.right, ms: Date.now() - started };
};

export const countByStatus = async (orm: MikroORM, ids: readonly string[]) => {
  const rows = await orm.em.fork().find(CaptionTask, { id: { $in: [...ids] } }, { fields: ["status"] });
  const counts: Record<string, number> = {};
  for (const r of rows) counts[r.status] = (counts[r.status] ?? 0) + 1;
  return counts;
};

/**
 * The scenario's verdict, printed as one line: tasks lost (not completed), duplicates (a task
 * whose work finished more than once), and whether each completed row is the attempt that ran.
 */
export const verdict = async (orm: MikroORM, ids: readonly string[], log: string) => {
  const rows = await orm.em.fork().find(CaptionTask, { id: { $in: [...ids] } });
  const runs = runsByTask(log);
  const completed = rows.filter((r) => r.status === "completed");
  const duplicates = [...runs.values()].filter((attempts) => attempts.length > 1).length;
  const unbacked = completed.filter((r) => !(runs.get(r.id) ?? []).includes(r.attempt)).length;
  return {
    tasks: ids.length,
    completed: completed.length,
    lost: ids.length - completed.length,
    duplicates,
    unbacked,
  };
};

export const report = (scenario: string, figures: Record<string, unknown>) =>
  console.log(
    `fault ${scenario}: ${Object.entries(figures)
      .map(([k, v]) => `${k}=${String(v)}`)
      .join(" ")}`,
  );
