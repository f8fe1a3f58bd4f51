import { Deferred, Effect, Exit, Fiber } from "effect";
import { describe, expect, it } from "vitest";
import { makeMailbox } from "../../actors/mailbox.js";
import {
  backoffDelay,
  type ChildSpec,
  type Restart,
  type SupervisionEvent,
  SupervisorEscalation,
  type Strategy,
  supervise,
  supervisorChild,
} from "../../actors/supervisor.js";

const fast = {
  backoff: { initialMs: 1, maxMs: 5, jitter: 0 },
  intensity: { maxRestarts: 10, periodMs: 10_000 },
};

/** A child that records its starts and stops in `log`, and fails or ends when told. */
const recordingChild = (id: string, log: string[], restart: Restart = "permanent") => {
  const control = makeMailbox<"fail" | "end">();
  const spec: ChildSpec = {
    id,
    restart,
    run: Effect.gen(function* () {
      log.push(`start ${id}`);
      yield* Effect.addFinalizer(() => Effect.sync(() => log.push(`stop ${id}`)));
      const order = yield* control.take;
      if (order === "fail") return yield* Effect.fail(new Error(`${id} broke`));
    }),
  };
  return { spec, control };
};

const waitFor = async (check: () => boolean, what: string) => {
  const deadline = Date.now() + 3_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
};

const runTree = (strategy: Strategy, restarts: Restart[] = ["permanent", "permanent", "permanent"]) => {
  const log: string[] = [];
  const children = ["a", "b", "c"].map((id, i) => recordingChild(id, log, restarts[i]));
  const events: SupervisionEvent[] = [];
  const fiber = Effect.runFork(
    supervise({
      id: "top",
      strategy,
      children: children.map((c) => c.spec),
      observe: (e) => events.push(e),
      ...fast,
    }),
  );
  return { log, children, events, fiber };
};

describe("supervisor", () => {
  it("starts children in order and stops them in reverse order", async () => {
    const { log, fiber } = runTree("one_for_one");
    await waitFor(() => log.length === 3, "starts");
    await Effect.runPromise(Fiber.interrupt(fiber));
    expect(log).toEqual(["start a", "start b", "start c", "stop c", "stop b", "stop a"]);
  });

  it("one_for_one restarts only the child that failed", async () => {
    const { log, children, fiber } = runTree("one_for_one");
    await waitFor(() => log.length === 3, "starts");
    children[1]!.control.send("fail");
    await waitFor(() => log.length === 5, "restart");
    expect(log.slice(3)).toEqual(["stop b", "start b"]);
    await Effect.runPromise(Fiber.interrupt(fiber));
  });

  it("one_for_all restarts every child: the others stop last-first, then all start in order", async () => {
    const { log, children, fiber } = runTree("one_for_all");
    await waitFor(() => log.length === 3, "starts");
    children[1]!.control.send("fail");
    await waitFor(() => log.length === 9, "restart");
    expect(log.slice(3)).toEqual(["stop b", "stop c", "stop a", "start a", "start b", "start c"]);
    await Effect.runPromise(Fiber.interrupt(fiber));
  });

  it("rest_for_one restarts the failed child and the ones started after it", async () => {
    const { log, children, fiber } = runTree("rest_for_one");
    await waitFor(() => log.length === 3, "starts");
    children[1]!.control.send("fail");
    await waitFor(() => log.length === 7, "restart");
    expect(log.slice(3)).toEqual(["stop b", "stop c", "start b", "start c"]);
    // The first child was never touched.
    expect(log.filter((l) => l.endsWith(" a"))).toEqual(["start a"]);
    await Effect.runPromise(Fiber.interrupt(fiber));
  });

  it("restart types: permanent after a normal end, transient only after a failure, temporary never", async () => {
    const { log, children, fiber } = runTree("one_for_one", ["permanent", "transient", "temporary"]);
    await waitFor(() => log.length === 3, "starts");
    children[0]!.control.send("end");
    await waitFor(() => log.filter((l) => l === "start a").length === 2, "a to restart");
    children[1]!.control.send("end");
    children[2]!.control.send("fail");
    await waitFor(() => log.includes("stop b") && log.includes("stop c"), "b and c to end");
    await new Promise((r) => setTimeout(r, 50));
    expect(log.filter((l) => l === "start b")).toHaveLength(1);
    expect(log.filter((l) => l === "start c")).toHaveLength(1);
    await Effect.runPromise(Fiber.interrupt(fiber));
  });

  it("a transient child is restarted after it fails", async () => {
    const log: string[] = [];
    const child = recordingChild("t", log, "transient");
    const fiber = Effect.runFork(
      supervise({ id: "top", strategy: "one_for_one", children: [child.spec], ...fast }),
    );
    await waitFor(() => log.length === 1, "start");
    child.control.send("fail");
    await waitFor(() => log.length === 3, "restart");
    expect(log).toEqual(["start t", "stop t", "start t"]);
    await Effect.runPromise(Fiber.interrupt(fiber));
  });

  it("gives up past the restart intensity: stops its children and fails with the last cause", async () => {
    const log: string[] = [];
    const steady = recordingChild("steady", log);
    let starts = 0;
    const crashing: ChildSpec = {
      id: "crashing",
      run: Effect.suspend(() => {
        starts++;
        return Effect.fail(new Error("cannot connect"));
      }),
    };
    const events: SupervisionEvent[] = [];
    const exit = await Effect.runPromiseExit(
      supervise({
        id: "group",
        strategy: "one_for_one",
        children: [steady.spec, crashing],
        intensity: { maxRestarts: 3, periodMs: 10_000 },
        backoff: fast.backoff,
        observe: (e) => events.push(e),
      }),
    );
    expect(Exit.isFailure(exit)).toBe(true);
    const error = Exit.isFailure(exit) ? exit.cause : undefined;
    const failure = error && error._tag === "Fail" ? error.error : undefined;
    expect(failure).toBeInstanceOf(SupervisorEscalation);
    expect(failure).toMatchObject({ supervisor: "group", child: "crashing", restarts: 3 });
    expect(failure?.message).toContain("cannot connect");
    // Three restarts were made; the fourth, which would exceed the intensity, was not.
    expect(starts).toBe(4);
    expect(log).toEqual(["start steady", "stop steady"]);
    expect(events.filter((e) => e.type === "escalated")).toHaveLength(1);
  });

  it("counts restarts in a sliding window: spaced-out failures never escalate", async () => {
    let starts = 0;
    const flaky: ChildSpec = {
      id: "flaky",
      run: Effect.suspend(() => {
        starts++;
        return Effect.sleep("30 millis").pipe(Effect.zipRight(Effect.fail(new Error("hiccup"))));
      }),
    };
    const fiber = Effect.runFork(
      supervise({
        id: "top",
        strategy: "one_for_one",
        children: [flaky],
        intensity: { maxRestarts: 2, periodMs: 50 },
        backoff: fast.backoff,
      }),
    );
    await waitFor(() => starts >= 6, "six lives");
    expect(fiber.unsafePoll()).toBeNull();
    await Effect.runPromise(Fiber.interrupt(fiber));
  });

  it("waits for a child's finalizers up to its shutdown time, then leaves it behind", async () => {
    const log: string[] = [];
    const stubborn: ChildSpec = {
      id: "stubborn",
      shutdownMs: 50,
      run: Effect.addFinalizer(() => Effect.never).pipe(Effect.zipRight(Effect.never)),
    };
    const polite: ChildSpec = {
      id: "polite",
      run: Effect.addFinalizer(() =>
        Effect.sleep("20 millis").pipe(
          Effect.zipRight(Effect.sync(() => log.push("polite finished draining"))),
        ),
      ).pipe(Effect.zipRight(Effect.never)),
    };
    const events: SupervisionEvent[] = [];
    const fiber = Effect.runFork(
      supervise({
        id: "top",
        strategy: "one_for_one",
        children: [polite, stubborn],
        observe: (e) => events.push(e),
      }),
    );
    await waitFor(() => events.filter((e) => e.type === "started").length === 2, "starts");
    const started = Date.now();
    await Effect.runPromise(Fiber.interrupt(fiber));
    expect(Date.now() - started).toBeGreaterThanOrEqual(60);
    expect(log).toEqual(["polite finished draining"]);
    expect(events.filter((e) => e.type === "stopped")).toEqual([
      { type: "stopped", supervisor: "top", child: "stubborn", timedOut: true },
      { type: "stopped", supervisor: "top", child: "polite", timedOut: false },
    ]);
  });

  it("a child supervisor that gives up is restarted by its parent", async () => {
    let starts = 0;
    const inner = {
      id: "inner",
      strategy: "one_for_one" as const,
      intensity: { maxRestarts: 1, periodMs: 10_000 },
      backoff: fast.backoff,
      children: [
        {
          id: "leaf",
          run: Effect.suspend(() => {
            starts++;
            return Effect.fail(new Error("leaf broke"));
          }),
        },
      ],
    };
    const events: SupervisionEvent[] = [];
    const done = Effect.runSync(Deferred.make<void>());
    const fiber = Effect.runFork(
      supervise({
        id: "root",
        strategy: "one_for_one",
        children: [supervisorChild(inner)],
        intensity: { maxRestarts: 2, periodMs: 10_000 },
        backoff: fast.backoff,
        observe: (e) => {
          events.push(e);
          if (e.type === "escalated") Effect.runSync(Deferred.succeed(done, undefined));
        },
      }),
    );
    await Effect.runPromise(Deferred.await(done));
    const exit = await Effect.runPromise(Fiber.await(fiber));
    // inner gave up three times (2 restarts by root allowed), then root gave up too.
    expect(Exit.isFailure(exit)).toBe(true);
    expect(starts).toBe(6);
    expect(events.filter((e) => e.type === "exited" && e.child === "inner")).toHaveLength(3);
  });

  it("spaces restarts with exponential backoff, capped", () => {
    const b = { initialMs: 100, maxMs: 1_000, jitter: 0 };
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(b, n))).toEqual([100, 200, 400, 800, 1000, 1000]);
    const j = { initialMs: 100, maxMs: 1_000, jitter: 0.5 };
    expect(backoffDelay(j, 1, () => 0)).toBe(50);
    expect(backoffDelay(j, 1, () => 1)).toBe(150);
  });

  it("a mailbox keeps messages sent while its actor restarts", async () => {
    const inbox = makeMailbox<string>();
    const seen: string[] = [];
    const reader: ChildSpec = {
      id: "reader",
      run: Effect.gen(function* () {
        const message = yield* inbox.take;
        seen.push(message);
        if (message === "crash") return yield* Effect.fail(new Error("asked to crash"));
      }),
    };
    const fiber = Effect.runFork(
      supervise({ id: "top", strategy: "one_for_one", children: [reader], ...fast }),
    );
    inbox.send("crash");
    inbox.send("one");
    inbox.send("two");
    await waitFor(() => seen.length === 3, "all messages");
    expect(seen).toEqual(["crash", "one", "two"]);
    await Effect.runPromise(Fiber.interrupt(fiber));
  });
});
