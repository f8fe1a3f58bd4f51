import { connect as connectTcp } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { eventually } from "../support/queue.js";
import { useRedis } from "../support/redis.js";
import { supervisors } from "../support/processes.js";
import { LEDGER_JOBS, useWebServer, type WebFixture } from "../support/web.js";

interface Frame {
  event: string;
  data: Record<string, unknown>;
}

/** A real WebSocket client that keeps every frame it got, in order. */
const connect = async (url: string) => {
  const socket = new WebSocket(url);
  const frames: Frame[] = [];
  socket.on("message", (data) => frames.push(JSON.parse(String(data)) as Frame));
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
  });
  return {
    socket,
    frames,
    send: (event: string, data: unknown) => socket.send(JSON.stringify({ event, data })),
    /** Waits for a frame matching `predicate` that arrived after frame number `from`. */
    next: async (predicate: (f: Frame) => boolean, from = 0, timeoutMs = 15_000) => {
      let found: Frame | undefined;
      await eventually(
        () => (found = frames.slice(from).find(predicate)) !== undefined,
        timeoutMs,
        "a frame",
      );
      return found!;
    },
  };
};

const wsUrl = (web: WebFixture, token?: string) =>
  `${web.base.replace("http", "ws")}/ws${token ? `?token=${token}` : ""}`;

/**
 * A request written by hand on a TCP socket (no WebSocket client would send a broken handshake),
 * answered with its status line and headers, lower-cased, and its body. A connection that ends
 * or stays silent before a whole answer fails at once, saying what it had.
 */
const rawGet = (web: WebFixture, headers: string, path = "/ws") =>
  new Promise<{ status: number; head: string; body: string }>((resolve, reject) => {
    const { hostname, port } = new URL(web.base);
    const socket = connectTcp(Number(port), hostname, () =>
      socket.write(`GET ${path} HTTP/1.1\r\nHost: ${hostname}\r\n${headers}\r\n`),
    );
    let got = "";
    const fail = (why: string) => {
      socket.destroy();
      reject(new Error(`${why} before a whole answer to ${JSON.stringify(headers)}: ${JSON.stringify(got)}`));
    };
    socket.setTimeout(5_000, () => fail("no answer for 5 s"));
    socket.on("end", () => fail("the connection ended"));
    socket.on("error", (error) => fail(error.message));
    socket.on("data", (chunk) => {
      got += String(chunk);
      const end = got.indexOf("\r\n\r\n");
      const length = /content-length: (\d+)/i.exec(got)?.[1];
      // A 101 has no body; a refusal's ends at its length.
      if (end >= 0 && (got.startsWith("HTTP/1.1 101") || got.length >= end + 4 + Number(length ?? 0))) {
        socket.removeAllListeners("end");
        socket.destroy();
        resolve({
          status: Number(got.slice(9, 12)),
          head: got.slice(0, end).toLowerCase(),
          body: got.slice(end + 4),
        });
      }
    });
  });

const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const HANDSHAKE = {
  upgrade: "Upgrade: websocket\r\n",
  connection: "Connection: keep-alive, Upgrade\r\n",
  key: `Sec-WebSocket-Key: ${KEY}\r\n`,
  version: "Sec-WebSocket-Version: 13\r\n",
};

const startTask = async (web: WebFixture, token: string, settings: Record<string, unknown>) => {
  const response = await fetch(`${web.base}/caption/start`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(settings),
  });
  return ((await response.json()) as { data: { task_id: string } }).data.task_id;
};

describe("the progress socket", () => {
  const redis = useRedis();
  const web = useWebServer(redis);

  it("sends the current state on join, then live progress, then the completion with results", async () => {
    const me = await web.account();
    const client = await connect(wsUrl(web, me.token));
    await client.next((f) => f.event === "authenticated");
    const taskId = await startTask(web, me.token, { processing_delay: 3 });
    client.send("join_task", { task_id: taskId });
    const first = await client.next((f) => f.data.task_id === taskId);
    expect(first.event).toBe("progress_update");
    expect(first.data).toMatchObject({ task_id: taskId, progress_percent: expect.any(Number) });
    const done = await client.next((f) => f.event === "task_completed");
    expect(done.data).toEqual({
      task_id: taskId,
      results: { posts_processed: 1, captions_generated: 2, task_id: taskId },
    });
    const seen = client.frames
      .filter((f) => f.event === "progress_update" && f.data.task_id === taskId)
      .map((f) => f.data.progress_percent as number);
    expect(seen.some((p) => p > 0 && p < 100)).toBe(true);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
    client.socket.close();
  });

  it("catches a reconnecting client up: joining an ended task gets its end at once", async () => {
    const me = await web.account();
    const taskId = await startTask(web, me.token, { processing_delay: 0.1 });
    await eventually(async () => (await web.row(taskId)).status === "completed", 15_000, "the task");
    const client = await connect(wsUrl(web));
    client.send("auth", { token: me.token });
    await client.next((f) => f.event === "authenticated");
    client.send("join_task", { task_id: taskId });
    expect((await client.next((f) => f.data.task_id === taskId)).event).toBe("task_completed");
    client.socket.close();
  });

  it("keeps users to their own tasks (admins may join any), and tells of cancels", async () => {
    const owner = await web.account();
    const stranger = await web.account();
    const admin = await web.account("admin");
    const taskId = await startTask(web, owner.token, { processing_delay: 30 });
    const nosy = await connect(wsUrl(web, stranger.token));
    nosy.send("join_task", { task_id: taskId });
    expect(await nosy.next((f) => f.event === "error")).toMatchObject({
      data: { message: "no such task", task_id: taskId },
    });
    const boss = await connect(wsUrl(web, admin.token));
    boss.send("join_task", { task_id: taskId });
    await boss.next((f) => f.event === "progress_update" && f.data.task_id === taskId);
    await fetch(`${web.base}/caption/api/cancel/${taskId}`, {
      method: "POST",
      headers: { authorization: `Bearer ${owner.token}` },
    });
    expect((await boss.next((f) => f.event === "task_cancelled")).data).toMatchObject({ task_id: taskId });
    expect(nosy.frames.filter((f) => f.data.task_id === taskId && f.event !== "error")).toEqual([]);
    nosy.socket.close();
    boss.socket.close();
  });

  it("tells of a task that failed, with its error", async () => {
    const me = await web.account();
    const taskId = await web.doomedTask(me.userId, "normal", 0.5);
    const client = await connect(wsUrl(web, me.token));
    client.send("join_task", { task_id: taskId });
    const failed = await client.next((f) => f.event === "task_error");
    expect(failed.data).toEqual({ task_id: taskId, error: "unlucky first attempt", category: "failed" });
    client.socket.close();
  });

  it("drops a client that stops reading once it owes more than the backpressure limit; others go on", async () => {
    const me = await web.account();
    const taskId = await startTask(web, me.token, { processing_delay: 60 });
    await eventually(async () => (await web.row(taskId)).status === "running", 10_000, "the task to run");
    const slow = await connect(wsUrl(web, me.token));
    const brisk = await connect(wsUrl(web, me.token));
    for (const c of [slow, brisk]) {
      c.send("join_task", { task_id: taskId });
      await c.next((f) => f.data.task_id === taskId);
    }
    let slowClosed = false;
    slow.socket.on("close", () => (slowClosed = true));
    // The slow client's process stops reading its socket: the kernel's buffers fill, then uWS's.
    (slow.socket as unknown as { _socket: { pause(): void } })._socket.pause();
    // Flood the task's topic with progress events (as a busy job would), ~40 MB in all, in bursts
    // small enough for a reader in good health: the brisk client (reading in this same process)
    // gets each burst before the next is sent, so only the slow client falls behind.
    const publisher = redis.client();
    const padding = "x".repeat(4_000);
    for (let burst = 0; burst < 100; burst++) {
      const pipeline = publisher.pipeline();
      for (let i = 0; i < 100; i++) {
        const step = `burst ${burst} event ${i} ${padding}`;
        pipeline.publish(
          web.runtime.queue.keys.events,
          JSON.stringify({
            type: "progress",
            id: taskId,
            attempt: 1,
            percent: 1 + Math.floor(burst / 2),
            step,
          }),
        );
      }
      await pipeline.exec();
      const last = `burst ${burst} event 99 `;
      await brisk.next((f) => String(f.data.current_step ?? "").startsWith(last), 0, 10_000);
    }
    (slow.socket as unknown as { _socket: { resume(): void } })._socket.resume();
    await eventually(() => slowClosed, 30_000, "the slow client to be dropped");
    expect(brisk.socket.readyState).toBe(WebSocket.OPEN);
    // Dropped, it reconnects and catches up: the current state comes first.
    const again = await connect(wsUrl(web, me.token));
    again.send("join_task", { task_id: taskId });
    expect((await again.next((f) => f.data.task_id === taskId)).event).toBe("progress_update");
    for (const c of [brisk, again]) c.socket.close();
    await fetch(`${web.base}/caption/api/cancel/${taskId}`, {
      method: "POST",
      headers: { authorization: `Bearer ${me.token}` },
    });
  }, 60_000);

  it("refuses a bad token at the door, and anything but auth before authenticating", async () => {
    const refused = new WebSocket(wsUrl(web, "rt_wrong"));
    const status = await new Promise<number>((resolve) =>
      refused.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0)),
    );
    expect(status).toBe(401);
    const anonymous = await connect(wsUrl(web));
    anonymous.send("join_task", { task_id: crypto.randomUUID() });
    expect((await anonymous.next((f) => f.event === "error")).data.message).toMatch(/authenticate first/);
    anonymous.socket.send("not json");
    await anonymous.next((f) => f.event === "error" && String(f.data.message).includes("JSON"));
    anonymous.send("auth", { token: "rt_wrong" });
    await new Promise((resolve) => anonymous.socket.once("close", resolve));
  });

  it("upgrades only a whole opening handshake, and says what is missing from any other", async () => {
    const handshake = (leave: keyof typeof HANDSHAKE | "", extra = "") =>
      Object.entries(HANDSHAKE)
        .filter(([name]) => name !== leave)
        .map(([, header]) => header)
        .join("") + extra;
    // The whole handshake, as a proxy may send it (Connection with another token first), in
    // other cases, and with Connection on two lines (the same as its values joined).
    for (const whole of [
      handshake(""),
      handshake("upgrade", "Upgrade: WebSocket\r\n").replace("keep-alive, Upgrade", "upgrade"),
      handshake("connection", "Connection: keep-alive\r\nConnection: Upgrade\r\n"),
    ]) {
      const upgraded = await rawGet(web, whole);
      expect(upgraded.status, whole).toBe(101);
      expect(upgraded.head).toContain("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=");
    }
    for (const [leave, missing] of [
      ["upgrade", "Upgrade: websocket"],
      ["connection", "Connection: Upgrade"],
    ] as const) {
      const refused = await rawGet(web, handshake(leave));
      expect(refused.status, leave).toBe(400);
      expect(JSON.parse(refused.body)).toEqual({
        success: false,
        error: `a WebSocket handshake needs the header ${missing}`,
        error_type: "bad_handshake",
      });
    }
    // A key of the right length but not base64; one of another length uWS itself takes for no
    // handshake, which gets the plain request's answer (below).
    const badKey = await rawGet(web, handshake("key", "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\n"));
    expect(badKey.status).toBe(400);
    expect(JSON.parse(badKey.body).error).toBe("Sec-WebSocket-Key must be 16 bytes in base64");
    const oldVersion = await rawGet(web, handshake("version", "Sec-WebSocket-Version: 8\r\n"));
    expect(oldVersion.status).toBe(426);
    expect(oldVersion.head).toContain("sec-websocket-version: 13");
    expect(oldVersion.head).toContain("upgrade: websocket");
    // No handshake at all: the path is a socket, and the answer says so.
    expect((await rawGet(web, handshake("key", "Sec-WebSocket-Key: short\r\n"))).status).toBe(426);
    const plain = await rawGet(web, "");
    expect(plain.status).toBe(426);
    expect(plain.head).toContain("upgrade: websocket");
    expect(JSON.parse(plain.body)).toEqual({
      success: false,
      error: "the progress WebSocket is GET /ws, opened with a WebSocket handshake",
      error_type: "upgrade_required",
    });
    // "/ws/" is no socket (uWS upgrades "/ws" only): the same answer names the path.
    expect((await rawGet(web, handshake(""), "/ws/")).body).toBe(plain.body);
    // A refused handshake changes nothing for the next client.
    const me = await web.account();
    const client = await connect(wsUrl(web, me.token));
    await client.next((f) => f.event === "authenticated");
    client.socket.close();
  });

  it("keeps the identity a socket authenticated with: a second auth is refused", async () => {
    const me = await web.account();
    const other = await web.account();
    const taskId = await startTask(web, other.token, { processing_delay: 0.1 });
    const client = await connect(wsUrl(web, me.token));
    await client.next((f) => f.event === "authenticated");
    client.send("auth", { token: other.token });
    expect((await client.next((f) => f.event === "error")).data.message).toBe("already authenticated");
    const seen = client.frames.length;
    client.send("join_task", { task_id: taskId });
    expect((await client.next((f) => f.event === "error", seen)).data).toMatchObject({
      message: "no such task",
    });
    expect(client.frames.filter((f) => f.event === "authenticated")).toHaveLength(1);
    client.socket.close();
  });
});

describe("the progress socket, with the job run by another process", () => {
  const redis = useRedis();
  // The web process runs no workers (WORKER_MODE=external); a `ratatoskr supervisor` does.
  const web = useWebServer(redis, { workers: false });
  const processes = supervisors();
  afterAll(processes.killAll);

  it("relays progress and the end of a job that a supervisor process runs", async () => {
    const worker = processes.spawnSupervisor({
      REDIS_URL: redis.server.url,
      DATABASE_URL: web.db.url,
      RT_JOBS_MODULE: LEDGER_JOBS,
    });
    const me = await web.account();
    const client = await connect(wsUrl(web, me.token));
    await client.next((f) => f.event === "authenticated");
    const taskId = await startTask(web, me.token, { processing_delay: 5 });
    client.send("join_task", { task_id: taskId });
    const live = await client.next(
      (f) => f.event === "progress_update" && (f.data.progress_percent as number) > 0,
      0,
      30_000,
    );
    expect(live.data).toMatchObject({ task_id: taskId, status: "running" });
    const done = await client.next((f) => f.event === "task_completed", 0, 30_000);
    expect(done.data).toMatchObject({ task_id: taskId, results: { task_id: taskId } });
    // It ran there, not here.
    expect(web.runtime.status().actors["dispatcher:all"]).toBeUndefined();
    expect(worker.output()).toContain("ratatoskr supervisor");
    client.socket.close();
  }, 60_000);
});
