import { captionHandler } from "../captions/handler.js";
import { databaseScope, type JobSession, settingsFromEnv } from "../db/session.js";
import { CaptionTaskPayload } from "../domain/caption-task.js";
import { defineRegistry } from "./definition.js";

/**
 * The job kinds this build runs, loaded by every worker thread. Each job gets its own database
 * session (a fork of the thread's ORM, in a transaction), opened and closed around it.
 */
export default defineRegistry<JobSession>({
  scope: databaseScope(() => settingsFromEnv()),
  kinds: {
    caption: { schema: CaptionTaskPayload, handler: (task, context) => captionHandler(task, context) },
  },
});
