import type { ComparedCase } from "./case.js";

export const recoveryCase: ComparedCase = {
  kind: "compared",
  name: "recovery",
  what: "SIGKILL a worker holding 50 running jobs (lease/lock 5 s, 2 s quick): time until all restarted elsewhere",
  metrics: [{ key: "recoverySeconds", label: "kill → all restarted", unit: "s", better: "lower" }],
  run: (system, options) => system.recovery(options.recoveryJobs, options.leaseMs),
};
