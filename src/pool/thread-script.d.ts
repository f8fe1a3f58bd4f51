/** Declarations of thread-script.js, which bundle threads load as it is (no TypeScript there). */
export declare const loadThreadScript: (
  url: URL,
  namespaces: Readonly<Record<string, object>>,
  importMeta: ImportMeta,
  dynamicImport: (specifier: string, options?: ImportCallOptions) => Promise<unknown>,
) => unknown;
/** Whether a thread of this process would run the script at `path` with the code cache beside it. */
export declare const cacheTaken: (path: string) => boolean;
