import { createHash, randomBytes } from "node:crypto";

/** API tokens are random; only their SHA-256 is stored, so a database leak reveals none. */
export const hashToken = (token: string) => createHash("sha256").update(token).digest("hex");

/** A new API token: `rt_` and 256 random bits. */
export const newApiToken = () => `rt_${randomBytes(32).toString("base64url")}`;
