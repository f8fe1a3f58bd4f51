import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * Field encryption for secrets at rest (platform access tokens): AES-256-GCM with a random
 * 96-bit nonce per value. A stored value reads `v1:<key id>:<nonce>:<tag>:<ciphertext>` (base64url),
 * so keys can rotate: old values name the key that can open them.
 */
export interface FieldKey {
  readonly id: string;
  readonly key: Buffer;
}

export class DecryptionFailed extends Error {
  override name = "DecryptionFailed";
}

const keyIdOf = (key: Buffer) => createHash("sha256").update(key).digest("base64url").slice(0, 8);

export const parseKey = (material: string): FieldKey => {
  const key = Buffer.from(material, "base64");
  if (key.length !== 32) throw new Error("RT_ENCRYPTION_KEY must be 32 bytes, base64-encoded");
  return { id: keyIdOf(key), key };
};

/**
 * The key from RT_ENCRYPTION_KEY; when unset, one generated into `<dataDir>/encryption.key`
 * on first run (readable by the owner only), with a warning to keep it safe and set it explicitly.
 */
export const loadFieldKey = (
  material: string | undefined,
  dataDir: string,
  warn: (line: string) => void,
): FieldKey => {
  if (material) return parseKey(material);
  const file = join(dataDir, "encryption.key");
  if (!existsSync(file)) {
    mkdirSync(dataDir, { recursive: true });
    try {
      writeFileSync(file, newKeyMaterial(), { mode: 0o600, flag: "wx" });
      warn(
        `RT_ENCRYPTION_KEY is not set: generated a key in ${file}; back it up, or tokens stored with it are lost`,
      );
    } catch (error) {
      // Another thread or process made it first: use theirs.
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
  }
  return parseKey(readFileSync(file, "utf8").trim());
};

/** The key new values are sealed with, and every key that may still open an older value. */
export interface Keyring {
  readonly current: FieldKey;
  /** `current` first, then the retired keys of RT_ENCRYPTION_OLD_KEYS. */
  readonly all: readonly FieldKey[];
}

/**
 * The configured keyring: RT_ENCRYPTION_KEY (or the generated one) seals, and the keys of
 * RT_ENCRYPTION_OLD_KEYS (comma-separated) only open, until `ratatoskr keys rotate` has
 * re-sealed everything with the current key.
 */
export const loadKeyring = (
  config: {
    RT_ENCRYPTION_KEY?: string | undefined;
    RT_ENCRYPTION_OLD_KEYS?: string | undefined;
    RT_DATA_DIR: string;
  },
  warn: (line: string) => void,
): Keyring => {
  const current = loadFieldKey(config.RT_ENCRYPTION_KEY, config.RT_DATA_DIR, warn);
  const old = (config.RT_ENCRYPTION_OLD_KEYS ?? "")
    .split(",")
    .map((k) => k.trim())
    .filter((k) => k !== "")
    .map(parseKey)
    .filter((k) => k.id !== current.id);
  return { current, all: [current, ...old] };
};

/** The id of the key a stored value names, or undefined for a value that is not one of ours. */
export const keyIdOfField = (stored: string): string | undefined => {
  const [version, keyId] = stored.split(":");
  return version === "v1" && keyId ? keyId : undefined;
};

/** A fresh key, base64: what RT_ENCRYPTION_KEY takes. */
export const newKeyMaterial = (): string => randomBytes(32).toString("base64");

export const encryptField = (plain: string, key: FieldKey): string => {
  const nonce = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key.key, nonce);
  const body = Buffer.concat([cipher.update(plain, "utf8"), cipher.final()]);
  const parts = [nonce, cipher.getAuthTag(), body].map((b) => b.toString("base64url"));
  return ["v1", key.id, ...parts].join(":");
};

/** Opens a value with whichever of `keys` it names; tampering or a missing key fails loudly. */
export const decryptField = (stored: string, keys: readonly FieldKey[]): string => {
  const [version, keyId, nonce, tag, body] = stored.split(":");
  if (version !== "v1" || !keyId || nonce === undefined || tag === undefined || body === undefined) {
    throw new DecryptionFailed("not an encrypted field");
  }
  const key = keys.find((k) => k.id === keyId);
  if (!key) throw new DecryptionFailed(`encrypted with key ${keyId}, which is not configured`);
  try {
    const decipher = createDecipheriv("aes-256-gcm", key.key, Buffer.from(nonce, "base64url"));
    decipher.setAuthTag(Buffer.from(tag, "base64url"));
    return Buffer.concat([decipher.update(Buffer.from(body, "base64url")), decipher.final()]).toString(
      "utf8",
    );
  } catch {
    throw new DecryptionFailed(`the value does not open with key ${keyId} (tampered or corrupt)`);
  }
};
