import { isMainThread } from "node:worker_threads";
import { Schema } from "effect";
import { defineRegistry } from "../../src/jobs/definition.js";

// A registry that loads in the main thread (so a runtime starts) and throws in every worker
// thread: its jobs must fail with this error, and the pool must go on serving.
if (!isMainThread) throw new Error("this registry refuses to load in a worker thread");

export default defineRegistry({
  kinds: { hello: { schema: Schema.Struct({}), handler: async () => "hello" } },
});
