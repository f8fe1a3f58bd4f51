import { randomBytes } from "node:crypto";
import type { MikroORM } from "@mikro-orm/core";
import { PlatformConnection, User } from "../../src/db/entities.js";
import { migrate, openDatabase } from "../../src/db/orm.js";
import { encryptField, parseKey } from "../../src/security/field-crypto.js";
import { createPostgresDatabase, postgresReachable, sqliteUrl } from "./databases.js";

export const hasPostgres = await postgresReachable();
if (!hasPostgres) console.warn("PostgreSQL is not reachable on 127.0.0.1:5432: its ledger tests are SKIPPED");

/** The encryption key of the seeded connections; give it to a runtime as RT_ENCRYPTION_KEY. */
export const testKeyMaterial = randomBytes(32).toString("base64");
export const testKey = parseKey(testKeyMaterial);

export interface LedgerDb {
  readonly url: string;
  readonly orm: MikroORM;
  cleanup(): Promise<void>;
}

/** A migrated, empty ledger on SQLite (a temp file) or PostgreSQL (a database of its own). */
export const openLedgerDb = async (kind: "sqlite" | "postgres"): Promise<LedgerDb> => {
  const pg = kind === "postgres" ? await createPostgresDatabase() : undefined;
  const url = pg?.url ?? sqliteUrl();
  const orm = await openDatabase({ url, dataDir: "" });
  await migrate(orm);
  return {
    url,
    orm,
    cleanup: async () => {
      await orm.close();
      await pg?.drop();
    },
  };
};

let seq = 0;

/** A user with one default platform connection; returns both ids. */
export const seedUser = async (
  orm: MikroORM,
  options: { role?: "admin" | "viewer"; instanceUrl?: string; token?: string } = {},
) => {
  const em = orm.em.fork();
  const n = ++seq;
  const user = em.create(User, {
    username: `user${n}-${randomBytes(2).toString("hex")}`,
    email: `u${n}@example.org`,
    role: options.role ?? "viewer",
  });
  await em.flush();
  const connection = em.create(PlatformConnection, {
    userId: user.id,
    name: "main",
    platformType: "mastodon",
    instanceUrl: options.instanceUrl ?? "https://example.social",
    username: user.username,
    accessTokenEncrypted: encryptField(options.token ?? "token-secret", testKey),
    isDefault: true,
  });
  await em.flush();
  return { userId: user.id, connectionId: connection.id };
};

/** `n` users, each with a default platform connection; returns their ids. */
export const seedUsers = async (orm: MikroORM, n: number): Promise<number[]> => {
  const users: number[] = [];
  for (let i = 0; i < n; i++) users.push((await seedUser(orm)).userId);
  return users;
};
