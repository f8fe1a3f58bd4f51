import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { PlatformConnection, User } from "../../src/db/entities.js";
import { openDatabase } from "../../src/db/orm.js";
import {
  decryptField,
  encryptField,
  keyIdOfField,
  newKeyMaterial,
  parseKey,
} from "../../src/security/field-crypto.js";

const CLI = fileURLToPath(new URL("../../bin/ratatoskr.js", import.meta.url));

/**
 * Key rotation as an operator does it: a new key from `keys generate`, the old one moved to
 * RT_ENCRYPTION_OLD_KEYS, `keys rotate`, then the old key dropped. Through the real CLI on a real
 * SQLite ledger.
 */
describe("ratatoskr keys", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "rt-keys-"));
  const cli = (env: Record<string, string>, ...args: string[]) =>
    spawnSync(process.execPath, [CLI, ...args], {
      env: { ...process.env, RT_DATA_DIR: dataDir, DATABASE_URL: "", RT_ENCRYPTION_OLD_KEYS: "", ...env },
      encoding: "utf8",
    });
  const sealed = async () => {
    const orm = await openDatabase({ url: undefined, dataDir });
    try {
      const rows = await orm.em.fork().find(PlatformConnection, {}, { orderBy: { id: "asc" } });
      return rows.map((r) => r.accessTokenEncrypted);
    } finally {
      await orm.close();
    }
  };

  it("re-encrypts every access token with the new key, and says what it cannot open", async () => {
    const oldKey = newKeyMaterial();
    const newKey = cli({}, "keys", "generate").stdout.trim();
    expect(parseKey(newKey).key).toHaveLength(32);
    expect(newKey).not.toBe(oldKey);

    expect(cli({ RT_ENCRYPTION_KEY: oldKey }, "db", "migrate").status).toBe(0);
    const orm = await openDatabase({ url: undefined, dataDir });
    try {
      const em = orm.em.fork();
      const ann = em.create(User, { username: "ann", email: "ann@x", role: "viewer", apiTokenHash: "h" });
      await em.flush();
      for (const token of ["tok-one", "tok-two"]) {
        em.create(PlatformConnection, {
          userId: ann.id,
          name: token,
          platformType: "mastodon",
          instanceUrl: "https://m.example",
          username: "ann",
          accessTokenEncrypted: encryptField(token, parseKey(oldKey)),
        });
      }
      await em.flush();
    } finally {
      await orm.close();
    }
    const original = await sealed();
    expect(original.map(keyIdOfField)).toEqual([parseKey(oldKey).id, parseKey(oldKey).id]);

    // The new key alone cannot open the old values: the command lists them and changes nothing.
    const blind = cli({ RT_ENCRYPTION_KEY: newKey }, "keys", "rotate");
    expect(blind.status).toBe(1);
    expect(blind.stdout).toContain(`encrypted with key ${parseKey(oldKey).id}, which is not configured`);
    expect(blind.stdout).toContain("add the key that sealed them to RT_ENCRYPTION_OLD_KEYS");
    expect(await sealed()).toEqual(original);

    const during = { RT_ENCRYPTION_KEY: newKey, RT_ENCRYPTION_OLD_KEYS: ` ${oldKey} ,` };
    const dry = cli(during, "keys", "rotate", "--dry-run");
    expect(dry.stdout).toContain("would re-encrypt 2 access token(s)");
    expect(await sealed()).toEqual(original);

    const rotated = cli(during, "keys", "rotate");
    expect(rotated.status).toBe(0);
    expect(rotated.stdout).toContain(`re-encrypted 2 access token(s) with key ${parseKey(newKey).id}`);
    const after = await sealed();
    expect(after.map((v) => decryptField(v, [parseKey(newKey)]))).toEqual(["tok-one", "tok-two"]);
    for (const value of after) expect(value).not.toContain("tok-");

    // Again: nothing left to do, and the old key is no longer needed.
    const again = cli({ RT_ENCRYPTION_KEY: newKey }, "keys", "rotate");
    expect(again.status).toBe(0);
    expect(again.stdout).toContain("re-encrypted 0 access token(s)");
    expect(again.stdout).toContain("2 already used it");
  }, 120_000);

  it("refuses a malformed old key by name, without printing it", () => {
    const refused = cli({ RT_ENCRYPTION_OLD_KEYS: "not-a-key-but-secret" }, "keys", "rotate");
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain('RT_ENCRYPTION_OLD_KEYS="(hidden)" is not valid: expected 32 bytes');
    expect(refused.stderr).not.toContain("not-a-key-but-secret");
    expect(cli({}, "keys", "spin").stderr).toContain("unknown keys command");
  });
});
