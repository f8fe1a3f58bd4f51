import { afterEach, describe, expect, it, vi } from "vitest";
import { PRIORITIES, type Priority } from "../../src/domain/priority.js";
import { type GroupSpec, HostedGroup, type HostListener } from "../../src/pool/hosted-group.js";
import type { GateVerdict, HostedJob, ToThread } from "../../src/pool/protocol.js";

/**
 * The main thread's side of a group claimed for in the threads, on its own: the messages it
 * sends each thread, for the messages it hears. (The threads themselves, with Redis:
 * test/integration/thread-claims.test.ts.)
 */
const spec: GroupSpec = {
  group: "all",
  redisUrl: "redis://127.0.0.1:6379",
  redisAccess: {},
  queue: {},
  consumer: "w/all",
  priorities: PRIORITIES,
  concurrency: 5,
  leaseMs: 30_000,
  timeoutsMs: Object.fromEntries(PRIORITIES.map((p) => [p, 1_000])) as Record<Priority, number>,
  abortGraceMs: 300,
  gated: true,
};

const job = (id: string): HostedJob => ({
  id,
  attempt: 1,
  runAttempt: 1,
  priority: "normal",
  maxAttempts: 3,
  data: "",
  userId: undefined,
  createdAt: 0,
  meta: {},
  entry: "1-0",
});

const setUp = (listener: Partial<HostListener> = {}) => {
  const sent: Array<{ thread: number; message: ToThread }> = [];
  const ended: Array<{ thread: number; why: string }> = [];
  let forgotten = 0;
  const group = new HostedGroup(
    spec,
    {
      event: () => {},
      completed: () => {},
      gate: async () => ({ type: "run" }),
      progress: () => {},
      log: () => {},
      lost: () => {},
      ...listener,
    },
    2,
    (thread, message) => sent.push({ thread, message }),
    (thread, why) => ended.push({ thread, why }),
    () => forgotten++,
  );
  group.attach(0);
  group.attach(1);
  return { group, sent, ended, forgotten: () => forgotten };
};

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** A thread's gate message: these jobs, numbered from 1, ask to start. */
const starting = (...ids: string[]) => ({
  type: "gate" as const,
  group: "all",
  requests: ids.map((id, i) => ({ ticket: i + 1, step: "start" as const, job: job(id) })),
});

describe("a group claimed for in the threads, as the main thread keeps it", () => {
  afterEach(() => {
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

  it("gives each thread its share and its own consumer", () => {
    const { sent } = setUp();
    expect(sent.map(({ thread, message }) => message.type === "host" && [thread, message.spec])).toEqual([
      [0, expect.objectContaining({ consumer: "w/all/t0", concurrency: 3 })],
      [1, expect.objectContaining({ consumer: "w/all/t1", concurrency: 2 })],
    ]);
  });

  it("does not hand a dead thread's gate answer to its replacement", async () => {
    let answer: (verdict: GateVerdict) => void = () => {};
    const { group, sent } = setUp({ gate: () => new Promise((resolve) => (answer = resolve)) });
    group.hear(0, { type: "gate", group: "all", requests: [{ ticket: 1, step: "start", job: job("a") }] });
    await tick();
    // The thread dies while the ledger is slow; its replacement's own ticket 1 is another job.
    group.detach(0);
    group.attach(0);
    answer({ type: "skip", reason: "the ledger has this task as completed" });
    await tick();
    await tick();
    expect(sent.filter(({ message }) => message.type === "verdicts")).toEqual([]);
  });

  it("hands over the jobs a dead thread had let through the gate and not yet ended", async () => {
    const lost: string[][] = [];
    const { group } = setUp({ lost: (jobs) => lost.push(jobs.map((j) => j.id)) });
    group.hear(0, starting("ran", "running"));
    group.hear(1, starting("other"));
    await tick();
    const ran = {
      ticket: 3,
      step: "ran" as const,
      job: job("ran"),
      outcome: { ok: true as const, result: "" },
    };
    group.hear(0, { type: "gate", group: "all", requests: [{ ...ran, seconds: 0 }] });
    await tick();
    group.detach(0);
    expect(lost).toEqual([["running"]]);
    // Its replacement starts with none.
    group.attach(0);
    group.detach(0);
    expect(lost).toEqual([["running"]]);
  });

  it("hands over a start let through after its thread died, and not one turned away", async () => {
    const answers: Array<(verdict: GateVerdict) => void> = [];
    const lost: string[] = [];
    const { group } = setUp({
      gate: () => new Promise((resolve) => answers.push(resolve)),
      lost: (jobs) => lost.push(...jobs.map((j) => j.id)),
    });
    group.hear(0, starting("late", "skipped"));
    await tick();
    group.detach(0);
    lost.length = 0;
    // The ledger answers after the thread's death: what the first start began is ended too.
    answers[0]!({ type: "run" });
    answers[1]!({ type: "skip", reason: "the ledger has this task as completed" });
    await tick();
    await tick();
    expect(lost).toEqual(["late"]);
  });

  it("answers a living thread's gate once per tick", async () => {
    const { group, sent } = setUp();
    const requests = [1, 2].map((ticket) => ({ ticket, step: "start" as const, job: job(`j${ticket}`) }));
    group.hear(1, { type: "gate", group: "all", requests });
    await tick();
    await tick();
    expect(sent.filter(({ message }) => message.type === "verdicts")).toEqual([
      {
        thread: 1,
        message: {
          type: "verdicts",
          verdicts: [
            { ticket: 1, verdict: { type: "run" } },
            { ticket: 2, verdict: { type: "run" } },
          ],
        },
      },
    ]);
  });

  it("hears every event of a batch though the listener throws on one", () => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    const heard: string[] = [];
    const { group } = setUp({
      event: (event) => {
        if (event.type === "dead") throw new Error("listener broke");
        heard.push(event.type);
      },
    });
    group.hear(0, {
      type: "events",
      group: "all",
      events: [
        { type: "dead", job: job("a"), error: "x" },
        { type: "retry", job: job("b"), error: "y" },
      ],
    });
    expect(heard).toEqual(["retry"]);
    expect(errors).toHaveBeenCalledWith("a hosted group's listener threw on a dead event: listener broke");
  });

  it("stops: each thread answers with what it abandoned; one that cannot host ends the wait and fails the group", async () => {
    const { group, sent, forgotten } = setUp();
    const stopped = group.stop({ timeoutMs: 1_000 });
    expect(sent.filter(({ message }) => message.type === "unhost").map(({ thread }) => thread)).toEqual([
      0, 1,
    ]);
    group.hear(0, { type: "unhosted", group: "all", abandoned: 2 });
    group.hear(1, { type: "host-failed", group: "all", reason: "no code" });
    expect(await stopped).toEqual({ abandoned: 2 });
    expect(forgotten()).toBe(1);
    expect(await group.failed).toBe("worker thread 1 cannot claim for group all: no code");
  });

  it("ends a thread that neither answers a stop nor dies, and counts what it ran as abandoned", async () => {
    vi.useFakeTimers();
    const { group, ended } = setUp();
    group.hear(1, { type: "status", group: "all", active: 2, jobs: ["a", "b"] });
    const stopped = group.stop({ timeoutMs: 1_000 });
    group.hear(0, { type: "unhosted", group: "all", abandoned: 0 });
    await vi.advanceTimersByTimeAsync(11_000);
    expect(ended).toEqual([{ thread: 1, why: "worker thread did not stop claiming for group all" }]);
    // The pool ends it; its lane's end detaches it.
    group.detach(1);
    expect(await stopped).toEqual({ abandoned: 2 });
  });

  it("goes on without a thread that could not even be ended", async () => {
    vi.useFakeTimers();
    const { group, ended } = setUp();
    group.hear(0, { type: "status", group: "all", active: 1, jobs: ["a"] });
    const stopped = group.stop({ timeoutMs: 1_000 });
    group.hear(1, { type: "unhosted", group: "all", abandoned: 0 });
    await vi.advanceTimersByTimeAsync(22_000);
    expect(ended.map((e) => e.thread)).toEqual([0]);
    expect(await stopped).toEqual({ abandoned: 1 });
  });
});
