import { CaptionTaskPayload } from "../src/domain/caption-task.js";
import { defineRegistry } from "../src/jobs/definition.js";

/** The job registry of bench/http.ts: `caption` jobs that do nothing, so the path is measured. */
export default defineRegistry({
  kinds: {
    caption: { schema: CaptionTaskPayload, handler: async (task) => ({ task_id: task.task_id }) },
  },
});
