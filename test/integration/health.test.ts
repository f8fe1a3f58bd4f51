import { describe, expect, it } from "vitest";
import { type HealthEvent, RedisHealth } from "../../src/health/redis-health.js";
import { QueueAdmin } from "../../src/queue/admin.js";
import { connectRedis } from "../../src/redis/connection.js";
import { makeQueue } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";

describe("the Redis health probe", () => {
  const redis = useRedis();

  const probe = async () => {
    const queue = await makeQueue(redis);
    const client = connectRedis(redis.server.url, { name: "probe", failFast: true });
    const health = new RedisHealth(client, {
      timeoutMs: 200,
      failureThreshold: 3,
      memoryWarnPercent: 80,
      backendKey: queue.keys.backend,
      alertsKey: queue.keys.alerts,
      source: "test-worker",
    });
    // A fail-fast connection refuses commands until it is connected: start from a ready one.
    if (client.status !== "ready") await new Promise((resolve) => client.once("ready", resolve));
    const events: HealthEvent["type"][] = [];
    health.on((e) => events.push(e.type));
    return { queue, client, health, events };
  };

  it("goes down after three misses, comes back at the first answer, and tells a restarted Redis", async () => {
    const { queue, client, health, events } = await probe();
    try {
      await health.check();
      const firstRunId = health.snapshot().runId;
      expect(firstRunId).toMatch(/^[0-9a-f]{40}$/);
      await redis.server.kill();
      await health.check();
      await health.check();
      expect(health.mode()).toBe("redis");
      await health.check();
      expect(health.snapshot()).toMatchObject({ mode: "database", misses: 3 });
      await redis.server.restart();
      // The connection comes back on its own; the first answer after that ends the outage.
      for (let i = 0; i < 50 && health.mode() === "database"; i++) {
        await health.check();
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(health.snapshot()).toMatchObject({ mode: "redis", transitions: { toDatabase: 1, toRedis: 1 } });
      expect(health.snapshot().runId).not.toBe(firstRunId);
      expect(events).toEqual(["down", "up", "restarted"]);
      // What admins read: the alerts said while Redis was away were delivered once it was back.
      const alerts = await run(new QueueAdmin(queue).alerts());
      expect(alerts.map((a) => a.message)).toEqual([
        expect.stringMatching(/^Redis restarted/),
        expect.stringMatching(/^Redis is back after \d+\.\d s/),
        expect.stringMatching(/^Redis is down: 3 pings missed in a row/),
      ]);
      expect(alerts.every((a) => a.source === "test-worker")).toBe(true);
    } finally {
      client.disconnect();
    }
  });

  it("counts a Redis that hangs (no answer within the timeout) as a miss", async () => {
    const { client, health } = await probe();
    try {
      await health.check();
      expect(health.snapshot().misses).toBe(0);
      redis.server.freeze();
      for (let i = 0; i < 3; i++) await health.check();
      expect(health.mode()).toBe("database");
    } finally {
      redis.server.thaw();
      client.disconnect();
    }
  });

  it("raises one memory alert when Redis passes the warning level of maxmemory", async () => {
    const { client, health, events } = await probe();
    const admin = redis.client();
    try {
      const used = Number(/used_memory:(\d+)/.exec(await admin.info("memory"))?.[1]);
      await admin.config("SET", "maxmemory", String(Math.ceil(used * 1.1)));
      await health.check({ deep: true });
      await health.check({ deep: true });
      expect(events).toEqual(["memory"]);
      expect(health.snapshot().memory?.percent).toBeGreaterThanOrEqual(80);
      await admin.config("SET", "maxmemory", "0");
      await health.check({ deep: true });
      expect(health.snapshot().memory?.percent).toBeUndefined();
    } finally {
      await admin.config("SET", "maxmemory", "0");
      client.disconnect();
    }
  });
});
