import { randomUUID } from "node:crypto";
import { loadConfig } from "../../config/schema.js";
import type { Priority } from "../../src/domain/priority.js";

export const TEST_JOBS = new URL("./jobs.ts", import.meta.url).href;

/** A configuration as the environment would give it, pointed at a test Redis and the test jobs. */
export const testConfig = (redisUrl: string, env: Record<string, string> = {}) =>
  loadConfig({
    REDIS_URL: redisUrl,
    RT_PROFILE: "test",
    RT_JOBS_MODULE: TEST_JOBS,
    RT_POOL_THREADS: "2",
    RT_LOG_LEVEL: "error",
    ...env,
  });

export const testJob = (
  kind: string,
  body: unknown,
  priority: Priority = "normal",
  extra: { maxAttempts?: number; userId?: string } = {},
) => ({
  id: randomUUID(),
  priority,
  data: JSON.stringify({ v: 1, kind, body }),
  ...extra,
});
