import { JobFailure } from "../queue/failures.js";

/**
 * Turning a model's raw answer into alt text, and judging it. Models wrap their answer in
 * preambles, quotes and markdown, start with "This image shows" (which screen readers make
 * "image, this image shows ...") and run past length limits; this undoes each of those.
 */

export interface CleanOptions {
  /** The most characters (UTF-16 units, as JavaScript and most servers count) of the result. */
  readonly maxLength: number;
  /** Appended to every caption so readers know where it came from. */
  readonly suffix?: string;
}

export const DEFAULT_SUFFIX = " (AI-generated)";

/** Openers that say nothing: "This image shows", "In this picture,", "I can see", "Image of". */
const GENERIC = "(?:image|picture|photo(?:graph)?|pic|scene|snapshot)";
const VERBS =
  "(?:shows?|depicts?|features?|contains?|displays?|captures?|presents?|portrays?|illustrates?|is\\s+of|is\\s+showing)";
const LEADING: RegExp[] = [
  new RegExp(`^(?:this|the)\\s+${GENERIC}\\s+(?:(?:appears|seems)\\s+to\\s+)?${VERBS}\\s*:?\\s*`, "i"),
  new RegExp(`^(?:this|the)\\s+${GENERIC}\\s+is\\s+(?=an?\\s)`, "i"),
  new RegExp(`^in\\s+(?:this|the)\\s+${GENERIC},?\\s*`, "i"),
  new RegExp(`^(?:an?\\s+)?${GENERIC}\\s+(?:of|showing|depicting)\\s+`, "i"),
  /^(?:i|we)\s+(?:can\s+)?see\s+/i,
  /^(?:alt(?:ernative)?[\s-]*text|caption|description)\s*:\s*/i,
];

/**
 * Specific media are worth keeping: "This screenshot shows a tweet" becomes "Screenshot of a
 * tweet", since knowing it is a screenshot (or a painting) helps the reader.
 */
const MEDIUM = new RegExp(
  `^(?:this|the)\\s+(screenshot|illustration|drawing|painting|diagram|chart|graph|map|meme|comic|cartoon|sketch|render(?:ing)?)\\s+(?:(?:appears|seems)\\s+to\\s+)?${VERBS}\\s*:?\\s*`,
  "i",
);

const QUOTES: Record<string, string> = {
  '"': '"',
  "'": "'",
  "“": "”",
  "‘": "’",
  "«": "»",
  "„": "“",
  "`": "`",
};

/** The first line with content, skipping a preamble such as "Sure! Here is the alt text:". */
const firstLine = (raw: string) => {
  const lines = raw
    .split(/\r?\n|\r/)
    .map((line) => line.trim())
    .filter((line) => /[\p{L}\p{N}]/u.test(line));
  const useful = lines.find((line, i) => !(line.endsWith(":") && i < lines.length - 1));
  return useful ?? "";
};

/** Markdown emphasis, code ticks, headings and list bullets; underscores inside words stay. */
const stripMarkdown = (text: string) =>
  text
    .replace(/^(?:#{1,6}\s+|[-*+•]\s+|\d+[.)]\s+|>\s*)/, "")
    .replace(/\*+|`+/g, "")
    .replace(/(^|[^\p{L}\p{N}])_{1,2}(?=\S)(.*?\S)_{1,2}(?![\p{L}\p{N}])/gu, "$1$2");

/** Quotes around the whole text, possibly with the full stop outside them: `"A dog".` */
const stripQuotes = (text: string) => {
  const close = QUOTES[text[0] ?? ""];
  if (close === undefined || text.length < 2) return text;
  const match = text.slice(1).match(new RegExp(`^(.*)${escape(close)}([.!?…]?)$`, "su"));
  if (!match || match[1]!.includes(close)) return text;
  return `${match[1]}${match[2]}`.trim();
};

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Capitalised, unless the word is a brand written like "iPhone" or "eBay". */
const capitalise = (text: string) =>
  /^\p{Ll}\p{Lu}/u.test(text) ? text : text.charAt(0).toLocaleUpperCase() + text.slice(1);

/** One pass of every stripping rule, repeated until the text stops changing: `"**This image shows** ..."`. */
const stripDecorations = (line: string) => {
  let text = line;
  for (let previous = ""; previous !== text;) {
    previous = text;
    text = stripQuotes(stripMarkdown(text).trim()).trim();
    for (const pattern of LEADING) text = text.replace(pattern, "");
    text = text.replace(MEDIUM, (_, medium: string) => `${medium} of `).trim();
  }
  return text;
};

const ENDS_SENTENCE = /[.!?…]["'”’»)\]]*$/u;

/**
 * Cut `text` to at most `room` characters: at the last sentence end that fits; else at the last
 * word boundary that fits, marked with "…"; a single overlong word is cut hard.
 */
export const fitTo = (text: string, room: number): string => {
  if (text.length <= room) return text;
  const sentenceEnds = [...text.matchAll(/[.!?…]["'”’»)\]]*(?=\s)/gu)].map((m) => m.index + m[0].length);
  const sentenceEnd = sentenceEnds.filter((end) => end <= room).at(-1);
  if (sentenceEnd !== undefined) return text.slice(0, sentenceEnd);
  // One character is kept free for the ellipsis.
  const head = text.slice(0, room);
  const space = head.lastIndexOf(" ");
  let cut = space > 0 ? head.slice(0, space) : head.slice(0, room - 1);
  // Never leave half of a surrogate pair (an emoji) behind.
  if (/[\uD800-\uDBFF]$/.test(cut)) cut = cut.slice(0, -1);
  return `${cut.replace(/[\s,;:–—-]+$/u, "")}…`;
};

/**
 * Alt text from a model's raw answer: first useful line, without quotes, markdown or "This
 * image shows", capitalised, whitespace collapsed, ending in punctuation, cut to fit, with the
 * suffix. Never longer than `maxLength`. An answer with no words is a transient failure: the
 * model may do better on the next try.
 */
export const cleanCaption = (raw: string, { maxLength, suffix = DEFAULT_SUFFIX }: CleanOptions): string => {
  const room = maxLength - suffix.length;
  if (room < 2) throw new RangeError(`maxLength ${maxLength} leaves no room beside the suffix "${suffix}"`);
  let text = stripDecorations(firstLine(raw).replace(/\s+/g, " "))
    .replace(/\s+/g, " ")
    .replace(/[\s,;:–—-]+$/u, "");
  if (!/[\p{L}\p{N}]/u.test(text)) throw new JobFailure("transient", "the model gave an empty caption");
  text = capitalise(text);
  if (!ENDS_SENTENCE.test(text)) text = `${text}.`;
  return `${fitTo(text, room)}${suffix}`;
};

export interface QualityOptions {
  readonly optimalMin: number;
  readonly optimalMax: number;
  /** Left out of the length when the caption ends with it; default " (AI-generated)". */
  readonly suffix?: string;
}

export type QualityIssue = "too-short" | "too-long" | "few-words" | "generic" | "cut-off" | "repetitive";

export interface CaptionQuality {
  /** 0-100; 100 is a caption with nothing to remark on. */
  readonly score: number;
  /** Score below REVIEW_BELOW: a person should look at it before it is posted. */
  readonly needsReview: boolean;
  readonly issues: readonly QualityIssue[];
}

export const REVIEW_BELOW = 70;

/** Words that describe no content: a caption of only these ("An image.") says nothing. */
const EMPTY_WORDS = new Set(
  (
    "a an the this that of in on with and or is it its image picture photo photograph pic " +
    "screenshot graphic ai generated some something thing things"
  ).split(" "),
);

/**
 * A simple, explainable score. Starting from 100:
 * - shorter than optimalMin: up to -40, in proportion to the shortfall;
 * - longer than optimalMax: up to -30, reaching -30 at twice optimalMax;
 * - fewer than 3 words: -20;
 * - no word besides generic ones ("image", "picture", "a", ...): -60;
 * - cut off (ends with "…"): -10;
 * - a three-word sequence repeated three times or more (a looping model): -40.
 */
export const captionQuality = (
  caption: string,
  { optimalMin, optimalMax, suffix = DEFAULT_SUFFIX }: QualityOptions,
): CaptionQuality => {
  const text = (suffix && caption.endsWith(suffix) ? caption.slice(0, -suffix.length) : caption).trim();
  const words = text.toLowerCase().match(/[\p{L}\p{N}'’-]+/gu) ?? [];
  const issues: QualityIssue[] = [];
  let score = 100;
  if (text.length < optimalMin) {
    issues.push("too-short");
    score -= Math.ceil((40 * (optimalMin - text.length)) / optimalMin);
  }
  if (text.length > optimalMax) {
    issues.push("too-long");
    score -= Math.ceil(30 * Math.min(1, (text.length - optimalMax) / optimalMax));
  }
  if (words.length < 3) {
    issues.push("few-words");
    score -= 20;
  }
  if (words.every((word) => EMPTY_WORDS.has(word))) {
    issues.push("generic");
    score -= 60;
  }
  if (text.endsWith("…")) {
    issues.push("cut-off");
    score -= 10;
  }
  if (repeats(words)) {
    issues.push("repetitive");
    score -= 40;
  }
  score = Math.max(0, Math.min(100, score));
  return { score, needsReview: score < REVIEW_BELOW, issues };
};

const repeats = (words: string[]) => {
  const seen = new Map<string, number>();
  for (let i = 0; i + 3 <= words.length; i++) {
    const key = words.slice(i, i + 3).join(" ");
    const count = (seen.get(key) ?? 0) + 1;
    if (count >= 3) return true;
    seen.set(key, count);
  }
  return false;
};
