import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
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

/** This file, whose examples below are not citations. */
const SELF = relative(ROOT, fileURLToPath(import.meta.url));
const FILES = ["src", "actors", "config", "bin", "bench", "docs", "test"]
  .filter((dir) => existsSync(join(ROOT, dir)))
  .flatMap(filesUnder)
  .concat(["README.md"])
  .filter((file) => file !== SELF);

/** Text with line breaks and code quotes folded away, so a citation may wrap or quote code. */
const fold = (text: string) => text.replace(/`/g, "").replace(/\s+/g, " ");

/** A source file's text without its comment markers, so a citation in a comment may wrap. */
const uncommented = (text: string) =>
  text
    .split("\n")
    .map((line) => line.replace(/^\s*(\/\/|\*(?!\*)|#)?/, ""))
    .join("\n");

/**
 * Citations of a benchmark document by the name of one of its sections or items, in code
 * (`bench/PERFORMANCE.md, "Handoffs"`, `` (`bench/README.md`, "memory") ``,
 * `bench/PERFORMANCE.md ("Where the time goes")`, `bench/PERFORMANCE.md, item 14`) and in the
 * benchmark's own documents (`"Handoffs" in [PERFORMANCE.md](PERFORMANCE.md)`).
 */
const BY_PATH = /bench\/([A-Z]+\.md)(?:,| \(| )\s*(?:item (\d+)|"([^"]+)")/g;
const BY_LINK = /"([^"]+)",? (?:in|under) \[[^\]]*\]\(([A-Z]+\.md)[)#]/g;

const citations = () =>
  FILES.flatMap((file) => {
    const text = fold(
      file.endsWith(".md")
        ? readFileSync(join(ROOT, file), "utf8")
        : uncommented(readFileSync(join(ROOT, file), "utf8")),
    );
    const byPath = [...text.matchAll(BY_PATH)].map((m) => ({
      from: file,
      doc: m[1]!,
      item: m[2],
      section: m[3],
    }));
    const byLink = file.startsWith("bench/")
      ? [...text.matchAll(BY_LINK)].map((m) => ({ from: file, doc: m[2]!, item: undefined, section: m[1] }))
      : [];
    return [...byPath, ...byLink];
  });

/** A Markdown text's headings, outside its fenced blocks (whose `# ...` lines are shell comments). */
const headingsOf = (text: string) =>
  [...text.replace(/^```[\s\S]*?^```/gm, "").matchAll(/^#+ (.*)$/gm)].map((m) => m[1]!);

/** A document's headings, its paragraphs' bold titles (folded) and its numbered items. */
const outline = (doc: string) => {
  const text = readFileSync(join(ROOT, "bench", doc), "utf8");
  return {
    headings: headingsOf(text).map(fold),
    folded: fold(text),
    hasItem: (n: string) => new RegExp(`^${n}\\. \\*\\*`, "m").test(text),
  };
};

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
const slug = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}_\- ]/gu, "")
    .replace(/ /g, "-");

describe("citations of the benchmark's documents", () => {
  const found = citations();

  it("are found: sections and items of bench/PERFORMANCE.md and bench/README.md, in code and in the documents", () => {
    expect(
      found.filter((c) => c.doc === "PERFORMANCE.md" && c.section && !c.from.endsWith(".md")).length,
    ).toBeGreaterThan(10);
    expect(found.filter((c) => c.doc === "PERFORMANCE.md" && c.item).length).toBeGreaterThan(3);
    expect(found.some((c) => c.from === "bench/README.md" && c.doc === "PERFORMANCE.md")).toBe(true);
    expect(found.some((c) => c.doc === "README.md" && c.section === "memory")).toBe(true);
  });

  it("name a heading, a paragraph's bold title or a numbered item that the cited document has", () => {
    const outlines = new Map<string, ReturnType<typeof outline>>();
    const missing = found.filter(({ doc, item, section }) => {
      if (!outlines.has(doc)) outlines.set(doc, outline(doc));
      const { headings, folded, hasItem } = outlines.get(doc)!;
      if (item !== undefined) return !hasItem(item);
      const name = fold(section!);
      return !folded.includes(`**${name}`) && !headings.some((h) => h.startsWith(name));
    });
    expect(missing).toEqual([]);
  });

  it("link to files and headings that exist, from the benchmark's documents and the docs", () => {
    const docs = FILES.filter(
      (f) => f.endsWith(".md") && (f.startsWith("bench/") || f.startsWith("docs/") || f === "README.md"),
    );
    const broken = docs.flatMap((file) =>
      [...readFileSync(join(ROOT, file), "utf8").matchAll(/\]\(([^)\s]+)\)/g)]
        .map((m) => m[1]!)
        .filter((link) => !/^[a-z]+:/.test(link))
        .filter((link) => {
          const [path, anchor] = link.split("#") as [string, string | undefined];
          const target = path === "" ? join(ROOT, file) : join(ROOT, dirname(file), path);
          if (!existsSync(target)) return true;
          if (anchor === undefined || !target.endsWith(".md")) return false;
          return !headingsOf(readFileSync(target, "utf8")).map(slug).includes(anchor);
        })
        .map((link) => `${file}: ${link}`),
    );
    expect(broken).toEqual([]);
  });
});
