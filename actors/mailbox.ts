import { Effect, Queue } from "effect";

/**
 * An actor's inbox. It is made outside the actor and handed to it, so messages sent while the
 * actor restarts wait for the next incarnation instead of being lost with the old one.
 */
export interface Mailbox<A> {
  /** Callable from anywhere, Effect or not; never blocks. */
  send(message: A): void;
  readonly take: Effect.Effect<A>;
  /** Everything waiting now, without blocking. */
  readonly drain: Effect.Effect<A[]>;
}

export const makeMailbox = <A>(): Mailbox<A> => {
  const queue = Effect.runSync(Queue.unbounded<A>());
  return {
    send: (message) => {
      Queue.unsafeOffer(queue, message);
    },
    take: Queue.take(queue),
    drain: Queue.takeAll(queue).pipe(Effect.map((chunk) => [...chunk])),
  };
};
