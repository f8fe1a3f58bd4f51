import { threadId } from "node:worker_threads";
import { Either } from "effect";
import { makeEnvelopeCodec } from "../domain/envelope.js";
import type { JobRegistry, JobRunContext } from "../jobs/definition.js";
import { describeFailure, failureKindOf } from "../queue/failures.js";
import type { FromThread, ThreadOutcome, ThreadTask, ToThread } from "./protocol.js";

interface LoadedRegistry {
  readonly registry: JobRegistry<unknown>;
  readonly codec: ReturnType<typeof makeEnvelopeCodec>;
}

// One registry (and so one ORM, one HTTP agent, ...) per thread, loaded at its first job.
const registries = new Map<string, Promise<LoadedRegistry>>();

const loadRegistry = (url: string): Promise<LoadedRegistry> => {
  let loaded = registries.get(url);
  if (!loaded) {
    loaded = import(url).then((module: { default?: JobRegistry<unknown> }) => {
      const registry = module.default;
      if (!registry?.kinds) throw new Error(`${url} has no default export with job kinds`);
      const schemas = Object.fromEntries(Object.entries(registry.kinds).map(([k, d]) => [k, d.schema]));
      return { registry, codec: makeEnvelopeCodec(schemas) };
    });
    registries.set(url, loaded);
  }
  return loaded;
};

const toResult = (value: unknown): string | undefined =>
  value === undefined ? undefined : typeof value === "string" ? value : JSON.stringify(value);

/** Runs one job in this worker thread: decode, open the job's scope, handle, always close. */
export const runInThread = async (task: ThreadTask): Promise<ThreadOutcome> => {
  const controller = new AbortController();
  task.port.postMessage({ type: "started", threadId } satisfies FromThread);
  task.port.on("message", (message: ToThread) => {
    if (message.type === "abort") controller.abort(new Error(message.reason));
  });
  try {
    const { registry, codec } = await loadRegistry(task.registry);
    const decoded = codec.decode(task.data);
    if (Either.isLeft(decoded)) return { ok: false, kind: "invalid", message: decoded.left.message };
    const definition = registry.kinds[decoded.right.kind];
    if (!definition) return { ok: false, kind: "invalid", message: `no handler for ${decoded.right.kind}` };

    const resources = registry.scope ? await registry.scope.open(task.job) : undefined;
    let ok = false;
    try {
      const context: JobRunContext<unknown> = {
        job: task.job,
        signal: controller.signal,
        resources,
        progress: (progress) => task.port.postMessage({ type: "progress", progress } satisfies FromThread),
        log: (level, message) =>
          task.port.postMessage({ type: "log", level, message: String(message) } satisfies FromThread),
      };
      const result = toResult(await definition.handler(decoded.right.body, context));
      ok = true;
      return { ok: true, result };
    } finally {
      await registry.scope?.close(resources, { ok });
    }
  } catch (error) {
    const message = controller.signal.aborted
      ? describeFailure(controller.signal.reason)
      : describeFailure(error);
    return { ok: false, kind: failureKindOf(error), message };
  } finally {
    task.port.postMessage({ type: "done" } satisfies FromThread);
    task.port.close();
  }
};
