import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../config/schema.js";
import { parseRedisUrl } from "../../src/redis/redis-url.js";

describe("Redis URLs", () => {
  it("reads one server, with credentials, database and TLS", () => {
    expect(parseRedisUrl("redis://127.0.0.1:6380/2")).toMatchObject({
      kind: "single",
      tls: false,
      nodes: [{ host: "127.0.0.1", port: 6380 }],
      db: 2,
      username: undefined,
      password: undefined,
    });
    expect(parseRedisUrl("rediss://app:p%40ss%2Fw0rd@cache.internal")).toMatchObject({
      kind: "single",
      tls: true,
      nodes: [{ host: "cache.internal", port: 6379 }],
      username: "app",
      password: "p@ss/w0rd",
    });
    // A password alone (requirepass) leaves the user name to the server's default.
    expect(parseRedisUrl("redis://:secret@[::1]:7000")).toMatchObject({
      username: undefined,
      password: "secret",
      nodes: [{ host: "::1", port: 7000 }],
    });
  });

  it("reads Sentinel and Cluster deployments with several hosts", () => {
    expect(parseRedisUrl("redis+sentinel://s1,s2:26380/mymaster/1")).toMatchObject({
      kind: "sentinel",
      nodes: [
        { host: "s1", port: 26379 },
        { host: "s2", port: 26380 },
      ],
      masterName: "mymaster",
      db: 1,
    });
    expect(parseRedisUrl("rediss+cluster://u:p@a:7000,b:7001")).toMatchObject({
      kind: "cluster",
      tls: true,
      nodes: [
        { host: "a", port: 7000 },
        { host: "b", port: 7001 },
      ],
      username: "u",
      password: "p",
    });
  });

  it.each([
    ["http://localhost:6379", /expected redis:\/\//],
    ["redis://a:1,b:2", /several hosts need/],
    ["redis+sentinel://s1:26379", /master's name/],
    ["redis+cluster://a:7000/3", /only database 0/],
    ["redis://host:99999", /not a host\[:port\]/],
    ["redis://host/abc", /not a database number/],
    ["redis://u:%E0%A4%A@host", /percent-encoding/],
  ])("refuses %s with a reason", (url, reason) => {
    expect(() => parseRedisUrl(url)).toThrow(reason);
  });

  it("names a bad REDIS_URL at start-up without showing its password", () => {
    const attempt = () => loadConfig({ REDIS_URL: "redis://app:hunter2@a:1,b:2" });
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(/^REDIS_URL="redis:\/\/app:\[redacted\]@a:1,b:2" is not valid: several hosts/);
    expect(attempt).not.toThrow(/hunter2/);
  });
});
