import { readFileSync } from "node:fs";
import type { ConnectionOptions } from "node:tls";
import { Cluster, Redis } from "ioredis";
import { parseRedisUrl, type RedisTarget } from "./redis-url.js";

/** A single server (possibly found through Sentinel) or a Cluster: the commands we use are common. */
export type RedisClient = Redis | Cluster;

export interface ConnectOptions {
  /** Shown in CLIENT LIST, so an operator can tell a dispatcher from the web server. */
  readonly name?: string;
  /** A connection used for blocking reads: its commands wait through a reconnect, however long. */
  readonly blocking?: boolean;
  /**
   * Commands fail at once while disconnected instead of waiting for a reconnect: for probes,
   * whose whole point is to notice that Redis is away.
   */
  readonly failFast?: boolean;
  /** A PEM file of the CA that signed the servers' TLS certificates (REDIS_TLS_CA). */
  readonly tlsCaFile?: string;
  /** Sentinel's own password, when the sentinels require one (REDIS_SENTINEL_PASSWORD). */
  readonly sentinelPassword?: string;
}

// Reconnect quickly at first, then settle at 2 s; the health actor decides what "down" means.
const reconnectDelay = (times: number) => Math.min(50 * 2 ** times, 2000);

const tlsOptions = (target: RedisTarget, caFile: string | undefined): ConnectionOptions | undefined => {
  if (!target.tls) return undefined;
  return caFile === undefined ? {} : { ca: readFileSync(caFile) };
};

/**
 * The one way this project opens a Redis connection, whatever the deployment: one server
 * (`redis://`, `rediss://` for TLS), a Sentinel-watched master (`redis+sentinel://`) or a Cluster
 * (`redis+cluster://`). No auto-pipelining: the hot paths batch their own work (a claim takes
 * many jobs, a completion acknowledges many), and ioredis's per-tick Pipeline cost more than it
 * saved. With it on, a drain at concurrency 16 ran at 12,600-15,000 jobs/s instead of
 * 18,100-19,100, and 16 single enqueues in flight at 15,000-17,000/s instead of 26,600-27,500
 * (bench/PERFORMANCE.md, "Where the time goes").
 */
export const connectRedis = (url: string, options: ConnectOptions = {}): RedisClient => {
  const target = parseRedisUrl(url);
  const tls = tlsOptions(target, options.tlsCaFile);
  const perNode = {
    connectionName: options.name ?? "ratatoskr",
    maxRetriesPerRequest: options.failFast ? 0 : options.blocking ? null : 3,
    ...(target.username === undefined ? {} : { username: target.username }),
    ...(target.password === undefined ? {} : { password: target.password }),
    ...(tls === undefined ? {} : { tls }),
  };
  let client: RedisClient;
  if (target.kind === "cluster") {
    client = new Cluster([...target.nodes], {
      redisOptions: perNode,
      enableAutoPipelining: false,
      enableOfflineQueue: !options.failFast,
      clusterRetryStrategy: reconnectDelay,
      // Every queue key lives in one slot, so reads from replicas would only add staleness.
      scaleReads: "master",
    });
  } else {
    client = new Redis({
      ...perNode,
      enableAutoPipelining: false,
      enableOfflineQueue: !options.failFast,
      retryStrategy: reconnectDelay,
      db: target.db,
      ...(target.kind === "sentinel"
        ? {
            sentinels: [...target.nodes],
            name: target.masterName ?? "",
            sentinelRetryStrategy: reconnectDelay,
            ...(options.sentinelPassword === undefined ? {} : { sentinelPassword: options.sentinelPassword }),
            ...(tls === undefined ? {} : { enableTLSForSentinelMode: true, sentinelTLS: tls }),
          }
        : { host: target.nodes[0]!.host, port: target.nodes[0]!.port }),
    });
  }
  // Connection errors reach every caller as a failed command (a typed RedisError); without a
  // listener ioredis would also print each reconnect attempt to stderr.
  client.on("error", () => {});
  return client;
};

/**
 * A second connection to the same deployment, with the same credentials and TLS: for blocking
 * reads and pub/sub, which must not share a connection with ordinary commands.
 */
export const duplicateConnection = (client: RedisClient): RedisClient => {
  // Two branches for one call: the union's two `duplicate` signatures cannot be called as one.
  const copy: RedisClient = client instanceof Cluster ? client.duplicate() : client.duplicate();
  copy.on("error", () => {});
  return copy;
};

/**
 * The servers that hold data: the one server, or every master of a Cluster. Commands about a
 * server rather than a key (INFO, SCAN) must go to each, since a Cluster routes them anywhere.
 */
export const dataNodes = (client: RedisClient): Redis[] =>
  client instanceof Cluster ? client.nodes("master") : [client];

/** Every key matching `pattern`, on whichever node holds it; in batches, never KEYS. */
export async function* scanKeys(client: RedisClient, pattern: string): AsyncGenerator<string[]> {
  for (const node of dataNodes(client)) {
    let cursor = "0";
    do {
      const [next, found] = await node.scan(cursor, "MATCH", pattern, "COUNT", 1000);
      cursor = next;
      if (found.length > 0) yield found;
    } while (cursor !== "0");
  }
}
