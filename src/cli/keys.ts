import { loadConfig } from "../../config/schema.js";
import { withDatabase } from "./accounts.js";
import { rotateKeys } from "../security/key-rotation.js";
import { loadKeyring, newKeyMaterial } from "../security/field-crypto.js";

export class KeysUsageError extends Error {}

/**
 * `ratatoskr keys generate` prints a new key; `ratatoskr keys rotate [--dry-run]` re-encrypts
 * what older keys sealed with RT_ENCRYPTION_KEY. Exit status: 0 when every value opens with the
 * configured keys, 1 when some do not (they are listed and left untouched).
 */
export const runKeys = async (
  sub: string | undefined,
  options: { dryRun: boolean },
  print: (line: string) => void,
): Promise<number> => {
  if (sub === "generate") {
    print(newKeyMaterial());
    return 0;
  }
  if (sub !== "rotate") throw new KeysUsageError(`unknown keys command ${JSON.stringify(sub ?? "")}`);
  const keyring = loadKeyring(loadConfig(), (line) => process.stderr.write(`${line}\n`));
  const report = await withDatabase((orm) => rotateKeys(() => orm.em.fork(), keyring, options));
  const verb = options.dryRun ? "would re-encrypt" : "re-encrypted";
  print(
    `${verb} ${report.rotated} access token(s) with key ${keyring.current.id}; ${report.current} already used it`,
  );
  for (const { connectionId, reason } of report.unreadable) {
    print(`platform connection ${connectionId}: ${reason}`);
  }
  if (report.unreadable.length > 0) {
    print(
      `${report.unreadable.length} value(s) open with no configured key: add the key that sealed them to RT_ENCRYPTION_OLD_KEYS and run this again`,
    );
    return 1;
  }
  if (!options.dryRun && report.rotated > 0) {
    print("every value now uses the current key: RT_ENCRYPTION_OLD_KEYS can be removed");
  }
  return 0;
};
