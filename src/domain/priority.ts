import { Schema } from "effect";

/** Highest first: a dispatcher drains `urgent` before it reads `high`, and so on. */
export const PRIORITIES = ["urgent", "high", "normal", "low"] as const;

export const Priority = Schema.Literal(...PRIORITIES);
export type Priority = typeof Priority.Type;

export const priorityRank = (p: Priority): number => PRIORITIES.indexOf(p);

export const isPriority = (value: unknown): value is Priority =>
  typeof value === "string" && (PRIORITIES as readonly string[]).includes(value);

/** The given priorities, deduplicated and in strict priority order. */
export const inPriorityOrder = (priorities: Iterable<Priority>): Priority[] =>
  [...new Set(priorities)].sort((a, b) => priorityRank(a) - priorityRank(b));
