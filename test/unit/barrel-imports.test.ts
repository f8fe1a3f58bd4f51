import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { importFromModules, reexportsOf } from "../../src/pool/barrel-imports.js";

/** Where `effect`'s index puts each name, as the bundle build places them. */
const EFFECT_PLACES: Record<string, { specifier: string; name: string }> = {
  Effect: { specifier: "effect/Effect", name: "*" },
  Schema: { specifier: "effect/Schema", name: "*" },
  Either: { specifier: "effect/Either", name: "*" },
  pipe: { specifier: "effect/Function", name: "pipe" },
};
const place = (name: string) => EFFECT_PLACES[name];
const rewrite = (source: string) => importFromModules(source, "effect", place);

describe("an index's re-exports", () => {
  it("reads effect's own index: each module's namespace, and the functions it names from Function", () => {
    const require = createRequire(import.meta.url);
    const index = join(dirname(require.resolve("effect/package.json")), "dist", "esm", "index.js");
    const reexports = reexportsOf(readFileSync(index, "utf8"));
    expect(reexports?.get("Schema")).toEqual({ from: "./Schema.js", name: "*" });
    expect(reexports?.get("Effect")).toEqual({ from: "./Effect.js", name: "*" });
    expect(reexports?.get("pipe")).toEqual({ from: "./Function.js", name: "pipe" });
    expect(reexports?.size).toBeGreaterThan(150);
  });

  it("reads names given again under another name, and comments around them", () => {
    const index = [
      "/** The pieces. */",
      'export * as Alpha from "./Alpha.js";',
      "// the functions",
      "export {",
      "  first,",
      "  /** renamed */ second as other",
      '} from "./Function.js";',
      "//# sourceMappingURL=index.js.map",
    ].join("\n");
    expect(reexportsOf(index)).toEqual(
      new Map([
        ["Alpha", { from: "./Alpha.js", name: "*" }],
        ["first", { from: "./Function.js", name: "first" }],
        ["other", { from: "./Function.js", name: "second" }],
      ]),
    );
  });

  it("refuses an index that does more than re-export: leaving it out would leave its code unrun", () => {
    expect(reexportsOf('export * as A from "./A.js";\nglobalThis.ready = true;')).toBeUndefined();
    expect(reexportsOf('export * from "./A.js";')).toBeUndefined();
    expect(reexportsOf('export const a = 1;\nexport * as B from "./B.js";')).toBeUndefined();
    expect(reexportsOf('import "./setup.js";\nexport * as B from "./B.js";')).toBeUndefined();
    expect(reexportsOf('export * as B from "other-package";')).toBeUndefined();
  });
});

describe("imports from an index, as a bundle's sources take them", () => {
  it("import each name from its own module: a namespace as a namespace, a function by name", () => {
    expect(rewrite('import { Effect, Schema as S, pipe } from "effect";\nEffect.void;\n')).toBe(
      'import * as Effect from "effect/Effect"; import * as S from "effect/Schema"; import { pipe } from "effect/Function";\nEffect.void;\n',
    );
    expect(rewrite("import { pipe as flowThrough } from 'effect'")).toBe(
      'import { pipe as flowThrough } from "effect/Function";',
    );
  });

  it("keep the statement's lines, so a stack trace's line numbers still hold", () => {
    const source = [
      "import {",
      "  Effect, // the runtime",
      "  /* decoding */ Schema,",
      '} from "effect";',
      "throw new Error('line 5');",
    ].join("\n");
    const rewritten = rewrite(source);
    expect(rewritten.split("\n")).toHaveLength(5);
    expect(rewritten.split("\n")[4]).toBe("throw new Error('line 5');");
    expect(rewritten).toContain(
      'import * as Effect from "effect/Effect"; import * as Schema from "effect/Schema";',
    );
  });

  it("leave type-only names out, and a statement of types only with nothing", () => {
    expect(rewrite('import { type Either, Schema } from "effect";')).toBe(
      'import * as Schema from "effect/Schema";',
    );
    // Under verbatimModuleSyntax, esbuild would have kept it as `import "effect"`: the whole index.
    expect(rewrite('import { type Either, type Schema as S } from "effect";\nconst x = 1;')).toBe(
      "\nconst x = 1;",
    );
  });

  it("leave a statement as it is where a name has no place, or cannot be read", () => {
    const unplaced = 'import { Schema, Stream } from "effect";';
    expect(rewrite(unplaced)).toBe(unplaced);
    const unreadable = 'import { Schema, "odd name" as odd } from "effect";';
    expect(rewrite(unreadable)).toBe(unreadable);
  });

  it("touch no other import: a namespace of the index, types, another package, or one inside a line", () => {
    const untouched = [
      'import * as everything from "effect";',
      'import type { Schema } from "effect";',
      'import { Schema } from "effect/Schema";',
      'import { Schema } from "@effect/schema";',
      'export { Schema } from "effect";',
      'const text = "import { Schema } from \\"effect\\";";',
      ' * import { Schema } from "effect"; (a comment)',
    ].join("\n");
    expect(rewrite(untouched)).toBe(untouched);
  });
});
