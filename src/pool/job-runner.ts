import { Either } from "effect";
import { makeEnvelopeCodec } from "../domain/envelope.js";
import type { JobRegistry, JobRunContext, LogLevel, Progress } from "../jobs/definition.js";
import type { LazyAbort } from "../jobs/lazy-abort.js";
import { describeFailure, failureKindOf } from "../queue/failures.js";
import type { JobRequest, ThreadOutcome } from "./protocol.js";

interface LoadedRegistry {
  readonly registry: JobRegistry<unknown>;
  readonly codec: ReturnType<typeof makeEnvelopeCodec>;
}

type RegistryModule = { default?: JobRegistry<unknown> };

// One registry (and so one ORM, one HTTP agent, ...) per thread.
const registries = new Map<string, Promise<LoadedRegistry>>();

const loaded = (url: string, module: RegistryModule): LoadedRegistry => {
  const registry = module.default;
  if (!registry?.kinds) throw new Error(`${url} has no default export with job kinds`);
  const schemas = Object.fromEntries(Object.entries(registry.kinds).map(([k, d]) => [k, d.schema]));
  return { registry, codec: makeEnvelopeCodec(schemas) };
};

export const loadRegistry = (url: string): Promise<LoadedRegistry> => {
  let registry = registries.get(url);
  if (!registry) {
    registry = import(url).then((module: RegistryModule) => loaded(url, module));
    registries.set(url, registry);
  }
  return registry;
};

/**
 * A thread bundle (thread-bundle.ts) holds its registry already, loaded on first use like an
 * import: one that fails to load fails each job that needs it, and the thread goes on serving.
 */
export const preloadRegistry = (url: string, load: () => Promise<RegistryModule>): void => {
  const registry = load().then((module) => loaded(url, module));
  // Each job reports a bad registry when it needs it; unheard until then, it would end the thread.
  registry.catch(() => {});
  registries.set(url, registry);
};

/** Where a running job's progress and log lines go: to the main thread, by whichever route. */
export interface JobLines {
  progress(request: JobRequest, progress: Progress): void;
  log(request: JobRequest, level: LogLevel, message: string): void;
}

/**
 * What a handler is given: an object of its own, so it may be destructured, spread or copied.
 * Its signal and its two reporters are getters, made at the first read and the same after: most
 * handlers read none of them, and two closures made per job (named, in a bundle that keeps
 * names) cost a no-op job more than the rest of its context.
 */
const runContext = (
  request: JobRequest,
  abort: LazyAbort,
  resources: unknown,
  lines: JobLines,
): JobRunContext<unknown> => {
  let progress: ((progress: Progress) => void) | undefined;
  let log: ((level: LogLevel, message: string) => void) | undefined;
  return {
    job: request.job,
    resources,
    // An AbortController only for a handler that reads its signal.
    get signal() {
      return abort.signal;
    },
    get progress() {
      return (progress ??= (report: Progress) => lines.progress(request, report));
    },
    get log() {
      return (log ??= (level: LogLevel, message: string) => lines.log(request, level, String(message)));
    },
  };
};

const toResult = (value: unknown): string | undefined =>
  value === undefined ? undefined : typeof value === "string" ? value : JSON.stringify(value);

/**
 * Runs one job in this worker thread: decode, open the job's scope, handle, always close. The
 * same for a job the main thread sent and for one this thread claimed itself (hosted-thread.ts),
 * and for bench/thread-consumer.ts, whose comparison holds only if its jobs run exactly so.
 */
export const runJob = async (
  registryUrl: string,
  request: JobRequest,
  abort: LazyAbort,
  lines: JobLines,
): Promise<ThreadOutcome> => {
  const { job } = request;
  try {
    const { registry, codec } = await loadRegistry(registryUrl);
    const decoded = codec.decode(request.data);
    if (Either.isLeft(decoded)) return { ok: false, kind: "invalid", message: decoded.left.message };
    const definition = registry.kinds[decoded.right.kind];
    if (!definition) return { ok: false, kind: "invalid", message: `no handler for ${decoded.right.kind}` };

    const resources = registry.scope ? await registry.scope.open(job) : undefined;
    let ok = false;
    try {
      const context = runContext(request, abort, resources, lines);
      const result = toResult(await definition.handler(decoded.right.body, context));
      ok = true;
      return { ok: true, result };
    } finally {
      await registry.scope?.close(resources, { ok });
    }
  } catch (error) {
    const message = abort.aborted ? describeFailure(abort.reason) : describeFailure(error);
    return { ok: false, kind: failureKindOf(error), message };
  }
};
