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
 * The strings of a MessagePack sequence, as Redis's cmsgpack writes a Lua string (fixstr, str8,
 * str16, str32); undefined at anything else, as the scripts read such a value as corrupt.
 */
export const unpackStrings = (value: Buffer): string[] | undefined => {
  const out: string[] = [];
  let at = 0;
  while (at < value.length) {
    const tag = value[at]!;
    let length: number;
    if (tag >= 0xa0 && tag <= 0xbf) {
      length = tag - 0xa0;
      at += 1;
    } else if (tag === 0xd9 && at + 2 <= value.length) {
      length = value.readUInt8(at + 1);
      at += 2;
    } else if (tag === 0xda && at + 3 <= value.length) {
      length = value.readUInt16BE(at + 1);
      at += 3;
    } else if (tag === 0xdb && at + 5 <= value.length) {
      length = value.readUInt32BE(at + 1);
      at += 5;
    } else return undefined;
    if (at + length > value.length) return undefined;
    out.push(value.toString("utf8", at, at + length));
    at += length;
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
