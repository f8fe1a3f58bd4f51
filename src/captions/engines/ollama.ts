import { type FailureKind, JobFailure } from "../../queue/failures.js";
import type { CaptionAnswer, CaptionEngine, CaptionRequest } from "../engine.js";
import { generate } from "./ollama-http.js";
import { DEFAULT_PROMPT, FALLBACK_PROMPT } from "./prompts.js";
import { sleep } from "./sleep.js";

export interface OllamaEngineOptions {
  /** Base URL of the Ollama server, e.g. `http://localhost:11434`. */
  readonly url: string;
  readonly model: string;
  /** Tried when the main model fails or keeps answering nothing. */
  readonly backupModel?: string | undefined;
  /** How long one HTTP call may take; each retry gets the full time again. */
  readonly timeoutMs: number;
  readonly prompt?: string | undefined;
  /** Asked once when the main prompt got an empty answer. */
  readonly fallbackPrompt?: string | undefined;
  /** Extra attempts per call after a transient failure (timeout, reset, 5xx); default 2. */
  readonly retries?: number | undefined;
  /** First wait between attempts, doubled each time; default 500 ms (500 ms, 1 s, ...). */
  readonly backoffMs?: number | undefined;
  /** Ollama model options (temperature, num_predict, ...), sent as `options` when given. */
  readonly options?: Readonly<Record<string, unknown>> | undefined;
  readonly fetch?: typeof globalThis.fetch | undefined;
}

/** Which failure to report when both models failed: the one that gives the job the best next chance. */
const HOPE: Record<FailureKind, number> = { transient: 3, exhausted: 2, unavailable: 1, invalid: 0 };

/**
 * A caption engine on Ollama's `/api/generate`. For each model (main, then backup) it asks the
 * main prompt, and on an empty answer the fallback prompt once; each call is retried with
 * backoff on transient failures. The job's abort stops everything at once and is rethrown as is.
 */
export const ollamaEngine = (options: OllamaEngineOptions): CaptionEngine => {
  const prompts = [options.prompt ?? DEFAULT_PROMPT, options.fallbackPrompt ?? FALLBACK_PROMPT];
  const retries = Math.max(0, Math.floor(options.retries ?? 2));
  const backoffMs = options.backoffMs ?? 500;
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const models = [options.model];
  if (options.backupModel !== undefined && options.backupModel !== options.model) {
    models.push(options.backupModel);
  }

  /** One prompt to one model, retried while the failure is transient. */
  const ask = async (model: string, prompt: string, request: CaptionRequest): Promise<string> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await generate({
          url: options.url,
          model,
          prompt,
          jpeg: request.jpeg,
          options: options.options,
          timeoutMs: options.timeoutMs,
          signal: request.signal,
          fetch: fetchImpl,
        });
      } catch (error) {
        const retry = error instanceof JobFailure && error.kind === "transient" && attempt < retries;
        if (!retry) {
          if (error instanceof JobFailure && attempt > 0) {
            throw new JobFailure(error.kind, `${error.message} (${attempt + 1} attempts)`, { cause: error });
          }
          throw error;
        }
        await sleep(backoffMs * 2 ** attempt, request.signal);
      }
    }
  };

  /** The model's caption, or the JobFailure that ended its turn; the job's abort propagates. */
  const tryModel = async (model: string, request: CaptionRequest): Promise<CaptionAnswer | JobFailure> => {
    try {
      for (const prompt of prompts) {
        const text = (await ask(model, prompt, request)).trim();
        if (text) return { text, prompt, model };
      }
      return new JobFailure("transient", "the model gave an empty caption, also to the simpler prompt");
    } catch (error) {
      if (error instanceof JobFailure && !request.signal.aborted) return error;
      throw error;
    }
  };

  return {
    name: "ollama",
    async describe(request) {
      request.signal.throwIfAborted();
      const failures: Array<{ model: string; failure: JobFailure }> = [];
      for (const model of models) {
        const outcome = await tryModel(model, request);
        if (!(outcome instanceof JobFailure)) return outcome;
        failures.push({ model, failure: outcome });
        // The backup runs on the same server: one that refuses connections or says it is busy
        // will not answer for another model either, and the queue's long backoff suits it better.
        if (outcome.kind === "unavailable") break;
      }
      const chosen = failures.reduce((a, b) => (HOPE[b.failure.kind] > HOPE[a.failure.kind] ? b : a));
      const message = failures
        .map(({ model, failure }, i) => `${i > 0 ? "backup " : ""}model ${model}: ${failure.message}`)
        .join("; ");
      throw new JobFailure(chosen.failure.kind, `Ollama ${message}`, { cause: chosen.failure });
    },
  };
};
