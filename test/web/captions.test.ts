import { describe, expect, it } from "vitest";
import { CaptionTask, PlatformConnection, User } from "../../src/db/entities.js";
import { hasPostgres } from "../support/ledger.js";
import { LEAKY_TOKEN } from "../support/ledger-jobs.js";
import { eventually } from "../support/queue.js";
import { useRedis } from "../support/redis.js";
import { useWebServer, type WebFixture } from "../support/web.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

// Both databases: PostgreSQL answers later than SQLite, which once hid a request body lost
// behind an await.
const suite = (database: "sqlite" | "postgres", enabled: boolean) =>
  describe.skipIf(!enabled)(`the caption API over real HTTP, on ${database}`, () => {
    const redis = useRedis();
    const web = useWebServer(redis, { database });
    const account: WebFixture["account"] = (role) => web.account(role);
    const row: WebFixture["row"] = (id) => web.row(id);

    const call = async (
      method: string,
      path: string,
      options: {
        token?: string;
        json?: unknown;
        form?: Record<string, string>;
        raw?: string;
        type?: string;
      } = {},
    ) => {
      const headers: Record<string, string> = {};
      if (options.token) headers.authorization = `Bearer ${options.token}`;
      let body: string | undefined;
      if (options.json !== undefined) {
        headers["content-type"] = "application/json";
        body = JSON.stringify(options.json);
      } else if (options.form) {
        headers["content-type"] = "application/x-www-form-urlencoded";
        body = new URLSearchParams(options.form).toString();
      } else if (options.raw !== undefined) {
        headers["content-type"] = options.type ?? "application/json";
        body = options.raw;
      }
      const response = await fetch(`${web.base}${path}`, {
        method,
        headers,
        ...(body === undefined ? {} : { body }),
      });
      expect(response.headers.get("content-type")).toBe("application/json; charset=utf-8");
      return {
        status: response.status,
        // The answers' shapes are what these tests check, field by field: read them freely.
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        body: (await response.json()) as Record<string, any>,
        headers: response.headers,
      };
    };

    it("refuses callers without a valid token with 401, as JSON, without telling which part was wrong", async () => {
      const { token, userId } = await account();
      for (const auth of [undefined, "not-a-token", `${token}x`]) {
        const answer = await call("POST", "/caption/start", { ...(auth ? { token: auth } : {}), json: {} });
        expect(answer.status).toBe(401);
        expect(answer.body).toMatchObject({ success: false, error_type: "unauthorized" });
      }
      await web.db.orm.em.fork().nativeUpdate(User, { id: userId }, { isActive: false });
      expect((await call("GET", `/caption/api/status/${crypto.randomUUID()}`, { token })).status).toBe(401);
    });

    it("starts a task (current shape), refuses a second with 409 naming the first, and reports it to the end", async () => {
      const me = await account();
      const started = await call("POST", "/caption/start", {
        token: me.token,
        json: { processing_delay: 0.5 },
      });
      expect(started.status).toBe(202);
      expect(started.body).toMatchObject({
        success: true,
        message: expect.any(String),
        data: { task_id: expect.stringMatching(UUID) },
      });
      const taskId = started.body.data.task_id as string;
      expect(await row(taskId)).toMatchObject({
        userId: me.userId,
        priority: "normal",
        status: expect.stringMatching(/queued|running/),
      });

      const again = await call("POST", "/caption/start", { token: me.token, json: {} });
      expect(again.status).toBe(409);
      expect(again.body).toEqual({
        success: false,
        error: expect.any(String),
        error_type: "active_task_exists",
        task_id: taskId,
      });

      const flat = await call("GET", `/caption/api/status/${taskId}`, { token: me.token });
      expect(flat.status).toBe(200);
      expect(Object.keys(flat.body).sort()).toEqual([
        "current_step",
        "message",
        "progress",
        "status",
        "success",
      ]);
      await eventually(
        async () =>
          (await call("GET", `/caption/api/status/${taskId}`, { token: me.token })).body.status ===
          "completed",
        20_000,
        "the task to complete",
      );
      const nested = await call("GET", `/api/caption_generation/status/${taskId}`, { token: me.token });
      expect(nested.body).toEqual({
        success: true,
        status: {
          task_id: taskId,
          status: "completed",
          progress_percent: 100,
          current_step: "Completed",
          created_at: expect.any(String),
          started_at: expect.any(String),
          completed_at: expect.any(String),
          error_message: null,
          results: { posts_processed: 1, captions_generated: 2, task_id: taskId },
        },
      });
      const results = await call("GET", `/api/caption_generation/results/${taskId}`, { token: me.token });
      expect(results.body).toEqual({ success: true, task_id: taskId, results: nested.body.status.results });
      // Finished, so a new one may start.
      expect((await call("POST", "/caption/start", { token: me.token, json: {} })).status).toBe(202);
    });

    it("tells why a task failed by category and a safe message, to users and admins alike", async () => {
      const me = await account();
      const admin = await account("admin");
      const taskId = await web.doomedTask(me.userId, "normal", 0, "leaky");
      await eventually(async () => (await row(taskId)).status === "failed", 20_000, "the task to fail");
      const seen = await call("GET", `/api/caption_generation/status/${taskId}`, { token: me.token });
      expect(seen.body.status).toMatchObject({
        status: "failed",
        error_category: "unavailable",
        error_message: "platform unavailable: GET https://social.example answered 503 (read [path])",
      });
      const short = await call("GET", `/caption/api/status/${taskId}`, { token: me.token });
      expect(short.body.message).toBe(seen.body.status.error_message);
      for (const body of [seen.body, short.body]) {
        const text = JSON.stringify(body);
        for (const secret of [LEAKY_TOKEN, "/srv/rt", "accounts/7", "fetchPosts"])
          expect(text).not.toContain(secret);
      }
      // Admins get the same care (the whole text is for the server's log), with more of it.
      const details = await call("GET", `/admin/api/jobs/${taskId}/details`, { token: admin.token });
      const shown = JSON.stringify(details.body);
      expect(shown).toContain("platform unavailable: GET https://social.example answered 503");
      for (const secret of [LEAKY_TOKEN, "/srv/rt", "accounts/7", "fetchPosts"])
        expect(shown).not.toContain(secret);
      // Stored redacted: the token never reached the database.
      expect((await row(taskId)).errorMessage).not.toContain(LEAKY_TOKEN);
    });

    it("takes the legacy route with a form body, reading numbers and booleans from strings", async () => {
      const me = await account();
      const answer = await call("POST", "/start_caption_generation", {
        token: me.token,
        form: {
          max_posts_per_run: "7",
          reprocess_existing: "on",
          processing_delay: "0.5",
          platform_connection_id: String(me.connectionId),
        },
      });
      expect(answer.status).toBe(200);
      expect(answer.body).toEqual({
        success: true,
        task_id: expect.stringMatching(UUID),
        message: expect.any(String),
        redirect_url: `/caption/status/${answer.body.task_id}`,
      });
      const settings = JSON.parse((await row(answer.body.task_id)).settingsJson);
      expect(settings).toMatchObject({
        max_posts_per_run: 7,
        reprocess_existing: true,
        processing_delay: 0.5,
      });
    });

    it("lists every bad field with 400, and refuses a connection that is not the caller's", async () => {
      const me = await account();
      const other = await account();
      const bad = await call("POST", "/caption/start", {
        token: me.token,
        json: { max_posts_per_run: 0, processing_delay: "soon", max_caption_length: 5000 },
      });
      expect(bad.status).toBe(400);
      expect(bad.body).toMatchObject({ success: false, error_type: "validation_error" });
      expect((bad.body.details as Array<{ field: string }>).map((d) => d.field).sort()).toEqual([
        "settings.max_caption_length",
        "settings.max_posts_per_run",
        "settings.processing_delay",
      ]);
      const badId = await call("POST", "/caption/start", {
        token: me.token,
        json: { platform_connection_id: "x" },
      });
      expect(badId.body.details).toEqual([{ field: "platform_connection_id", message: expect.any(String) }]);
      // Past PostgreSQL's integer: a 400 like any other id no connection has, never the database's error.
      const huge = await call("POST", "/caption/start", {
        token: me.token,
        json: { platform_connection_id: 2 ** 31 },
      });
      expect(huge.status).toBe(400);
      const foreign = await call("POST", "/caption/start", {
        token: me.token,
        json: { platform_connection_id: other.connectionId },
      });
      expect(foreign.status).toBe(400);
      expect(foreign.body.error_type).toBe("no_platform_connection");
    });

    it("runs on the caller's default active connection, else their oldest active one, and never an inactive one", async () => {
      const me = await account();
      const em = web.db.orm.em.fork();
      const oldest = await em.findOneOrFail(PlatformConnection, { id: me.connectionId });
      const another = (fields: { isDefault?: boolean; isActive?: boolean }) =>
        em.create(PlatformConnection, {
          userId: me.userId,
          name: `extra-${crypto.randomUUID().slice(0, 8)}`,
          platformType: "mastodon",
          instanceUrl: oldest.instanceUrl,
          username: oldest.username,
          accessTokenEncrypted: oldest.accessTokenEncrypted,
          ...fields,
        });
      // The default is the newest active one, so neither "oldest first" nor "newest first" finds it.
      oldest.isDefault = false;
      await em.flush();
      const inactive = another({ isActive: false });
      const middle = another({});
      const byDefault = another({ isDefault: true });
      await em.flush();
      const newest = another({});
      await em.flush();
      const runsOn = async (json: Record<string, unknown>) => {
        const answer = await call("POST", "/caption/start", { token: me.token, json });
        if (answer.status !== 202) return answer.body.error_type as string;
        const task = await row(answer.body.data.task_id);
        // Ended, so that the user may submit again.
        await web.db.orm.em.fork().nativeUpdate(CaptionTask, { id: task.id }, { status: "cancelled" });
        return task.platformConnectionId;
      };
      expect(await runsOn({})).toBe(byDefault.id);
      // No active default: the oldest active one.
      await em.nativeUpdate(PlatformConnection, { id: byDefault.id }, { isActive: false });
      await em.nativeUpdate(PlatformConnection, { id: oldest.id }, { isActive: false });
      expect(await runsOn({})).toBe(middle.id);
      expect(await runsOn({ platform_connection_id: newest.id })).toBe(newest.id);
      for (const id of [inactive.id, byDefault.id, oldest.id])
        expect(await runsOn({ platform_connection_id: id })).toBe("no_platform_connection");
    });

    it("sets priority by role: high for admins unless they choose, always normal for others", async () => {
      const admin = await account("admin");
      const viewer = await account();
      const a = await call("POST", "/caption/start", { token: admin.token, json: {} });
      expect((await row(a.body.data.task_id)).priority).toBe("high");
      const admin2 = await account("admin");
      const b = await call("POST", "/caption/start", { token: admin2.token, json: { priority: "low" } });
      expect((await row(b.body.data.task_id)).priority).toBe("low");
      const v = await call("POST", "/caption/start", { token: viewer.token, json: { priority: "urgent" } });
      expect((await row(v.body.data.task_id)).priority).toBe("normal");
      const admin3 = await account("admin");
      const wrong = await call("POST", "/caption/start", { token: admin3.token, json: { priority: "asap" } });
      expect(wrong.body.details).toEqual([{ field: "priority", message: expect.any(String) }]);
    });

    it("hides other users' tasks (404 like an unknown one), shows them to admins, and refuses malformed ids", async () => {
      const owner = await account();
      const stranger = await account();
      const admin = await account("admin");
      const { body } = await call("POST", "/caption/start", {
        token: owner.token,
        json: { processing_delay: 0.2 },
      });
      const taskId = body.data.task_id as string;
      for (const path of [
        `/caption/api/status/${taskId}`,
        `/api/caption_generation/status/${taskId}`,
        `/api/caption_generation/results/${taskId}`,
      ]) {
        const answer = await call("GET", path, { token: stranger.token });
        expect(answer.status).toBe(404);
        expect(answer.body.error_type).toBe("not_found");
      }
      for (const path of [
        `/caption/api/cancel/${taskId}`,
        `/api/caption_generation/cancel/${taskId}`,
        `/api/caption_generation/retry/${taskId}`,
      ])
        expect((await call("POST", path, { token: stranger.token })).status).toBe(404);
      expect(
        (await call("GET", `/caption/api/status/${crypto.randomUUID()}`, { token: owner.token })).status,
      ).toBe(404);
      expect((await call("GET", `/caption/api/status/${taskId}`, { token: admin.token })).status).toBe(200);
      for (const id of ["42", "not-a-uuid", taskId.toUpperCase(), "%E0%A4%A"]) {
        const answer = await call("GET", `/caption/api/status/${id}`, { token: owner.token });
        expect(answer.status).toBe(400);
      }
    });

    it("cancels a running task through both routes' shapes, then refuses to cancel it again; retries it as a new task", async () => {
      const me = await account();
      const { body } = await call("POST", "/caption/start", {
        token: me.token,
        json: { processing_delay: 30 },
      });
      const taskId = body.data.task_id as string;
      await eventually(async () => (await row(taskId)).status === "running", 10_000, "the task to run");
      const cancelled = await call("POST", `/api/caption_generation/cancel/${taskId}`, {
        token: me.token,
        json: { reason: "changed my mind" },
      });
      expect(cancelled.status).toBe(200);
      expect(cancelled.body).toMatchObject({ success: true, status: "cancelling" });
      // Within seconds, by the events channel: the lease renewal (every 10 s here) would be slower.
      await eventually(async () => (await row(taskId)).status === "cancelled", 5_000, "the cancel to land");
      const again = await call("POST", `/caption/api/cancel/${taskId}`, { token: me.token });
      expect(again.status).toBe(409);
      expect(again.body).toMatchObject({ error_type: "task_ended", status: "cancelled" });
      const notDone = await call("GET", `/api/caption_generation/results/${taskId}`, { token: me.token });
      expect(notDone.body).toMatchObject({ error_type: "not_completed", status: "cancelled" });

      const retried = await call("POST", `/api/caption_generation/retry/${taskId}`, { token: me.token });
      expect(retried.status).toBe(202);
      expect(retried.body.task_id).not.toBe(taskId);
      const twice = await call("POST", `/api/caption_generation/retry/${taskId}`, { token: me.token });
      expect(twice.body).toMatchObject({ error_type: "active_task_exists", task_id: retried.body.task_id });
      await call("POST", `/caption/api/cancel/${retried.body.task_id}`, { token: me.token });
    });

    it("answers bad requests with clear JSON errors and echoes request ids", async () => {
      const me = await account();
      const tooBig = await call("POST", "/caption/start", {
        token: me.token,
        raw: JSON.stringify({ pad: "x".repeat(5000) }),
      });
      expect(tooBig.status).toBe(413);
      expect(tooBig.body.error_type).toBe("payload_too_large");
      expect(
        (await call("POST", "/caption/start", { token: me.token, raw: "{not json" })).body.error_type,
      ).toBe("invalid_json");
      expect((await call("POST", "/caption/start", { token: me.token, raw: "[1,2]" })).status).toBe(400);
      expect(
        (await call("POST", "/caption/start", { token: me.token, raw: "hello", type: "text/plain" })).status,
      ).toBe(415);
      const unknown = await call("GET", "/no/such/route");
      expect(unknown.status).toBe(404);
      expect(unknown.body).toMatchObject({ success: false, error_type: "not_found" });
      expect((await call("GET", "/caption/start", { token: me.token })).status).toBe(405);
      const traced = await fetch(`${web.base}/healthz`, { headers: { "x-request-id": "trace-123" } });
      expect(traced.headers.get("x-request-id")).toBe("trace-123");
      expect((await fetch(`${web.base}/healthz`)).headers.get("x-request-id")).toMatch(UUID);
    });

    it("is healthy and ready; stays ready on the database queue while Redis is down", async () => {
      expect(await call("GET", "/healthz")).toMatchObject({ status: 200, body: { status: "ok" } });
      const ready = await call("GET", "/readyz");
      expect(ready.status).toBe(200);
      expect(ready.body).toMatchObject({
        ready: true,
        reasons: [],
        checks: { queue: { backend: "redis" }, database: { ok: true }, runtime: { state: "running" } },
      });
      await redis.server.kill();
      try {
        await eventually(
          async () => (await call("GET", "/readyz")).body.checks.queue.backend !== "redis",
          10_000,
          "the outage",
        );
        const during = await call("GET", "/readyz");
        expect(during).toMatchObject({
          status: 200,
          body: { ready: true, checks: { queue: { backend: "database (redis down)" } } },
        });
        // At least this one: on a loaded machine a slow ping may have counted as one before.
        expect(during.body.checks.queue.outages).toBeGreaterThanOrEqual(1);
        // Submissions still work, into the database queue.
        const me = await account();
        const started = await call("POST", "/caption/start", { token: me.token, json: {} });
        expect(started.status).toBe(202);
        expect((await row(started.body.data.task_id)).queueBackend).toBe("database");
      } finally {
        await redis.server.restart();
      }
    });
  });

suite("sqlite", true);
suite("postgres", hasPostgres);
