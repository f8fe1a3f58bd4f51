import { cpSync, mkdtempSync, appendFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Priority } from "../../src/domain/priority.js";
import { QueueAdmin } from "../../src/queue/admin.js";
import { Queue } from "../../src/queue/queue.js";
import { library, SCRIPT_FILES } from "../../src/queue/scripts.js";
import { connectRedis, type RedisClient } from "../../src/redis/connection.js";
import { LuaLibrary } from "../../src/redis/lua-library.js";
import { type RedisProcess, spawnRedis } from "../support/redis-deployments.js";
import { ALL, makeQueue, newJob } from "../support/queue.js";
import { run, runFailure, useRedis } from "../support/redis.js";

const callsOf = async (redis: RedisClient, command: string) => {
  const stats = await redis.info("commandstats");
  return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
};

/** Libraries loaded, with their functions' names and flags. */
const librariesOf = async (redis: RedisClient) => {
  const list = (await redis.call("FUNCTION", "LIST")) as unknown[][];
  return list.map((entry) => {
    const fields = new Map<string, unknown>();
    for (let i = 0; i < entry.length; i += 2) fields.set(String(entry[i]), entry[i + 1]);
    const functions = (fields.get("functions") as unknown[][]).map((f) => ({
      name: String(f[1]),
      flags: (f[5] as string[]).map(String),
    }));
    return { name: String(fields.get("library_name")), functions };
  });
};

/** Enqueues, claims and completes one job: every hot-path script once. */
const roundTrip = async (queue: Queue, priority: Priority = "high") => {
  const job = newJob(priority);
  await run(queue.enqueue(job));
  const [claimed, ...more] = (await run(queue.claim("w", ALL, 1))).jobs;
  expect([claimed?.id, more]).toEqual([job.id, []]);
  expect(await run(queue.complete([{ id: job.id, attempt: claimed!.attempt }]))).toEqual(["ok"]);
  expect(await run(queue.getJob(job.id))).toMatchObject({ state: "completed" });
};

describe("the scripts as one library of Redis Functions", () => {
  const redis = useRedis();

  it("loads once, one function per script, and the queue calls them by name, never a script", async () => {
    const queue = await makeQueue(redis);
    await queue.redis.config("RESETSTAT");
    await roundTrip(queue);
    const [loaded, ...others] = await librariesOf(queue.redis);
    expect(others).toEqual([]);
    expect(loaded!.name).toBe(library.name);
    expect(loaded!.functions.map((f) => f.name).sort()).toEqual(
      Object.keys(library.scripts)
        .map((name) => `${library.name}_${name}`)
        .sort(),
    );
    // Only the purge, which frees memory, runs at maxmemory.
    const flagged = loaded!.functions.filter((f) => f.flags.length > 0);
    expect(flagged).toEqual([{ name: `${library.name}_purgeCompleted`, flags: ["allow-oom"] }]);
    expect(await callsOf(queue.redis, "fcall")).toBeGreaterThanOrEqual(3);
    expect((await callsOf(queue.redis, "evalsha")) + (await callsOf(queue.redis, "eval"))).toBe(0);
  });

  it("refuses a client with ioredis's keyPrefix, whose prefix would reach only some of the queue's keys", async () => {
    const prefixed = new Redis(redis.server.url, { keyPrefix: "tenant-a:", lazyConnect: true });
    try {
      expect(() => new Queue(prefixed)).toThrow(/keyPrefix \("tenant-a:"\).*own prefix option/);
      // The queue's own prefix is the way: every key under it.
      const queue = await makeQueue(redis, { prefix: "tenant-a" });
      await roundTrip(queue);
      const keys = await queue.redis.keys("*");
      expect(keys.length).toBeGreaterThan(0);
      expect(keys.filter((key) => !key.includes("tenant-a"))).toEqual([]);
    } finally {
      prefixed.disconnect();
    }
  });

  it("loads the library again when Redis has lost it, and the call that found it gone goes through", async () => {
    const queue = await makeQueue(redis);
    await roundTrip(queue);
    await queue.redis.call("FUNCTION", "FLUSH");
    expect(await librariesOf(queue.redis)).toEqual([]);
    // Many callers at once find it gone: one load, every call answered.
    await Promise.all([roundTrip(queue), roundTrip(queue), roundTrip(queue)]);
    expect((await librariesOf(queue.redis)).map((l) => l.name)).toEqual([library.name]);
  });

  it("keeps another version's library beside its own (a rolling upgrade): both run", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rt-lua-"));
    try {
      cpSync(new URL("../../src/queue/lua/", import.meta.url), dir, { recursive: true });
      appendFileSync(join(dir, "claim.lua"), "\n-- another version\n");
      const other = LuaLibrary.fromDirectory(pathToFileURL(`${dir}/`), SCRIPT_FILES);
      expect(other.name).not.toBe(library.name);
      const queue = await makeQueue(redis);
      await other.load(queue.redis);
      await roundTrip(queue);
      const job = newJob("low");
      await run(queue.enqueue(job));
      const reply = (await other.scripts.claim.run(
        queue.redis,
        [queue.keys.base],
        [queue.group, "v2", 1, 10, 60, 60, 1, "low"],
      )) as unknown[][];
      expect(reply[0]![0]).toBe(job.id);
      expect((await librariesOf(queue.redis)).map((l) => l.name).sort()).toEqual(
        [library.name, other.name].sort(),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("at maxmemory refuses a claim whole (no entry is left delivered to nobody), and still purges", async () => {
    const queue = await makeQueue(redis);
    const admin = new QueueAdmin(queue);
    await roundTrip(queue, "normal");
    const job = newJob("normal");
    await run(queue.enqueue(job));
    await queue.redis.config("SET", "maxmemory", "1");
    try {
      const refused = await runFailure(queue.claim("w", ALL, 1));
      expect(refused.message).toMatch(/OOM/);
      expect(await queue.redis.xpending(queue.keys.stream("normal"), queue.group)).toEqual([
        0,
        null,
        null,
        null,
      ]);
      expect((await runFailure(queue.enqueue(newJob("normal")))).message).toMatch(/OOM/);
      expect(await run(admin.purgeFinished())).toBe(1);
    } finally {
      await queue.redis.config("SET", "maxmemory", "0");
    }
    expect(await run(queue.getJob(job.id))).toMatchObject({ state: "queued", attempt: 0 });
    expect((await run(queue.claim("w", ALL, 1))).jobs).toMatchObject([{ id: job.id, attempt: 1 }]);
  });
});

describe("on a server without Redis Functions", () => {
  let server: RedisProcess;
  let client: RedisClient;

  beforeAll(async () => {
    // As Redis 6.2 answers: FCALL and FUNCTION are unknown commands.
    server = await spawnRedis(["--rename-command", "FCALL", "", "--rename-command", "FUNCTION", ""]);
    client = connectRedis(`redis://127.0.0.1:${server.port}`);
  });
  afterAll(async () => {
    client?.disconnect();
    await server?.kill();
  });

  it("runs every script as a script, and again after Redis has lost them", async () => {
    const queue = new Queue(client);
    await run(queue.prepare());
    await roundTrip(queue);
    await client.script("FLUSH");
    await roundTrip(queue);
    expect(await callsOf(client, "evalsha")).toBeGreaterThanOrEqual(6);
    expect(await callsOf(client, "fcall")).toBe(0);
  });

  it("finds that out from a call as well, without a load first", async () => {
    const fresh = connectRedis(`redis://127.0.0.1:${server.port}`);
    try {
      await roundTrip(new Queue(fresh));
    } finally {
      fresh.disconnect();
    }
  });
});
