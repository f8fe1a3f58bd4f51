import { randomUUID } from "node:crypto";
import { Schema } from "effect";

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/**
 * Random bits in UUID v4 form, lower-case only: one task has one spelling, hence one set of
 * Redis keys. Random so that ids sort nowhere and guess nothing.
 */
export const TaskId = Schema.String.pipe(
  Schema.pattern(UUID_V4, { message: () => "must be a lower-case UUID v4" }),
  Schema.brand("TaskId"),
);
export type TaskId = typeof TaskId.Type;

export const newTaskId = (): TaskId => randomUUID() as TaskId;

const decodeTaskId = Schema.decodeUnknownOption(TaskId);
export const parseTaskId = (value: unknown) => decodeTaskId(value);
