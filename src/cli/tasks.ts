import { loadConfig } from "../../config/schema.js";
import { assertMigrated, openDatabase } from "../db/orm.js";
import { PRIORITIES } from "../domain/priority.js";
import { migrateToRedis, rollbackToDb } from "../tasks/backend-switch.js";
import { parseAge, purgeEndedTasks } from "../tasks/retention.js";
import { connect } from "./connect.js";

export class TasksUsageError extends Error {}

/**
 * `ratatoskr tasks migrate-to-redis | rollback-to-db [--dry-run]`: prints what moved, and why not.
 * `ratatoskr tasks purge --older-than 30d [--dry-run]`: deletes task rows that ended before then.
 */
export const runTasks = async (
  sub: string | undefined,
  options: { dryRun: boolean; olderThan?: string | undefined },
  print: (line: string) => void,
): Promise<number> => {
  if (sub === "purge") return purge(options, print);
  if (sub !== "migrate-to-redis" && sub !== "rollback-to-db")
    throw new TasksUsageError(`unknown tasks command ${JSON.stringify(sub ?? "")}`);
  const config = loadConfig();
  const settings = { url: config.DATABASE_URL, dataDir: config.RT_DATA_DIR };
  const orm = await openDatabase(settings);
  try {
    await assertMigrated(orm, settings);
    const redis = await connect({ allowPrivate: false, name: "ratatoskr-cli" });
    try {
      const dry = options.dryRun ? " (dry run: nothing changed)" : "";
      if (sub === "migrate-to-redis") {
        // Two health probes: every process has seen the database mode flag go by then.
        const settleMs = 2 * config.RT_HEALTH_INTERVAL_MS + config.RT_HEALTH_TIMEOUT_MS;
        const r = await migrateToRedis(orm, redis.queue, { ...options, settleMs });
        const waiting = PRIORITIES.map((p) => `${p} ${r.waiting[p]}`).join(", ");
        print(`waiting in the database: ${waiting}`);
        for (const bad of r.invalid)
          print(`  invalid, ${options.dryRun ? "would be" : "marked"} failed: ${bad.id}: ${bad.reason}`);
        print(
          `${options.dryRun ? "would move" : "moved"} ${options.dryRun ? Object.values(r.waiting).reduce((a, b) => a + b, 0) - r.invalid.length : r.moved} tasks to redis${dry}`,
        );
        if (r.resumed.length > 0)
          print(`${options.dryRun ? "would resume" : "resumed"}: ${r.resumed.join(", ")}`);
        return r.invalid.length > 0 ? 1 : 0;
      }
      const r = await rollbackToDb(orm, redis.queue, options);
      print(
        `${options.dryRun ? "would pause" : "paused"} in redis: ${r.paused.join(", ") || "none (already paused)"}`,
      );
      print(
        `${options.dryRun ? "would move" : "moved"} ${r.moved} waiting tasks to the database queue${dry}`,
      );
      print(`${r.running} running tasks finish in redis`);
      return 0;
    } finally {
      await redis.close();
    }
  } finally {
    await orm.close();
  }
};

const purge = async (
  options: { dryRun: boolean; olderThan?: string | undefined },
  print: (line: string) => void,
): Promise<number> => {
  const age = parseAge(options.olderThan);
  if (age === undefined)
    throw new TasksUsageError(
      `tasks purge needs --older-than with days, hours or minutes (30d, 12h, 90m), got ${JSON.stringify(options.olderThan ?? "")}`,
    );
  const config = loadConfig();
  const settings = { url: config.DATABASE_URL, dataDir: config.RT_DATA_DIR };
  const orm = await openDatabase(settings);
  try {
    await assertMigrated(orm, settings);
    const before = new Date(Date.now() - age);
    const count = await purgeEndedTasks(() => orm.em.fork(), before, { dryRun: options.dryRun });
    print(
      `${options.dryRun ? "would delete" : "deleted"} ${count} tasks that ended before ${before.toISOString()}` +
        (options.dryRun ? " (dry run: nothing changed)" : ""),
    );
    return 0;
  } finally {
    await orm.close();
  }
};
