/**
 * The latency load of the latency cases run on two bare round trips a job: the floor that
 * `npm run bench:latency-floor` and the `latency-floor-500` case of `npm run bench` show beside
 * the queues' figures.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { connectRedis } from "../src/redis/connection.js";
import { type Figures, type LatencyLoad, LatencySamples, loadJobs, runLoad, waitFor } from "./harness.js";

/**
 * Two bare round trips a job and nothing else, on one connection: the least any queue that
 * records a job in Redis before it runs and its end after could wait through, with no job
 * record, script, wake or claim, and no payload sent (the other sides send about 200 bytes): a
 * floor on the generous side. "Started" after the first answer, "done" after the second. Its
 * p99 in the same rounds is the tail this machine gives any such queue before it does anything.
 */
export const roundTripsLatency = async (url: string, load: LatencyLoad): Promise<Figures> => {
  const redis = connectRedis(url, { name: "latency-round-trips" });
  const total = loadJobs(load);
  const samples = new LatencySamples(load);
  let done = 0;
  let problem: string | undefined;
  try {
    await redis.ping();
    await sleep(200);
    await runLoad(load, (i, due) => {
      redis
        .ping()
        .then(() => {
          samples.started(i, due);
          return redis.ping();
        })
        .then(
          () => {
            samples.completed(i, due);
            done++;
          },
          (error: unknown) => (problem ??= String(error)),
        );
    });
    await waitFor("round-trip latency", {
      done: () => done >= total,
      progress: () => done,
      failure: () => problem,
    });
    return samples.figures();
  } finally {
    redis.disconnect();
  }
};
