import { appendFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { CaptionTaskPayload } from "../../src/domain/caption-task.js";
import { defineRegistry } from "../../src/jobs/definition.js";

/**
 * A `caption` kind for the fault suite: it takes `processing_delay` seconds in three steps and,
 * when it finishes, notes `ran <task> <attempt> <pid>` in RT_TEST_LOG, so a test can count how
 * often each task's work was done to the end, and by which attempt.
 */
export default defineRegistry({
  kinds: {
    caption: {
      schema: CaptionTaskPayload,
      handler: async (task, { progress, signal, job }) => {
        for (const percent of [30, 60, 90]) {
          await sleep((task.settings.processing_delay * 1000) / 3, undefined, { signal });
          progress({ percent, step: `at ${percent}%` });
        }
        const log = process.env.RT_TEST_LOG;
        if (log) appendFileSync(log, `ran ${task.task_id} ${job.attempt} ${process.pid}\n`);
        return { task_id: task.task_id, captions_generated: 1 };
      },
    },
  },
});
