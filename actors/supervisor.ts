import { Cause, Clock, Data, Duration, Effect, Exit, Fiber, Queue, type Scope } from "effect";

/**
 * Supervision after OTP's `supervisor`: children start in order and stop in reverse order; a
 * child that ends is restarted according to its restart type and the supervisor's strategy; a
 * supervisor that restarts too often gives up, stops its children and fails, so its parent
 * decides what happens next.
 */

/** permanent: always restarted; transient: only after a failure; temporary: never. */
export type Restart = "permanent" | "transient" | "temporary";

/**
 * one_for_one: only the child that ended restarts; one_for_all: every child restarts;
 * rest_for_one: the child and every child started after it restart, in order.
 */
export type Strategy = "one_for_one" | "one_for_all" | "rest_for_one";

export interface ChildSpec {
  readonly id: string;
  /**
   * The child's whole life. Resources it acquires in the Scope are released when it ends or is
   * stopped. Ending (with success or failure) is what the restart policy looks at.
   */
  readonly run: Effect.Effect<unknown, unknown, Scope.Scope>;
  readonly restart?: Restart;
  /**
   * How long a stop waits for the child's finalizers (a dispatcher's is its graceful-drain time).
   * Past it the child is abandoned, still being interrupted, and the stop goes on. A function
   * is read when the stop begins, for a drain time that is only known then.
   */
  readonly shutdownMs?: number | (() => number);
}

export interface Intensity {
  /** At most this many restarts ... */
  readonly maxRestarts: number;
  /** ... within this sliding window; the restart that would exceed it is not made. */
  readonly periodMs: number;
}

export interface Backoff {
  /** Wait before the first restart in a window; doubled for each further one. */
  readonly initialMs: number;
  readonly maxMs: number;
  /** ± this fraction of the wait, so restarts of many supervisors do not line up. */
  readonly jitter: number;
}

export interface SupervisorSpec {
  readonly id: string;
  readonly strategy: Strategy;
  readonly children: readonly ChildSpec[];
  readonly intensity?: Intensity;
  readonly backoff?: Backoff;
  /** Told of every start, exit, restart and escalation, e.g. to count restarts per actor. */
  readonly observe?: (event: SupervisionEvent) => void;
}

export type SupervisionEvent =
  | { readonly type: "started"; readonly supervisor: string; readonly child: string }
  | {
      readonly type: "exited";
      readonly supervisor: string;
      readonly child: string;
      readonly failed: boolean;
      readonly cause: string;
    }
  | {
      readonly type: "restarting";
      readonly supervisor: string;
      readonly child: string;
      readonly delayMs: number;
    }
  | {
      readonly type: "stopped";
      readonly supervisor: string;
      readonly child: string;
      readonly timedOut: boolean;
    }
  | {
      readonly type: "escalated";
      readonly supervisor: string;
      readonly child: string;
      readonly cause: string;
    };

/** Restart intensity exceeded: the supervisor stopped its children and gives up. */
export class SupervisorEscalation extends Data.TaggedError("SupervisorEscalation")<{
  readonly supervisor: string;
  readonly child: string;
  readonly restarts: number;
  readonly periodMs: number;
  readonly cause: string;
}> {
  override get message() {
    return `supervisor ${this.supervisor} gave up: ${this.restarts} restarts within ${this.periodMs} ms, last because ${this.child} ${this.cause}`;
  }
}

export const DEFAULT_INTENSITY: Intensity = { maxRestarts: 5, periodMs: 30_000 };
export const DEFAULT_BACKOFF: Backoff = { initialMs: 100, maxMs: 10_000, jitter: 0.2 };

interface Slot {
  readonly spec: ChildSpec;
  fiber: Fiber.RuntimeFiber<void> | undefined;
  /** Bumped on every start and deliberate stop, so exits of stopped generations are ignored. */
  generation: number;
}

interface ChildExit {
  readonly slot: Slot;
  readonly generation: number;
  readonly exit: Exit.Exit<unknown, unknown>;
}

const describeCause = (cause: Cause.Cause<unknown>) => {
  if (Cause.isInterruptedOnly(cause)) return "was interrupted";
  const error = Cause.squash(cause);
  return `failed: ${error instanceof Error ? error.message : String(error)}`;
};

/** The restart delay for the n-th restart (1-based) of the current window. */
export const backoffDelay = (backoff: Backoff, n: number, random: () => number = Math.random): number => {
  const base = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.max(0, n - 1));
  return Math.max(0, Math.round(base * (1 + backoff.jitter * (2 * random() - 1))));
};

/**
 * Runs a supervisor until it is interrupted (then it stops its children, last first) or gives
 * up (then it fails with SupervisorEscalation, after stopping its children).
 */
export const supervise = (spec: SupervisorSpec): Effect.Effect<never, SupervisorEscalation> =>
  Effect.gen(function* () {
    const intensity = spec.intensity ?? DEFAULT_INTENSITY;
    const backoff = spec.backoff ?? DEFAULT_BACKOFF;
    const observe = spec.observe ?? (() => {});
    const exits = yield* Queue.unbounded<ChildExit>();
    const slots: Slot[] = spec.children.map((c) => ({ spec: c, fiber: undefined, generation: 0 }));
    let restarts: number[] = [];

    const start = (slot: Slot) =>
      Effect.gen(function* () {
        const generation = ++slot.generation;
        slot.fiber = yield* Effect.forkDaemon(
          Effect.scoped(slot.spec.run).pipe(
            Effect.annotateLogs("actor", slot.spec.id),
            Effect.exit,
            Effect.flatMap((exit) => Queue.offer(exits, { slot, generation, exit })),
            Effect.asVoid,
          ),
        );
        observe({ type: "started", supervisor: spec.id, child: slot.spec.id });
      });

    const stop = (slot: Slot) =>
      Effect.gen(function* () {
        const fiber = slot.fiber;
        slot.generation++;
        slot.fiber = undefined;
        if (!fiber) return;
        yield* Fiber.interruptFork(fiber);
        // Stops run uninterruptibly; the wait itself must stay interruptible for the timeout to cut it.
        const limitMs = shutdownMsOf(slot.spec);
        const stopped = yield* Fiber.await(fiber).pipe(
          Effect.interruptible,
          Effect.timeoutOption(Duration.millis(limitMs)),
        );
        const timedOut = stopped._tag === "None";
        if (timedOut)
          yield* Effect.logWarning(`${slot.spec.id} did not stop within ${limitMs} ms; left behind`);
        observe({ type: "stopped", supervisor: spec.id, child: slot.spec.id, timedOut });
      });

    const stopAll = (from = 0) =>
      Effect.forEach(slots.slice(from).reverse(), stop, { discard: true }).pipe(Effect.uninterruptible);

    const loop = Effect.gen(function* () {
      for (const slot of slots) yield* start(slot);
      for (;;) {
        const { slot, generation, exit } = yield* Queue.take(exits);
        if (generation !== slot.generation) continue;
        slot.fiber = undefined;
        const failed = Exit.isFailure(exit);
        const cause = Exit.isFailure(exit) ? describeCause(exit.cause) : "ended normally";
        observe({ type: "exited", supervisor: spec.id, child: slot.spec.id, failed, cause });
        const restart = slot.spec.restart ?? "permanent";
        if (restart === "temporary" || (restart === "transient" && !failed)) {
          yield* Effect.logInfo(`${slot.spec.id} ${cause}; ${restart}, not restarted`);
          continue;
        }
        if (failed) {
          yield* Effect.logWarning(`${slot.spec.id} ${cause}`).pipe(
            Effect.annotateLogs("cause", Cause.pretty((exit as Exit.Failure<unknown, unknown>).cause)),
          );
        }

        const now = yield* Clock.currentTimeMillis;
        restarts = restarts.filter((t) => t > now - intensity.periodMs);
        if (restarts.length >= intensity.maxRestarts) {
          const escalation = new SupervisorEscalation({
            supervisor: spec.id,
            child: slot.spec.id,
            restarts: restarts.length,
            periodMs: intensity.periodMs,
            cause,
          });
          yield* Effect.logError(escalation.message);
          observe({ type: "escalated", supervisor: spec.id, child: slot.spec.id, cause });
          return yield* Effect.fail(escalation);
        }
        restarts.push(now);

        const index = slots.indexOf(slot);
        const affected =
          spec.strategy === "one_for_one"
            ? [slot]
            : spec.strategy === "one_for_all"
              ? slots
              : slots.slice(index);
        // Stop the others that go with it, last started first, before anything starts again.
        for (const other of [...affected].reverse()) if (other !== slot) yield* stop(other);
        const delayMs = backoffDelay(backoff, restarts.length);
        for (const s of affected)
          observe({ type: "restarting", supervisor: spec.id, child: s.spec.id, delayMs });
        yield* Effect.logWarning(
          `restarting ${affected.map((s) => s.spec.id).join(", ")} in ${delayMs} ms (${spec.strategy})`,
        );
        yield* Effect.sleep(Duration.millis(delayMs));
        for (const s of affected) yield* start(s);
      }
    });

    return yield* loop.pipe(Effect.ensuring(stopAll()), Effect.annotateLogs("supervisor", spec.id));
  });

/** A supervisor as a child of another, so trees nest; its escalation is its parent's failure. */
export const supervisorChild = (
  spec: SupervisorSpec,
  options: { restart?: Restart; shutdownMs?: number } = {},
) =>
  ({
    id: spec.id,
    run: supervise(spec),
    restart: options.restart ?? "permanent",
    // Long enough for its own children to stop one after another.
    shutdownMs:
      options.shutdownMs ?? (() => spec.children.reduce((total, c) => total + shutdownMsOf(c), 0) + 1_000),
  }) satisfies ChildSpec;

const shutdownMsOf = (spec: ChildSpec): number =>
  typeof spec.shutdownMs === "function" ? spec.shutdownMs() : (spec.shutdownMs ?? 5_000);
