import { setTimeout as sleep } from "node:timers/promises";

/** How long aborted work gets to settle (and give its job back) before a stop goes on. */
const SETTLE_MS = 2_000;

/**
 * The graceful part of a stop, shared by both dispatchers: wait up to `timeoutMs` for the
 * running jobs to finish, abort the rest with `reason`, and give those a moment to settle.
 * Returns how many had to be aborted. `running` is live: entries leave it as jobs end.
 */
export const drainRunning = async <Job>(
  running: ReadonlyMap<string, Job>,
  abort: (job: Job, reason: Error) => void,
  timeoutMs: number,
  reason: string,
): Promise<number> => {
  const deadline = Date.now() + timeoutMs;
  while (running.size > 0 && Date.now() < deadline) await sleep(10);
  const abandoned = running.size;
  for (const job of running.values()) abort(job, new Error(reason));
  const settle = Date.now() + SETTLE_MS;
  while (running.size > 0 && Date.now() < settle) await sleep(10);
  return abandoned;
};
