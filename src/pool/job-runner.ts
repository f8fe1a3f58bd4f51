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
 * What a handler is given. Its signal and its two reporters are made only when read: most
 * handlers read none of them, and a closure made per job is a cost of its own in a bundle that
 * keeps function names. Read as getters, they may be destructured.
 */
class RunContext implements JobRunContext<unknown> {
  constructor(
    private readonly request: JobRequest,
    private readonly abort: LazyAbort,
    readonly resources: unknown,
    private readonly lines: JobLines,
  ) {}

  get job(): JobRequest["job"] {
    return this.request.job;
  }

  /** An AbortController only for a handler that reads its signal. */
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  get progress(): (progress: Progress) => void {
    return (progress) => this.lines.progress(this.request, progress);
  }

  get log(): (level: LogLevel, message: string) => void {
    return (level, message) => this.lines.log(this.request, level, String(message));
  }
}

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
      const context = new RunContext(request, abort, resources, lines);
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
