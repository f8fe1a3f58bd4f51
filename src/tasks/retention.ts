import type { EntityManager } from "@mikro-orm/core";
import { CaptionTask } from "../db/entities.js";

const ENDED = ["completed", "failed", "cancelled"] as const;

/** `30d`, `12h`, `90m`: a duration in milliseconds, or undefined when it is not one. */
export const parseAge = (text: string | undefined): number | undefined => {
  const match = /^(\d{1,6})([dhm])$/.exec(text ?? "");
  if (!match) return undefined;
  const unit = { d: 86_400_000, h: 3_600_000, m: 60_000 }[match[2] as "d" | "h" | "m"];
  return Number(match[1]) * unit;
};

/**
 * Deletes the task rows that ended before `before` (completed, failed or cancelled; never an
 * active one), a batch at a time. Posts and images are not the tasks' (they belong to the
 * connection), and the audit log outlives its tasks, so nothing else goes with them.
 */
export const purgeEndedTasks = async (
  em: () => EntityManager,
  before: Date,
  options: { dryRun: boolean; batch?: number },
): Promise<number> => {
  const where = { status: { $in: [...ENDED] }, completedAt: { $lt: before } };
  if (options.dryRun) return em().count(CaptionTask, where);
  let purged = 0;
  for (;;) {
    const batch = await em().find(CaptionTask, where, { fields: ["id"], limit: options.batch ?? 1_000 });
    if (batch.length === 0) return purged;
    purged += await em().nativeDelete(CaptionTask, {
      id: { $in: batch.map((r) => r.id) },
      status: { $in: [...ENDED] },
    });
  }
};
