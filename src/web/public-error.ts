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

/**
 * The user-facing form of a task's stored error. The stored text is for operators (the admin
 * API shows it): it may name internal hosts, files or queries. Users get its first line with
 * URLs cut to their origin, file paths and query text removed, and secrets redacted.
 */
export const publicFailure = (stored: string | null | undefined): PublicFailure => {
  const text = (stored ?? "").split("\n")[0]!.trim();
  const category = CATEGORIES.find(([, pattern]) => pattern.test(text))?.[0] ?? "failed";
  if (text === "" || SQL.test(text)) {
    return { category, message: "Caption generation failed (the details are in the server log)" };
  }
  const safe = redactText(text)
    .replace(/\b(https?):\/\/([^/\s?#]+)[^\s"')]*/gi, "$1://$2")
    .replace(/(^|[\s("'=])(?:[A-Za-z]:)?(?:[\\/][\w.@-]+){2,}(?::\d+){0,2}/g, "$1[path]")
    .replace(/\s+at\s+\S+\s*\(.*$/, "");
  return { category, message: [...safe].slice(0, 300).join("") };
};
