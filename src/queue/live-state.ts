import { UnreadableLiveState } from "./errors.js";

/**
 * A live job's state as pack_live (common.lua) writes it: MessagePack, twelve strings in this
 * order. Returned as the fields an ended job's hash holds, so one view reads both.
 */
export const LIVE_FIELDS = [
  "state",
  "attempt",
  "hashed",
  "entry",
  "spent",
  "max",
  "created",
  "prio",
  "user",
  "meta",
  "started",
  "owner",
] as const;

/** The states a live value can hold (LIVE_STATE in common.lua); any other is damage. */
const LIVE_STATES = new Set(["queued", "delayed", "running"]);

/**
 * Where the MessagePack string at `at` starts: `bounds[n]` its first byte, `bounds[n + 1]` past its
 * last, as Redis's cmsgpack writes a Lua string (fixstr, str8, str16, str32). False for anything
 * else or a string cut short, as the scripts read such a value as corrupt.
 */
const stringAt = (value: Buffer, at: number, bounds: number[], n: number): boolean => {
  const tag = value[at];
  let length: number;
  let from: number;
  if (tag === undefined) return false;
  if (tag >= 0xa0 && tag <= 0xbf) {
    length = tag - 0xa0;
    from = at + 1;
  } else if (tag === 0xd9 && at + 2 <= value.length) {
    length = value[at + 1]!;
    from = at + 2;
  } else if (tag === 0xda && at + 3 <= value.length) {
    length = value.readUInt16BE(at + 1);
    from = at + 3;
  } else if (tag === 0xdb && at + 5 <= value.length) {
    length = value.readUInt32BE(at + 1);
    from = at + 5;
  } else return false;
  if (from + length > value.length) return false;
  bounds[n] = from;
  bounds[n + 1] = from + length;
  return true;
};

/** The strings of a MessagePack sequence; undefined at anything that is not one (stringAt). */
export const unpackStrings = (value: Buffer): string[] | undefined => {
  const out: string[] = [];
  const bounds: number[] = [];
  for (let at = 0; at < value.length; at = bounds[1]!) {
    if (!stringAt(value, at, bounds, 0)) return undefined;
    out.push(value.toString("utf8", bounds[0], bounds[1]));
  }
  return out;
};

/**
 * The hash-like fields of a live value, empty ones too (they override what a hash written before
 * the live hash may still say); throws UnreadableLiveState for one the scripts read as corrupt.
 */
export const liveFields = (id: string, value: Buffer): Record<string, string> => {
  const strings = unpackStrings(value);
  if (strings === undefined || strings.length !== LIVE_FIELDS.length || !LIVE_STATES.has(strings[0]!)) {
    throw new UnreadableLiveState(id, value.length);
  }
  const fields: Record<string, string> = {};
  LIVE_FIELDS.forEach((name, n) => {
    if (name !== "hashed") fields[name] = strings[n]!;
  });
  return fields;
};

/**
 * Where each of a live value's strings starts and ends: `bounds[2n]`, `bounds[2n + 1]` for the
 * n-th (LIVE_FIELDS order); false for a value that is not twelve MessagePack strings.
 */
export const liveBounds = (value: Buffer, bounds: number[]): boolean => {
  let at = 0;
  for (let n = 0; n < 2 * LIVE_FIELDS.length; n += 2) {
    if (!stringAt(value, at, bounds, n)) return false;
    at = bounds[n + 1]!;
  }
  return at === value.length;
};

/**
 * Number() of the text between two offsets, without making a string of it when it is up to 15
 * ASCII digits (as the scripts write counters and times).
 */
export const numberAt = (value: Buffer, from: number, to: number): number => {
  if (to - from > 15) return Number(value.toString("utf8", from, to));
  let n = 0;
  for (let at = from; at < to; at++) {
    const digit = value[at]! - 48;
    if (digit < 0 || digit > 9) return Number(value.toString("utf8", from, to));
    n = n * 10 + digit;
  }
  return n;
};
