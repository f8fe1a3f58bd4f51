import { createHash, randomBytes } from "node:crypto";
import { existsSync, type Stats } from "node:fs";
import { readFile, rename, stat, unlink, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** One file a bundle was made from, as it was read. */
export interface InputRecord {
  /** Of the content read. */
  readonly digest: string;
  /**
   * The file's size, times and inode as they were just before it was read (`statKey`); absent
   * when the file had changed too recently for them to vouch for it (see `trusted`).
   */
  readonly stat?: string;
}

/**
 * What a thread bundle was made from: each file (absolute path) as it was read. A start whose
 * files all read the same uses the bundle without building it again (a build that bundles a
 * package takes 0.35-0.97 s). A file whose size, times and inode are as recorded is taken as
 * unchanged without reading it: the check read and hashed every file (751 for the caption
 * registry, 45-90 ms of every start, before the pool could start its threads); now it stats
 * them and reads only those whose stat changed.
 */
export interface BuildRecord {
  /** The bundle's file name, in the record's directory. */
  readonly bundle: string;
  readonly inputs: Readonly<Record<string, InputRecord>>;
}

export const digest = (contents: string | Uint8Array) => createHash("sha1").update(contents).digest("hex");

/**
 * The change time is in it because nothing can set it back: a file rewritten with the same size
 * and its old modification time restored (`touch -r`, an archive or copy that keeps times) still
 * gets a new one.
 */
const statKey = (stats: Stats) => `${stats.size}:${stats.mtimeMs}:${stats.ctimeMs}:${stats.ino}`;

/**
 * How recent a change may be for a file's stat to be believed later. A file can change again
 * within the resolution of its times (2 s on some file systems) and keep the same ones: one
 * changed that recently before it was read is read and hashed at every check, until a check
 * finds it older and records its stat.
 */
const RACY_MS = 2_000;

const trusted = (stats: Stats, at: number): string | undefined =>
  Math.max(stats.mtimeMs, stats.ctimeMs) < at - RACY_MS ? statKey(stats) : undefined;

/** The file as it is now: its content and its stat taken just before, so no change slips between. */
const readInput = async (path: string): Promise<{ contents: Buffer; input: InputRecord }> => {
  const at = Date.now();
  const stats = await stat(path);
  const contents = await readFile(path);
  const key = trusted(stats, at);
  return { contents, input: { digest: digest(contents), ...(key === undefined ? {} : { stat: key }) } };
};

/** Files that decide how esbuild compiles and resolves the files in a directory and below. */
const PROJECT_FILES = ["package.json", "tsconfig.json"];

/**
 * The files one build read, each as it was read (not as a later read would find it: a file
 * saved during the build must make the next start build again).
 */
export class BuildInputs {
  private readonly inputs = new Map<string, InputRecord>();
  private readonly above = new Map<string, readonly string[]>();

  /** Reads a file for the build, and records it as read. */
  async load(path: string): Promise<string> {
    const { contents, input } = await readInput(path);
    this.inputs.set(path, input);
    return contents.toString("utf8");
  }

  /**
   * Every input: those the build loaded here, the rest of `files` (esbuild read them itself),
   * and every package.json and tsconfig.json above each (`type`, `exports`, `sideEffects`,
   * compiler options; a package's may be a directory or two above the file).
   */
  async all(files: Iterable<string>): Promise<Record<string, InputRecord>> {
    const paths = new Set(files);
    for (const path of [...paths]) for (const found of this.projectFilesOver(dirname(path))) paths.add(found);
    for (const path of paths)
      if (!this.inputs.has(path)) this.inputs.set(path, (await readInput(path)).input);
    return Object.fromEntries(this.inputs);
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
    Object.values(inputs).every(
      (input: unknown) =>
        typeof input === "object" &&
        input !== null &&
        typeof (input as InputRecord).digest === "string" &&
        ["string", "undefined"].includes(typeof (input as InputRecord).stat),
    )
  );
};

/**
 * Whether a file is as recorded: by its stat where that was recorded and still holds, else by
 * its content. Its record as of now, or undefined if it changed (or cannot be read).
 */
const checkInput = async (path: string, recorded: InputRecord): Promise<InputRecord | undefined> => {
  if (recorded.stat !== undefined) {
    const stats = await stat(path).catch(() => undefined);
    if (stats === undefined) return undefined;
    if (statKey(stats) === recorded.stat) return recorded;
  }
  const now = await readInput(path).catch(() => undefined);
  return now?.input.digest === recorded.digest ? now.input : undefined;
};

/**
 * The bundle a record names, if the record is whole and every file it lists reads as it did.
 * Where a file had to be read (its stat changed, its content did not: a checkout, a copy), the
 * record takes its stat as of now, so the next start need not read it.
 */
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
  const now = await Promise.all(inputs.map(([path, input]) => checkInput(path, input)));
  if (now.some((input) => input === undefined)) return undefined;
  if (now.some((input, i) => input !== inputs[i]![1]))
    await writeRecord(recordPath, {
      bundle: record.bundle,
      inputs: Object.fromEntries(inputs.map(([path], i) => [path, now[i]!])),
    });
  return bundle;
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
