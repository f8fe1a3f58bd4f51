/**
 * Reading and writing a job's live state (the `live` hash, packed as common.lua's pack_live
 * writes it) from tests that damage, age or inspect it. Never used by the product: the scripts
 * are the only writers there.
 */
import type { RedisClient } from "../../src/redis/connection.js";
import { LIVE_FIELDS, unpackStrings } from "../../src/queue/live-state.js";
import type { Queue } from "../../src/queue/queue.js";

export type LiveState = Record<(typeof LIVE_FIELDS)[number], string>;

/** MessagePack strings, as cmsgpack and common.lua's pack_values write them (bytes kept as given). */
export const packStrings = (values: ReadonlyArray<string | Buffer>): Buffer =>
  Buffer.concat(
    values.flatMap((value) => {
      const bytes = Buffer.isBuffer(value) ? value : Buffer.from(value, "utf8");
      const n = bytes.length;
      const head =
        n < 32
          ? Buffer.from([0xa0 + n])
          : n < 256
            ? Buffer.from([0xd9, n])
            : n < 65536
              ? Buffer.from([0xda, n >> 8, n & 0xff])
              : Buffer.from([0xdb, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
      return [head, bytes];
    }),
  );

export const packLive = (state: LiveState): Buffer => packStrings(LIVE_FIELDS.map((name) => state[name]));

/** The job's live state, every field (empty ones too), or undefined when it has none. */
export const readLive = async (
  redis: RedisClient,
  queue: Queue,
  id: string,
): Promise<LiveState | undefined> => {
  const value = await redis.hgetBuffer(queue.keys.live, id);
  if (value === null) return undefined;
  const strings = unpackStrings(value);
  if (strings?.length !== LIVE_FIELDS.length) throw new Error(`job ${id}: live state does not parse`);
  return Object.fromEntries(LIVE_FIELDS.map((name, n) => [name, strings[n]!])) as LiveState;
};

/** Rewrites some fields of a job's live state (which must exist). */
export const patchLive = async (redis: RedisClient, queue: Queue, id: string, patch: Partial<LiveState>) => {
  const state = await readLive(redis, queue, id);
  if (!state) throw new Error(`job ${id} has no live state to patch`);
  await redis.hset(queue.keys.live, id, packLive({ ...state, ...patch }));
};

/** Replaces a job's live state with raw bytes (damage). */
export const writeRawLive = (redis: RedisClient, queue: Queue, id: string, value: string | Buffer) =>
  redis.hset(queue.keys.live, id, value);

/** Drops a job's live state, as if Redis had lost it. */
export const dropLive = (redis: RedisClient, queue: Queue, id: string) => redis.hdel(queue.keys.live, id);

/**
 * Makes `id` unreadable the way a key of another type under its name did before the live hash:
 * no live state, and a string where its hash would be.
 */
export const replaceWithNonHash = async (
  redis: RedisClient,
  queue: Queue,
  id: string,
  value = "not a hash",
) => {
  await redis.hdel(queue.keys.live, id);
  await redis.del(queue.keys.job(id));
  await redis.set(queue.keys.job(id), value);
};
