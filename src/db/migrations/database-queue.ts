import { Migration } from "@mikro-orm/migrations";

/**
 * The database queue's own fields: a retry's not-before time and the lease of an attempt that a
 * database-fallback dispatcher runs, so a crashed process's tasks come back as Redis's do.
 */
export class DatabaseQueue extends Migration {
  override async up(): Promise<void> {
    const client = String((this.getKnex().client as { config: { client: unknown } }).config.client);
    const ts = client.includes("sqlite") ? "datetime" : "timestamptz";
    this.addSql(`alter table caption_generation_tasks add column available_at ${ts} null`);
    this.addSql(`alter table caption_generation_tasks add column lease_until ${ts} null`);
    this.addSql("alter table caption_generation_tasks add column lease_owner varchar(200) null");
  }

  override async down(): Promise<void> {
    for (const column of ["available_at", "lease_until", "lease_owner"])
      this.addSql(`alter table caption_generation_tasks drop column ${column}`);
  }
}
