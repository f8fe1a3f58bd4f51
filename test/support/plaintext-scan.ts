import type { MikroORM } from "@mikro-orm/core";
import { BetterSqliteDriver } from "@mikro-orm/better-sqlite";
import type { RedisClient } from "../../src/redis/connection.js";

/** Every key of this Redis whose value (of any type) contains `needle`. */
export const redisKeysContaining = async (redis: RedisClient, needle: string): Promise<string[]> => {
  const found: string[] = [];
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "COUNT", 1000);
    cursor = next;
    for (const key of keys) {
      const type = await redis.type(key);
      const parts: unknown[] =
        type === "string"
          ? [await redis.get(key)]
          : type === "hash"
            ? Object.entries(await redis.hgetall(key)).flat()
            : type === "list"
              ? await redis.lrange(key, 0, -1)
              : type === "set"
                ? await redis.smembers(key)
                : type === "zset"
                  ? await redis.zrange(key, "0", "-1")
                  : type === "stream"
                    ? (await redis.xrange(key, "-", "+")).flat(3)
                    : [];
      if (key.includes(needle) || parts.some((p) => String(p).includes(needle))) found.push(key);
    }
  } while (cursor !== "0");
  return found;
};

/** Every `table.column` of text type in the database holding `needle` in some row. */
export const databaseColumnsContaining = async (orm: MikroORM, needle: string): Promise<string[]> => {
  const connection = orm.em.getConnection();
  const sqlite = orm.em.getDriver() instanceof BetterSqliteDriver;
  const columns: Array<{ table: string; column: string }> = [];
  if (sqlite) {
    const tables = (await connection.execute(
      "select name from sqlite_master where type = 'table' and name not like 'sqlite_%'",
    )) as Array<{ name: string }>;
    for (const { name } of tables) {
      const info = (await connection.execute(`pragma table_info("${name}")`)) as Array<{
        name: string;
        type: string;
      }>;
      for (const c of info)
        if (/char|text|clob/i.test(c.type) || c.type === "") columns.push({ table: name, column: c.name });
    }
  } else {
    const rows = (await connection.execute(
      `select table_name, column_name from information_schema.columns
        where table_schema = current_schema() and data_type in ('text', 'character varying')`,
    )) as Array<{ table_name: string; column_name: string }>;
    for (const r of rows) columns.push({ table: r.table_name, column: r.column_name });
  }
  const found: string[] = [];
  for (const { table, column } of columns) {
    const [hit] = (await connection.execute(`select count(*) as n from "${table}" where "${column}" like ?`, [
      `%${needle}%`,
    ])) as Array<{ n: number | string }>;
    if (Number(hit?.n ?? 0) > 0) found.push(`${table}.${column}`);
  }
  return found;
};
