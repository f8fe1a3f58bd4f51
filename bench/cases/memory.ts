import type { ComparedCase } from "./case.js";

export const memoryCase: ComparedCase = {
  kind: "compared",
  name: "memory",
  what: "Redis used_memory per waiting job, then per completed job kept (default retention)",
  metrics: [
    { key: "waitingBytesPerJob", label: "per waiting job", unit: "bytes", better: "lower" },
    { key: "completedBytesPerJob", label: "per completed job kept", unit: "bytes", better: "lower" },
  ],
  goals: [{ kind: "vs-bullmq", metric: "waitingBytesPerJob", atMost: 0.67 }],
  run: (system, options) => system.memory(options.memoryJobs),
};
