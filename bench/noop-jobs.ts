import { Schema } from "effect";
import { defineRegistry } from "../src/jobs/definition.js";

/** The job registry of the drain-threads cases (bench/main.ts): one kind that does nothing, so only the runtime is measured. */
export default defineRegistry({
  kinds: {
    noop: { schema: Schema.Struct({}), handler: async () => undefined },
  },
});
