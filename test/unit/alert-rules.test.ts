import { describe, expect, it } from "vitest";
import { AlertBook } from "../../src/alerts/book.js";
import {
  type Condition,
  evaluateRules,
  type Observation,
  RestartWindow,
  type Thresholds,
} from "../../src/alerts/rules.js";

const thresholds: Thresholds = {
  backlogCount: 100,
  waitSeconds: { urgent: 30, high: 120, normal: 600, low: 3600 },
  failurePercent: 25,
  failureMinSample: 10,
  deadLetters: 1,
  restarts: 3,
  memoryPercent: 80,
  windowMinutes: 5,
};

const quiet: Observation = {
  at: 1_000_000,
  waiting: { urgent: 0, high: 0, normal: 0, low: 0 },
  oldestWaitingAt: {},
  paused: new Set(),
  completed: 50,
  failed: 0,
  deadLettered: 0,
  workers: [{ id: "w1", active: 1, capacity: 4, restarts: 0, mode: "redis" }],
  lapsed: [],
  memoryPercent: 10,
};

const keys = (conditions: Condition[]) => conditions.map((c) => c.key).sort();

describe("alert rules", () => {
  it("finds nothing in a quiet queue", () => {
    expect(evaluateRules(quiet, thresholds, new Map())).toEqual([]);
  });

  it("finds each condition at its threshold, and not below it", () => {
    const busy: Observation = {
      ...quiet,
      waiting: { urgent: 1, high: 100, normal: 99, low: 0 },
      oldestWaitingAt: { urgent: quiet.at - 30_000, normal: quiet.at - 599_000 },
      paused: new Set(["urgent"]),
      completed: 30,
      failed: 10,
      deadLettered: 1,
      lapsed: ["w9"],
      memoryPercent: 80,
    };
    const found = evaluateRules(busy, thresholds, new Map([["w1", 4]]));
    expect(keys(found)).toEqual(
      [
        "actor_restarts:w1",
        "backlog_age:urgent",
        "backlog_count:high",
        "dead_letters",
        "failure_rate",
        "heartbeat_lapsed:w9",
        "redis_memory",
      ].sort(),
    );
    expect(found.find((c) => c.key === "backlog_age:urgent")).toMatchObject({
      severity: "critical",
      message: "the oldest waiting urgent job has waited 30 s (alert at 30 s) (the priority is paused)",
    });
    expect(found.find((c) => c.rule === "failure_rate")?.message).toContain("25% of attempts failed");
  });

  it("ignores a failure rate over too few attempts, and saturation without a backlog", () => {
    const few = { ...quiet, completed: 1, failed: 8 };
    expect(evaluateRules(few, thresholds, new Map())).toEqual([]);
    const full = { ...quiet, workers: [{ id: "w1", active: 4, capacity: 4, restarts: 0, mode: "redis" }] };
    expect(evaluateRules(full, thresholds, new Map())).toEqual([]);
    const waiting = { ...full, waiting: { ...quiet.waiting, low: 1 } };
    expect(keys(evaluateRules(waiting, thresholds, new Map()))).toEqual(["pool_saturated"]);
    // Jobs waiting only in a paused priority are not a reason to add workers.
    expect(evaluateRules({ ...waiting, paused: new Set(["low"]) }, thresholds, new Map())).toEqual([]);
  });

  it("counts restarts within the window only, from the first count it saw", () => {
    const window = new RestartWindow(60_000);
    const at = (restarts: number) => [{ id: "w1", active: 0, capacity: 1, restarts, mode: "redis" }];
    expect(window.update(0, at(7)).get("w1")).toBe(0);
    expect(window.update(30_000, at(9)).get("w1")).toBe(2);
    expect(window.update(59_000, at(12)).get("w1")).toBe(5);
    // The count of t=0 left the window; growth is measured from t=30 s.
    expect(window.update(61_000, at(12)).get("w1")).toBe(3);
    expect(window.update(200_000, at(12)).get("w1")).toBe(0);
  });
});

describe("alert book", () => {
  const condition: Condition = { rule: "r", key: "r:x", severity: "warning", message: "m1" };
  const book = () => new AlertBook({ repeatMs: 1_000, holdMs: (rule) => (rule === "slow" ? 500 : 0) });

  it("fires once, repeats at the interval while the condition holds, and resolves when it clears", () => {
    const b = book();
    expect(b.apply([condition], 0).map((n) => n.state)).toEqual(["firing"]);
    expect(b.apply([{ ...condition, message: "m2" }], 500)).toEqual([]);
    expect(b.firing()[0]?.message).toBe("m2");
    expect(b.apply([condition], 1_000).map((n) => n.state)).toEqual(["repeat"]);
    expect(b.apply([condition], 1_500)).toEqual([]);
    const [resolved] = b.apply([], 1_600);
    expect(resolved).toMatchObject({ state: "resolved", key: "r:x", since: 0, message: "resolved: m1" });
    expect(b.apply([], 1_700)).toEqual([]);
    expect(b.alerts()).toEqual([]);
  });

  it("fires a rule with a hold only once its condition has held that long; a blip never fires", () => {
    const b = book();
    const slow = { ...condition, rule: "slow", key: "slow" };
    expect(b.apply([slow], 0)).toEqual([]);
    expect(b.apply([], 100)).toEqual([]);
    expect(b.apply([slow], 200)).toEqual([]);
    expect(b.apply([slow], 600)).toEqual([]);
    expect(b.apply([slow], 700).map((n) => n.state)).toEqual(["firing"]);
  });

  it("carries on from a state another evaluator left, without firing again", () => {
    const first = book();
    first.apply([condition], 0);
    const next = book();
    next.load(first.alerts());
    expect(next.apply([condition], 100)).toEqual([]);
    expect(next.apply([], 200).map((n) => n.state)).toEqual(["resolved"]);
  });
});
