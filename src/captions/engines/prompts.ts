/**
 * Prompts for vision models. Alt text is read aloud by screen readers after the words "image" or
 * "graphic", so the prompt asks for the content only: no "image of", no preamble, no guessing.
 */
export const DEFAULT_PROMPT = [
  "Write alt text for this image for a blind or low-vision reader of a social media post.",
  "In one or two short sentences, say what is in the image: the main subject, what it is doing and",
  "the setting, with any important text in the image quoted exactly.",
  "Mention the kind of image only if it matters, such as a screenshot, chart or drawing.",
  "Be concise and factual: do not guess who people are or what they feel, and do not begin with",
  '"image of", "picture of" or "this image shows". Answer with the alt text only.',
].join(" ");

/** Asked when the model answered the full prompt with nothing: small models cope with this one. */
export const FALLBACK_PROMPT = "Describe this image in one short sentence.";
