import { Migration } from "@mikro-orm/migrations";

const COLUMNS =
  "task_id, user_id, action, actor, from_status, to_status, attempt, priority, reason, processing_seconds, created_at";

/**
 * The audit log: one row per task transition and per admin action, with who and when. No foreign
 * key to the task: the trail outlives a purged task row.
 *
 * Transitions are written by a trigger on the task table, so the row and its audit entry are one
 * statement (atomic, with the exact state it left, `old.status`). An UPDATE that is a transition
 * bumps `audit_seq` and names its `audit_action`, `audit_actor` and `audit_reason`; any other
 * update (progress, leases) leaves `audit_seq` alone and writes nothing. An INSERT naming an
 * action is the task's creation.
 */
export class AuditLog extends Migration {
  override async up(): Promise<void> {
    const client = String((this.getKnex().client as { config: { client: unknown } }).config.client);
    const sqlite = client.includes("sqlite");
    const pk = sqlite ? "integer primary key autoincrement" : "bigserial primary key";
    const ts = sqlite ? "datetime" : "timestamptz";
    this.addSql(`create table job_audit_log (
      id ${pk},
      task_id varchar(36) null,
      user_id integer null,
      action varchar(40) not null,
      actor varchar(200) not null,
      from_status varchar(16) null,
      to_status varchar(16) null,
      attempt integer null,
      priority varchar(16) null,
      reason text null,
      processing_seconds double precision null,
      created_at ${ts} not null)`);
    this.addSql("create index job_audit_log_task on job_audit_log (task_id, id)");
    this.addSql("create index job_audit_log_created on job_audit_log (created_at)");
    for (const column of [
      "audit_seq integer not null default 0",
      "audit_action varchar(40) null",
      "audit_actor varchar(200) null",
      "audit_reason text null",
    ])
      this.addSql(`alter table caption_generation_tasks add column ${column}`);

    const ended = "new.status in ('completed', 'failed', 'cancelled')";
    if (sqlite) {
      // Dates are stored as epoch milliseconds here.
      const now = "cast(unixepoch('subsec') * 1000 as integer)";
      this.addSql(`create trigger caption_tasks_audit_insert after insert on caption_generation_tasks
        when new.audit_action is not null
        begin
          insert into job_audit_log (${COLUMNS}) values (new.id, new.user_id, new.audit_action,
            coalesce(new.audit_actor, 'system'), null, new.status, new.attempt, new.priority,
            new.audit_reason, null, ${now});
        end`);
      this
        .addSql(`create trigger caption_tasks_audit_update after update of audit_seq on caption_generation_tasks
        when new.audit_seq <> old.audit_seq and new.audit_action is not null
        begin
          insert into job_audit_log (${COLUMNS}) values (new.id, new.user_id, new.audit_action,
            coalesce(new.audit_actor, 'system'), old.status, new.status, new.attempt, new.priority,
            new.audit_reason,
            case when old.status = 'running' and ${ended} and new.started_at is not null
              then (${now} - new.started_at) / 1000.0 end,
            ${now});
        end`);
      return;
    }
    this.addSql(`create function caption_tasks_audit() returns trigger language plpgsql as $$
      begin
        if new.audit_action is null then return new; end if;
        if tg_op = 'UPDATE' and new.audit_seq = old.audit_seq then return new; end if;
        insert into job_audit_log (${COLUMNS}) values (new.id, new.user_id, new.audit_action,
          coalesce(new.audit_actor, 'system'),
          case when tg_op = 'UPDATE' then old.status end, new.status, new.attempt, new.priority,
          new.audit_reason,
          case when tg_op = 'UPDATE' and old.status = 'running' and ${ended} and new.started_at is not null
            then extract(epoch from (now() - new.started_at)) end,
          now());
        return new;
      end $$`);
    this.addSql(`create trigger caption_tasks_audit after insert or update on caption_generation_tasks
      for each row execute function caption_tasks_audit()`);
  }

  override async down(): Promise<void> {
    const client = String((this.getKnex().client as { config: { client: unknown } }).config.client);
    if (client.includes("sqlite")) {
      this.addSql("drop trigger caption_tasks_audit_insert");
      this.addSql("drop trigger caption_tasks_audit_update");
    } else {
      this.addSql("drop trigger caption_tasks_audit on caption_generation_tasks");
      this.addSql("drop function caption_tasks_audit()");
    }
    for (const column of ["audit_seq", "audit_action", "audit_actor", "audit_reason"])
      this.addSql(`alter table caption_generation_tasks drop column ${column}`);
    this.addSql("drop table job_audit_log");
  }
}
