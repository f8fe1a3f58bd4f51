import sharp from "sharp";
import { invalidInput } from "../../queue/failures.js";
import { COLOUR_NAMES, type ColourName, colourName } from "./colour-names.js";

export interface ImageMeasures {
  /** As displayed, i.e. after the EXIF orientation. */
  readonly width: number;
  readonly height: number;
  /** Colour names by share of the image, largest first, shares 0-1; names with no pixels left out. */
  readonly colours: ReadonlyArray<{ readonly name: ColourName; readonly share: number }>;
  /** Mean luma, 0 (black) to 255 (white). */
  readonly brightness: number;
  /** Standard deviation of luma: near 0 for a flat image, ~128 for half black, half white. */
  readonly contrast: number;
}

/** 32x32 samples are 1024 pixels: enough for shares to the percent, cheap for any input size. */
const SAMPLE = 32;

/**
 * What the pixels of an image say without a model. Shrinking averages neighbouring pixels, so
 * the colours counted are those of regions, not of single noisy pixels.
 * Undecodable bytes are an invalid input: no retry will decode them.
 */
export const measureImage = async (bytes: Buffer): Promise<ImageMeasures> => {
  let width: number;
  let height: number;
  let pixels: Buffer;
  try {
    const image = sharp(bytes, { failOn: "error" });
    const meta = await image.metadata();
    ({ width, height } = meta.autoOrient);
    // Transparent areas count as white, as most clients show them on a light background.
    pixels = await image
      .flatten({ background: "#ffffff" })
      .resize(SAMPLE, SAMPLE, { fit: "fill" })
      .toColourspace("srgb")
      .removeAlpha()
      .raw()
      .toBuffer();
  } catch (error) {
    throw invalidInput(
      `the image cannot be decoded: ${error instanceof Error ? error.message : error}`,
      error,
    );
  }

  const counts = new Map<ColourName, number>();
  let sum = 0;
  let sumSquares = 0;
  const n = pixels.length / 3;
  for (let i = 0; i < pixels.length; i += 3) {
    const r = pixels[i]!;
    const g = pixels[i + 1]!;
    const b = pixels[i + 2]!;
    const name = colourName(r, g, b);
    counts.set(name, (counts.get(name) ?? 0) + 1);
    const luma = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    sum += luma;
    sumSquares += luma * luma;
  }
  const brightness = sum / n;
  const contrast = Math.sqrt(Math.max(0, sumSquares / n - brightness * brightness));
  // Ties keep the palette's order, so the same image always gets the same sentence.
  const colours = COLOUR_NAMES.filter((name) => counts.has(name))
    .map((name) => ({ name, share: counts.get(name)! / n }))
    .sort((a, b) => b.share - a.share);
  return { width, height, colours, brightness, contrast };
};
