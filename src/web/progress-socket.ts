import type { MikroORM } from "@mikro-orm/core";
import type { HttpRequest, TemplatedApp, WebSocket } from "uWebSockets.js";
import { CaptionTask } from "../db/entities.js";
import { parseTaskId } from "../domain/task-id.js";
import type { PlainLogger } from "../log.js";
import { authenticate, type Caller } from "./auth.js";
import { DASHBOARD_TOPIC, type DashboardFeed } from "./dashboard-feed.js";
import { frame, type ProgressHub, stateFrames, topicOf } from "./progress-hub.js";
import { statusLine } from "./http.js";
import { handshakeRefusal } from "./websocket-handshake.js";

interface SocketState {
  caller: Caller | undefined;
  authenticating: boolean;
  readonly joined: Set<string>;
  closed: boolean;
}

/**
 * `Upgrade` and `Connection` as one comma-joined value each: a header sent on several lines means
 * the same as its values joined (RFC 9110, 5.3), and `getHeader` gives only the first line.
 */
const listHeaders = (req: HttpRequest) => {
  const lists = { upgrade: [] as string[], connection: [] as string[] };
  req.forEach((name, value) => {
    if (name === "upgrade" || name === "connection") lists[name].push(value);
  });
  return { upgrade: lists.upgrade.join(","), connection: lists.connection.join(",") };
};

/** A slow client may owe this much before it is dropped (it reconnects and catches up). */
const MAX_BACKPRESSURE = 1024 * 1024;

/**
 * `GET /ws`, the progress socket. The token comes as `?token=` or in a first `auth` message.
 * `join_task` subscribes to a task the caller may see (their own; admins any) and answers with
 * its current state first, so a client that reconnects misses nothing; `leave_task` stops.
 * `watch_dashboard` (admins) sends the dashboard's snapshot now and every few seconds.
 */
export const progressSocket = (
  app: TemplatedApp,
  orm: MikroORM,
  hub: ProgressHub,
  dashboard: DashboardFeed,
  logger: PlainLogger,
): TemplatedApp => {
  function send(ws: WebSocket<SocketState>, text: string) {
    if (!ws.getUserData().closed) ws.send(text);
  }

  async function handle(ws: WebSocket<SocketState>, text: string) {
    let message: { event?: unknown; data?: Record<string, unknown> };
    try {
      message = JSON.parse(text) as typeof message;
    } catch {
      send(ws, frame("error", { message: 'frames are JSON: {"event": ..., "data": ...}' }));
      return;
    }
    if (typeof message !== "object" || message === null || Array.isArray(message)) {
      send(ws, frame("error", { message: 'frames are JSON objects: {"event": ..., "data": {...}}' }));
      return;
    }
    const state = ws.getUserData();
    const data =
      typeof message.data === "object" && message.data !== null && !Array.isArray(message.data)
        ? message.data
        : {};
    if (message.event === "auth") {
      // One identity per socket: the tasks it joined were checked against it. Claimed before the
      // lookup, so two auth frames in a row cannot both get past this.
      if (state.caller || state.authenticating) {
        send(ws, frame("error", { message: "already authenticated" }));
        return;
      }
      state.authenticating = true;
      const caller = await authenticate(orm, `Bearer ${String(data.token ?? "")}`).catch(() => undefined);
      if (state.closed) return;
      if (!caller) {
        send(ws, frame("error", { message: "invalid token" }));
        ws.end(4401, "invalid token");
        return;
      }
      state.caller = caller;
      send(ws, frame("authenticated", { user_id: caller.userId, username: caller.username }));
      return;
    }
    const caller = state.caller;
    if (!caller) {
      send(ws, frame("error", { message: "authenticate first: ?token= or an auth message" }));
      return;
    }
    if (message.event === "watch_dashboard" || message.event === "unwatch_dashboard") {
      if (!caller.admin) {
        send(ws, frame("error", { message: "the dashboard needs the admin role" }));
        return;
      }
      if (message.event === "unwatch_dashboard") {
        ws.unsubscribe(DASHBOARD_TOPIC);
        return;
      }
      // Already watching: the next push comes anyway (a snapshot is not cheap; no spamming it).
      if (ws.isSubscribed(DASHBOARD_TOPIC)) return;
      ws.subscribe(DASHBOARD_TOPIC);
      const snapshot = await dashboard.snapshot();
      if (!state.closed) send(ws, frame("dashboard", snapshot));
      return;
    }
    const id = parseTaskId(data.task_id);
    if (message.event !== "join_task" && message.event !== "leave_task") {
      send(ws, frame("error", { message: `unknown event ${JSON.stringify(message.event)}` }));
      return;
    }
    if (id._tag === "None") {
      send(ws, frame("error", { message: "task_id is not a valid task id", task_id: data.task_id ?? null }));
      return;
    }
    const taskId = id.value;
    if (message.event === "leave_task") {
      if (state.joined.delete(taskId)) {
        ws.unsubscribe(topicOf(taskId));
        hub.unwatch(taskId);
      }
      return;
    }
    const row = await orm.em.fork().findOne(CaptionTask, { id: taskId });
    if (state.closed) return;
    if (!row || (!caller.admin && row.userId !== caller.userId)) {
      send(ws, frame("error", { message: "no such task", task_id: taskId }));
      return;
    }
    if (!state.joined.has(taskId)) {
      state.joined.add(taskId);
      ws.subscribe(topicOf(taskId));
      hub.watch(row);
    }
    // The current state first: a client that reconnects misses nothing.
    send(ws, stateFrames(row));
  }

  return app.ws<SocketState>("/ws", {
    maxPayloadLength: 16 * 1024,
    idleTimeout: 120,
    sendPingsAutomatically: true,
    maxBackpressure: MAX_BACKPRESSURE,
    closeOnBackpressureLimit: 1,
    upgrade: (res, req, context) => {
      const key = req.getHeader("sec-websocket-key");
      const protocol = req.getHeader("sec-websocket-protocol");
      const extensions = req.getHeader("sec-websocket-extensions");
      const refusal = handshakeRefusal({
        ...listHeaders(req),
        key,
        version: req.getHeader("sec-websocket-version"),
      });
      if (refusal) {
        const requestId = req.getHeader("x-request-id");
        logger.warn(
          `GET /ws ${refusal.status}: ${refusal.message}`,
          requestId ? { request_id: requestId } : {},
        );
        res.cork(() => {
          res.writeStatus(statusLine(refusal.status));
          for (const [name, value] of Object.entries(refusal.headers)) res.writeHeader(name, value);
          res.writeHeader("content-type", "application/json");
          res.end(JSON.stringify({ success: false, error: refusal.message, error_type: "bad_handshake" }));
        });
        return;
      }
      const token = new URLSearchParams(req.getQuery() ?? "").get("token");
      let aborted = false;
      res.onAborted(() => {
        aborted = true;
      });
      void (async () => {
        let caller: Caller | undefined;
        if (token) {
          caller = await authenticate(orm, `Bearer ${token}`).catch(() => undefined);
          if (!caller) {
            if (!aborted)
              res.cork(() => {
                res.writeStatus("401 Unauthorized").writeHeader("content-type", "application/json");
                res.end(
                  JSON.stringify({ success: false, error: "invalid token", error_type: "unauthorized" }),
                );
              });
            return;
          }
        }
        if (aborted) return;
        const state: SocketState = { caller, authenticating: false, joined: new Set(), closed: false };
        res.cork(() => res.upgrade(state, key, protocol, extensions, context));
      })();
    },
    open: (ws) => {
      const { caller } = ws.getUserData();
      if (caller) ws.send(frame("authenticated", { user_id: caller.userId, username: caller.username }));
    },
    message: (ws, message) => {
      const text = Buffer.from(message).toString("utf8");
      void handle(ws, text).catch((error: unknown) => {
        logger.error(`progress socket: ${error instanceof Error ? error.message : String(error)}`);
        send(ws, frame("error", { message: "internal error" }));
      });
    },
    close: (ws) => {
      const state = ws.getUserData();
      state.closed = true;
      for (const taskId of state.joined) hub.unwatch(taskId);
      state.joined.clear();
    },
  });
};
