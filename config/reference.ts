import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { JSONSchema, Schema } from "effect";
import * as prettier from "prettier";
import { profiles } from "./profiles.js";
import { DESCRIPTIONS, EnvSchema } from "./schema.js";

export const REFERENCE_PATH = fileURLToPath(new URL("../docs/configuration.md", import.meta.url));

interface Property {
  readonly type?: string;
  readonly enum?: readonly unknown[];
  readonly minimum?: number;
  readonly maximum?: number;
  readonly pattern?: string;
  readonly minLength?: number;
  readonly anyOf?: readonly Property[];
}

const cell = (text: string) => text.replaceAll("|", "\\|").replaceAll("\n", " ");

/** What a value may be, read from the schema's JSON Schema (the decoded side). */
const allowed = (p: Property): string => {
  if (p.anyOf) return p.anyOf.map(allowed).join(" or ");
  if (p.enum) return p.enum.map((v) => `\`${String(v)}\``).join(", ");
  if (p.minimum !== undefined && p.maximum !== undefined)
    return `${p.type === "integer" ? "whole number" : "number"}, ${p.minimum}–${p.maximum}`;
  if (p.pattern) return `matching \`${p.pattern}\``;
  if (p.minLength) return "non-empty text";
  return p.type ?? "";
};

/**
 * `docs/configuration.md`, generated: every variable of the one configuration schema with its
 * default and bounds as the schema states them, its meaning (DESCRIPTIONS), and the profiles.
 * A test compares the committed file with this, so the document cannot drift from the code.
 */
export const configurationReference = async (): Promise<string> => {
  const json = JSONSchema.make(Schema.typeSchema(EnvSchema)) as { properties: Record<string, Property> };
  const defaults = Schema.decodeUnknownSync(EnvSchema)({}) as Record<string, unknown>;
  const rows = Object.keys(EnvSchema.fields).map((name) => {
    const value = defaults[name];
    const shown = value === undefined ? "(unset)" : `\`${String(value)}\``;
    const key = name as keyof typeof DESCRIPTIONS;
    return `| \`${name}\` | ${shown} | ${cell(allowed(json.properties[name] ?? {}))} | ${cell(DESCRIPTIONS[key])} |`;
  });
  const profileRows = Object.entries(profiles).map(
    ([name, p]) =>
      `| \`${name}\` | ${p.mode} | ${p.groups
        .map((g) => `${g.name} (${g.queues.join(" > ")}) ×${g.concurrency}`)
        .join("; ")} | ${p.embeddedInHybrid.join(", ")} | ${p.logFormat} |`,
  );
  const text = [
    "# Configuration reference",
    "",
    "<!-- Generated from config/schema.ts and config/profiles.ts by `npm run docs:config`; do not edit. -->",
    "",
    "Every setting is an environment variable, read and checked once at start-up. An empty value",
    "counts as unset. A bad value stops the process with one line naming the variable, the value",
    "and what is allowed.",
    "",
    "| Variable | Default | Allowed | Meaning |",
    "| --- | --- | --- | --- |",
    ...rows,
    "",
    "## Profiles (`RT_PROFILE`)",
    "",
    "A profile names the worker groups (each claims its priorities strictly in order, with that many",
    "slots), where they run by default (`WORKER_MODE`: `integrated` in the web process, `external` in",
    "`ratatoskr supervisor` processes, `hybrid` some of each), and the log format.",
    "",
    "| Profile | Default mode | Worker groups | In the web process when hybrid | Logs |",
    "| --- | --- | --- | --- | --- |",
    ...profileRows,
    "",
  ].join("\n");
  // As the repository's formatter leaves it, so `prettier --check` and the drift test agree.
  return prettier.format(text, { ...(await prettier.resolveConfig(REFERENCE_PATH)), parser: "markdown" });
};

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(REFERENCE_PATH, await configurationReference());
  process.stdout.write(`wrote ${REFERENCE_PATH}\n`);
}
