import { Either } from "effect";
import { makeEnvelopeCodec } from "../domain/envelope.js";
import type { JobInfo, JobRegistry, JobRunContext, LogLevel, Progress } from "../jobs/definition.js";
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
/** The registries loaded by now: a job need not wait a tick for a promise long settled. */
const ready = new Map<string, LoadedRegistry>();

const loaded = (url: string, module: RegistryModule): LoadedRegistry => {
  const registry = module.default;
  if (!registry?.kinds) throw new Error(`${url} has no default export with job kinds`);
  const schemas = Object.fromEntries(Object.entries(registry.kinds).map(([k, d]) => [k, d.schema]));
  const made = { registry, codec: makeEnvelopeCodec(schemas) };
  ready.set(url, made);
  return made;
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

/**
 * Where a running job's progress and log lines go: to the main thread, by whichever route. A
 * log line's message is as the handler passed it: from JavaScript, it may not be a string.
 */
export interface JobLines {
  progress(request: JobRequest, progress: Progress): void;
  log(request: JobRequest, level: LogLevel, message: string): void;
}

/**
 * What a handler is given: an object of its own, so it may be destructured, spread or copied. Its
 * reporters are bound functions and its signal an accessor, made at the first read (an
 * AbortSignal costs about 4 µs): an arrow function made per job in a bundle that keeps names
 * (thread-bundle.ts) costs about 0.5 µs, a bound function next to nothing. The accessor is not
 * a getter in an object literal, whose every evaluation makes a closure and an accessor pair of
 * its own (0.44 of the context's 0.48 µs in a scratch loop on Node 20, and a pool thread 2.6-2.9
 * µs more a no-op job in a drain): every context defines the same one, which reads the job's
 * abort from a private field.
 */
class RunContext<R> implements JobRunContext<R> {
  readonly job: JobInfo;
  readonly resources: R;
  readonly progress: (progress: Progress) => void;
  readonly log: (level: LogLevel, message: string) => void;
  declare readonly signal: AbortSignal;
  readonly #abort: LazyAbort;

  static readonly #signal: PropertyDescriptor = {
    get(this: RunContext<unknown>) {
      return this.#abort.signal;
    },
    enumerable: true,
    configurable: true,
  };

  constructor(request: JobRequest, abort: LazyAbort, resources: R, lines: JobLines) {
    this.job = request.job;
    this.resources = resources;
    this.progress = lines.progress.bind(lines, request);
    this.log = lines.log.bind(lines, request);
    this.#abort = abort;
    Object.defineProperty(this, "signal", RunContext.#signal);
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
    // Awaited only while it loads, and the scope only where there is one: an await of a value
    // at hand still costs a tick and a promise.
    const { registry, codec } = ready.get(registryUrl) ?? (await loadRegistry(registryUrl));
    const decoded = codec.decode(request.data);
    if (Either.isLeft(decoded)) return { ok: false, kind: "invalid", message: decoded.left.message };
    const definition = registry.kinds[decoded.right.kind];
    if (!definition) return { ok: false, kind: "invalid", message: `no handler for ${decoded.right.kind}` };

    const { scope } = registry;
    if (!scope) {
      const context = new RunContext(request, abort, undefined, lines);
      return { ok: true, result: toResult(await definition.handler(decoded.right.body, context)) };
    }
    const resources = await scope.open(job);
    let ok = false;
    try {
      const context = new RunContext(request, abort, resources, lines);
      const result = toResult(await definition.handler(decoded.right.body, context));
      ok = true;
      return { ok: true, result };
    } finally {
      await scope.close(resources, { ok });
    }
  } catch (error) {
    const message = abort.aborted ? describeFailure(abort.reason) : describeFailure(error);
    return { ok: false, kind: failureKindOf(error), message };
  }
};
