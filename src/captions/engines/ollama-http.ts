import { JobFailure } from "../../queue/failures.js";
import { errorDetail, httpFailure, networkFailure } from "./ollama-errors.js";

export interface GenerateCall {
  /** Base URL of the Ollama server; may carry a path prefix (a reverse proxy's). */
  readonly url: string;
  readonly model: string;
  readonly prompt: string;
  readonly jpeg: Buffer;
  /** Ollama's model options (temperature, num_predict, ...), sent only when given. */
  readonly options?: Readonly<Record<string, unknown>> | undefined;
  readonly timeoutMs: number;
  /** The job's signal: its abort is rethrown as it is, never turned into a JobFailure. */
  readonly signal: AbortSignal;
  readonly fetch: typeof globalThis.fetch;
}

/** `new URL("api/generate", base)` drops the base's last path segment unless it ends with "/". */
export const generateUrl = (base: string) => new URL("api/generate", base.endsWith("/") ? base : `${base}/`);

/**
 * One `POST /api/generate` without streaming: the model's text, possibly empty. Throws the job's
 * abort reason if the job was aborted, otherwise a classified JobFailure.
 */
export const generate = async (call: GenerateCall): Promise<string> => {
  const timeout = AbortSignal.timeout(call.timeoutMs);
  // The body is read under the same signal, so a server that sends headers and then stalls is cut too.
  const signal = AbortSignal.any([call.signal, timeout]);
  const payload = {
    model: call.model,
    prompt: call.prompt,
    images: [call.jpeg.toString("base64")],
    stream: false,
    ...(call.options ? { options: call.options } : {}),
  };
  const url = generateUrl(call.url);
  let status: number;
  let body: string;
  try {
    const response = await call.fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(payload),
      signal,
    });
    status = response.status;
    body = await response.text();
  } catch (error) {
    // The job's own abort wins over everything, even when the timeout fired at the same moment.
    if (call.signal.aborted) throw call.signal.reason;
    if (timeout.aborted) {
      const message = `no answer within ${seconds(call.timeoutMs)}`;
      throw new JobFailure("transient", message, { cause: error });
    }
    throw networkFailure(error, url.host);
  }
  if (status < 200 || status > 299) throw httpFailure(status, errorDetail(body));
  return responseText(body);
};

const seconds = (ms: number) => `${Number((ms / 1000).toFixed(3))} s`;

/** The `response` field of Ollama's answer; anything else (a proxy's page, a changed API) is transient. */
const responseText = (body: string): string => {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new JobFailure("transient", `the answer is not JSON: ${errorDetail(body) || "(empty body)"}`);
  }
  const text = (parsed as { response?: unknown } | null)?.response;
  if (typeof text !== "string") {
    throw new JobFailure("transient", "the answer has no `response` text");
  }
  return text;
};
