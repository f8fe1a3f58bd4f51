import sharp from "sharp";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../config/schema.js";
import { selectEngine } from "../../src/captions/select-engine.js";
import { answer, type FakeOllama, startFakeOllama, status } from "./fake-ollama.js";

let server: FakeOllama;
let jpeg: Buffer;

beforeAll(async () => {
  server = await startFakeOllama();
  jpeg = await sharp({ create: { width: 20, height: 10, channels: 3, background: "#ff0000" } })
    .jpeg()
    .toBuffer();
});
afterAll(() => server.close());
beforeEach(() => server.reset());

const describeWith = (env: Record<string, string>) =>
  selectEngine(loadConfig(env)).describe({
    jpeg,
    width: 20,
    height: 10,
    signal: new AbortController().signal,
  });

describe("selectEngine", () => {
  it("is the basic engine when nothing is configured", async () => {
    expect(selectEngine(loadConfig({})).name).toBe("basic");
    expect((await describeWith({})).text).toBe("A plain red landscape image, 20 by 10 pixels.");
  });

  it("is Ollama when OLLAMA_URL is set, with the default model llava:7b", async () => {
    server.next(answer("A red flag."));
    expect(selectEngine(loadConfig({ OLLAMA_URL: server.url })).name).toBe("ollama");
    expect(await describeWith({ OLLAMA_URL: server.url })).toMatchObject({
      text: "A red flag.",
      model: "llava:7b",
    });
    expect(server.requests.map((r) => r.body.model)).toEqual(["llava:7b"]);
  });

  it("passes OLLAMA_MODEL and OLLAMA_BACKUP_MODEL on", async () => {
    server.next(status(404, "model not found"), answer("A red flag."));
    const result = await describeWith({
      OLLAMA_URL: server.url,
      OLLAMA_MODEL: "llava:13b",
      OLLAMA_BACKUP_MODEL: "moondream",
    });
    expect(result.model).toBe("moondream");
    expect(server.requests.map((r) => r.body.model)).toEqual(["llava:13b", "moondream"]);
  });

  it("follows CAPTION_ENGINE=basic even when OLLAMA_URL is set", async () => {
    expect(selectEngine(loadConfig({ CAPTION_ENGINE: "basic", OLLAMA_URL: server.url })).name).toBe("basic");
  });

  it("follows CAPTION_ENGINE=ollama", () => {
    expect(selectEngine(loadConfig({ CAPTION_ENGINE: "ollama", OLLAMA_URL: server.url })).name).toBe(
      "ollama",
    );
  });

  it("refuses CAPTION_ENGINE=ollama without OLLAMA_URL, in one clear line", () => {
    const error = (() => {
      try {
        selectEngine(loadConfig({ CAPTION_ENGINE: "ollama" }));
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(/^CAPTION_ENGINE=ollama needs OLLAMA_URL/);
    expect((error as Error).message).not.toContain("\n");
  });
});
