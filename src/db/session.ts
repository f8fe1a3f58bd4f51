import type { EntityManager, MikroORM } from "@mikro-orm/core";
import type { JobScope } from "../jobs/definition.js";
import { assertMigrated, type DatabaseSettings, openDatabase } from "./orm.js";

/**
 * A job's own database session: a fork of its thread's ORM (its own identity map and unit of
 * work), never shared with another job.
 */
export interface JobSession {
  readonly em: EntityManager;
  /**
   * Commits the changes made so far as one transaction (the unit of work's flush). Long jobs
   * call it after each post, so a run cut short keeps what it finished.
   */
  checkpoint(): Promise<void>;
}

/**
 * The per-job scope of a job registry: one ORM per worker thread (opened at its first job, its
 * schema checked), and for each job a fork whose changes are committed in one transaction when
 * the job succeeds (or at a checkpoint) and discarded when it fails, is aborted or times out.
 *
 * No transaction is held open across a job's network I/O: SQLite allows one writer at a time,
 * and in WAL mode a transaction that read before writing fails at once ("database is locked")
 * if another connection wrote in between — with jobs that run for minutes that is every job.
 * Flushing the unit of work opens the transaction only for the writes themselves.
 */
export const databaseScope = (settings: () => DatabaseSettings): JobScope<JobSession> => {
  let orm: Promise<MikroORM> | undefined;
  const ormOnce = () => {
    orm ??= (async () => {
      const s = settings();
      const opened = await openDatabase(s);
      try {
        await assertMigrated(opened, s);
      } catch (error) {
        // Not cached, so the next job opens again: close this one rather than leak it.
        await opened.close();
        throw error;
      }
      return opened;
    })();
    // A failed open is not cached: the next job tries again (the database may be back).
    orm.catch(() => {
      orm = undefined;
    });
    return orm;
  };
  return {
    open: async () => {
      const em = (await ormOnce()).em.fork({ clear: true });
      return { em, checkpoint: () => em.flush() };
    },
    close: async ({ em }, { ok }) => {
      try {
        if (ok) await em.flush();
      } finally {
        // Whatever was not flushed is dropped with the fork; a failed job leaves nothing half-written.
        em.clear();
      }
    },
  };
};

/** Database settings of a worker thread, from the same environment as its process. */
export const settingsFromEnv = (env: Record<string, string | undefined> = process.env): DatabaseSettings => ({
  url: env.DATABASE_URL || undefined,
  dataDir: env.RT_DATA_DIR || "data",
  poolMax: 10,
  applicationName: env.RT_DB_APPLICATION_NAME || "ratatoskr",
});
