/**
 * Naming a pixel's colour with one of a dozen everyday words. Hue bands beat the nearest entry
 * of an RGB palette here: RGB distance calls a dim blue "black" and a pale red "grey", while
 * people name colours by hue first and only then by lightness.
 */
export const COLOUR_NAMES = [
  "black",
  "grey",
  "white",
  "red",
  "orange",
  "brown",
  "yellow",
  "green",
  "teal",
  "blue",
  "purple",
  "pink",
] as const;
export type ColourName = (typeof COLOUR_NAMES)[number];

/** The name of an sRGB colour given as 0-255 channels. */
export const colourName = (r: number, g: number, b: number): ColourName => {
  const max = Math.max(r, g, b) / 255;
  const min = Math.min(r, g, b) / 255;
  const chroma = max - min;
  const lightness = (max + min) / 2;
  // Too dark or too little colour to have a hue worth naming.
  if (max < 0.12) return "black";
  if (chroma < 0.1 || (chroma < 0.16 && (lightness < 0.2 || lightness > 0.85))) {
    if (lightness < 0.2) return "black";
    return lightness > 0.82 ? "white" : "grey";
  }
  const hue = hueOf(r / 255, g / 255, b / 255, max, chroma);
  if (hue < 15 || hue >= 345) {
    if (lightness > 0.75) return "pink";
    return max < 0.45 ? "brown" : "red";
  }
  if (hue < 45) return max < 0.6 ? "brown" : "orange";
  if (hue < 70) return max < 0.5 ? "brown" : "yellow";
  if (hue < 165) return "green";
  if (hue < 195) return "teal";
  if (hue < 255) return "blue";
  if (hue < 290) return "purple";
  // Magenta hues: dim ones (plum, violet) read as purple, bright ones as pink.
  if (hue < 330 && max < 0.65) return "purple";
  return "pink";
};

/** Hue in degrees, 0-360, of a colour with channels 0-1 and non-zero chroma. */
const hueOf = (r: number, g: number, b: number, max: number, chroma: number) => {
  let h: number;
  if (max === r) h = ((g - b) / chroma) % 6;
  else if (max === g) h = (b - r) / chroma + 2;
  else h = (r - g) / chroma + 4;
  return (h * 60 + 360) % 360;
};
