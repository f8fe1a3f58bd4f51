import { execFile, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { ReferenceCase } from "./case.js";

/** Debian's interpreter, where `apt-get install python3-rq` puts rq (not a pyenv or venv one). */
const PYTHON = "/usr/bin/python3";
const SCRIPT = fileURLToPath(new URL("../rq_bench.py", import.meta.url));

const burst = async (url: string, jobs: number, mode: "fork" | "simple"): Promise<number> => {
  const { stdout } = await promisify(execFile)(PYTHON, [SCRIPT, url, `${jobs}`, mode]);
  return (JSON.parse(stdout) as { jobsPerSecond: number }).jobsPerSecond;
};

export const rqVersion = (): string | undefined => {
  const probe = spawnSync(PYTHON, ["-c", "import rq; print(rq.__version__)"], { encoding: "utf8" });
  return probe.status === 0 ? probe.stdout.trim() : undefined;
};

export const rqCase: ReferenceCase = {
  kind: "reference",
  name: "rq",
  what: "python-rq burst workers (fork and SimpleWorker) draining no-op jobs, next to ours at c1",
  unavailable: () =>
    rqVersion() === undefined
      ? `rq: skipped, ${PYTHON} cannot import rq (Debian: apt-get install python3-rq)`
      : undefined,
  theirName: "rq",
  metrics: [
    {
      key: "forkJobsPerSecond",
      label: "rq Worker (fork) vs ours c1",
      unit: "jobs/s",
      better: "higher",
      ours: { case: "drain-main-c1", key: "jobsPerSecond" },
    },
    {
      key: "simpleJobsPerSecond",
      label: "rq SimpleWorker vs ours c1",
      unit: "jobs/s",
      better: "higher",
      ours: { case: "drain-main-c1", key: "jobsPerSecond" },
    },
  ],
  run: async (target, options) => {
    const forkJobsPerSecond = await burst(target.url, options.rqForkJobs, "fork");
    // Its own empty Redis, as every run gets.
    await target.admin.flushall();
    const simpleJobsPerSecond = await burst(target.url, options.rqSimpleJobs, "simple");
    return { forkJobsPerSecond, simpleJobsPerSecond };
  },
};
