import type { EntityManager } from "@mikro-orm/core";
import { BetterSqliteDriver } from "@mikro-orm/better-sqlite";

/**
 * Raw SQL on the ORM's own connection, for the few statements an entity query would make dearer
 * than they need be: a claim's `update ... returning`, and the reads every request or submission
 * makes. Run every half second, about the seed's rate of submissions, a `findOne` (query builder,
 * hydration, identity map) cost 1.3-1.6 ms and a raw select 0.5-0.6 ms (bench/README.md,
 * "Submission latency through HTTP").
 */

/** Whether `em` talks to SQLite, whose raw SQL differs from PostgreSQL's in a few places. */
export const onSqlite = (em: EntityManager): boolean => em.getDriver() instanceof BetterSqliteDriver;

/** A time as raw SQL takes it: on SQLite the ORM keeps datetimes as epoch milliseconds. */
export const sqlTime = (sqlite: boolean, date: Date): number | Date => (sqlite ? date.getTime() : date);

/** A time raw SQL gave back: epoch milliseconds from SQLite, a Date from PostgreSQL. */
export const timeFromSql = (value: unknown): Date => new Date(value as number | string | Date);

/** The rows of a select, each as the driver gives it (column names as written, no entity). */
export const selectRows = <Row>(em: EntityManager, sql: string, params: readonly unknown[]): Promise<Row[]> =>
  em.getConnection().execute(sql, [...params], "all") as Promise<Row[]>;
