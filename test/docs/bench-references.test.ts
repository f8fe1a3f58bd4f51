import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Where the code and docs cite the benchmark's documents: every source, script and doc file. */
const CITING = /\.(ts|js|py|md)$/;
const filesUnder = (dir: string): string[] =>
  readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory())
      return entry.name === "node_modules" || entry.name === "results" ? [] : filesUnder(path);
    return CITING.test(entry.name) ? [path] : [];
  });

/** Text with line breaks and code quotes folded away, so a citation may wrap or quote code. */
const fold = (text: string) => text.replace(/`/g, "").replace(/\s+/g, " ");

/** A source file's text without its comment markers, so a citation in a comment may wrap. */
const uncommented = (text: string) =>
  text
    .split("\n")
    .map((line) => line.replace(/^\s*(\/\/|\*(?!\*)|#)?/, ""))
    .join("\n");

/**
 * A citation of a benchmark document by the name of one of its sections or items:
 * `bench/PERFORMANCE.md, "Handoffs"`, `` (`bench/README.md`, "Packing short jobs") ``,
 * `bench/PERFORMANCE.md ("Where the time goes")`, `bench/PERFORMANCE.md, item 14`.
 */
const CITATION = /bench\/([A-Z]+\.md)(?:,| \(| )\s*(?:item (\d+)|"([^"]+)")/g;

/** This file, whose examples above are not citations. */
const SELF = relative(ROOT, fileURLToPath(import.meta.url));

const citations = () =>
  ["src", "bench", "docs", "test"]
    .flatMap(filesUnder)
    .concat(["README.md"])
    .filter((file) => file !== SELF)
    .flatMap((file) => {
      const text = readFileSync(join(ROOT, file), "utf8");
      return [...fold(file.endsWith(".md") ? text : uncommented(text)).matchAll(CITATION)].map((m) => ({
        from: file,
        doc: m[1]!,
        item: m[2],
        section: m[3],
      }));
    });

describe("citations of the benchmark's documents", () => {
  const found = citations();

  it("are found: sections and items of bench/PERFORMANCE.md and bench/README.md", () => {
    expect(found.filter((c) => c.doc === "PERFORMANCE.md" && c.section).length).toBeGreaterThan(10);
    expect(found.filter((c) => c.doc === "PERFORMANCE.md" && c.item).length).toBeGreaterThan(3);
    expect(found.some((c) => c.doc === "README.md" && c.section === "memory")).toBe(true);
  });

  it("name a heading, a paragraph's bold title or a numbered item that the cited document has", () => {
    const texts = new Map<string, string>();
    const missing = found.filter(({ doc, item, section }) => {
      if (!texts.has(doc)) texts.set(doc, fold(readFileSync(join(ROOT, "bench", doc), "utf8")));
      const text = texts.get(doc)!;
      if (item !== undefined) return !new RegExp(`(^| )${item}\\. \\*\\*`).test(text);
      return !text.includes(`**${section}`) && !text.includes(`# ${section}`);
    });
    expect(missing).toEqual([]);
  });
});
