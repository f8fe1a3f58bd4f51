import type { MikroORM } from "@mikro-orm/core";
import type { PlainLogger } from "../log.js";
import type { RuntimeStatus } from "../runtime.js";
import { reply } from "./http.js";
import type { Router } from "./router.js";

const within = <A>(ms: number, promise: Promise<A>) =>
  Promise.race([
    promise,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms).unref(),
    ),
  ]);

/**
 * `/healthz`: the process answers. `/readyz`: it can take and run work — tasks have a queue
 * (Redis, or the database fallback while Redis is down), the database answers, and the runtime's
 * supervision tree is running. 503 names what is not. It answers anyone, so the database's own
 * error text (hosts, users) goes to the log, not into the answer.
 */
export const healthRoutes = (
  router: Router,
  orm: MikroORM,
  runtime: () => RuntimeStatus,
  logger: PlainLogger,
): Router =>
  router
    .add("GET", "/healthz", async () => reply(200, { status: "ok" }))
    .add("GET", "/readyz", async () => {
      const reasons: string[] = [];
      const status = runtime();
      let database: { ok: boolean; error?: string } = { ok: true };
      try {
        await within(2_000, orm.em.getConnection().execute("select 1"));
      } catch (error) {
        const detail = error instanceof Error ? error.message : String(error);
        logger.warn(`readyz: the database check failed: ${detail}`);
        database = { ok: false, error: detail.startsWith("no answer") ? detail : "the query failed" };
        reasons.push(`database unreachable: ${database.error}`);
      }
      if (status.state !== "running")
        reasons.push(`runtime ${status.state}${status.failure ? `: ${status.failure}` : ""}`);
      const { mode, forced, since } = status.health;
      // With Redis down the database queue carries the work: ready, as long as the database is.
      const queue = mode === "redis" ? "redis" : forced ? "database (rollback)" : "database (redis down)";
      return reply(reasons.length === 0 ? 200 : 503, {
        ready: reasons.length === 0,
        reasons,
        checks: {
          queue: {
            backend: queue,
            since: new Date(since).toISOString(),
            outages: status.health.transitions.toDatabase,
          },
          database,
          runtime: { state: status.state },
        },
      });
    });
