import { Redis } from "ioredis";

export type RedisClient = Redis;

export interface ConnectOptions {
  /** Shown in CLIENT LIST, so an operator can tell a dispatcher from the web server. */
  readonly name?: string;
  /** A connection used for blocking reads: no auto-pipelining behind a BLOCK. */
  readonly blocking?: boolean;
  /**
   * Commands fail at once while disconnected instead of waiting for a reconnect: for probes,
   * whose whole point is to notice that Redis is away.
   */
  readonly failFast?: boolean;
}

/**
 * The one way this project opens a Redis connection. Auto-pipelining batches the many small
 * script calls a busy worker makes into one write per tick without any code asking for it.
 */
export const connectRedis = (url: string, options: ConnectOptions = {}): RedisClient => {
  const redis = new Redis(url, {
    connectionName: options.name ?? "ratatoskr",
    enableAutoPipelining: !options.blocking,
    maxRetriesPerRequest: options.failFast ? 0 : options.blocking ? null : 3,
    enableOfflineQueue: !options.failFast,
    // Reconnect quickly at first, then settle at 2 s; the health actor decides what "down" means.
    retryStrategy: (times) => Math.min(50 * 2 ** times, 2000),
  });
  // Connection errors reach every caller as a failed command (a typed RedisError); without a
  // listener ioredis would also print each reconnect attempt to stderr.
  redis.on("error", () => {});
  return redis;
};
