import { describe, expect, it } from "vitest";
import { groupsFor, jobTimeoutsMs } from "../../config/profiles.js";
import { ConfigError, loadConfig } from "../../config/schema.js";

describe("configuration", () => {
  it("has defaults for everything but Redis and the database", () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      RT_PREFIX: "rt",
      RT_QUEUE: "caption",
      RT_LEASE_MS: 30_000,
      RT_SHUTDOWN_MS: 30_000,
      RT_THREAD_HEAP_MB: 512,
      RT_PROFILE: "development",
      RT_DATA_DIR: "data",
    });
    expect(config.REDIS_URL).toBeUndefined();
    expect(config.DATABASE_URL).toBeUndefined();
    expect(jobTimeoutsMs(config)).toEqual({ urgent: 600_000, high: 300_000, normal: 300_000, low: 900_000 });
  });

  it("refuses a bad value with one line naming the variable, the value and what is allowed", () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ RT_LEASE_MS: "5" }, /^RT_LEASE_MS="5" is not valid: Expected a number between 1000 and 3600000/],
      [
        { RT_SHUTDOWN_MS: "soon" },
        /^RT_SHUTDOWN_MS="soon" is not valid: Unable to decode "soon" into a number/,
      ],
      [{ REDIS_URL: "http://x" }, /^REDIS_URL="http:\/\/x" is not valid: expected redis:\/\/, rediss:\/\//],
      [
        { WORKER_MODE: "sometimes" },
        /^WORKER_MODE="sometimes" is not valid: Expected one of "integrated", "external", "hybrid", actual "sometimes"$/,
      ],
      [
        { RT_CLAIM_IN: "everywhere" },
        /^RT_CLAIM_IN="everywhere" is not valid: Expected one of "main", "threads", actual "everywhere"$/,
      ],
      // One variable is named (the first in the schema's order), and only its problems.
      [
        { RT_PROFILE: "staging", RT_LEASE_MS: "5" },
        /^RT_LEASE_MS="5" is not valid: Expected a number between 1000 and 3600000, actual 5$/,
      ],
      [{ DATABASE_URL: "mysql://x" }, /^DATABASE_URL="mysql:\/\/x" is not valid/],
    ];
    for (const [env, message] of cases) {
      expect(() => loadConfig(env)).toThrow(ConfigError);
      expect(() => loadConfig(env)).toThrow(message);
    }
  });

  it("treats an empty variable as unset", () => {
    expect(loadConfig({ RT_LEASE_MS: "" }).RT_LEASE_MS).toBe(30_000);
  });
});

describe("worker modes", () => {
  const names = (env: Record<string, string>, where: "web" | "supervisor") =>
    groupsFor(loadConfig(env), where).map((g) => `${g.name}:${g.queues.join(">")}x${g.concurrency}`);

  it("development: one group for every priority, inside the web process", () => {
    expect(names({}, "web")).toEqual(["all:urgent>high>normal>lowx4"]);
  });

  it("production: urgent+high x2, normal x2, low x3, all in supervisor processes", () => {
    expect(names({ RT_PROFILE: "production" }, "web")).toEqual([]);
    expect(names({ RT_PROFILE: "production" }, "supervisor")).toEqual([
      "urgent-high:urgent>highx2",
      "normal:normalx2",
      "low:lowx3",
    ]);
  });

  it("hybrid: urgent work in the web process, the rest in supervisors", () => {
    const env = { RT_PROFILE: "production", WORKER_MODE: "hybrid" };
    expect(names(env, "web")).toEqual(["urgent-high:urgent>highx2"]);
    expect(names(env, "supervisor")).toEqual(["normal:normalx2", "low:lowx3"]);
  });

  it("WORKER_MODE overrides the profile's mode", () => {
    expect(names({ WORKER_MODE: "external" }, "web")).toEqual([]);
    expect(names({ RT_PROFILE: "production", WORKER_MODE: "integrated" }, "web")).toHaveLength(3);
  });
});
