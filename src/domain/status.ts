import { Schema } from "effect";

/** What the web app and the database see of a task. */
export const TASK_STATUSES = ["queued", "running", "completed", "failed", "cancelled"] as const;
export const TaskStatus = Schema.Literal(...TASK_STATUSES);
export type TaskStatus = typeof TaskStatus.Type;

export const isTerminalStatus = (s: TaskStatus): boolean =>
  s === "completed" || s === "failed" || s === "cancelled";
