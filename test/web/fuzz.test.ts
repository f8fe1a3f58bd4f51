import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import WebSocket from "ws";
import { fuzzSeed, prng } from "../support/fuzz.js";
import { useRedis } from "../support/redis.js";
import { useWebServer } from "../support/web.js";

/** Seeded, so a failing run can be replayed (its seed is in the test name). */
const SEED = fuzzSeed();

const PATHS = [
  "/caption/start",
  "/start_caption_generation",
  "/caption/api/status/:id",
  "/api/caption_generation/status/:id",
  "/caption/api/cancel/:id",
  "/api/caption_generation/cancel/:id",
  "/api/caption_generation/results/:id",
  "/api/caption_generation/retry/:id",
  "/admin/api/jobs",
  "/admin/api/jobs/:id/details",
  "/admin/api/jobs/:id/priority",
  "/admin/api/jobs/:id/cancel",
  "/admin/api/jobs/:id/restart",
  "/admin/api/jobs/:id/audit",
  "/admin/api/rq/queue-management",
  "/admin/api/dead/:p/retry",
  "/admin/api/dead/:p/purge",
  "/admin/api/audit",
  "/admin/api/dashboard",
  "/nowhere",
];

describe(`bad input, thrown at the server for a while (seed ${SEED})`, () => {
  const redis = useRedis();
  const web = useWebServer(redis);

  it("answers every malformed request with a clear 4xx in JSON, never a 5xx, and keeps serving", async () => {
    const random = prng(SEED);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const user = await web.account();
    const admin = await web.account("admin");
    const ids = [randomUUID(), "not-an-id", "../../etc/passwd", "%00", "9".repeat(300), "", "🙂"];
    const values = [
      null,
      true,
      -1,
      1e308,
      "x".repeat(5_000),
      [],
      {},
      [[[[[]]]]],
      "high",
      "urgent",
      0.5,
      "<script>",
    ];
    const bodies = [
      () => "{",
      () => '{"processing_delay": }',
      () => "\u0000\u0001\u0002garbage",
      () =>
        JSON.stringify({
          [pick([
            "processing_delay",
            "priority",
            "max_posts_per_run",
            "action",
            "queue_name",
            "reason",
            "entry_ids",
            "platform_connection_id",
          ])]: pick(values),
        }),
      () => JSON.stringify(Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`f${i}`, pick(values)]))),
      () => "[".repeat(2_000) + "]".repeat(2_000),
      () => "a=1&b=%ZZ&processing_delay=NaN",
      () => "x".repeat(70 * 1024),
    ];
    const deadline = Date.now() + 8_000;
    let sent = 0;
    while (Date.now() < deadline) {
      const path = pick(PATHS)
        .replace(":id", encodeURIComponent(pick(ids)))
        .replace(":p", pick(["low", "bogus"]));
      const method = pick(["GET", "POST", "PUT", "DELETE", "PATCH"]);
      const headers: Record<string, string> = {
        "content-type": pick([
          "application/json",
          "application/x-www-form-urlencoded",
          "text/plain",
          "application/json; charset=latin1",
        ]),
      };
      const token = pick([user.token, admin.token, "rt_wrong", ""]);
      if (token) headers.authorization = pick([`Bearer ${token}`, token, `Basic ${token}`]);
      const body = method === "GET" ? undefined : pick(bodies)();
      const response = await fetch(
        `${web.base}${path}?${pick(["", "limit=-5", "offset=x", "status=%FF", "q=" + "z".repeat(300)])}`,
        {
          method,
          headers,
          ...(body === undefined ? {} : { body }),
        },
      );
      const text = await response.text();
      expect(
        response.status,
        `${method} ${path} answered ${response.status}: ${text.slice(0, 200)}`,
      ).toBeLessThan(500);
      if (response.status >= 400) {
        const parsed = JSON.parse(text) as { success?: boolean; error_type?: string; error?: string };
        expect(parsed.success).toBe(false);
        expect(parsed.error_type).toEqual(expect.any(String));
        expect(parsed.error).toEqual(expect.any(String));
      }
      sent++;
    }
    expect(sent).toBeGreaterThan(50);
    expect((await fetch(`${web.base}/healthz`)).status).toBe(200);
    expect((await fetch(`${web.base}/readyz`)).status).toBe(200);
  }, 30_000);

  it("answers garbage frames on the progress socket with an error frame and stays open", async () => {
    const random = prng(SEED + 1);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const me = await web.account();
    const socket = new WebSocket(`${web.base.replace("http", "ws")}/ws?token=${me.token}`);
    const frames: Array<{ event: string; data: { message?: string } }> = [];
    socket.on("message", (data) => frames.push(JSON.parse(String(data)) as (typeof frames)[number]));
    await new Promise((resolve, reject) => socket.once("open", resolve).once("error", reject));
    const garbage = [
      () => "not json",
      () => "{",
      () =>
        JSON.stringify({
          event: pick(["join_task", "leave_task", "watch_dashboard", "auth", "??", 42, null]),
        }),
      () =>
        JSON.stringify({
          event: "join_task",
          data: { task_id: pick([randomUUID(), "x", 7, null, {}, "a".repeat(500)]) },
        }),
      () => JSON.stringify([1, 2, 3]),
      () => JSON.stringify({ event: "join_task", data: "not an object" }),
      () => "null",
    ];
    const count = 200;
    for (let i = 0; i < count; i++) socket.send(pick(garbage)());
    // One answer each at most; every answer to garbage is an error frame (the welcome aside).
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(socket.readyState).toBe(WebSocket.OPEN);
    const answers = frames.filter((f) => f.event !== "authenticated");
    expect(answers.length).toBeGreaterThan(0);
    // Each says what was wrong: none is the catch-all "internal error" of a frame that broke the handler.
    expect(answers.filter((f) => f.event !== "error" || f.data.message === "internal error")).toEqual([]);
    socket.close();
  }, 30_000);
});
