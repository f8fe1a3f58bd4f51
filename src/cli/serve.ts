import { groupsFor, profiles } from "../../config/profiles.js";
import { loadConfig } from "../../config/schema.js";
import { plainLogger } from "../log.js";
import { start } from "../runtime.js";
import { TaskService } from "../tasks/service.js";
import { startWebServer } from "../web/server.js";
import { say, untilSignalled } from "./signals.js";

/**
 * `ratatoskr serve`: the HTTP API (and later the progress socket and dashboard) on PORT, with
 * the embedded runtime: dispatchers here per WORKER_MODE (integrated: all, hybrid: some,
 * external: none), and always the background actors that keep the ledger and Redis in step.
 * With no REDIS_URL, a private redis-server (the embedded default).
 */
export const runServe = async (): Promise<number> => {
  const config = loadConfig();
  const groups = groupsFor(config, "web");
  const runtime = await start({ config, groups, ledger: true, allowPrivateRedis: true });
  const orm = runtime.orm;
  if (!orm) throw new Error("the runtime was started without its ledger");
  const tasks = new TaskService(orm, runtime.queue, {
    health: runtime.health,
    redisTimeoutMs: config.RT_SUBMIT_TIMEOUT_MS,
    submitLimit: { count: config.RT_SUBMIT_LIMIT, windowMs: config.RT_SUBMIT_WINDOW_S * 1000 },
    metrics: runtime.metrics,
  });
  let server;
  try {
    server = await startWebServer({
      orm,
      tasks,
      queue: runtime.queue,
      metrics: runtime.metrics,
      runtime: () => runtime.status(),
      logger: plainLogger(
        config.RT_LOG_FORMAT ?? profiles[config.RT_PROFILE].logFormat,
        config.RT_LOG_LEVEL,
        {
          worker: runtime.workerId,
          actor: "http",
        },
      ),
      host: config.RT_HTTP_HOST,
      port: config.PORT,
      bodyLimitBytes: config.RT_HTTP_BODY_LIMIT_KB * 1024,
    });
  } catch (error) {
    await runtime.stop({ graceful: false });
    throw error;
  }
  const web = server;
  say(
    `ratatoskr serve ${runtime.workerId}: http://${config.RT_HTTP_HOST}:${web.port} ` +
      `(workers: ${groups.map((g) => `${g.name} [${g.queues.join(">")}] x${g.concurrency}`).join(", ") || "none here"})`,
  );
  return untilSignalled({
    stop: async () => {
      web.close();
      await runtime.stop({ graceful: true });
    },
    done: runtime.done,
    shutdownMs: config.RT_SHUTDOWN_MS,
  });
};
