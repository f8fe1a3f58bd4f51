import { randomBytes } from "node:crypto";
import { mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  DecryptionFailed,
  decryptField,
  encryptField,
  keyIdOfField,
  loadFieldKey,
  loadKeyring,
  parseKey,
} from "../../src/security/field-crypto.js";

const key = () => parseKey(randomBytes(32).toString("base64"));

describe("field encryption", () => {
  it("round-trips, never shows the plain text, and uses a fresh nonce each time", () => {
    const k = key();
    const a = encryptField("secret-token-123", k);
    const b = encryptField("secret-token-123", k);
    expect(a).not.toContain("secret");
    expect(a).not.toBe(b);
    expect(decryptField(a, [k])).toBe("secret-token-123");
    expect(a.split(":")[1]).toBe(k.id);
  });

  it("opens values of an older key after rotation, and refuses tampering or unknown keys", () => {
    const old = key();
    const current = key();
    const stored = encryptField("token", old);
    expect(decryptField(stored, [current, old])).toBe("token");
    expect(() => decryptField(stored, [current])).toThrow(/not configured/);
    const parts = stored.split(":");
    parts[4] = Buffer.from("tampered").toString("base64url");
    expect(() => decryptField(parts.join(":"), [old])).toThrow(DecryptionFailed);
    expect(() => decryptField("plain text", [old])).toThrow(/not an encrypted field/);
  });

  it("generates a key file on first run, warns once, and reads the same key afterwards", () => {
    const dir = mkdtempSync(join(tmpdir(), "rt-key-"));
    const warnings: string[] = [];
    const first = loadFieldKey(undefined, dir, (l) => warnings.push(l));
    const second = loadFieldKey(undefined, dir, (l) => warnings.push(l));
    expect(first.id).toBe(second.id);
    expect(warnings).toHaveLength(1);
    expect(statSync(join(dir, "encryption.key")).mode & 0o777).toBe(0o600);
    expect(() => parseKey("c2hvcnQ=")).toThrow(/32 bytes/);
  });
});

describe("keyring", () => {
  it("seals with the current key and opens with the retired ones, ignoring a repeat of the current", () => {
    const dir = mkdtempSync(join(tmpdir(), "rt-keyring-"));
    const [a, b] = [randomBytes(32).toString("base64"), randomBytes(32).toString("base64")];
    const ring = loadKeyring(
      { RT_ENCRYPTION_KEY: b, RT_ENCRYPTION_OLD_KEYS: `${a},${b}`, RT_DATA_DIR: dir },
      () => {},
    );
    expect(ring.current.id).toBe(parseKey(b).id);
    expect(ring.all.map((k) => k.id)).toEqual([parseKey(b).id, parseKey(a).id]);
    expect(decryptField(encryptField("t", parseKey(a)), ring.all)).toBe("t");
    expect(keyIdOfField(encryptField("t", ring.current))).toBe(ring.current.id);
    expect(keyIdOfField("plain")).toBeUndefined();
  });
});
