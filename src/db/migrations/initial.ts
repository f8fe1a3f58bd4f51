import { Migration } from "@mikro-orm/migrations";

/**
 * The ledger's first schema, for SQLite and PostgreSQL alike (only column types differ). The
 * partial unique index is the ground truth of "one active task per user"; Redis's lock is only
 * its fast path.
 */
export class InitialSchema extends Migration {
  override async up(): Promise<void> {
    const client = String((this.getKnex().client as { config: { client: unknown } }).config.client);
    const sqlite = client.includes("sqlite");
    const pk = sqlite ? "integer primary key autoincrement" : "serial primary key";
    const ts = sqlite ? "datetime" : "timestamptz";
    const oneOf = (column: string, values: readonly string[]) =>
      `check (${column} in (${values.map((v) => `'${v}'`).join(", ")}))`;

    this.addSql(`create table users (
      id ${pk},
      username varchar(64) not null unique,
      email varchar(255) not null,
      role varchar(16) not null ${oneOf("role", ["admin", "moderator", "reviewer", "viewer"])},
      is_active boolean not null default true,
      api_token_hash varchar(64) null unique,
      created_at ${ts} not null)`);

    this.addSql(`create table platform_connections (
      id ${pk},
      user_id integer not null references users (id) on delete cascade,
      name varchar(100) not null,
      platform_type varchar(16) not null ${oneOf("platform_type", ["mastodon", "pixelfed"])},
      instance_url varchar(500) not null,
      username varchar(255) not null,
      access_token_encrypted text not null,
      is_default boolean not null default false,
      is_active boolean not null default true,
      created_at ${ts} not null)`);
    this.addSql(
      "create unique index platform_connections_one_default on platform_connections (user_id) where is_default",
    );

    this.addSql(`create table caption_generation_tasks (
      id varchar(36) primary key,
      user_id integer not null references users (id) on delete cascade,
      platform_connection_id integer not null references platform_connections (id) on delete cascade,
      status varchar(16) not null ${oneOf("status", ["queued", "running", "completed", "failed", "cancelled"])},
      priority varchar(16) not null ${oneOf("priority", ["urgent", "high", "normal", "low"])},
      settings_json text not null,
      created_at ${ts} not null,
      started_at ${ts} null,
      completed_at ${ts} null,
      error_message text null,
      results_json text null,
      progress_percent integer not null default 0,
      current_step varchar(500) null,
      retry_count integer not null default 0,
      max_retries integer not null default 3,
      cancelled_by_admin boolean not null default false,
      admin_user_id integer null references users (id) on delete set null,
      cancellation_reason varchar(500) null,
      admin_notes text null,
      queue_backend varchar(16) not null default 'redis' ${oneOf("queue_backend", ["redis", "database"])},
      attempt integer not null default 0)`);
    this.addSql(`create unique index caption_tasks_one_active_per_user
      on caption_generation_tasks (user_id) where status in ('queued', 'running')`);
    this.addSql(
      "create index caption_tasks_by_state on caption_generation_tasks (status, queue_backend, priority, created_at)",
    );

    this.addSql(`create table posts (
      id ${pk},
      post_id varchar(255) not null,
      user_id integer not null references users (id) on delete cascade,
      platform_connection_id integer not null references platform_connections (id) on delete cascade,
      post_url varchar(500) not null,
      post_content text null,
      created_at ${ts} not null,
      updated_at ${ts} not null,
      unique (platform_connection_id, post_id))`);

    this.addSql(`create table images (
      id ${pk},
      post_id integer not null references posts (id) on delete cascade,
      platform_connection_id integer not null references platform_connections (id) on delete cascade,
      image_url varchar(1000) not null,
      local_path varchar(500) null,
      original_filename varchar(255) null,
      media_type varchar(100) null,
      image_post_id varchar(255) not null,
      attachment_index integer not null default 0,
      generated_caption text null,
      final_caption text null,
      status varchar(16) not null default 'pending' ${oneOf("status", ["pending", "reviewed", "approved", "rejected", "posted", "error"])},
      prompt_used text null,
      caption_quality_score integer null,
      needs_special_review boolean not null default false,
      original_post_date ${ts} null,
      created_at ${ts} not null,
      updated_at ${ts} not null,
      unique (platform_connection_id, image_post_id))`);
  }

  override async down(): Promise<void> {
    for (const table of ["images", "posts", "caption_generation_tasks", "platform_connections", "users"]) {
      this.addSql(`drop table if exists ${table}`);
    }
  }
}
