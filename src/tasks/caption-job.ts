import { DateTime, Schema } from "effect";
import type { CaptionTask } from "../db/entities.js";
import { CaptionSettings } from "../domain/caption-settings.js";
import { jobCodec } from "../domain/index.js";
import type { TaskId } from "../domain/task-id.js";
import type { NewJob } from "../queue/queue.js";

const decodeSettings = Schema.decodeUnknownSync(CaptionSettings, { onExcessProperty: "ignore" });

type TaskRow = Pick<
  CaptionTask,
  | "id"
  | "userId"
  | "platformConnectionId"
  | "priority"
  | "settingsJson"
  | "createdAt"
  | "retryCount"
  | "maxRetries"
>;

/** The queue's encoded envelope for a task row: what a worker thread decodes and runs. */
export const captionEnvelope = (row: TaskRow): string =>
  jobCodec.encode("caption", {
    task_id: row.id as TaskId,
    user_id: row.userId,
    platform_connection_id: row.platformConnectionId,
    priority: row.priority,
    // Validated when the task was submitted; decoding again fills defaults added since.
    settings: decodeSettings(JSON.parse(row.settingsJson)),
    created_at: DateTime.unsafeFromDate(row.createdAt),
    retry_count: Math.min(row.retryCount, 100),
    max_retries: row.maxRetries,
  });

/** The Redis job for a task row (first enqueue, or the ledger putting it back). */
export const captionJob = (row: TaskRow): NewJob => ({
  id: row.id,
  priority: row.priority,
  data: captionEnvelope(row),
  userId: String(row.userId),
  maxAttempts: row.maxRetries + 1,
});
