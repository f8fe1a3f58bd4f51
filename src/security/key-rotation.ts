import type { EntityManager } from "@mikro-orm/core";
import { PlatformConnection } from "../db/entities.js";
import { decryptField, encryptField, type Keyring, keyIdOfField } from "./field-crypto.js";

export interface RotationReport {
  /** Values re-encrypted with the current key (or, with `dryRun`, that would be). */
  readonly rotated: number;
  /** Values already under the current key. */
  readonly current: number;
  /** Values no configured key opens: they stay as they are, and the command fails. */
  readonly unreadable: ReadonlyArray<{ readonly connectionId: number; readonly reason: string }>;
}

const BATCH = 200;

/**
 * Re-encrypts every stored secret (platform access tokens) that an older key sealed, with the
 * current one. Each row is written with a compare-and-set on its old ciphertext, so a token
 * replaced meanwhile (`platforms add`) is never overwritten with a stale one; running it again
 * is harmless. Nothing is decrypted into a log or an error.
 */
export const rotateKeys = async (
  fork: () => EntityManager,
  keyring: Keyring,
  options: { dryRun?: boolean } = {},
): Promise<RotationReport> => {
  let rotated = 0;
  let current = 0;
  const unreadable: Array<{ connectionId: number; reason: string }> = [];
  let after = 0;
  for (;;) {
    const em = fork();
    const rows = await em.find(
      PlatformConnection,
      { id: { $gt: after } },
      { orderBy: { id: "asc" }, limit: BATCH, fields: ["id", "accessTokenEncrypted"] },
    );
    if (rows.length === 0) break;
    for (const row of rows) {
      after = row.id;
      const sealed = row.accessTokenEncrypted;
      if (keyIdOfField(sealed) === keyring.current.id) {
        current++;
        continue;
      }
      let plain: string;
      try {
        plain = decryptField(sealed, keyring.all);
      } catch (error) {
        unreadable.push({ connectionId: row.id, reason: (error as Error).message });
        continue;
      }
      if (options.dryRun) {
        rotated++;
        continue;
      }
      const changed = await em.nativeUpdate(
        PlatformConnection,
        { id: row.id, accessTokenEncrypted: sealed },
        { accessTokenEncrypted: encryptField(plain, keyring.current) },
      );
      if (changed === 1) rotated++;
      // 0: the row changed since it was read, and the new value was sealed with a current key.
      else current++;
    }
  }
  return { rotated, current, unreadable };
};
