import sharp from "sharp";
import { describe, expect, it } from "vitest";
import type { CaptionRequest } from "../../src/captions/engine.js";
import { basicEngine } from "../../src/captions/engines/basic.js";
import { colourName } from "../../src/captions/engines/colour-names.js";
import { JobFailure } from "../../src/queue/failures.js";

const request = (jpeg: Buffer, signal = new AbortController().signal): CaptionRequest => ({
  jpeg,
  width: 0,
  height: 0,
  signal,
});

const caption = async (image: Buffer) => {
  const answer = await basicEngine().describe(request(image));
  expect(answer.model).toBe("basic");
  return answer.text;
};

const solid = (width: number, height: number, background: string) =>
  sharp({ create: { width, height, channels: 3, background } });

/** An image from a function of the pixel position, as raw RGB. */
const painted = (
  width: number,
  height: number,
  paint: (x: number, y: number) => [number, number, number],
) => {
  const pixels = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) pixels.set(paint(x, y), (y * width + x) * 3);
  }
  return sharp(pixels, { raw: { width, height, channels: 3 } });
};

describe("basicEngine", () => {
  it("describes a solid blue 800x400 PNG as a plain blue landscape image", async () => {
    const text = await caption(await solid(800, 400, "#0000ff").png().toBuffer());
    expect(text).toBe("A plain blue landscape image, 800 by 400 pixels.");
  });

  it("describes a dark portrait as dark and portrait", async () => {
    // Night sky: dark navy with a slight gradient, 300x600.
    const image = painted(300, 600, (_, y) => [10, 15, 40 + Math.round((y / 600) * 30)]);
    const text = await caption(await image.jpeg().toBuffer());
    expect(text).toMatch(/^A (very )?dark portrait image, /);
    expect(text).toContain("blue");
    expect(text).toContain("300 by 600 pixels");
    expect(text).not.toContain("bright");
  });

  it("names both colours of a half red, half white square, and its contrast", async () => {
    const image = painted(600, 600, (x) => (x < 300 ? [220, 20, 30] : [255, 255, 255]));
    const text = await caption(await image.png().toBuffer());
    // Equal shares: the order depends on which side the boundary's blended column falls.
    expect(text).toMatch(
      /^A high-contrast square image, mostly (red and white|white and red), 600 by 600 pixels\.$/,
    );
  });

  it("describes a bright sky over snow as bright, blue and white", async () => {
    const image = painted(1024, 683, (_, y) => (y < 250 ? [110, 170, 240] : [245, 245, 250]));
    const text = await caption(await image.jpeg().toBuffer());
    expect(text).toBe("A bright landscape image, mostly white and blue, 1024 by 683 pixels.");
  });

  it("says 'many colours' when no colour dominates", async () => {
    const hues: Array<[number, number, number]> = [
      [230, 30, 30],
      [30, 200, 40],
      [40, 60, 230],
      [240, 220, 30],
      [150, 40, 200],
      [30, 30, 30],
      [245, 245, 245],
    ];
    const image = painted(700, 700, (x) => hues[Math.floor(x / 100)]!);
    const text = await caption(await image.png().toBuffer());
    expect(text).toMatch(
      /^A square image, in many colours, among them \w+, \w+ and \w+, 700 by 700 pixels\.$/,
    );
  });

  it("reports the size as displayed, after the EXIF orientation", async () => {
    const image = await solid(400, 200, "#20a020").jpeg().withMetadata({ orientation: 6 }).toBuffer();
    expect(await caption(image)).toBe("A plain green portrait image, 200 by 400 pixels.");
  });

  it("calls wide images panoramic and squares square", async () => {
    expect(await caption(await solid(1000, 300, "#808080").png().toBuffer())).toContain(
      "plain grey panoramic",
    );
    expect(await caption(await solid(200, 600, "#808080").png().toBuffer())).toContain(
      "plain grey tall portrait",
    );
    expect(await caption(await solid(500, 510, "#ffffff").png().toBuffer())).toContain("plain white square");
  });

  it("gives different images different sentences", async () => {
    const texts = await Promise.all(
      ["#000000", "#ff8800", "#ffc0cb"].map(async (c) => caption(await solid(300, 200, c).png().toBuffer())),
    );
    expect(texts).toEqual([
      "A plain black landscape image, 300 by 200 pixels.",
      "A plain orange landscape image, 300 by 200 pixels.",
      "A plain pink landscape image, 300 by 200 pixels.",
    ]);
  });

  it("throws an invalid JobFailure for bytes that are not an image", async () => {
    const error = await basicEngine()
      .describe(request(Buffer.from("this is not a JPEG at all")))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(JobFailure);
    expect((error as JobFailure).kind).toBe("invalid");
    expect((error as JobFailure).message).toMatch(/cannot be decoded/);
  });

  it("throws an invalid JobFailure for a truncated JPEG", async () => {
    const jpeg = await painted(200, 200, (x, y) => [x, y, (x * y) % 256])
      .jpeg()
      .toBuffer();
    const error = await basicEngine()
      .describe(request(jpeg.subarray(0, jpeg.length / 2)))
      .catch((e: unknown) => e);
    expect((error as JobFailure).kind).toBe("invalid");
  });

  it("does no work for an aborted job", async () => {
    const controller = new AbortController();
    controller.abort(new Error("cancelled"));
    const png = await solid(10, 10, "#000").png().toBuffer();
    await expect(basicEngine().describe(request(png, controller.signal))).rejects.toThrow("cancelled");
  });
});

describe("colourName", () => {
  it.each([
    [[0, 0, 255], "blue"],
    [[30, 60, 120], "blue"],
    [[220, 20, 30], "red"],
    [[255, 165, 0], "orange"],
    [[139, 69, 19], "brown"],
    [[255, 230, 0], "yellow"],
    [[0, 128, 0], "green"],
    [[0, 128, 128], "teal"],
    [[128, 0, 128], "purple"],
    [[255, 105, 180], "pink"],
    [[255, 192, 203], "pink"],
    [[128, 128, 128], "grey"],
    [[250, 250, 250], "white"],
    [[12, 12, 12], "black"],
    [[10, 15, 25], "black"],
  ] as const)("names %j %s", ([r, g, b], name) => {
    expect(colourName(r, g, b)).toBe(name);
  });
});
