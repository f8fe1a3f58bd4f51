import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { configurationReference, REFERENCE_PATH } from "../../config/reference.js";
import { EnvSchema } from "../../config/schema.js";

describe("docs/configuration.md", () => {
  it("is what the configuration schema says today (regenerate with npm run docs:config)", async () => {
    expect(readFileSync(REFERENCE_PATH, "utf8")).toBe(await configurationReference());
  });

  it("names every variable, with its default as the schema decodes it", async () => {
    const text = await configurationReference();
    for (const name of Object.keys(EnvSchema.fields)) expect(text).toContain(`| \`${name}\``);
    expect(text).toMatch(/\| `RT_LEASE_MS` +\| `30000` +\| whole number, 1000–3600000 +\|/);
    expect(text).toMatch(/\| `RT_PROFILE` +\| `development` +\| `development`, `production`, `test` +\|/);
  });
});
