import { Effect } from "effect";
import { afterAll, beforeAll, beforeEach } from "vitest";
import { connectRedis, type RedisClient } from "../../src/redis/connection.js";
import { PrivateRedis } from "../../src/redis/private-server.js";

export interface RedisFixture {
  server: PrivateRedis;
  /** Clients opened through `client()`; closed after the file. */
  client(options?: { blocking?: boolean }): RedisClient;
}

/**
 * A real redis-server of this test file's own, on a free port, flushed before each test.
 * Never a mock: the scripts under test run in the real thing.
 */
export const useRedis = (): RedisFixture => {
  const clients: RedisClient[] = [];
  const fixture = {} as RedisFixture;
  beforeAll(async () => {
    fixture.server = await PrivateRedis.start();
    fixture.client = (options = {}) => {
      const c = connectRedis(fixture.server.url, { name: "test", ...options });
      clients.push(c);
      return c;
    };
  });
  beforeEach(async () => {
    if (!fixture.server.running) await fixture.server.restart();
    const admin = connectRedis(fixture.server.url);
    await admin.flushall();
    admin.disconnect();
  });
  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await fixture.server?.stop();
  });
  return fixture;
};

export const run = <A, E>(effect: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(effect);

/** Runs an effect expected to fail and returns its typed error (throws if it succeeded). */
export const runFailure = async <A, E>(effect: Effect.Effect<A, E>): Promise<E> => {
  const result = await Effect.runPromise(Effect.either(effect));
  if (result._tag === "Right") throw new Error(`expected a failure, got ${JSON.stringify(result.right)}`);
  return result.left;
};
