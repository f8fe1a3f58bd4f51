import { defineRegistry } from "../../src/jobs/definition.js";

/** A registry with no kinds, for the start-up check that refuses to run workers with it. */
export default defineRegistry({ kinds: {} });
