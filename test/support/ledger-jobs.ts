import { setTimeout as sleep } from "node:timers/promises";
import { CaptionTaskPayload } from "../../src/domain/caption-task.js";
import { defineRegistry } from "../../src/jobs/definition.js";

/**
 * A `caption` kind for the ledger tests: it walks through progress steps and fails the first
 * attempt when the task's settings ask for it (max_posts_per_run = 13), so the tests can follow
 * a task's row through every state. The real caption pipeline has tests of its own.
 */
export default defineRegistry({
  kinds: {
    caption: {
      schema: CaptionTaskPayload,
      handler: async (task, { progress, signal, job }) => {
        for (const percent of [10, 50, 90]) {
          await sleep(task.settings.processing_delay * 100, undefined, { signal });
          progress({ percent, step: `at ${percent}%` });
        }
        if (task.settings.max_posts_per_run === 13 && job.runAttempt === 1)
          throw new Error("unlucky first attempt");
        return { posts_processed: 1, captions_generated: 2, task_id: task.task_id };
      },
    },
  },
});
