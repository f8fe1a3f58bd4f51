import { setTimeout as sleep } from "node:timers/promises";
import { Schema } from "effect";
import { User } from "../../src/db/entities.js";
import { databaseScope, settingsFromEnv } from "../../src/db/session.js";
import { defineRegistry } from "../../src/jobs/definition.js";

/** Jobs that write through their scoped session, then succeed, fail, or wait to be aborted. */
export default defineRegistry({
  scope: databaseScope(() => settingsFromEnv()),
  kinds: {
    writeUser: {
      schema: Schema.Struct({
        username: Schema.String,
        then: Schema.Literal("succeed", "fail", "wait", "checkpointThenFail"),
      }),
      handler: async ({ username, then }, { resources, signal }) => {
        const { em } = resources;
        em.create(User, { username, email: `${username}@example.org`, role: "viewer" });
        if (then === "fail") throw new Error("failed after writing");
        if (then === "wait") await sleep(60_000, undefined, { signal });
        if (then === "checkpointThenFail") {
          await resources.checkpoint();
          em.create(User, { username: `${username}-2`, email: "x@example.org", role: "viewer" });
          throw new Error("failed after a checkpoint");
        }
        // Its own writes are visible to the job before they are committed.
        return em.getUnitOfWork().getPersistStack().size === 1 ? "seen" : "not seen";
      },
    },
  },
});
