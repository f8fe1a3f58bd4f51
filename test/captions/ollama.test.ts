import sharp from "sharp";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { CaptionRequest } from "../../src/captions/engine.js";
import { ollamaEngine, type OllamaEngineOptions } from "../../src/captions/engines/ollama.js";
import { DEFAULT_PROMPT, FALLBACK_PROMPT } from "../../src/captions/engines/prompts.js";
import { type FailureKind, JobFailure } from "../../src/queue/failures.js";
import {
  answer,
  closedPort,
  type FakeOllama,
  raw,
  reset,
  slow,
  startFakeOllama,
  status,
} from "./fake-ollama.js";

let server: FakeOllama;
let jpeg: Buffer;
let base64: string;

beforeAll(async () => {
  server = await startFakeOllama();
  jpeg = await sharp({ create: { width: 64, height: 48, channels: 3, background: "#3366cc" } })
    .jpeg()
    .toBuffer();
  base64 = jpeg.toString("base64");
});
afterAll(() => server.close());
beforeEach(() => server.reset());

const request = (signal: AbortSignal = new AbortController().signal): CaptionRequest => ({
  jpeg,
  width: 64,
  height: 48,
  signal,
});

/** Short waits so the retry paths run in milliseconds; the default backoff has its own test. */
const engine = (options: Partial<OllamaEngineOptions> = {}) =>
  ollamaEngine({ url: server.url, model: "llava:7b", timeoutMs: 2_000, backoffMs: 5, ...options });

/** The JobFailure a call ends with; its message must never carry the image. */
const failureOf = async (promise: Promise<unknown>, kind: FailureKind) => {
  const error = await promise.then(
    () => expect.unreachable("the call should have failed"),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(JobFailure);
  const failure = error as JobFailure;
  expect(failure.kind, failure.message).toBe(kind);
  expect(failure.message).not.toContain(base64.slice(0, 40));
  return failure;
};

const models = () => server.requests.map((r) => r.body.model);
const prompts = () => server.requests.map((r) => r.body.prompt);

describe("ollamaEngine: the request", () => {
  it("posts the model, the default prompt, the JPEG as base64 and stream false", async () => {
    server.next(answer("  A blue square on a white table.\n"));
    const result = await engine().describe(request());
    expect(result).toEqual({
      text: "A blue square on a white table.",
      prompt: DEFAULT_PROMPT,
      model: "llava:7b",
    });
    expect(server.requests).toHaveLength(1);
    const [seen] = server.requests;
    expect(seen!.path).toBe("/api/generate");
    expect(seen!.contentType).toBe("application/json");
    expect(seen!.body).toEqual({
      model: "llava:7b",
      prompt: DEFAULT_PROMPT,
      images: [base64],
      stream: false,
    });
    expect(Buffer.from(seen!.body.images[0]!, "base64").equals(jpeg)).toBe(true);
  });

  it("sends a custom prompt and model options, and keeps a path prefix of the URL", async () => {
    server.next(answer("A cat."));
    const result = await engine({
      url: `${server.url}/ollama/`,
      prompt: "Say what you see.",
      options: { temperature: 0.1, num_predict: 120 },
    }).describe(request());
    expect(result.prompt).toBe("Say what you see.");
    expect(server.requests[0]!.path).toBe("/ollama/api/generate");
    expect(server.requests[0]!.body.prompt).toBe("Say what you see.");
    expect(server.requests[0]!.body.options).toEqual({ temperature: 0.1, num_predict: 120 });
  });

  it("has a default prompt written for alt text", () => {
    expect(DEFAULT_PROMPT).toMatch(/alt text/i);
    expect(DEFAULT_PROMPT).toMatch(/image of/i); // it tells the model not to start with it
    expect(FALLBACK_PROMPT.length).toBeLessThan(DEFAULT_PROMPT.length);
  });
});

describe("ollamaEngine: transient failures are retried within the call", () => {
  it("waits 500 ms by default after a 500, then succeeds", async () => {
    server.next(status(500, "llama runner crashed"), answer("A dog."));
    const started = Date.now();
    const result = await ollamaEngine({ url: server.url, model: "llava:7b", timeoutMs: 2_000 }).describe(
      request(),
    );
    expect(result.text).toBe("A dog.");
    expect(server.requests).toHaveLength(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(450);
  });

  it.each([502, 504])("retries a %i", async (code) => {
    server.next(status(code), answer("A boat."));
    expect((await engine().describe(request())).text).toBe("A boat.");
    expect(server.requests).toHaveLength(2);
  });

  it("retries a connection reset", async () => {
    server.next(reset(), answer("A tree."));
    expect((await engine().describe(request())).text).toBe("A tree.");
    expect(server.requests).toHaveLength(2);
  });

  it("gives up after `retries` extra attempts with a transient failure", async () => {
    server.always(status(500, "boom"));
    const failure = await failureOf(engine({ retries: 2 }).describe(request()), "transient");
    expect(server.requests).toHaveLength(3);
    expect(failure.message).toContain("HTTP 500: boom");
    expect(failure.message).toContain("3 attempts");
  });

  it("times out a slow call and classifies it transient", async () => {
    server.always(slow(1_000));
    const started = Date.now();
    const failure = await failureOf(engine({ timeoutMs: 100, retries: 1 }).describe(request()), "transient");
    expect(failure.message).toContain("no answer within 0.1 s");
    expect(server.requests).toHaveLength(2);
    expect(Date.now() - started).toBeLessThan(900);
  });

  it("retries a timeout and takes the answer of the next attempt", async () => {
    server.next(slow(1_000), answer("A fast answer."));
    expect((await engine({ timeoutMs: 100 }).describe(request())).text).toBe("A fast answer.");
  });

  it("treats an answer that is not Ollama's JSON as transient", async () => {
    server.always(raw(200, "<html>proxy says hello</html>"));
    const failure = await failureOf(engine({ retries: 0 }).describe(request()), "transient");
    expect(failure.message).toContain("not JSON");
  });
});

describe("ollamaEngine: failures that are not retried within the call", () => {
  it("503 is unavailable, after one request, and skips the backup on the same server", async () => {
    server.always(status(503, "server busy, please try again"));
    const failure = await failureOf(engine({ backupModel: "moondream" }).describe(request()), "unavailable");
    expect(models()).toEqual(["llava:7b"]);
    expect(failure.message).toContain("server busy");
  });

  it("a refused connection is unavailable and names the host", async () => {
    const port = await closedPort();
    const url = `http://127.0.0.1:${port}`;
    const failure = await failureOf(engine({ url }).describe(request()), "unavailable");
    expect(failure.message).toContain("ECONNREFUSED");
    expect(failure.message).toContain(`127.0.0.1:${port}`);
  });

  it("an unknown host name is unavailable", async () => {
    await failureOf(engine({ url: "http://ratatoskr-test.invalid" }).describe(request()), "unavailable");
  });

  it("404 (model not pulled) is invalid, with Ollama's message", async () => {
    server.always(status(404, 'model "llava:7b" not found, try pulling it first'));
    const failure = await failureOf(engine().describe(request()), "invalid");
    expect(server.requests).toHaveLength(1);
    expect(failure.message).toContain('model "llava:7b" not found');
  });

  it("400 is invalid, and an echoed request does not bring the image into the message", async () => {
    server.always((seen, res) => {
      res.writeHead(400, { "content-type": "text/plain" });
      res.end(`cannot decode image ${seen.body.images[0]} for ${seen.body.model}`);
    });
    const failure = await failureOf(engine().describe(request()), "invalid");
    expect(failure.message).toContain("HTTP 400");
    expect(failure.message.length).toBeLessThan(400);
  });

  it("out of memory is exhausted and not retried", async () => {
    server.always(status(500, "model requires more system memory (5.6 GiB) than is available (2.1 GiB)"));
    await failureOf(engine().describe(request()), "exhausted");
    expect(server.requests).toHaveLength(1);
  });
});

describe("ollamaEngine: empty answers and the backup model", () => {
  it("asks the fallback prompt once after an empty answer", async () => {
    server.next(answer(" \n "), answer("A red kite in the sky."));
    const result = await engine().describe(request());
    expect(result).toEqual({ text: "A red kite in the sky.", prompt: FALLBACK_PROMPT, model: "llava:7b" });
    expect(prompts()).toEqual([DEFAULT_PROMPT, FALLBACK_PROMPT]);
  });

  it("an answer that stays empty is transient, with a clear message", async () => {
    server.always(answer(""));
    const failure = await failureOf(engine().describe(request()), "transient");
    expect(failure.message).toContain("empty caption");
    expect(server.requests).toHaveLength(2);
  });

  it("then asks the backup model", async () => {
    server.next(answer(""), answer("   "), answer("A lighthouse."));
    const result = await engine({ backupModel: "moondream" }).describe(request());
    expect(result).toEqual({ text: "A lighthouse.", prompt: DEFAULT_PROMPT, model: "moondream" });
    expect(models()).toEqual(["llava:7b", "llava:7b", "moondream"]);
    expect(prompts()).toEqual([DEFAULT_PROMPT, FALLBACK_PROMPT, DEFAULT_PROMPT]);
  });

  it("uses the backup when the main model is not found", async () => {
    server.next(status(404, 'model "llava:7b" not found'), answer("A harbour at dusk."));
    const result = await engine({ backupModel: "moondream" }).describe(request());
    expect(result.model).toBe("moondream");
    expect(models()).toEqual(["llava:7b", "moondream"]);
    expect(server.requests[1]!.body.images).toEqual([base64]);
  });

  it("uses the backup when the main model keeps failing after its retries", async () => {
    server.next(status(500), status(502), status(504), answer("A field of tulips."));
    const result = await engine({ backupModel: "moondream" }).describe(request());
    expect(result.model).toBe("moondream");
    expect(models()).toEqual(["llava:7b", "llava:7b", "llava:7b", "moondream"]);
  });

  it("reports both models when both fail, with the kind that gives the job the best chance", async () => {
    server.next(status(404, "main not found"));
    server.always(status(500, "backup crashed"));
    const failure = await failureOf(
      engine({ backupModel: "moondream", retries: 0 }).describe(request()),
      "transient",
    );
    expect(failure.message).toContain("model llava:7b: HTTP 404: main not found");
    expect(failure.message).toContain("backup model moondream: HTTP 500: backup crashed");
  });

  it("is invalid when both models are missing", async () => {
    server.always(status(404, "not found"));
    await failureOf(engine({ backupModel: "moondream" }).describe(request()), "invalid");
    expect(models()).toEqual(["llava:7b", "moondream"]);
  });
});

describe("ollamaEngine: the job's abort", () => {
  it("stops a slow call at once and rethrows the abort, without retry or backup", async () => {
    server.always(slow(5_000));
    const controller = new AbortController();
    const reason = new Error("job cancelled");
    setTimeout(() => controller.abort(reason), 100);
    const started = Date.now();
    const promise = engine({ timeoutMs: 10_000, backupModel: "moondream" }).describe(
      request(controller.signal),
    );
    await expect(promise).rejects.toBe(reason);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(server.requests).toHaveLength(1);
  });

  it("rethrows the abort, not a JobFailure, when no retry is left", async () => {
    server.always(slow(5_000));
    const controller = new AbortController();
    const reason = new Error("job cancelled");
    setTimeout(() => controller.abort(reason), 100);
    await expect(engine({ retries: 0 }).describe(request(controller.signal))).rejects.toBe(reason);
  });

  it("stops during the backoff between retries", async () => {
    server.always(status(500));
    const controller = new AbortController();
    const reason = new Error("shutting down");
    const promise = engine({ backoffMs: 10_000 }).describe(request(controller.signal));
    setTimeout(() => controller.abort(reason), 150);
    const started = Date.now();
    await expect(promise).rejects.toBe(reason);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(server.requests).toHaveLength(1);
  });

  it("sends nothing when the job is already aborted", async () => {
    const controller = new AbortController();
    controller.abort(new Error("too late"));
    await expect(engine().describe(request(controller.signal))).rejects.toThrow("too late");
    expect(server.requests).toHaveLength(0);
  });
});
