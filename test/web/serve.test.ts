import { spawn } from "node:child_process";
import { beforeAll, describe, expect, it } from "vitest";
import { migrate, openDatabase } from "../../src/db/orm.js";
import { sqliteUrl } from "../support/databases.js";
import { CLI } from "../support/processes.js";
import { eventually } from "../support/queue.js";
import { useRedis } from "../support/redis.js";

describe("ratatoskr serve", () => {
  const redis = useRedis();
  let databaseUrl = "";

  beforeAll(async () => {
    databaseUrl = sqliteUrl();
    const orm = await openDatabase({ url: databaseUrl, dataDir: "" });
    await migrate(orm);
    await orm.close();
  });

  it("serves on the port it names, with its workers, and stops cleanly on SIGTERM", async () => {
    const child = spawn(process.execPath, [CLI, "serve"], {
      env: {
        ...process.env,
        REDIS_URL: redis.server.url,
        DATABASE_URL: databaseUrl,
        RT_PROFILE: "test",
        RT_POOL_THREADS: "1",
        RT_HTTP_HOST: "127.0.0.1",
        PORT: "0",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    try {
      await eventually(() => /http:\/\/127\.0\.0\.1:\d+/.test(output), 30_000, "the server to listen");
      const base = /http:\/\/127\.0\.0\.1:\d+/.exec(output)![0];
      expect(output).toMatch(/workers: all \[urgent>high>normal>low\]/);
      expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: "ok" });
      const ready = await fetch(`${base}/readyz`);
      expect(ready.status).toBe(200);
      expect((await fetch(`${base}/caption/start`, { method: "POST" })).status).toBe(401);
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
    } finally {
      child.kill("SIGKILL");
    }
  }, 60_000);
});
