import { Schema } from "effect";
import { CaptionSettings } from "./caption-settings.js";
import { Priority } from "./priority.js";
import { TaskId } from "./task-id.js";

const PositiveId = Schema.Int.pipe(Schema.positive());

/** The payload of a caption job as it travels through the queue (inside an envelope). */
export const CaptionTaskPayload = Schema.Struct({
  task_id: TaskId,
  user_id: PositiveId,
  platform_connection_id: PositiveId,
  priority: Priority,
  settings: CaptionSettings,
  created_at: Schema.DateTimeUtc,
  retry_count: Schema.optionalWith(Schema.Int.pipe(Schema.between(0, 100)), { default: () => 0 }),
  max_retries: Schema.optionalWith(Schema.Int.pipe(Schema.between(0, 20)), { default: () => 3 }),
});
export type CaptionTaskPayload = typeof CaptionTaskPayload.Type;
export type CaptionTaskPayloadInput = typeof CaptionTaskPayload.Encoded;
