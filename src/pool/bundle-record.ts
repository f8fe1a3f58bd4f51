import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, rename, unlink, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/**
 * What a thread bundle was made from: each file (absolute path) with its content's digest. A
 * start whose files all read the same uses the bundle without building it again (a build that
 * bundles a package takes 0.35-0.97 s, a check 13-59 ms).
 */
export interface BuildRecord {
  /** The bundle's file name, in the record's directory. */
  readonly bundle: string;
  readonly inputs: Readonly<Record<string, string>>;
}

export const digest = (contents: string | Uint8Array) => createHash("sha1").update(contents).digest("hex");

/** Files that decide how esbuild compiles and resolves the files in a directory and below. */
const PROJECT_FILES = ["package.json", "tsconfig.json"];

/**
 * The files one build read, with the digest of what it read (not of what a later read would
 * find: a file saved during the build must make the next start build again).
 */
export class BuildInputs {
  private readonly digests = new Map<string, string>();
  private readonly above = new Map<string, readonly string[]>();

  read(path: string, contents: string | Uint8Array) {
    this.digests.set(path, digest(contents));
  }

  /**
   * Every input: those seen as they were read, the rest of `files` (esbuild read them itself),
   * and every package.json and tsconfig.json above each (`type`, `exports`, `sideEffects`,
   * compiler options; a package's may be a directory or two above the file).
   */
  async all(files: Iterable<string>): Promise<Record<string, string>> {
    const paths = new Set(files);
    for (const path of [...paths]) for (const found of this.projectFilesOver(dirname(path))) paths.add(found);
    for (const path of paths) if (!this.digests.has(path)) this.read(path, await readFile(path));
    return Object.fromEntries(this.digests);
  }

  private projectFilesOver(dir: string): readonly string[] {
    let found = this.above.get(dir);
    if (!found) {
      const parent = dirname(dir);
      found = [
        ...PROJECT_FILES.map((name) => join(dir, name)).filter((path) => existsSync(path)),
        ...(parent === dir ? [] : this.projectFilesOver(parent)),
      ];
      this.above.set(dir, found);
    }
    return found;
  }
}

const isRecord = (value: unknown): value is BuildRecord => {
  if (typeof value !== "object" || value === null) return false;
  const { bundle, inputs } = value as Record<string, unknown>;
  return (
    typeof bundle === "string" &&
    bundle === basename(bundle) &&
    typeof inputs === "object" &&
    inputs !== null &&
    Object.values(inputs).every((hash) => typeof hash === "string")
  );
};

/** The bundle a record names, if the record is whole and every file it lists reads as it did. */
export const builtAlready = async (recordPath: string): Promise<string | undefined> => {
  let record: unknown;
  try {
    record = JSON.parse(await readFile(recordPath, "utf8"));
  } catch {
    return undefined;
  }
  if (!isRecord(record)) return undefined;
  const bundle = join(dirname(recordPath), record.bundle);
  if (!existsSync(bundle)) return undefined;
  const inputs = Object.entries(record.inputs);
  const contents = await Promise.all(inputs.map(([path]) => readFile(path).catch(() => undefined)));
  const unchanged = inputs.every(([, hash], i) => contents[i] !== undefined && digest(contents[i]) === hash);
  return unchanged ? bundle : undefined;
};

/** Written under a temporary name and renamed: a reader never finds half a file. */
export const replaceFile = async (path: string, contents: string | Uint8Array): Promise<void> => {
  const temporary = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    await writeFile(temporary, contents);
    await rename(temporary, path);
  } catch (error) {
    await unlink(temporary).catch(() => {});
    throw error;
  }
};

/**
 * Replaced whole, as a bundle is. A record that cannot be written (a read-only directory) only
 * means the next start builds again.
 */
export const writeRecord = async (recordPath: string, record: BuildRecord): Promise<void> => {
  await replaceFile(recordPath, JSON.stringify(record)).catch(() => {});
};
