import type { MikroORM } from "@mikro-orm/core";
import { PlatformConnection, User } from "../db/entities.js";
import { encryptField, type FieldKey } from "../security/field-crypto.js";
import { hashToken, newApiToken } from "../security/tokens.js";
import type { SampleAccount } from "./sample-instance.js";

export interface DemoUser {
  readonly userId: number;
  readonly username: string;
  /** The user's Ratatoskr API token. */
  readonly token: string;
}

/**
 * A user with an API token, and (for a sample account) a Mastodon connection to the sample
 * instance, its access token encrypted as `ratatoskr platforms add` stores it. `tag` keeps names
 * apart when the demo runs against a database that already holds users.
 */
export const seedDemoUser = async (
  orm: MikroORM,
  key: FieldKey,
  options: {
    readonly username: string;
    readonly role: "admin" | "viewer";
    readonly sample?: { readonly instanceUrl: string; readonly account: SampleAccount };
  },
): Promise<DemoUser> => {
  const em = orm.em.fork();
  const token = newApiToken();
  const user = em.create(User, {
    username: options.username,
    email: `${options.username}@demo.invalid`,
    role: options.role,
    apiTokenHash: hashToken(token),
  });
  await em.flush();
  if (options.sample) {
    em.create(PlatformConnection, {
      userId: user.id,
      name: "sample",
      platformType: "mastodon",
      instanceUrl: options.sample.instanceUrl,
      username: options.sample.account.username,
      accessTokenEncrypted: encryptField(options.sample.account.token, key),
      isDefault: true,
    });
    await em.flush();
  }
  return { userId: user.id, username: options.username, token };
};
