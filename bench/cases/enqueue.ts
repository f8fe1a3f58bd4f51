import { JOBS_PER_SECOND, type ComparedCase } from "./case.js";

export const enqueueCases: ComparedCase[] = [
  {
    kind: "compared",
    name: "enqueue-single",
    what: "N single enqueues, 16 in flight (ours: queue.enqueue; BullMQ: queue.add)",
    metrics: [JOBS_PER_SECOND],
    run: (system, options) => system.enqueueSingle(options.jobs),
  },
  {
    kind: "compared",
    name: "enqueue-bulk",
    what: "N enqueues in calls of 1,000 (ours: queue.enqueueMany; BullMQ: queue.addBulk)",
    metrics: [JOBS_PER_SECOND],
    goals: [{ kind: "vs-bullmq", metric: "jobsPerSecond", atLeast: 2 }],
    run: (system, options) => system.enqueueBulk(options.jobs),
  },
];
