import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../config/schema.js";

const DEPLOY = fileURLToPath(new URL("../../deploy/", import.meta.url));
const hasSystemd = spawnSync("systemd-analyze", ["--version"]).status === 0;
if (!hasSystemd) console.warn("systemd-analyze is not installed: the unit files are NOT verified");

/** What docs/deployment.md hands an operator, checked as far as this machine can. */
describe("deploy/", () => {
  it.skipIf(!hasSystemd)("has unit files systemd reads without a complaint", () => {
    const dir = mkdtempSync(join(tmpdir(), "rt-units-"));
    // A template is verified through an instance of it.
    copyFileSync(join(DEPLOY, "systemd/ratatoskr-serve.service"), join(dir, "ratatoskr-serve.service"));
    copyFileSync(
      join(DEPLOY, "systemd/ratatoskr-supervisor@.service"),
      join(dir, "ratatoskr-supervisor@1.service"),
    );
    for (const unit of ["ratatoskr-serve.service", "ratatoskr-supervisor@1.service"]) {
      const out = spawnSync("systemd-analyze", ["verify", join(dir, unit)], { encoding: "utf8" });
      expect(`${out.stdout}${out.stderr}`, unit).toBe("");
    }
    const serve = readFileSync(join(DEPLOY, "systemd/ratatoskr-serve.service"), "utf8");
    expect(serve).toMatch(/^ExecStart=.* serve$/m);
    expect(readFileSync(join(DEPLOY, "systemd/ratatoskr-supervisor@.service"), "utf8")).toMatch(
      /^ExecStart=.* supervisor$/m,
    );
  });

  it("has an example environment every variable of which the configuration schema accepts", () => {
    const env = Object.fromEntries(
      readFileSync(join(DEPLOY, "ratatoskr.env.example"), "utf8")
        .split("\n")
        .filter((line) => /^[A-Z_]+=/.test(line))
        .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
    );
    // The example key is a placeholder: a real one comes from `ratatoskr keys generate`.
    expect(() => loadConfig(env)).toThrow(/RT_ENCRYPTION_KEY="\(hidden\)" is not valid/);
    const key = execFileSync(process.execPath, [
      fileURLToPath(new URL("../../bin/ratatoskr.js", import.meta.url)),
      "keys",
      "generate",
    ])
      .toString()
      .trim();
    const config = loadConfig({ ...env, RT_ENCRYPTION_KEY: key });
    expect(config).toMatchObject({ RT_PROFILE: "production", RT_HTTP_HOST: "127.0.0.1", PORT: 8000 });
  });
});
