import { Effect } from "effect";
import { type Config, loadConfig, queueOptionsFrom, redisAccessFrom } from "../../config/schema.js";
import { Queue } from "../queue/queue.js";
import { connectRedis, type RedisClient } from "../redis/connection.js";
import { PrivateRedis } from "../redis/private-server.js";

export interface Connected {
  readonly config: Config;
  readonly redis: RedisClient;
  readonly queue: Queue;
  /** Set when no REDIS_URL was given and we started a redis-server of our own. */
  readonly privateRedis: PrivateRedis | undefined;
  close(): Promise<void>;
}

/**
 * Opens the queue the configuration names. With `allowPrivate`, a missing REDIS_URL starts a
 * private redis-server (the embedded default); admin commands refuse instead, since a fresh
 * private Redis has nothing to administer.
 */
export const connect = async (options: { allowPrivate: boolean; name: string }): Promise<Connected> => {
  const config = loadConfig();
  let privateRedis: PrivateRedis | undefined;
  let url = config.REDIS_URL;
  if (url === undefined) {
    if (!options.allowPrivate)
      throw new Error("REDIS_URL is not set: this command needs the Redis your runtime uses");
    privateRedis = await PrivateRedis.start();
    url = privateRedis.url;
  }
  const redis = connectRedis(url, { ...redisAccessFrom(config), name: options.name });
  const queue = new Queue(redis, queueOptionsFrom(config));
  await Effect.runPromise(queue.prepare());
  return {
    config,
    redis,
    queue,
    privateRedis,
    close: async () => {
      redis.disconnect();
      await privateRedis?.stop();
    },
  };
};
