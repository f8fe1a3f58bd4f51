import { setTimeout as sleep } from "node:timers/promises";
import { CaptionTaskPayload } from "../../src/domain/caption-task.js";
import { defineRegistry } from "../../src/jobs/definition.js";

/**
 * A `caption` kind for the ledger tests: it walks through progress steps and fails the first
 * attempt when the task's settings ask for it (max_posts_per_run = 13), so the tests can follow
 * a task's row through every state; with max_posts_per_run = 14 it fails with an error full of
 * things only operators may see. The real caption pipeline has tests of its own.
 */
export const LEAKY_TOKEN = "leaky-access-token-0451";

export default defineRegistry({
  kinds: {
    caption: {
      schema: CaptionTaskPayload,
      handler: async (task, { progress, signal, job, log }) => {
        log("info", `walking the steps of ${task.task_id}`);
        for (const percent of [10, 50, 90]) {
          await sleep(task.settings.processing_delay * 100, undefined, { signal });
          progress({ percent, step: `at ${percent}%` });
        }
        if (task.settings.max_posts_per_run === 13 && job.runAttempt === 1)
          throw new Error("unlucky first attempt");
        // A failure whose text carries what users must never see: a token, a path, a stack.
        if (task.settings.max_posts_per_run === 14)
          throw new Error(
            `platform unavailable: GET https://social.example/api/v1/accounts/7/statuses?access_token=${LEAKY_TOKEN} answered 503 (read /srv/rt/data/images/a.jpg)\n    at fetchPosts (/srv/rt/src/captions/platform.ts:88:11)`,
          );
        return { posts_processed: 1, captions_generated: 2, task_id: task.task_id };
      },
    },
  },
});
