import { type MessagePort, threadId } from "node:worker_threads";
import { Either } from "effect";
import { makeEnvelopeCodec } from "../domain/envelope.js";
import type { JobRegistry, JobRunContext } from "../jobs/definition.js";
import { LazyAbort } from "../jobs/lazy-abort.js";
import { describeFailure, failureKindOf } from "../queue/failures.js";
import type { FromThread, JobRequest, ServeTask, ThreadOutcome, ToThread } from "./protocol.js";

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

const loadRegistry = (url: string): Promise<LoadedRegistry> => {
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

const toResult = (value: unknown): string | undefined =>
  value === undefined ? undefined : typeof value === "string" ? value : JSON.stringify(value);

/**
 * Runs one job in this worker thread: decode, open the job's scope, handle, always close.
 * Exported for bench/thread-consumer.ts, whose threads claim for themselves and must run a job
 * exactly as this thread does for the comparison to hold.
 */
export const runJob = async (
  registryUrl: string,
  request: JobRequest,
  abort: LazyAbort,
  port: MessagePort,
): Promise<ThreadOutcome> => {
  const { seq, job } = request;
  try {
    const { registry, codec } = await loadRegistry(registryUrl);
    const decoded = codec.decode(request.data);
    if (Either.isLeft(decoded)) return { ok: false, kind: "invalid", message: decoded.left.message };
    const definition = registry.kinds[decoded.right.kind];
    if (!definition) return { ok: false, kind: "invalid", message: `no handler for ${decoded.right.kind}` };

    const resources = registry.scope ? await registry.scope.open(job) : undefined;
    let ok = false;
    try {
      const context: JobRunContext<unknown> = {
        job,
        // An AbortController only for a handler that reads its signal.
        get signal() {
          return abort.signal;
        },
        resources,
        progress: (progress) => port.postMessage({ type: "progress", seq, progress } satisfies FromThread),
        log: (level, message) =>
          port.postMessage({ type: "log", seq, level, message: String(message) } satisfies FromThread),
      };
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

/**
 * This thread's one Piscina task, for as long as the pool lives: runs the jobs that arrive on
 * its port, all at once, and answers with their outcomes, batched per tick.
 */
export const serve = async ({ registry, port }: ServeTask): Promise<void> => {
  const running = new Map<number, LazyAbort>();
  let outcomes: Array<{ seq: number; outcome: ThreadOutcome }> = [];
  const answer = (seq: number, outcome: ThreadOutcome) => {
    if (outcomes.length === 0) {
      setImmediate(() => {
        const batch = outcomes;
        outcomes = [];
        port.postMessage({ type: "outcomes", outcomes: batch } satisfies FromThread);
      });
    }
    outcomes.push({ seq, outcome });
  };
  port.postMessage({ type: "ready", threadId } satisfies FromThread);
  // Loaded before the first job arrives, so the first jobs do not wait on it.
  void loadRegistry(registry).catch(() => {
    // Each job reports the failure when it needs the registry.
  });
  await new Promise<void>((closed) => {
    port.on("message", (message: ToThread) => {
      if (message.type === "run") {
        for (const request of message.jobs) {
          const abort = new LazyAbort();
          running.set(request.seq, abort);
          void runJob(registry, request, abort, port).then((outcome) => {
            running.delete(request.seq);
            answer(request.seq, outcome);
          });
        }
      } else if (message.type === "abort") {
        const abort = running.get(message.seq);
        if (abort) LazyAbort.abort(abort, new Error(message.reason));
      } else {
        port.close();
        closed();
      }
    });
  });
};
