import { type Config, ConfigError } from "../../config/schema.js";
import type { CaptionEngine } from "./engine.js";
import { basicEngine } from "./engines/basic.js";
import { ollamaEngine } from "./engines/ollama.js";

/**
 * The caption engine the configuration asks for: CAPTION_ENGINE when set, else Ollama when
 * OLLAMA_URL is set, else the offline basic engine, so a fresh install captions something.
 * Asking for Ollama without saying where it runs stops start-up with one line.
 */
export const selectEngine = (config: Config): CaptionEngine => {
  const engine = config.CAPTION_ENGINE ?? (config.OLLAMA_URL ? "ollama" : "basic");
  if (engine === "basic") return basicEngine();
  if (!config.OLLAMA_URL) {
    throw new ConfigError("CAPTION_ENGINE=ollama needs OLLAMA_URL, e.g. OLLAMA_URL=http://localhost:11434");
  }
  return ollamaEngine({
    url: config.OLLAMA_URL,
    model: config.OLLAMA_MODEL,
    backupModel: config.OLLAMA_BACKUP_MODEL,
    timeoutMs: config.OLLAMA_TIMEOUT * 1000,
  });
};
