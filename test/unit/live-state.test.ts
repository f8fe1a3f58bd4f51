import { describe, expect, it } from "vitest";
import { LIVE_FIELDS, liveBounds, numberAt } from "../../src/queue/live-state.js";
import { packStrings } from "../support/live-state.js";

describe("reading a claimed job's live state from its bytes", () => {
  const strings = (value: Buffer, bounds: number[]) =>
    LIVE_FIELDS.map((_, n) => value.toString("utf8", bounds[2 * n], bounds[2 * n + 1]));

  it("finds each of the twelve strings, of every MessagePack string size", () => {
    const values = [
      "running",
      "7",
      "0",
      "1764547200000-3",
      "2",
      "4",
      "1764547200000",
      "high",
      "",
      "ü".repeat(20),
    ];
    values.push("x".repeat(300), "y".repeat(70_000));
    const bounds: number[] = [];
    const packed = packStrings(values);
    expect(liveBounds(packed, bounds)).toBe(true);
    expect(strings(packed, bounds)).toEqual(values);
  });

  it("refuses eleven or thirteen strings, a cut value and a head that is no string", () => {
    const twelve = packStrings(LIVE_FIELDS.map((name) => name));
    expect(liveBounds(twelve, [])).toBe(true);
    expect(liveBounds(packStrings(LIVE_FIELDS.slice(1)), [])).toBe(false);
    expect(liveBounds(packStrings([...LIVE_FIELDS, "extra"]), [])).toBe(false);
    expect(liveBounds(twelve.subarray(0, twelve.length - 1), [])).toBe(false);
    expect(liveBounds(Buffer.concat([Buffer.from([0x01]), twelve.subarray(1)]), [])).toBe(false);
  });

  it("reads a number as Number() reads its text", () => {
    const at = (text: string) => numberAt(Buffer.from(`(${text})`), 1, 1 + Buffer.byteLength(text));
    for (const text of [
      "0",
      "42",
      "999999999999999",
      "1764547200000",
      "",
      "1234567890123456",
      "12a",
      "-3",
      "1e3",
    ]) {
      expect(at(text)).toBe(Number(text));
    }
  });
});
