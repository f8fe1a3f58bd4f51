import { DateTime, Either } from "effect";
import { jobCodec, newTaskId, type Priority, type TaskId } from "../../src/domain/index.js";
import type { ClaimedJob } from "../../src/queue/queue.js";

/** A valid caption envelope, as the task service would enqueue it. */
export const captionEnvelope = (priority: Priority = "normal", taskId: TaskId = newTaskId()) =>
  jobCodec.encode("caption", {
    task_id: taskId,
    user_id: 1,
    platform_connection_id: 2,
    priority,
    settings: {
      max_posts_per_run: 5,
      max_caption_length: 500,
      optimal_min_length: 80,
      optimal_max_length: 200,
      reprocess_existing: false,
      processing_delay: 0,
    },
    created_at: DateTime.unsafeNow(),
    retry_count: 0,
    max_retries: 3,
  });

/** A worker's `validate` that checks the envelope as the runtime's threads do. */
export const validateEnvelope = (job: ClaimedJob) =>
  Either.match(jobCodec.decode(job.data), { onLeft: (e) => e.message, onRight: () => undefined });
