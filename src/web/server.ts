import type { MikroORM } from "@mikro-orm/core";
import uWS from "uWebSockets.js";
import type { PlainLogger } from "../log.js";
import type { RuntimeStatus } from "../runtime.js";
import type { Queue } from "../queue/queue.js";
import { duplicateConnection } from "../redis/connection.js";
import type { TaskService } from "../tasks/service.js";
import type { JobMetrics } from "../metrics/job-metrics.js";
import { adminRoutes } from "./admin-routes.js";
import { metricsRoute } from "./metrics-route.js";
import { captionRoutes } from "./caption-routes.js";
import { healthRoutes } from "./health-routes.js";
import { exchange, HttpError, reply } from "./http.js";
import { DashboardFeed } from "./dashboard-feed.js";
import { dashboardRoutes } from "./dashboard-routes.js";
import { ProgressHub } from "./progress-hub.js";
import { progressSocket } from "./progress-socket.js";
import { Router } from "./router.js";

export interface WebServerOptions {
  readonly orm: MikroORM;
  readonly tasks: TaskService;
  /** The queue: its events channel feeds the progress socket. */
  readonly queue: Queue;
  /** The runtime's counters, for /metrics. */
  readonly metrics: JobMetrics;
  readonly runtime: () => RuntimeStatus;
  readonly logger: PlainLogger;
  readonly host: string;
  /** 0 picks a free port (tests); the one taken is in the handle. */
  readonly port: number;
  readonly bodyLimitBytes: number;
}

export interface WebServer {
  readonly port: number;
  close(): void;
}

/**
 * The HTTP side of `ratatoskr serve` on uWebSockets.js: one catch-all handler that captures the
 * request, routes it, and answers JSON. Errors a route throws on purpose (HttpError) become their
 * status; anything else is a 500 with the request id and no detail, the detail going to the log.
 */
export const startWebServer = async (options: WebServerOptions): Promise<WebServer> => {
  const router = new Router();
  healthRoutes(router, options.orm, options.runtime, options.logger);
  captionRoutes(router, options.orm, options.tasks);
  adminRoutes(router, options);
  metricsRoute(router, options);

  const app = uWS.App();
  const subscriber = duplicateConnection(options.queue.redis);
  subscriber.on("error", () => {});
  const hub = new ProgressHub(app, options.orm, subscriber);
  hub.start(options.queue.keys.events);
  const dashboard = new DashboardFeed(app, options);
  dashboard.start();
  dashboardRoutes(router, options.orm, dashboard);
  // The socket's path without a handshake (uWS upgrades only requests with a key to "/ws"; the
  // router also matches "/ws/", so the message names the path).
  router.add("GET", "/ws", () =>
    Promise.reject(
      new HttpError(
        426,
        "upgrade_required",
        "the progress WebSocket is GET /ws, opened with a WebSocket handshake",
        {},
        { upgrade: "websocket" },
      ),
    ),
  );
  progressSocket(app, options.orm, hub, dashboard, options.logger);

  app.any("/*", (res, req) => {
    const { request, send } = exchange(res, req, options.bodyLimitBytes);
    const started = Date.now();
    void (async () => {
      try {
        const { handler, params } = router.resolve(request);
        return await handler({ ...request, params });
      } catch (error) {
        if (error instanceof HttpError) return error.toReply();
        options.logger.error(`${request.method} ${request.path} failed: ${describe(error)}`, {
          request_id: request.id,
        });
        return reply(500, {
          success: false,
          error: "internal error",
          error_type: "internal",
          request_id: request.id,
        });
      }
    })()
      .then((answer) => {
        send(answer);
        if (answer.status >= 500 || request.path !== "/healthz")
          options.logger.info(`${request.method} ${request.path} ${answer.status}`, {
            request_id: request.id,
            ms: Date.now() - started,
            ...answer.log,
          });
      })
      // Writing the answer failed (the client went away in a way uWS did not report first).
      .catch((error: unknown) =>
        options.logger.warn(`${request.method} ${request.path}: answer not sent: ${describe(error)}`, {
          request_id: request.id,
        }),
      );
  });

  const listenSocket = await new Promise<uWS.us_listen_socket>((resolve, reject) =>
    app.listen(options.host, options.port, (socket) =>
      socket ? resolve(socket) : reject(new Error(`cannot listen on ${options.host}:${options.port}`)),
    ),
  ).catch((error: unknown) => {
    hub.stop();
    dashboard.stop();
    throw error;
  });
  return {
    port: uWS.us_socket_local_port(listenSocket),
    // New connections are refused from here; requests under way are answered.
    close: () => {
      uWS.us_listen_socket_close(listenSocket);
      hub.stop();
      dashboard.stop();
    },
  };
};

const describe = (error: unknown) =>
  error instanceof Error ? `${error.name}: ${error.message}` : String(error);
