import type { Knex } from "knex";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrate, openDatabase } from "../../src/db/orm.js";
import { JobFailure } from "../../src/queue/failures.js";
import { JobPool } from "../../src/pool/pool.js";
import { createPostgresDatabase, postgresReachable, sqliteUrl } from "../support/databases.js";

const registry = new URL("../support/db-jobs.ts", import.meta.url).href;
const envelope = (body: unknown) => JSON.stringify({ v: 1, kind: "writeUser", body });
let n = 0;
const job = () => ({ id: `job-${++n}`, attempt: 1, runAttempt: 1, priority: "normal", userId: undefined });
const never = () => new AbortController().signal;

const hasPostgres = await postgresReachable();
if (!hasPostgres)
  console.warn("PostgreSQL is not reachable on 127.0.0.1:5432: its session tests are SKIPPED");

interface Backend {
  name: string;
  url: string;
  /** Usernames stored, read with a connection of the test's own. */
  usernames(): Promise<string[]>;
  /** Sessions of the worker threads still inside a transaction. */
  openTransactions(): Promise<number>;
  connections(): Promise<number>;
  cleanup(): Promise<void>;
}

const sqliteBackend = async (): Promise<Backend> => {
  const url = sqliteUrl();
  const orm = await openDatabase({ url, dataDir: "" });
  await migrate(orm);
  const knex = (orm.em.getConnection() as unknown as { getKnex(): Knex }).getKnex();
  return {
    name: "SQLite",
    url,
    usernames: async () =>
      (await knex("users").select("username")).map((r: { username: string }) => r.username),
    // A session left in a transaction that wrote would hold SQLite's write lock.
    openTransactions: async () => {
      try {
        await knex.raw("begin immediate");
        await knex.raw("rollback");
        return 0;
      } catch {
        return 1;
      }
    },
    connections: async () => 0,
    cleanup: () => orm.close(),
  };
};

const postgresBackend = async (): Promise<Backend> => {
  const db = await createPostgresDatabase();
  const orm = await openDatabase({ url: db.url, dataDir: "" });
  await migrate(orm);
  await orm.close();
  const mine = "datname = '$db' and application_name = 'rt-session-test'";
  return {
    name: "PostgreSQL",
    url: db.url,
    usernames: async () =>
      (await db.query<{ username: string }>("select username from users")).map((r) => r.username),
    openTransactions: async () =>
      Number(
        (
          await db.query(
            `select count(*) as n from pg_stat_activity where ${mine} and state like 'idle in transaction%'`,
          )
        )[0]?.n,
      ),
    connections: async () =>
      Number((await db.query(`select count(*) as n from pg_stat_activity where ${mine}`))[0]?.n),
    cleanup: async () => {
      await db.drop();
    },
  };
};

const suite = (name: string, make: () => Promise<Backend>, enabled = true) =>
  describe.skipIf(!enabled)(`scoped job sessions on ${name}`, () => {
    let backend: Backend;
    let pool: JobPool;
    beforeAll(async () => {
      backend = await make();
      process.env.DATABASE_URL = backend.url;
      process.env.RT_DB_APPLICATION_NAME = "rt-session-test";
      pool = new JobPool({ registry, threads: 2, abortGraceMs: 2_000 });
      // Both threads open their ORM now: a thread still starting up when a job is aborted could
      // overrun the grace time and be terminated, failing its other jobs (retried in production).
      await Promise.all(
        ["warm0", "warm1"].map((username) =>
          pool.run(job(), envelope({ username, then: "succeed" }), { signal: never() }),
        ),
      );
    });
    afterAll(async () => {
      await pool?.close();
      delete process.env.DATABASE_URL;
      await backend?.cleanup();
    });

    it("commits a successful job's writes; rolls back on failure, abort and after a checkpoint", async () => {
      expect(await pool.run(job(), envelope({ username: "ok", then: "succeed" }), { signal: never() })).toBe(
        "seen",
      );
      const failed = await pool
        .run(job(), envelope({ username: "failed", then: "fail" }), { signal: never() })
        .catch((e: unknown) => e);
      expect(failed).toBeInstanceOf(JobFailure);
      const controller = new AbortController();
      const waiting = pool.run(job(), envelope({ username: "aborted", then: "wait" }), {
        signal: controller.signal,
      });
      setTimeout(() => controller.abort(new Error("cancelled")), 300);
      expect(((await waiting.catch((e: unknown) => e)) as Error).message).toBe("cancelled");
      await pool
        .run(job(), envelope({ username: "half", then: "checkpointThenFail" }), { signal: never() })
        .catch(() => {});
      // What was committed at the checkpoint stays; what came after it is rolled back.
      expect((await backend.usernames()).filter((u) => !u.startsWith("warm")).sort()).toEqual(["half", "ok"]);
    });

    it("leaves no session in a transaction and no connection beyond the pools, whatever the jobs did", async () => {
      const outcomes = ["succeed", "fail", "wait", "succeed", "fail", "wait", "succeed", "fail"] as const;
      const runs = outcomes.map((then, i) => {
        const controller = new AbortController();
        if (then === "wait") setTimeout(() => controller.abort(new Error("timed out")), 200);
        return pool
          .run(job(), envelope({ username: `u${i}`, then }), { signal: controller.signal })
          .catch((e: unknown) => `failed: ${String(e)}`);
      });
      const answers = await Promise.all(runs);
      // The jobs that succeed did, whatever happened to their neighbours in the same thread.
      expect(answers.filter((_, i) => outcomes[i] === "succeed")).toEqual(["seen", "seen", "seen"]);
      expect(await backend.openTransactions()).toBe(0);
      // Two threads, at most ten connections each (idle ones may stay pooled).
      expect(await backend.connections()).toBeLessThanOrEqual(20);
      expect((await backend.usernames()).filter((u) => /^u\d$/.test(u)).sort()).toEqual(["u0", "u3", "u6"]);
    });

    it("commits every one of many jobs writing at once from one thread", async () => {
      const busy = new JobPool({ registry, threads: 1 });
      try {
        const names = Array.from({ length: 24 }, (_, i) => `busy${i}`);
        const answers = await Promise.all(
          names.map((username) =>
            busy
              .run(job(), envelope({ username, then: "succeed" }), { signal: never() })
              .catch((e: unknown) => String(e)),
          ),
        );
        expect(answers.filter((a) => a !== "seen")).toEqual([]);
        expect((await backend.usernames()).filter((u) => u.startsWith("busy")).sort()).toEqual(
          [...names].sort(),
        );
      } finally {
        await busy.close();
      }
    });
  });

suite("SQLite", sqliteBackend);
suite("PostgreSQL", postgresBackend, hasPostgres);
