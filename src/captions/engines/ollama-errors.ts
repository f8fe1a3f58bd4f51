import { JobFailure } from "../../queue/failures.js";
import { errorCodes, unreachableCode } from "../network-errors.js";

/**
 * Turning what went wrong in one Ollama call into a JobFailure whose kind drives the retry policy
 * (src/queue/failures.ts). Only the kind `transient` is retried within the call; the others are
 * conditions a few hundred milliseconds will not change.
 */

/** A request that never got an HTTP answer; `host` names the server (never its credentials). */
export const networkFailure = (error: unknown, host: string): JobFailure => {
  const unreachable = unreachableCode(error);
  if (unreachable !== undefined) {
    return new JobFailure("unavailable", `cannot connect to ${host} (${unreachable})`, { cause: error });
  }
  const code = errorCodes(error)[0];
  // undici's own header/body timeouts (300 s by default) are timeouts like ours.
  if (code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT") {
    return new JobFailure("transient", `no answer in time (${code})`, { cause: error });
  }
  // Resets, sockets closed mid-answer and anything unknown: worth another try soon.
  const detail = code ?? (error instanceof Error ? error.message : String(error));
  return new JobFailure("transient", `connection to ${host} failed (${detail})`, { cause: error });
};

/** Ollama answers out of memory with a 500; a smaller backup model may fit, a retry will not. */
const OUT_OF_MEMORY = /more system memory|out of memory|insufficient memory|cudaMalloc failed/i;

/** A non-2xx HTTP answer; `detail` is the server's error text, already sanitised. */
export const httpFailure = (status: number, detail: string): JobFailure => {
  const message = `HTTP ${status}${detail ? `: ${detail}` : ""}`;
  if (status === 503) return new JobFailure("unavailable", message); // busy or loading: come back later
  if (status === 429) return new JobFailure("unavailable", message); // rate limited by a proxy in front
  if (status === 408) return new JobFailure("transient", message);
  if (status >= 500 && OUT_OF_MEMORY.test(detail)) return new JobFailure("exhausted", message);
  if (status >= 500) return new JobFailure("transient", message);
  // 400 (bad request, an image the model cannot read), 404 (model not pulled), and the rest.
  return new JobFailure("invalid", message);
};

/**
 * The server's error text, fit for a job's failure message: Ollama sends `{"error": "..."}`, a
 * proxy may send HTML. Long base64 runs are cut out so an echoed request never puts the image
 * bytes into logs or the database, and the text is bounded.
 */
export const errorDetail = (body: string): string => {
  let text = body;
  try {
    const parsed: unknown = JSON.parse(body);
    const error = (parsed as { error?: unknown } | null)?.error;
    if (typeof error === "string") text = error;
  } catch {
    // not JSON: use the text as it is
  }
  text = text
    .replace(/[A-Za-z0-9+/=]{64,}/g, "[…]")
    .replace(/\s+/g, " ")
    .trim();
  return text.length > 200 ? `${text.slice(0, 199)}…` : text;
};
