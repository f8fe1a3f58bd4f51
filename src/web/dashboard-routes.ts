import { readFileSync } from "node:fs";
import type { MikroORM } from "@mikro-orm/core";
import { authenticate, requireAdmin } from "./auth.js";
import type { DashboardFeed } from "./dashboard-feed.js";
import { reply, type Reply } from "./http.js";
import type { Router } from "./router.js";

const asset = (name: string) => readFileSync(new URL(`./dashboard/${name}`, import.meta.url), "utf8");

/** The page holds no data: it loads, then asks for everything with the admin's token. */
const SECURITY_HEADERS = {
  "cache-control": "no-store",
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/**
 * `GET /admin`: the admin dashboard, a static page and its script and style (read once at
 * start); `GET /admin/api/dashboard`: the snapshot it shows, also pushed over the socket.
 */
export const dashboardRoutes = (router: Router, orm: MikroORM, feed: DashboardFeed): Router => {
  const files: Record<string, { text: string; type: string }> = {
    "/admin": { text: asset("index.html"), type: "text/html; charset=utf-8" },
    "/admin/dashboard.js": { text: asset("dashboard.js"), type: "text/javascript; charset=utf-8" },
    "/admin/dashboard.css": { text: asset("dashboard.css"), type: "text/css; charset=utf-8" },
  };
  for (const [path, file] of Object.entries(files))
    router.add("GET", path, async (): Promise<Reply> => ({
      status: 200,
      body: file.text,
      textType: file.type,
      headers: SECURITY_HEADERS,
    }));
  return router.add("GET", "/admin/api/dashboard", async (request) => {
    requireAdmin(await authenticate(orm, request.header("authorization")));
    return reply(200, { success: true, dashboard: await feed.snapshot() });
  });
};
