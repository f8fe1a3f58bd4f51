import { Duration, Effect, Schedule } from "effect";
import type { RuntimeContext } from "./context.js";
import { duplicateConnection } from "../src/redis/connection.js";
import type { ChildSpec } from "./supervisor.js";

interface CancelMessage {
  readonly type: "cancel";
  readonly id: string;
  readonly attempt: number;
}

const asCancel = (message: string): CancelMessage | undefined => {
  try {
    const value = JSON.parse(message) as Partial<CancelMessage>;
    return value.type === "cancel" && typeof value.id === "string" && typeof value.attempt === "number"
      ? (value as CancelMessage)
      : undefined;
  } catch {
    return undefined;
  }
};

/**
 * Listens on the queue's events channel for cancel requests and aborts the attempt at once if one
 * of this process's dispatchers runs it. Pub/sub may drop a message (a reconnect): the lease
 * renewal still sees the cancel flag, so this only makes a cancel quick, never makes it happen.
 */
export const cancelListener = (ctx: RuntimeContext): ChildSpec => ({
  id: "cancel-listener",
  run: Effect.gen(function* () {
    const subscriber = yield* Effect.acquireRelease(
      Effect.sync(() => duplicateConnection(ctx.queue.redis)),
      (connection) => Effect.sync(() => connection.disconnect()),
    );
    subscriber.on("error", () => {});
    subscriber.on("message", (_channel: string, message: string) => {
      const cancel = asCancel(message);
      if (!cancel) return;
      for (const worker of ctx.workers.values()) worker.cancelRunning(cancel.id, cancel.attempt);
    });
    // Once subscribed, ioredis subscribes again by itself after a reconnect; until then (Redis
    // away at start), keep trying without failing the actor.
    yield* Effect.tryPromise(() => subscriber.subscribe(ctx.queue.keys.events)).pipe(
      Effect.retry(Schedule.spaced(Duration.seconds(2))),
    );
    return yield* Effect.never;
  }),
});
