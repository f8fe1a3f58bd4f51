/**
 * The worker that dies in the recovery case: claims every job with a handler that never returns,
 * says `active` once all of them run, and waits for its SIGKILL.
 *
 *   node --import tsx bench/systems/ratatoskr-recovery-child.ts REDIS_URL JOBS LEASE_MS
 */
import { Effect } from "effect";
import { PRIORITIES } from "../../src/domain/priority.js";
import { Queue } from "../../src/queue/queue.js";
import { Worker } from "../../src/queue/worker.js";
import { connectRedis } from "../../src/redis/connection.js";

const [url = "", jobs = "0", leaseMs = "0"] = process.argv.slice(2);
const queue = new Queue(connectRedis(url, { name: "bench-doomed" }));
await Effect.runPromise(queue.prepare());
let started = 0;
new Worker({
  queue,
  consumer: "bench-doomed",
  priorities: PRIORITIES,
  concurrency: Number(jobs),
  leaseMs: Number(leaseMs),
  // It renews its leases while it lives, so only its death lets the jobs go.
  handler: () => {
    if (++started === Number(jobs)) process.stdout.write("active\n");
    return new Promise(() => {});
  },
}).start();
