import type { MikroORM } from "@mikro-orm/core";
import type { User } from "../db/entities.js";
import { selectRows } from "../db/raw-sql.js";
import { hashToken } from "../security/tokens.js";
import { HttpError } from "./http.js";

export interface Caller {
  readonly userId: number;
  readonly username: string;
  readonly role: User["role"];
  readonly admin: boolean;
}

/**
 * `Authorization: Bearer <token>`: the token's SHA-256 names an active user. Anything else is
 * 401, with no hint of whether the user exists.
 */
export const authenticate = async (orm: MikroORM, header: string | undefined): Promise<Caller> => {
  const token = /^Bearer\s+(\S+)$/i.exec(header ?? "")?.[1];
  // A raw select: every request pays for it (src/db/raw-sql.ts). `and is_active` reads alike
  // on PostgreSQL's booleans and SQLite's 1 and 0.
  const [user] = token
    ? await selectRows<Pick<User, "id" | "username" | "role">>(
        orm.em,
        "select id, username, role from users where api_token_hash = ? and is_active",
        [hashToken(token)],
      )
    : [];
  if (!user)
    throw new HttpError(401, "unauthorized", "a valid API token is required (Authorization: Bearer)");
  return { userId: user.id, username: user.username, role: user.role, admin: user.role === "admin" };
};

export const requireAdmin = (caller: Caller): Caller => {
  if (!caller.admin) throw new HttpError(403, "forbidden", "this needs the admin role");
  return caller;
};
