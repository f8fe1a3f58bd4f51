import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { MikroORM, type Options } from "@mikro-orm/core";
import { BetterSqliteDriver } from "@mikro-orm/better-sqlite";
import { Migrator } from "@mikro-orm/migrations";
import { PostgreSqlDriver } from "@mikro-orm/postgresql";
import { entities } from "./entities.js";
import { AuditLog } from "./migrations/audit-log.js";
import { DatabaseQueue } from "./migrations/database-queue.js";
import { InitialSchema } from "./migrations/initial.js";

export interface DatabaseSettings {
  /** `postgresql://...`, `sqlite:<path>`, or undefined for `<dataDir>/ratatoskr.sqlite`. */
  readonly url: string | undefined;
  readonly dataDir: string;
  /** Connections per pool (per process, and per worker thread). */
  readonly poolMax?: number;
  /** Names the connections in pg_stat_activity. */
  readonly applicationName?: string;
}

/** Applied in order; a name, once released, never changes. */
const MIGRATIONS = [
  { name: "20261122000000_initial", class: InitialSchema },
  { name: "20261122160000_database_queue", class: DatabaseQueue },
  { name: "20261129220000_audit_log", class: AuditLog },
];

export const describeDatabase = (settings: DatabaseSettings) =>
  settings.url?.startsWith("postgres") ? settings.url.replace(/\/\/[^@/]*@/, "//***@") : sqlitePath(settings);

const sqlitePath = (settings: DatabaseSettings) =>
  settings.url?.startsWith("sqlite:")
    ? resolve(settings.url.slice("sqlite:".length))
    : resolve(settings.dataDir, "ratatoskr.sqlite");

export const ormOptions = (settings: DatabaseSettings): Options => {
  const common = {
    entities,
    extensions: [Migrator],
    migrations: { migrationsList: MIGRATIONS, transactional: true, snapshot: false, silent: true },
    // Every unit of work is a fork: nothing may touch a global identity map by accident.
    allowGlobalContext: false,
    debug: false,
  };
  if (settings.url?.startsWith("postgres")) {
    return {
      ...common,
      driver: PostgreSqlDriver,
      clientUrl: settings.url,
      pool: { min: 0, max: settings.poolMax ?? 4 },
      driverOptions: { connection: { application_name: settings.applicationName ?? "ratatoskr" } },
    };
  }
  const path = sqlitePath(settings);
  mkdirSync(dirname(path), { recursive: true });
  return {
    ...common,
    driver: BetterSqliteDriver,
    dbName: path,
    pool: {
      // One connection per ORM, so per thread (knex's default for SQLite, said here because it
      // matters): better-sqlite3 waits for a lock synchronously, and two connections in one
      // thread could wait on each other's transaction while the thread is blocked.
      min: 1,
      max: 1,
      // WAL lets readers go on while one writer writes; threads and processes share the file.
      afterCreate: (
        connection: { pragma: (sql: string) => unknown },
        done: (error: unknown, c: unknown) => void,
      ) => {
        connection.pragma("journal_mode = WAL");
        connection.pragma("busy_timeout = 5000");
        connection.pragma("foreign_keys = ON");
        done(null, connection);
      },
    },
  };
};

export class SchemaNotMigrated extends Error {
  override name = "SchemaNotMigrated";
}

export const openDatabase = (settings: DatabaseSettings) => MikroORM.init(ormOptions(settings));

export const pendingMigrations = async (orm: MikroORM): Promise<string[]> =>
  (await orm.getMigrator().getPendingMigrations()).map((m) => m.name);

export const migrate = async (orm: MikroORM): Promise<string[]> =>
  (await orm.getMigrator().up()).map((m) => m.name);

/** Start-up check: refuse to run against a schema older than this code. */
export const assertMigrated = async (orm: MikroORM, settings: DatabaseSettings): Promise<void> => {
  const pending = await pendingMigrations(orm);
  if (pending.length > 0) {
    throw new SchemaNotMigrated(
      `the database at ${describeDatabase(settings)} is not migrated (${pending.length} pending: ${pending.join(", ")}); run \`ratatoskr db migrate\``,
    );
  }
};
