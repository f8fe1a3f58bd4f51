/**
 * A small client for the Mastodon-compatible REST API, which Mastodon and Pixelfed both serve:
 * who the token belongs to, and which of the account's recent posts have images without alt text.
 *
 * Every failure is a `JobFailure` (src/queue/failures.ts) whose kind decides the retry:
 * - `invalid`: the token was refused (401/403), the account or path does not exist (404), other
 *   4xx, or the answer is not the JSON we expect. Retrying would give the same answer.
 * - `unavailable`: the instance is down or says so (503, connection refused, unknown host) or rate
 *   limits us (429). Worth trying again in minutes, not seconds.
 * - `transient`: other 5xx, connection resets and timeouts. Worth an immediate retry.
 * The caller's own abort is rethrown as is (its `signal.reason`), so the worker can tell
 * "cancelled" from "failed".
 *
 * Messages name the method and path only: never the access token, and never a URL with its
 * query string (pagination cursors and the like do not belong in dead letters or logs).
 */
import { type Either, ParseResult, Schema } from "effect";
import { JobFailure, type FailureKind } from "../queue/failures.js";
import { errorCodes, unreachableCode } from "./network-errors.js";

export type PlatformType = "mastodon" | "pixelfed";

export interface PlatformClientOptions {
  /** `https://mastodon.example` (a trailing slash is dropped). Only http(s). */
  readonly instanceUrl: string;
  readonly accessToken: string;
  /** Both serve the same endpoints; this only names the platform in messages. */
  readonly platform: PlatformType;
  /** Per request, headers and body together. Default 20 s. */
  readonly timeoutMs?: number;
  /** For tests or a proxying agent; defaults to the global `fetch`. */
  readonly fetch?: typeof globalThis.fetch;
}

export interface PlatformAccount {
  readonly id: string;
  readonly username: string;
  readonly acct: string;
}

export interface RecentStatusesOptions {
  /** Stop paging once this many statuses with an image lacking alt text were seen. */
  readonly limit: number;
  readonly signal?: AbortSignal;
  /** Cap on pages fetched (40 statuses each), so a huge account cannot keep a job busy. Default 10. */
  readonly maxPages?: number;
}

export interface PostNeedingAltText {
  readonly post: {
    readonly id: string;
    /** The post's public page (`url`, else its `uri`); null if the instance gives neither. */
    readonly url: string | null;
    /** HTML, as the API returns it. */
    readonly content: string;
    /** ISO 8601, as the API returns it. */
    readonly createdAt: string;
  };
  readonly images: ReadonlyArray<{
    readonly mediaId: string;
    /** The full-size image: the attachment's `url`, else its `remote_url`. */
    readonly url: string;
    readonly previewUrl: string | null;
    /** Null, empty or whitespace: that is why the image is listed. */
    readonly description: string | null;
    /** Position in the post's `media_attachments` (0-based), not among the listed images. */
    readonly index: number;
    readonly mediaType: string;
  }>;
}

export interface PlatformClient {
  readonly platform: PlatformType;
  /** The normalised instance URL (no trailing slash). */
  readonly instanceUrl: string;
  verifyCredentials(signal?: AbortSignal): Promise<PlatformAccount>;
  /**
   * The account's recent statuses with media, newest first, reblogs excluded: every status of
   * the pages fetched (filter them with `imagesNeedingAltText`).
   */
  recentStatuses(accountId: string, options: RecentStatusesOptions): Promise<PlatformStatus[]>;
}

/**
 * A failure from the platform API. The kind is what the retry policy reads; `status` and
 * `retryAfterMs` (from a 429's or 503's Retry-After) are there for a caller that wants to wait
 * exactly as long as the instance asked.
 */
export class PlatformFailure extends JobFailure {
  constructor(
    kind: FailureKind,
    message: string,
    readonly details: {
      readonly status?: number;
      readonly retryAfterMs?: number;
      readonly cause?: unknown;
    } = {},
  ) {
    super(kind, message, { cause: details.cause });
  }
}

// ---------------------------------------------------------------------------------------------
// Response shapes. Only the fields we use are declared; everything else is ignored, because both
// platforms add fields over time and Pixelfed adds its own.

/** Mastodon ids are strings of digits; some Pixelfed versions have sent numbers. Both become strings. */
const Id = Schema.transform(Schema.Union(Schema.String, Schema.Number), Schema.String, {
  strict: true,
  decode: (id) => String(id),
  encode: (id) => id,
});

/** A field that may be missing, null or a string; read as `string | null`. */
const OptionalText = Schema.optionalWith(Schema.NullOr(Schema.String), { default: () => null });

const Account = Schema.Struct({ id: Id, username: Schema.String, acct: Schema.String });

const MediaAttachment = Schema.Struct({
  id: Id,
  // A plain string: "unknown" and future types must not make a whole page unreadable.
  type: Schema.String,
  url: OptionalText,
  preview_url: OptionalText,
  remote_url: OptionalText,
  description: OptionalText,
});

const Status = Schema.Struct({
  id: Id,
  url: OptionalText,
  uri: OptionalText,
  content: Schema.String,
  created_at: Schema.String,
  media_attachments: Schema.Array(MediaAttachment),
});
export type PlatformStatus = typeof Status.Type;

const Statuses = Schema.Array(Status);

const decodeOptions = { onExcessProperty: "ignore", errors: "all" } as const;
const decodeAccount = Schema.decodeUnknownEither(Account, decodeOptions);
const decodeStatuses = Schema.decodeUnknownEither(Statuses, decodeOptions);

// ---------------------------------------------------------------------------------------------

const PAGE_SIZE = 40; // Mastodon's maximum page size; Pixelfed accepts it too.
const DEFAULT_MAX_PAGES = 10;
/** A page of 40 statuses is ~200 KB; anything far larger is not an API answer we want in memory. */
const MAX_BODY_BYTES = 16 * 1024 * 1024;

const platformName = (platform: PlatformType) => (platform === "mastodon" ? "Mastodon" : "Pixelfed");

/** Validates and normalises the instance URL; throws `invalid` (the URL is the user's setting). */
const normaliseInstanceUrl = (raw: string): string => {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch (cause) {
    // Not echoed: a mistyped setting could hold anything, a token included.
    throw new JobFailure("invalid", "the instance URL is not a valid URL", { cause });
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new JobFailure(
      "invalid",
      `the instance URL must be http(s), not ${url.protocol.replace(/:$/, "")}`,
    );
  }
  // fetch refuses URLs with credentials, and a query or fragment would be dropped by the paths we
  // append: reject them here, with a message that says what is wrong.
  if (url.username !== "" || url.password !== "") {
    throw new JobFailure("invalid", "the instance URL must not contain a user name or password");
  }
  if (url.search !== "" || url.hash !== "") {
    throw new JobFailure("invalid", "the instance URL must not have a query or fragment");
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
};

/** Retry-After is seconds or an HTTP date; answers ms, or undefined when absent or unreadable. */
const parseRetryAfter = (value: string | null, now = Date.now()): number | undefined => {
  if (value === null || value.trim() === "") return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
};

/** `[0].media_attachments[1].description` from Effect's issue path. */
const formatPath = (path: ReadonlyArray<PropertyKey>) =>
  path
    .map((key, i) =>
      typeof key === "number" || (typeof key === "string" && /^\d+$/.test(key))
        ? `[${String(key)}]`
        : `${i === 0 ? "" : "."}${String(key)}`,
    )
    .join("") || "(root)";

const truncate = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

export const platformClient = (options: PlatformClientOptions): PlatformClient => {
  const instanceUrl = normaliseInstanceUrl(options.instanceUrl);
  const { accessToken, platform } = options;
  const timeoutMs = options.timeoutMs ?? 20_000;
  const doFetch = options.fetch ?? globalThis.fetch;
  const name = platformName(platform);
  // A token with a line break or other control character cannot go in a header, and fetch's own
  // error for it quotes the header value, token included. Refuse it here with a message of ours.
  if (accessToken === "" || !/^[\x21-\x7e]+$/.test(accessToken)) {
    throw new JobFailure("invalid", "the access token is empty or has characters a header cannot carry");
  }
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new JobFailure("invalid", `timeoutMs must be a positive number, not ${timeoutMs}`);
  }

  /** GET `path` (query kept out of messages) and parse its JSON; every failure is a PlatformFailure. */
  const getJson = async (
    path: string,
    query: URLSearchParams | undefined,
    signal: AbortSignal | undefined,
  ): Promise<{ body: unknown; link: string | null }> => {
    const what = `GET ${path}`;
    // The caller's abort wins over everything else, including errors that happened meanwhile.
    signal?.throwIfAborted();
    const timeout = AbortSignal.timeout(timeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const url = `${instanceUrl}${path}${query ? `?${query.toString()}` : ""}`;

    const failNetwork = (error: unknown): never => {
      if (signal?.aborted) throw signal.reason;
      if (timeout.aborted) {
        throw new PlatformFailure("transient", `${name} did not answer ${what} within ${timeoutMs} ms`, {
          cause: error,
        });
      }
      const codes = errorCodes(error);
      const unreachable = unreachableCode(error);
      if (unreachable) {
        throw new PlatformFailure(
          "unavailable",
          `${name} at ${instanceUrl} is unreachable (${unreachable})`,
          {
            cause: error,
          },
        );
      }
      const code = codes[0] ?? (error instanceof Error ? error.name : "error");
      throw new PlatformFailure("transient", `${what} to ${name} failed (${code})`, { cause: error });
    };

    let response: Response;
    try {
      response = await doFetch(url, {
        method: "GET",
        headers: {
          authorization: `Bearer ${accessToken}`,
          accept: "application/json",
          "user-agent": "Ratatoskr (alt text assistant)",
        },
        // Redirects are followed: fetch drops the Authorization header on a cross-origin redirect,
        // so the token never reaches another host (that answers 401, reported as a refused token).
        redirect: "follow",
        signal: combined,
      });
    } catch (error) {
      return failNetwork(error);
    }

    if (!response.ok) {
      // The body is not needed (and may be a large HTML page); release the connection.
      await response.body?.cancel().catch(() => undefined);
      const status = response.status;
      if (status === 401 || status === 403) {
        // Never the token itself: this message ends up in dead letters and the UI.
        throw new PlatformFailure("invalid", `the access token was refused by ${name} (HTTP ${status})`, {
          status,
        });
      }
      if (status === 429 || status === 503) {
        const retryAfterMs = parseRetryAfter(response.headers.get("retry-after"));
        const after = retryAfterMs === undefined ? "" : `; Retry-After ${Math.ceil(retryAfterMs / 1000)} s`;
        const why = status === 429 ? "rate limited us" : "is unavailable";
        throw new PlatformFailure("unavailable", `${name} ${why} on ${what} (HTTP ${status}${after})`, {
          status,
          ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
        });
      }
      // 408 is the server's own timeout: as transient as ours.
      const kind: FailureKind = status >= 500 || status === 408 ? "transient" : "invalid";
      const why = status === 404 ? "not found" : "failed";
      throw new PlatformFailure(kind, `${what} ${why} on ${name} (HTTP ${status})`, { status });
    }

    let text: string;
    try {
      text = await readBody(response, what);
    } catch (error) {
      if (error instanceof JobFailure) throw error;
      return failNetwork(error);
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (cause) {
      throw new PlatformFailure("invalid", `${name} answered ${what} with malformed JSON`, {
        status: response.status,
        cause,
      });
    }
    return { body, link: response.headers.get("link") };
  };

  /** The body as text, refusing more than MAX_BODY_BYTES without reading it all first. */
  const readBody = async (response: Response, what: string): Promise<string> => {
    const declared = Number(response.headers.get("content-length"));
    if (Number.isFinite(declared) && declared > MAX_BODY_BYTES) {
      await response.body?.cancel().catch(() => undefined);
      throw new PlatformFailure("invalid", `${name} answered ${what} with ${declared} bytes, too many`);
    }
    if (!response.body) return "";
    const reader = response.body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > MAX_BODY_BYTES) {
        await reader.cancel().catch(() => undefined);
        throw new PlatformFailure(
          "invalid",
          `${name} answered ${what} with more than ${MAX_BODY_BYTES} bytes`,
        );
      }
      chunks.push(value);
    }
    return Buffer.concat(chunks).toString("utf8");
  };

  /** Decodes or throws `invalid` naming the first bad fields, e.g. `[3].media_attachments[0].id`. */
  const decoded = <A>(result: Either.Either<A, ParseResult.ParseError>, what: string): A => {
    if (result._tag === "Right") return result.right;
    const issues = ParseResult.ArrayFormatter.formatErrorSync(result.left);
    const shown = issues
      .slice(0, 3)
      .map((issue) => `${formatPath(issue.path)}: ${truncate(issue.message, 120)}`)
      .join("; ");
    const more = issues.length > 3 ? ` (and ${issues.length - 3} more)` : "";
    throw new PlatformFailure(
      "invalid",
      `${name} answered ${what} with an unexpected shape: ${shown}${more}`,
      {
        cause: result.left,
      },
    );
  };

  return {
    platform,
    instanceUrl,

    async verifyCredentials(signal) {
      const path = "/api/v1/accounts/verify_credentials";
      const { body } = await getJson(path, undefined, signal);
      const account = decoded(decodeAccount(body), `GET ${path}`);
      return { id: account.id, username: account.username, acct: account.acct };
    },

    async recentStatuses(accountId, { limit, signal, maxPages = DEFAULT_MAX_PAGES }) {
      if (accountId === "") throw new JobFailure("invalid", "the account id is empty");
      if (!Number.isInteger(limit) || limit < 1) {
        throw new JobFailure("invalid", `limit must be a positive integer, not ${limit}`);
      }
      if (!Number.isInteger(maxPages) || maxPages < 1) {
        throw new JobFailure("invalid", `maxPages must be a positive integer, not ${maxPages}`);
      }
      // The path names the account, never the cursor: messages stay free of query strings.
      const path = `/api/v1/accounts/${encodeURIComponent(accountId)}/statuses`;
      const statuses: PlatformStatus[] = [];
      const seenCursors = new Set<string>();
      let found = 0;
      let maxId: string | undefined;
      for (let page = 0; page < maxPages; page++) {
        const query = new URLSearchParams({
          limit: String(PAGE_SIZE),
          exclude_reblogs: "true",
          // Posts without media cannot need alt text; let the server skip them.
          only_media: "true",
        });
        if (maxId !== undefined) query.set("max_id", maxId);
        const { body, link } = await getJson(path, query, signal);
        const pageStatuses = decoded(decodeStatuses(body), `GET ${path}`);
        statuses.push(...pageStatuses);
        found += pageStatuses.filter(needsAltText).length;
        if (found >= limit || pageStatuses.length === 0) break;

        const next = nextMaxId(link, pageStatuses);
        // No next page, or a server that hands back a cursor it already gave: stop, do not loop.
        if (next === undefined || seenCursors.has(next)) break;
        seenCursors.add(next);
        maxId = next;
      }
      return statuses;
    },
  };
};

/**
 * Where the next page starts. Mastodon's `Link: <...?max_id=X>; rel="next"` is authoritative:
 * present means "there is more from X", a Link header without `next` means "that was all".
 * Only the max_id is taken from it; the link's URL itself is not followed, so a crafted header
 * cannot send our token to another host. Without any Link header (some Pixelfed versions) the
 * last status's id is the cursor.
 */
const nextMaxId = (link: string | null, page: readonly PlatformStatus[]): string | undefined => {
  if (link !== null && link.trim() !== "") {
    for (const part of link.split(",")) {
      const match = /<([^>]*)>\s*;(.*)/.exec(part.trim());
      // rel may hold several space-separated relations: `rel="next"`, `rel=next`, `rel="prev next"`.
      const rel = /\brel\s*=\s*"?([^";]*)"?/i.exec(match?.[2] ?? "")?.[1] ?? "";
      if (!match || !rel.toLowerCase().split(/\s+/).includes("next")) continue;
      try {
        const cursor = new URL(match[1] ?? "", "http://link.invalid").searchParams.get("max_id");
        if (cursor) return cursor;
      } catch {
        // An unreadable link: fall back to the last id below.
      }
      return page.at(-1)?.id;
    }
    return undefined;
  }
  return page.at(-1)?.id;
};

/** Images only: videos, gifv and audio get their descriptions elsewhere (or not from a captioner). */
const isImageLackingAltText = (media: PlatformStatus["media_attachments"][number]) =>
  media.type === "image" &&
  (media.description === null || media.description.trim() === "") &&
  (media.url ?? media.remote_url) !== null;

const needsAltText = (status: PlatformStatus) => status.media_attachments.some(isImageLackingAltText);

/**
 * The posts (at most `maxPosts`, in the given order: newest first as the API returns them) that
 * have at least one image without alt text, with just those images. Pure: no I/O.
 */
export const imagesNeedingAltText = (
  statuses: readonly PlatformStatus[],
  maxPosts: number,
): PostNeedingAltText[] => {
  const posts: PostNeedingAltText[] = [];
  for (const status of statuses) {
    if (posts.length >= maxPosts) break;
    const images = status.media_attachments.flatMap((media, index) => {
      // An image with neither url nor remote_url cannot be fetched, so it is not listed.
      const url = media.url ?? media.remote_url;
      return isImageLackingAltText(media) && url !== null
        ? [
            {
              mediaId: media.id,
              url,
              previewUrl: media.preview_url,
              description: media.description,
              index,
              mediaType: media.type,
            },
          ]
        : [];
    });
    if (images.length === 0) continue;
    posts.push({
      post: {
        id: status.id,
        url: status.url ?? status.uri,
        content: status.content,
        createdAt: status.created_at,
      },
      images,
    });
  }
  return posts;
};
