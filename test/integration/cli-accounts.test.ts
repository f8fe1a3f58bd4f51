import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { PlatformConnection, User } from "../../src/db/entities.js";
import { openDatabase } from "../../src/db/orm.js";
import { decryptField, parseKey } from "../../src/security/field-crypto.js";
import { hashToken } from "../../src/security/tokens.js";

const CLI = fileURLToPath(new URL("../../bin/ratatoskr.js", import.meta.url));

describe("ratatoskr db / users / platforms", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "rt-cli-"));
  const key = randomBytes(32).toString("base64");
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, [CLI, ...args], {
      env: { ...process.env, RT_DATA_DIR: dataDir, RT_ENCRYPTION_KEY: key, DATABASE_URL: "" },
      encoding: "utf8",
    });

  it("refuses to work on an unmigrated database, migrates once, then registers users and connections", async () => {
    const early = cli("users", "create", "ann", "--role", "admin");
    expect(early.status).toBe(1);
    expect(early.stderr).toContain("is not migrated");
    expect(early.stderr).toContain("run `ratatoskr db migrate`");

    expect(cli("db", "status").status).toBe(3);
    expect(cli("db", "migrate").stdout).toContain("applied 20261122000000_initial");
    expect(cli("db", "migrate").stdout).toContain("already up to date");
    expect(cli("db", "status").status).toBe(0);

    const created = cli("users", "create", "ann", "--role", "admin", "--email", "ann@example.org");
    expect(created.status).toBe(0);
    const token = created.stdout.trim();
    expect(token).toMatch(/^rt_[A-Za-z0-9_-]{43}$/);
    expect(cli("users", "create", "ann").stderr).toContain("user ann exists already");
    expect(cli("users", "create", "bob", "--role", "king").stderr).toContain(
      "--role takes admin, moderator, reviewer, viewer",
    );

    const added = cli(
      "platforms",
      "add",
      "--user",
      "ann",
      "--type",
      "pixelfed",
      "--url",
      "https://pixelfed.example/",
      "--token",
      "tok-123",
    );
    expect(added.stdout).toContain("(default)");
    const second = cli(
      "platforms",
      "add",
      "--user",
      "ann",
      "--type",
      "mastodon",
      "--url",
      "https://m.example",
      "--token",
      "tok-456",
      "--name",
      "work",
    );
    expect(second.stdout).not.toContain("(default)");
    expect(
      cli("platforms", "add", "--user", "ann", "--type", "myspace", "--url", "https://x", "--token", "t")
        .stderr,
    ).toContain("--type takes mastodon or pixelfed");
    expect(
      cli("platforms", "add", "--user", "zed", "--type", "mastodon", "--url", "https://x", "--token", "t")
        .stderr,
    ).toContain("no user zed");

    const orm = await openDatabase({ url: undefined, dataDir });
    try {
      const em = orm.em.fork();
      const ann = await em.findOneOrFail(User, { username: "ann" });
      expect(ann).toMatchObject({ role: "admin", email: "ann@example.org", apiTokenHash: hashToken(token) });
      const connections = await em.find(PlatformConnection, { userId: ann.id }, { orderBy: { id: "asc" } });
      expect(connections.map((c) => [c.platformType, c.instanceUrl, c.isDefault, c.name])).toEqual([
        ["pixelfed", "https://pixelfed.example", true, "pixelfed.example"],
        ["mastodon", "https://m.example", false, "work"],
      ]);
      expect(decryptField(connections[0]!.accessTokenEncrypted, [parseKey(key)])).toBe("tok-123");
    } finally {
      await orm.close();
    }
    // Neither the API token nor the access tokens are in the database file in plain text.
    for (const name of ["ratatoskr.sqlite", "ratatoskr.sqlite-wal"]) {
      if (!existsSync(join(dataDir, name))) continue;
      const file = readFileSync(join(dataDir, name));
      for (const secret of [token, "tok-123", "tok-456"]) expect(file.includes(secret)).toBe(false);
    }
  }, 180_000);
});
