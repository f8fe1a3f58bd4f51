/**
 * What the benchmark's standalone measurements (record-cost.ts, latency-floor.ts, redis-work.ts,
 * thread-consumers.ts) share: a private redis-server for the run, a connection of their own to it, and the process's
 * exit.
 */
import { connectRedis } from "../src/redis/connection.js";
import { PrivateRedis } from "../src/redis/private-server.js";
import type { Target } from "./systems/system.js";

/** Whole numbers of at least `least` (1 unless given) from the command line, or an error naming the options. */
export const wholeNumbers = (names: string, values: readonly string[], least = 1): number[] => {
  const numbers = values.map(Number);
  if (!numbers.every((n) => Number.isInteger(n) && n >= least))
    throw new Error(
      `${names} take ${least === 1 ? "positive whole numbers" : `whole numbers of ${least} or more`}`,
    );
  return numbers;
};

/** Runs `body` against a private Redis of its own (a `binary` in place of redis-server), then stops it. */
export const withPrivateRedis = async <A>(
  options: { binary?: string },
  body: (target: Target) => Promise<A>,
): Promise<A> => {
  const server = await PrivateRedis.start(options);
  const admin = connectRedis(server.url, { name: "bench-admin" });
  try {
    return await body({ url: server.url, port: server.port, admin });
  } finally {
    admin.disconnect();
    await server.stop();
  }
};

/** Exits once `run` settles: 0, or 1 with the error. */
export const exitAfter = (run: Promise<unknown>): void => {
  run.then(
    // BullMQ's closed connections can leave a timer behind: do not wait for it.
    () => process.exit(0),
    (error: unknown) => {
      console.error(error instanceof Error ? (error.stack ?? error.message) : error);
      process.exit(1);
    },
  );
};

/** Runs `body` against a private Redis, stops it, and exits (0, or 1 with the error). */
export const runStandalone = (body: (target: Target) => Promise<void>): void =>
  exitAfter(withPrivateRedis({}, body));
