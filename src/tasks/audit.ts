import { type EntityManager, raw } from "@mikro-orm/core";
import { AuditEntry, CaptionTask } from "../db/entities.js";

/** What the audit log records: every task transition and every admin action. */
export type AuditAction =
  | "created"
  | "started"
  | "retrying"
  | "completed"
  | "failed"
  | "cancelled"
  | "cancel_requested"
  | "released"
  | "requeued"
  | "reopened"
  | "priority_changed"
  | "restarted"
  | "queue_paused"
  | "queue_resumed"
  | "queue_cleared"
  | "dead_letter_retried"
  | "dead_letter_purged";

export interface AuditFacts {
  readonly action: AuditAction;
  /** `user:<id>`, `admin:<id>`, or `system:<worker id>` for the runtime's own moves. */
  readonly actor: string;
  readonly taskId?: string | null;
  readonly userId?: number | null;
  readonly fromStatus?: string | null;
  readonly toStatus?: string | null;
  readonly attempt?: number | null;
  readonly priority?: string | null;
  readonly reason?: string | null;
  readonly processingSeconds?: number | null;
}

export const actorOf = (caller: { readonly userId: number; readonly admin?: boolean | undefined }) =>
  `${caller.admin ? "admin" : "user"}:${caller.userId}`;

export const writeAudit = (em: EntityManager, facts: AuditFacts): Promise<unknown> =>
  em.insert(AuditEntry, {
    taskId: facts.taskId ?? null,
    userId: facts.userId ?? null,
    action: facts.action,
    actor: facts.actor.slice(0, 200),
    fromStatus: facts.fromStatus ?? null,
    toStatus: facts.toStatus ?? null,
    attempt: facts.attempt ?? null,
    priority: facts.priority ?? null,
    reason: facts.reason?.slice(0, 2000) ?? null,
    processingSeconds: facts.processingSeconds ?? null,
    createdAt: new Date(),
  });

/** A task's trail, oldest first. */
export const auditTrail = (em: EntityManager, taskId: string): Promise<AuditEntry[]> =>
  em.find(AuditEntry, { taskId }, { orderBy: { id: "asc" } });

/**
 * An update of one task row that is a transition, in one statement: it bumps `audit_seq` and names
 * the action, so the table's trigger writes the audit row with it (atomic, with the exact state
 * the row left). `where` holds the compare-and-set (status, attempt, backend). False, and no audit
 * row, when the row did not match.
 */
export const auditedUpdate = async (
  em: EntityManager,
  change: {
    readonly id: string;
    readonly where: object;
    readonly set: object;
    readonly action: AuditAction;
    readonly actor: string;
    readonly reason?: string | null | undefined;
  },
): Promise<boolean> => {
  const changed = await em.nativeUpdate(
    CaptionTask,
    { ...change.where, id: change.id } as never,
    {
      ...change.set,
      ...auditColumns(change.action, change.actor, change.reason),
      auditSeq: raw("audit_seq + 1"),
    } as never,
  );
  return changed > 0;
};

/** The columns the audit trigger reads, for an INSERT (the task's creation) or an update. */
export const auditColumns = (action: AuditAction, actor: string, reason?: string | null) => ({
  auditAction: action,
  auditActor: actor.slice(0, 200),
  auditReason: reason?.slice(0, 2000) ?? null,
});
