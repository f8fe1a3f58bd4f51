// The BullMQ worker that dies in the recovery case: takes every job with a processor that never
// returns, says `active` once all of them run, and waits for its SIGKILL. Plain JavaScript, run
// by plain node: BullMQ needs no loader.
//
//   node bench/systems/bullmq-recovery-child.js PORT JOBS LOCK_MS
import { Worker } from "bullmq";

const [port = "0", jobs = "0", lockMs = "0"] = process.argv.slice(2);
let started = 0;
new Worker(
  "bench",
  () => {
    if (++started === Number(jobs)) process.stdout.write("active\n");
    return new Promise(() => {});
  },
  {
    connection: { host: "127.0.0.1", port: Number(port) },
    concurrency: Number(jobs),
    lockDuration: Number(lockMs),
    stalledInterval: Number(lockMs),
  },
);
