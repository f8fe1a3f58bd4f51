import { groupsFor, type WorkerGroup } from "../../config/profiles.js";
import { loadConfig } from "../../config/schema.js";
import { isPriority, type Priority } from "../domain/priority.js";
import { start } from "../runtime.js";
import { say, untilSignalled } from "./signals.js";

export interface SupervisorFlags {
  readonly queues?: string;
  readonly concurrency?: string;
}

const parseGroups = (flags: SupervisorFlags, profileGroups: readonly WorkerGroup[]): WorkerGroup[] => {
  const concurrency = flags.concurrency === undefined ? undefined : Number(flags.concurrency);
  if (
    concurrency !== undefined &&
    (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1000)
  ) {
    throw new Error(
      `--concurrency takes a whole number from 1 to 1000, got ${JSON.stringify(flags.concurrency)}`,
    );
  }
  if (flags.queues === undefined) {
    return profileGroups.map((g) => ({ ...g, concurrency: concurrency ?? g.concurrency }));
  }
  const queues = flags.queues.split(",").map((q) => q.trim());
  const bad = queues.filter((q) => !isPriority(q));
  if (bad.length > 0 || queues.length === 0) {
    throw new Error(
      `--queues takes priorities (urgent,high,normal,low), got ${JSON.stringify(flags.queues)}`,
    );
  }
  return [{ name: queues.join("+"), queues: queues as Priority[], concurrency: concurrency ?? 4 }];
};

/**
 * A standalone worker process. SIGTERM or SIGINT: stop claiming, let running jobs finish up to
 * RT_SHUTDOWN_MS, leave the rest to the reclaimer, exit 0. A second signal exits at once (130).
 * If the supervision tree gives up, exit 1 and let systemd or Kubernetes restart the process.
 */
export const runSupervisor = async (flags: SupervisorFlags): Promise<number> => {
  const config = loadConfig();
  const groups = parseGroups(flags, groupsFor(config, "supervisor"));
  if (groups.length === 0) throw new Error("no worker groups to run (check RT_PROFILE and WORKER_MODE)");
  // The database ledger follows every job: rows end as their jobs end.
  const runtime = await start({ config, groups, ledger: true });
  say(
    `ratatoskr supervisor ${runtime.workerId}: ${groups.map((g) => `${g.name} [${g.queues.join(">")}] x${g.concurrency}`).join(", ")}`,
  );
  return untilSignalled({
    stop: () => runtime.stop({ graceful: true }),
    done: runtime.done,
    shutdownMs: config.RT_SHUTDOWN_MS,
  });
};
