import { describe, expect, it } from "vitest";
import { hasPostgres } from "../support/ledger.js";
import { eventually } from "../support/queue.js";
import { useRedis } from "../support/redis.js";
import { useWebServer } from "../support/web.js";

// Both databases: the count is a raw select, whose times each keeps its own way.
const suite = (database: "sqlite" | "postgres", enabled: boolean) =>
  describe.skipIf(!enabled)(`the submission limit per user, on ${database}`, () => {
    const redis = useRedis();
    // Two per ten seconds here (the default is three per five minutes).
    const web = useWebServer(redis, { database, submitLimit: { count: 2, windowMs: 10_000 } });

    const start = async (token: string) => {
      const response = await fetch(`${web.base}/caption/start`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ processing_delay: 0 }),
      });
      return { response, body: (await response.json()) as Record<string, unknown> };
    };
    const startAndFinish = async (token: string) => {
      const { response, body } = await start(token);
      expect(response.status).toBe(202);
      const taskId = (body.data as { task_id: string }).task_id;
      await eventually(async () => (await web.row(taskId)).status === "completed", 15_000, "the task");
      return taskId;
    };

    it("answers 429 with Retry-After past the limit, for new tasks and retries, and lets the user in again after it", async () => {
      const me = await web.account();
      // One that fails for good (to retry below), and one that completes: two in the window.
      const failed = await web.doomedTask(me.userId, "normal");
      await eventually(async () => (await web.row(failed)).status === "failed", 15_000, "the task to fail");
      await startAndFinish(me.token);
      const refused = await start(me.token);
      expect(refused.response.status).toBe(429);
      const after = Number(refused.response.headers.get("retry-after"));
      expect(after).toBeGreaterThanOrEqual(1);
      expect(after).toBeLessThanOrEqual(10);
      expect(refused.body).toMatchObject({ success: false, error_type: "rate_limited", retry_after: after });
      // A retry is a submission too.
      const retry = await fetch(`${web.base}/api/caption_generation/retry/${failed}`, {
        method: "POST",
        headers: { authorization: `Bearer ${me.token}` },
      });
      expect(retry.status).toBe(429);
      // Others are not held back, nor are admins.
      await startAndFinish((await web.account()).token);
      const admin = await web.account("admin");
      for (let i = 0; i < 3; i++) await startAndFinish(admin.token);
      // Once the oldest leaves the window, the user is let in again.
      await new Promise((resolve) => setTimeout(resolve, after * 1000));
      await startAndFinish(me.token);
    }, 60_000);
  });

suite("sqlite", true);
suite("postgres", hasPostgres);
