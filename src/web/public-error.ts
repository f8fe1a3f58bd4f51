import { redactText } from "../log.js";

/** What a user is told of a failed task: a category to act on and a message safe to show. */
export interface PublicFailure {
  readonly category: "timeout" | "unavailable" | "invalid" | "failed";
  readonly message: string;
}

const CATEGORIES: ReadonlyArray<[PublicFailure["category"], RegExp]> = [
  ["timeout", /timed? ?out|deadline|ETIMEDOUT/i],
  ["unavailable", /unavailable|ECONNREFUSED|ENOTFOUND|EAI_AGAIN|\b50[234]\b|not reachable|outage/i],
  ["invalid", /invalid|validation failed|not found|cannot be run|\b4\d\d\b|refused the settings/i],
];

const SQL =
  /\b(select\b[\s\S]*\bfrom|insert\s+into|update\b[\s\S]*\bset|delete\s+from)\b|\bsqlite|\bSQLSTATE\b/i;

/** Said instead of text that would show a query: the full text is in the server's log. */
const IN_THE_LOG = "(the details are in the server log, by task id)";

/**
 * Error text fit to leave the server (the stored text is for the log: it may name internal
 * hosts, files or queries): the first line, URLs cut to their origin, file paths and stack
 * frames removed, query text withheld, secrets redacted, at most `max` characters.
 */
export const safeText = (stored: string | null | undefined, max: number): string => {
  const text = (stored ?? "").split("\n")[0]!.trim();
  if (SQL.test(text)) return `a database error ${IN_THE_LOG}`;
  const safe = redactText(text)
    .replace(/\b(https?):\/\/([^/\s?#]+)[^\s"')]*/gi, "$1://$2")
    .replace(/(^|[\s("'=])(?:[A-Za-z]:)?(?:[\\/][\w.@-]+){2,}(?::\d+){0,2}/g, "$1[path]")
    .replace(/\s+at\s+\S+\s*\(.*$/, "");
  return [...safe].slice(0, max).join("");
};

/** What a task's owner is told of its failure: a category to act on and a safe message. */
export const publicFailure = (stored: string | null | undefined): PublicFailure => {
  const text = (stored ?? "").split("\n")[0]!.trim();
  const category = CATEGORIES.find(([, pattern]) => pattern.test(text))?.[0] ?? "failed";
  if (text === "" || SQL.test(text)) return { category, message: `Caption generation failed ${IN_THE_LOG}` };
  return { category, message: safeText(text, 300) };
};
