import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";

export const POSTGRES_ADMIN_URL =
  process.env.RT_TEST_POSTGRES_URL ?? "postgresql://postgres@127.0.0.1:5432/test";

export const postgresReachable = async (): Promise<boolean> => {
  const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
};

const admin = async <A>(use: (client: pg.Client) => Promise<A>, url = POSTGRES_ADMIN_URL): Promise<A> => {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
};

/** A database of this test file's own on the local PostgreSQL, dropped afterwards. */
export const createPostgresDatabase = async () => {
  const name = `rt_test_${randomBytes(4).toString("hex")}`;
  await admin((c) => c.query(`create database ${name}`));
  const url = POSTGRES_ADMIN_URL.replace(/\/[^/]*$/, `/${name}`);
  return {
    url,
    /** Runs in the new database; `$db` in the SQL stands for its name. */
    query: <R extends pg.QueryResultRow>(sql: string, params: unknown[] = []) =>
      admin(async (c) => (await c.query<R>(sql.replace(/\$db/g, name), params)).rows, url),
    drop: () => admin((c) => c.query(`drop database if exists ${name} with (force)`)),
  };
};

export const sqliteUrl = () => `sqlite:${join(mkdtempSync(join(tmpdir(), "rt-sqlite-")), "ledger.sqlite")}`;
