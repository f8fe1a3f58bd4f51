import { PRIORITIES, type Priority } from "../src/domain/priority.js";
import type { Config } from "./schema.js";

export interface WorkerGroup {
  readonly name: string;
  /** Claimed strictly in priority order. */
  readonly queues: readonly Priority[];
  readonly concurrency: number;
}

export type WorkerMode = "integrated" | "external" | "hybrid";

export interface Profile {
  readonly groups: readonly WorkerGroup[];
  /** Where jobs run when WORKER_MODE is not set. */
  readonly mode: WorkerMode;
  /** In hybrid mode, these groups run inside the web process; the rest in supervisors. */
  readonly embeddedInHybrid: readonly string[];
  readonly logFormat: "json" | "logfmt" | "pretty";
}

export const profiles: Record<Config["RT_PROFILE"], Profile> = {
  development: {
    groups: [{ name: "all", queues: PRIORITIES, concurrency: 4 }],
    mode: "integrated",
    embeddedInHybrid: ["all"],
    logFormat: "logfmt",
  },
  production: {
    groups: [
      { name: "urgent-high", queues: ["urgent", "high"], concurrency: 2 },
      { name: "normal", queues: ["normal"], concurrency: 2 },
      { name: "low", queues: ["low"], concurrency: 3 },
    ],
    mode: "external",
    embeddedInHybrid: ["urgent-high"],
    logFormat: "json",
  },
  test: {
    groups: [{ name: "all", queues: PRIORITIES, concurrency: 2 }],
    mode: "integrated",
    embeddedInHybrid: ["all"],
    logFormat: "logfmt",
  },
};

/** Which worker groups run where: in the web server process, or in `ratatoskr supervisor`. */
export const groupsFor = (config: Config, where: "web" | "supervisor"): readonly WorkerGroup[] => {
  const profile = profiles[config.RT_PROFILE];
  const mode = config.WORKER_MODE ?? profile.mode;
  if (where === "supervisor") {
    return mode === "hybrid"
      ? profile.groups.filter((g) => !profile.embeddedInHybrid.includes(g.name))
      : profile.groups;
  }
  if (mode === "external") return [];
  if (mode === "integrated") return profile.groups;
  return profile.groups.filter((g) => profile.embeddedInHybrid.includes(g.name));
};

export const jobTimeoutsMs = (config: Config): Record<Priority, number> => ({
  urgent: config.RT_TIMEOUT_URGENT_S * 1000,
  high: config.RT_TIMEOUT_HIGH_S * 1000,
  normal: config.RT_TIMEOUT_NORMAL_S * 1000,
  low: config.RT_TIMEOUT_LOW_S * 1000,
});
