import { describe, expect, it } from "vitest";
import { captionQuality, cleanCaption, REVIEW_BELOW } from "../../src/captions/clean.js";
import { JobFailure } from "../../src/queue/failures.js";

const clean = (raw: string, maxLength = 500) => cleanCaption(raw, { maxLength });
const S = " (AI-generated)";

describe("cleanCaption: shape", () => {
  it("takes the first line with words and appends the suffix", () => {
    expect(clean("\n\n  A dog runs on a beach.\nIt is sunny.\n")).toBe(`A dog runs on a beach.${S}`);
  });

  it("skips a preamble line that ends with a colon", () => {
    expect(clean("Sure! Here is the alt text:\n\nA cat asleep on a red sofa.")).toBe(
      `A cat asleep on a red sofa.${S}`,
    );
    // ...but a lone line ending with a colon is the caption.
    expect(clean("Ingredients on a table:")).toBe(`Ingredients on a table.${S}`);
  });

  it.each([
    ['"A red bicycle leaning on a wall."', "A red bicycle leaning on a wall."],
    ["“A red bicycle”", "A red bicycle."],
    ["'A red bicycle'.", "A red bicycle."],
    ['A sign reading "Stop".', 'A sign reading "Stop".'],
    ['"Stop" and "Go" signs', '"Stop" and "Go" signs.'],
  ])("strips quotes around the whole caption only: %s", (raw, expected) => {
    expect(clean(raw)).toBe(`${expected}${S}`);
  });

  it("strips markdown emphasis, bullets and labels, but not underscores in words", () => {
    expect(clean("**A dog** on a _sunny_ beach")).toBe(`A dog on a sunny beach.${S}`);
    expect(clean("- *Alt text:* A heron in a pond")).toBe(`A heron in a pond.${S}`);
    expect(clean("A terminal showing my_file_name.txt")).toBe(`A terminal showing my_file_name.txt.${S}`);
  });

  it.each([
    ["This image shows a cat sleeping.", "A cat sleeping."],
    ["The image depicts two people on a bench", "Two people on a bench."],
    ["the picture appears to show a foggy harbour.", "A foggy harbour."],
    ["Image of a sunset over hills", "A sunset over hills."],
    ["An image of a sunset over hills", "A sunset over hills."],
    ["In this photo, a boy flies a kite.", "A boy flies a kite."],
    ["The image is a close-up of a bee.", "A close-up of a bee."],
    ["I can see three ducks.", "Three ducks."],
    ['"This image shows: **a lighthouse** at dusk"', "A lighthouse at dusk."],
    ["This screenshot shows a post about trains.", "Screenshot of a post about trains."],
    ["A photographer holds a camera.", "A photographer holds a camera."],
    ["A shot of espresso on a saucer.", "A shot of espresso on a saucer."],
  ])("strips a leading phrase: %s", (raw, expected) => {
    expect(clean(raw)).toBe(`${expected}${S}`);
  });

  it("capitalises, except brand names like iPhone", () => {
    expect(clean("a dog")).toBe(`A dog.${S}`);
    expect(clean("iPhone on a desk")).toBe(`iPhone on a desk.${S}`);
  });

  it("collapses whitespace and replaces trailing commas with a full stop", () => {
    expect(clean("A   dog \t on  a  beach ,")).toBe(`A dog on a beach.${S}`);
  });

  it("keeps ending punctuation", () => {
    expect(clean("A sign that says hello!")).toBe(`A sign that says hello!${S}`);
    expect(clean('A banner reading "Why not?"')).toBe(`A banner reading "Why not?"${S}`);
    expect(clean("A path into the fog…")).toBe(`A path into the fog…${S}`);
  });

  it("uses a custom suffix, or none", () => {
    expect(cleanCaption("A dog", { maxLength: 100, suffix: " [auto]" })).toBe("A dog. [auto]");
    expect(cleanCaption("A dog", { maxLength: 100, suffix: "" })).toBe("A dog.");
  });

  it.each(["", "   \n\t ", '""', "**", "...", "This image shows:"])(
    "throws a transient JobFailure for an empty caption: %j",
    (raw) => {
      const error = (() => {
        try {
          clean(raw);
        } catch (e) {
          return e;
        }
      })();
      expect(error).toBeInstanceOf(JobFailure);
      expect((error as JobFailure).kind).toBe("transient");
      expect((error as JobFailure).message).toBe("the model gave an empty caption");
    },
  );

  it("refuses a maxLength with no room beside the suffix", () => {
    expect(() => cleanCaption("A dog", { maxLength: 10 })).toThrow(RangeError);
  });
});

describe("cleanCaption: length", () => {
  const twoSentences = "A dog runs on the beach. It chases a ball near the water at sunset.";

  it("cuts at the last sentence end that fits", () => {
    // 50 - 15 for the suffix leaves 35: the first sentence (24) fits, the second does not.
    expect(cleanCaption(twoSentences, { maxLength: 50 })).toBe(`A dog runs on the beach.${S}`);
  });

  it("cuts at a word boundary with an ellipsis when no sentence end fits", () => {
    const result = cleanCaption("A very long single sentence describing many small things", {
      maxLength: 40,
    });
    expect(result).toBe(`A very long single…${S}`);
    expect(result.length).toBeLessThanOrEqual(40);
  });

  it("drops a comma before the ellipsis", () => {
    expect(cleanCaption("Red apples, green pears and yellow bananas in a bowl", { maxLength: 30 })).toBe(
      `Red apples…${S}`,
    );
  });

  it("keeps a caption of exactly maxLength whole, and cuts one a character longer", () => {
    const text = "A brown dog sleeps on a green rug by the fire."; // 46
    expect(cleanCaption(text, { maxLength: 46 + S.length })).toBe(`${text}${S}`);
    expect(cleanCaption(text, { maxLength: 46 + S.length }).length).toBe(46 + S.length);
    expect(cleanCaption(text, { maxLength: 45 + S.length })).toBe(
      `A brown dog sleeps on a green rug by the…${S}`,
    );
  });

  it("cuts a single overlong word hard, without splitting an emoji", () => {
    expect(cleanCaption("Supercalifragilisticexpialidocious", { maxLength: 25 })).toBe(`Supercali…${S}`);
    const emoji = cleanCaption(`Dogs${"🐶".repeat(20)}`, { maxLength: 24, suffix: "" });
    // 23 units of room before the ellipsis: "Dogs" and 9 dogs, not 9 and a half.
    expect(emoji).toBe(`Dogs${"🐶".repeat(9)}…`);
  });

  it("never exceeds maxLength, whatever the text", () => {
    const words = ["a", "dog.", "runs,", "beautifully", "on", "the", "beach!", "supercalifragilistic", "x"];
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 300; i++) {
      const n = 1 + Math.floor(random() * 40);
      const text = Array.from({ length: n }, () => words[Math.floor(random() * words.length)]).join(" ");
      const maxLength = 17 + Math.floor(random() * 120);
      const result = cleanCaption(text, { maxLength });
      expect(result.length, `${text} @ ${maxLength}`).toBeLessThanOrEqual(maxLength);
      expect(result.endsWith(S)).toBe(true);
      expect(result.slice(0, -S.length)).toMatch(/[.!?…]$/);
    }
  });
});

describe("captionQuality", () => {
  const range = { optimalMin: 40, optimalMax: 120 };

  it("scores a caption in the optimal range 100", () => {
    expect(captionQuality(`A heron stands in shallow water at the edge of a reed bed.${S}`, range)).toEqual({
      score: 100,
      needsReview: false,
      issues: [],
    });
  });

  it("does not count the suffix towards the length", () => {
    const text = "A heron stands in shallow water today."; // 38 < 40
    expect(captionQuality(`${text}${S}`, range).issues).toEqual(["too-short"]);
  });

  it("flags generic captions for review", () => {
    const quality = captionQuality(`An image.${S}`, range);
    expect(quality.issues).toContain("generic");
    expect(quality.needsReview).toBe(true);
  });

  it("flags very short captions for review but barely penalises slightly short ones", () => {
    const short = captionQuality("A dog.", range);
    expect(short.issues).toEqual(["too-short", "few-words"]);
    expect(short.needsReview).toBe(true);
    const nearly = captionQuality("A small brown dog sits on a porch.", range); // 34 chars
    expect(nearly.score).toBe(94);
    expect(nearly.needsReview).toBe(false);
  });

  it("penalises length over the range, up to 30 at twice the maximum", () => {
    const words = Array.from({ length: 100 }, (_, i) => `heron${i}`).join(" ");
    const long = (n: number) => `A ${words}`.slice(0, n);
    expect(captionQuality(long(180), range).score).toBe(85);
    expect(captionQuality(long(240), range).score).toBe(70);
    expect(captionQuality(long(400), range).score).toBe(70);
    expect(captionQuality(long(400), range).issues).toContain("too-long");
  });

  it("flags a looping model and a cut-off caption", () => {
    const loop = captionQuality("A dog on a dog on a dog on a dog on a beach.", range);
    expect(loop.issues).toContain("repetitive");
    expect(loop.needsReview).toBe(true);
    const cut = captionQuality(`A heron stands in shallow water at the edge of a reed…${S}`, range);
    expect(cut.issues).toEqual(["cut-off"]);
    expect(cut.score).toBe(90);
  });

  it("reviews below the documented threshold", () => {
    expect(REVIEW_BELOW).toBe(70);
    const score = captionQuality("A heron.", range);
    expect(score.needsReview).toBe(score.score < 70);
  });
});
