import type { CaptionEngine } from "../engine.js";
import { type ImageMeasures, measureImage } from "./measure.js";

/**
 * The offline engine: no model, only what can be measured from the pixels (size, shape, colours,
 * brightness). It never claims to know what the image shows, so its sentence is short but true,
 * and better than no alt text at all when no model is configured.
 */
export const basicEngine = (): CaptionEngine => ({
  name: "basic",
  async describe(request) {
    request.signal.throwIfAborted();
    const measures = await measureImage(request.jpeg);
    request.signal.throwIfAborted();
    return { text: describeMeasures(measures), prompt: "", model: "basic" };
  },
});

/** One sentence, e.g. "A bright landscape image, mostly blue and white, 1024 by 683 pixels." */
export const describeMeasures = (m: ImageMeasures): string => {
  const size = `${m.width} by ${m.height} pixels`;
  const shape = shapeOf(m.width, m.height);
  const [first] = m.colours;
  // One colour and no variation: brightness would say nothing the colour does not.
  if (first && first.share >= 0.97 && m.contrast < 6) {
    return `A plain ${first.name} ${shape} image, ${size}.`;
  }
  const words = [brightnessOf(m.brightness), m.contrast > 80 ? "high-contrast" : "", shape].filter(Boolean);
  return `${article(words[0]!)} ${words.join(" ")} image, ${colourPhrase(m.colours)}, ${size}.`;
};

const shapeOf = (width: number, height: number) => {
  const ratio = width / height;
  if (ratio >= 2.5) return "panoramic";
  if (ratio > 1.05) return "landscape";
  if (ratio <= 0.4) return "tall portrait";
  if (ratio < 0.95) return "portrait";
  return "square";
};

/** Mean luma bands; the middle band gets no word, as "medium" would tell a reader nothing. */
const brightnessOf = (luma: number) => {
  if (luma < 40) return "very dark";
  if (luma < 85) return "dark";
  if (luma < 170) return "";
  if (luma < 215) return "bright";
  return "very bright";
};

/** Up to three colours that each cover a tenth of the image; "many colours" when none dominate. */
const colourPhrase = (colours: ImageMeasures["colours"]) => {
  const [first] = colours;
  if (!first) return "with no measurable colour";
  if (first.share >= 0.8) return `almost entirely ${first.name}`;
  const main = colours.filter((c) => c.share >= 0.1).slice(0, 3);
  const named = main.length > 0 ? main : [first];
  const list = listOf(named.map((c) => c.name));
  const covered = named.reduce((sum, c) => sum + c.share, 0);
  return covered >= 0.6 ? `mostly ${list}` : `in many colours, among them ${list}`;
};

const listOf = (words: string[]) =>
  words.length <= 1 ? (words[0] ?? "") : `${words.slice(0, -1).join(", ")} and ${words.at(-1)}`;

const article = (word: string) => (/^[aeiou]/i.test(word) ? "An" : "A");
