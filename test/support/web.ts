import { afterAll, beforeAll } from "vitest";
import { CaptionTask, User } from "../../src/db/entities.js";
import { Either } from "effect";
import { PRIORITIES, type Priority } from "../../src/domain/priority.js";
import { plainLogger } from "../../src/log.js";
import { type RuntimeHandle, start } from "../../src/runtime.js";
import { hashToken, newApiToken } from "../../src/security/tokens.js";
import { TaskService } from "../../src/tasks/service.js";
import { startWebServer, type WebServer } from "../../src/web/server.js";
import { type LedgerDb, openLedgerDb, seedUser } from "./ledger.js";
import type { RedisFixture } from "./redis.js";
import { testConfig } from "./runtime.js";

export const LEDGER_JOBS = new URL("./ledger-jobs.ts", import.meta.url).href;

export interface WebFixture {
  db: LedgerDb;
  runtime: RuntimeHandle;
  server: WebServer;
  /** `http://127.0.0.1:<port>` */
  base: string;
  /** A user with a default platform connection and an API token. */
  account(role?: "admin" | "viewer"): Promise<{ userId: number; connectionId: number; token: string }>;
  row(id: string): Promise<CaptionTask>;
  /**
   * A task that fails for good at its first attempt: no retries, and the test job fails every
   * run's first attempt at 13 posts. Returns its id.
   */
  /**
   * A task whose only attempt fails: "unlucky" with a plain message, "leaky" with one that
   * carries a token, a URL, file paths and a stack (LEAKY_TOKEN).
   */
  doomedTask(
    userId: number,
    priority: Priority,
    processingDelay?: number,
    how?: "unlucky" | "leaky",
  ): Promise<string>;
}

/**
 * A served instance for a test file: a ledger (SQLite unless told), the runtime with its workers (or none,
 * with `workers: false`, as a web process in `external` mode) and the HTTP/WebSocket server on a
 * free port, all real.
 */
export const useWebServer = (
  redis: RedisFixture,
  options: {
    workers?: boolean;
    database?: "sqlite" | "postgres";
    submitLimit?: { count: number; windowMs: number };
    /** More settings for the runtime, as environment variables. */
    env?: Record<string, string>;
  } = {},
): WebFixture => {
  const fixture = {} as WebFixture;
  beforeAll(async () => {
    fixture.db = await openLedgerDb(options.database ?? "sqlite");
    fixture.runtime = await start({
      config: testConfig(redis.server.url, {
        DATABASE_URL: fixture.db.url,
        RT_JOBS_MODULE: LEDGER_JOBS,
        ...options.env,
      }),
      groups: options.workers === false ? [] : [{ name: "all", queues: PRIORITIES, concurrency: 8 }],
      ledger: true,
    });
    const orm = fixture.runtime.orm!;
    fixture.server = await startWebServer({
      orm,
      tasks: new TaskService(orm, fixture.runtime.queue, {
        health: fixture.runtime.health,
        metrics: fixture.runtime.metrics,
        submitLimit: options.submitLimit,
      }),
      queue: fixture.runtime.queue,
      metrics: fixture.runtime.metrics,
      runtime: () => fixture.runtime.status(),
      logger: plainLogger("logfmt", "error"),
      host: "127.0.0.1",
      port: 0,
      bodyLimitBytes: 4096,
    });
    fixture.base = `http://127.0.0.1:${fixture.server.port}`;
    fixture.account = async (role = "viewer") => {
      const { userId, connectionId } = await seedUser(fixture.db.orm, { role });
      const token = newApiToken();
      await fixture.db.orm.em.fork().nativeUpdate(User, { id: userId }, { apiTokenHash: hashToken(token) });
      return { userId, connectionId, token };
    };
    fixture.row = async (id) => (await fixture.db.orm.em.fork().findOne(CaptionTask, { id }))!;
    fixture.doomedTask = async (userId, priority, processingDelay = 0, how = "unlucky") => {
      const submitted = await new TaskService(orm, fixture.runtime.queue).submit({
        userId,
        priority,
        settings: { max_posts_per_run: how === "leaky" ? 14 : 13, processing_delay: processingDelay },
        maxRetries: 0,
      });
      if (Either.isLeft(submitted)) throw new Error(`submit: ${submitted.left.message}`);
      return submitted.right.taskId;
    };
  });
  afterAll(async () => {
    fixture.server?.close();
    await fixture.runtime?.stop({ graceful: false });
    await fixture.db?.cleanup();
  });
  return fixture;
};
