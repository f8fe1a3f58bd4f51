import { PLATFORM_TYPES, PlatformConnection, ROLES, User } from "../db/entities.js";
import { assertMigrated, openDatabase } from "../db/orm.js";
import { loadConfig } from "../../config/schema.js";
import { encryptField, loadFieldKey } from "../security/field-crypto.js";
import { hashToken, newApiToken } from "../security/tokens.js";

export class AccountsUsageError extends Error {}

/** Opens the configured ledger (it must be migrated), uses it, and closes it. */
export const withDatabase = async <A>(
  use: (orm: Awaited<ReturnType<typeof openDatabase>>) => Promise<A>,
): Promise<A> => {
  const config = loadConfig();
  const settings = { url: config.DATABASE_URL, dataDir: config.RT_DATA_DIR };
  const orm = await openDatabase(settings);
  try {
    await assertMigrated(orm, settings);
    return await use(orm);
  } finally {
    await orm.close();
  }
};

/** `ratatoskr users create <name> --role <role> [--email E]`: prints the new user's API token once. */
export const createUser = (name: string | undefined, options: { role?: string; email?: string }) => {
  if (!name || !/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
    throw new AccountsUsageError("expected a user name of 1-64 characters of A-Z a-z 0-9 _ . -");
  }
  const role = options.role ?? "viewer";
  if (!(ROLES as readonly string[]).includes(role)) {
    throw new AccountsUsageError(`--role takes ${ROLES.join(", ")}, got ${JSON.stringify(role)}`);
  }
  return withDatabase(async (orm) => {
    const em = orm.em.fork();
    if (await em.findOne(User, { username: name }))
      throw new AccountsUsageError(`user ${name} exists already`);
    const token = newApiToken();
    em.create(User, {
      username: name,
      email: options.email ?? `${name}@localhost`,
      role: role as (typeof ROLES)[number],
      apiTokenHash: hashToken(token),
    });
    await em.flush();
    return token;
  });
};

export interface PlatformOptions {
  readonly user?: string;
  readonly type?: string;
  readonly url?: string;
  readonly token?: string;
  readonly name?: string;
  readonly default?: boolean;
}

/** `ratatoskr platforms add ...`: registers a connection, its access token encrypted at rest. */
export const addPlatform = (options: PlatformOptions) => {
  const { user, type, url, token } = options;
  if (!user || !type || !url || !token) {
    throw new AccountsUsageError("platforms add needs --user, --type, --url and --token");
  }
  if (!(PLATFORM_TYPES as readonly string[]).includes(type)) {
    throw new AccountsUsageError(`--type takes ${PLATFORM_TYPES.join(" or ")}, got ${JSON.stringify(type)}`);
  }
  if (!/^https?:\/\/[^/\s]+/.test(url))
    throw new AccountsUsageError(`--url must be http(s)://..., got ${JSON.stringify(url)}`);
  const config = loadConfig();
  const key = loadFieldKey(config.RT_ENCRYPTION_KEY, config.RT_DATA_DIR, (line) =>
    process.stderr.write(`${line}\n`),
  );
  return withDatabase(async (orm) => {
    const em = orm.em.fork();
    const owner = await em.findOne(User, { username: user });
    if (!owner) throw new AccountsUsageError(`no user ${user}`);
    const existing = await em.count(PlatformConnection, { userId: owner.id, isActive: true });
    const makeDefault = options.default === true || existing === 0;
    if (makeDefault) await em.nativeUpdate(PlatformConnection, { userId: owner.id }, { isDefault: false });
    const connection = em.create(PlatformConnection, {
      userId: owner.id,
      name: options.name ?? new URL(url).host,
      platformType: type as (typeof PLATFORM_TYPES)[number],
      instanceUrl: url.replace(/\/+$/, ""),
      username: owner.username,
      accessTokenEncrypted: encryptField(token, key),
      isDefault: makeDefault,
    });
    await em.flush();
    return { id: connection.id, isDefault: makeDefault };
  });
};
