import { loadConfig } from "../../config/schema.js";
import {
  type DatabaseSettings,
  describeDatabase,
  migrate,
  openDatabase,
  pendingMigrations,
} from "../db/orm.js";

export const databaseSettings = (): DatabaseSettings => {
  const config = loadConfig();
  return { url: config.DATABASE_URL, dataDir: config.RT_DATA_DIR };
};

/** `ratatoskr db migrate|status`: apply or list the ledger's pending migrations. */
export const runDb = async (sub: string | undefined, print: (line: string) => void): Promise<number> => {
  if (sub !== "migrate" && sub !== "status")
    throw new Error(`unknown db command ${JSON.stringify(sub ?? "")} (migrate, status)`);
  const settings = databaseSettings();
  const orm = await openDatabase(settings);
  try {
    if (sub === "status") {
      const pending = await pendingMigrations(orm);
      print(
        `${describeDatabase(settings)}: ${pending.length === 0 ? "up to date" : `${pending.length} pending: ${pending.join(", ")}`}`,
      );
      return pending.length === 0 ? 0 : 3;
    }
    const applied = await migrate(orm);
    print(
      `${describeDatabase(settings)}: ${applied.length === 0 ? "already up to date" : `applied ${applied.join(", ")}`}`,
    );
    return 0;
  } finally {
    await orm.close();
  }
};
