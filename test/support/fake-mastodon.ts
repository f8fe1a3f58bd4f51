/**
 * A real HTTP server that speaks the part of the Mastodon API Ratatoskr uses (Pixelfed serves the
 * same endpoints), for tests: never a mocked fetch, so timeouts, resets, headers and pagination
 * go through the same stack as in production.
 *
 * ```ts
 * const server = await startFakeMastodon({
 *   token: "secret",
 *   account: { id: "1", username: "alice" },
 *   statuses: [fakeStatus({ id: "30", images: [{ mediaId: "300", file: "photo.jpg" }] })],
 *   images: { "photo.jpg": { bytes: jpegBuffer, contentType: "image/jpeg" } },
 * });
 * // server.url is http://127.0.0.1:<port>; attachment urls point at `${server.url}/media/<file>`.
 * server.setFault("/api/v1/accounts/1/statuses", { kind: "status", status: 503, times: 1 });
 * ...
 * await server.close();
 * ```
 *
 * Endpoints:
 * - `GET /api/v1/accounts/verify_credentials` — the account (401 on a wrong or missing token).
 * - `GET /api/v1/accounts/:id/statuses` — `limit` (default 20, at most 40), `max_id`, `min_id`,
 *   `only_media`, `exclude_reblogs`; newest first; `Link` headers like Mastodon's (a `next` link
 *   only when the page was full) unless `linkHeaders: false` (as some Pixelfed versions). 404 for
 *   an account other than `account.id`.
 * - `PUT /api/v1/media/:id` — sets `description` (JSON or form body) on that attachment, as a
 *   client would to write alt text back; the next GET of statuses shows it.
 * - `GET /media/<file>` — the bytes of `images[file]` (no token needed, as on a CDN).
 * Everything else is a 404. Every request is recorded in `requests`, faults included.
 */
import { once } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface FakeImageFile {
  readonly bytes: Buffer;
  readonly contentType: string;
}

export interface FakeMedia {
  readonly mediaId: string;
  /** Alt text; missing or null means none (served as null). */
  readonly description?: string | null;
  /** A key of `images`; the attachment's url is `<server>/media/<file>`. Default "photo.jpg". */
  readonly file?: string;
  /** Default "image". */
  readonly type?: "image" | "video" | "gifv" | "audio" | "unknown";
  /** Serve `url: null` and the file's address as `remote_url` instead (remote media not cached). */
  readonly remoteOnly?: boolean;
}

export interface FakeStatusInput {
  /** Digits, like Mastodon's snowflake ids: ordering and max_id compare them as numbers. */
  readonly id: string;
  readonly images?: readonly FakeMedia[];
  /** HTML. Default `<p>Post <id></p>`. */
  readonly content?: string;
  /** ISO 8601. Default derived from the id, so larger ids are newer. */
  readonly createdAt?: string;
  /** A reblog: hidden by `exclude_reblogs=true`. */
  readonly reblog?: boolean;
}

/** A status as the fake serves it, before its media paths become absolute URLs. */
export interface FakeStatus {
  readonly id: string;
  readonly content: string;
  readonly createdAt: string;
  readonly reblog: boolean;
  readonly media: FakeMedia[];
}

/** Builds a status for `startFakeMastodon({ statuses })`. */
export const fakeStatus = (input: FakeStatusInput): FakeStatus => {
  if (!/^\d+$/.test(input.id)) throw new Error(`fake status ids are digits, like Mastodon's: ${input.id}`);
  return {
    id: input.id,
    content: input.content ?? `<p>Post ${input.id}</p>`,
    createdAt: input.createdAt ?? new Date(Date.UTC(2026, 0, 1) + Number(input.id) * 60_000).toISOString(),
    reblog: input.reblog ?? false,
    media: (input.images ?? []).map((m) => ({ ...m })),
  };
};

/**
 * What to do instead of (or before) answering requests under a path prefix. `times` limits it to
 * the next n matching requests (default: until cleared), so retry paths can be tested.
 * - `status`: answer that HTTP status (500, 503, 404, 429 ...) with `retryAfter` as Retry-After;
 * - `delay`: wait `ms`, then answer normally (a slow instance; a client timeout aborts it);
 * - `malformed`: 200 with a body that is not JSON;
 * - `json`: 200 with this body (a wrong shape);
 * - `reset`: destroy the connection without answering.
 */
export type FakeFault = (
  | { readonly kind: "status"; readonly status: number; readonly retryAfter?: string | number }
  | { readonly kind: "delay"; readonly ms: number }
  | { readonly kind: "malformed" }
  | { readonly kind: "json"; readonly body: unknown }
  | { readonly kind: "reset" }
) & { readonly times?: number };

export interface FakeRequest {
  readonly method: string;
  /** Path and query as sent, e.g. `/api/v1/accounts/1/statuses?limit=40&max_id=9`. */
  readonly path: string;
  readonly pathname: string;
  readonly query: URLSearchParams;
  /** The Authorization header, or undefined when absent. */
  readonly authorization: string | undefined;
}

export interface FakeMastodonOptions {
  readonly token: string;
  readonly account: { readonly id: string; readonly username: string };
  /** In any order; served newest (largest id) first. */
  readonly statuses: readonly FakeStatus[];
  /** File name -> bytes, served at `/media/<file>`. */
  readonly images?: Readonly<Record<string, FakeImageFile>>;
  /** Send Mastodon-style Link headers (default true); false makes clients page by the last id. */
  readonly linkHeaders?: boolean;
}

export interface FakeMastodon {
  /** `http://127.0.0.1:<port>`, no trailing slash. */
  readonly url: string;
  readonly requests: FakeRequest[];
  /** Sets (or with null, clears) the fault for requests whose path starts with `pathPrefix`. */
  setFault(pathPrefix: string, fault: FakeFault | null): void;
  clearFaults(): void;
  /** Replace the statuses served from now on. */
  setStatuses(statuses: readonly FakeStatus[]): void;
  /** The current description of a media attachment (after any PUT), or undefined if unknown. */
  descriptionOf(mediaId: string): string | null | undefined;
  close(): Promise<void>;
}

const compareIdsDesc = (a: FakeStatus, b: FakeStatus) => {
  const x = BigInt(a.id);
  const y = BigInt(b.id);
  return x === y ? 0 : x > y ? -1 : 1;
};

const sendJson = (
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
) => {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
};

const readBody = async (req: IncomingMessage): Promise<string> => {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
};

export const startFakeMastodon = async (options: FakeMastodonOptions): Promise<FakeMastodon> => {
  let statuses = [...options.statuses].sort(compareIdsDesc);
  const images = options.images ?? {};
  const linkHeaders = options.linkHeaders ?? true;
  const requests: FakeRequest[] = [];
  const faults = new Map<string, { fault: FakeFault; left: number }>();
  // Descriptions written by PUT /api/v1/media/:id override those the statuses were built with.
  const descriptions = new Map<string, string | null>();
  let base = "";

  const mediaJson = (m: FakeMedia) => {
    const file = m.file ?? "photo.jpg";
    const address = `${base}/media/${encodeURIComponent(file)}`;
    return {
      id: m.mediaId,
      type: m.type ?? "image",
      url: m.remoteOnly ? null : address,
      preview_url: `${address}?preview=1`,
      remote_url: m.remoteOnly ? address : null,
      description: descriptions.has(m.mediaId) ? descriptions.get(m.mediaId) : (m.description ?? null),
      blurhash: null,
      meta: null,
    };
  };

  const statusJson = (s: FakeStatus) => ({
    id: s.id,
    created_at: s.createdAt,
    uri: `${base}/users/${options.account.username}/statuses/${s.id}`,
    url: `${base}/@${options.account.username}/${s.id}`,
    content: s.content,
    visibility: "public",
    sensitive: false,
    spoiler_text: "",
    reblog: s.reblog ? { id: `9${s.id}`, content: "<p>someone else's post</p>" } : null,
    account: accountJson(),
    media_attachments: s.media.map(mediaJson),
    mentions: [],
    tags: [],
  });

  const accountJson = () => ({
    id: options.account.id,
    username: options.account.username,
    acct: options.account.username,
    display_name: options.account.username,
    url: `${base}/@${options.account.username}`,
  });

  /** The longest matching prefix's fault, counting down `times`. */
  const takeFault = (pathname: string): FakeFault | undefined => {
    let best: string | undefined;
    for (const prefix of faults.keys()) {
      if (pathname.startsWith(prefix) && (best === undefined || prefix.length > best.length)) best = prefix;
    }
    if (best === undefined) return undefined;
    const entry = faults.get(best)!;
    entry.left -= 1;
    if (entry.left <= 0) faults.delete(best);
    return entry.fault;
  };

  const authorised = (req: IncomingMessage) => req.headers.authorization === `Bearer ${options.token}`;

  const listStatuses = (res: ServerResponse, accountId: string, query: URLSearchParams) => {
    if (accountId !== options.account.id) return sendJson(res, 404, { error: "Record not found" });
    const limit = Math.min(40, Math.max(1, Number(query.get("limit") ?? 20) || 20));
    const maxId = query.get("max_id");
    const minId = query.get("min_id");
    const page = statuses
      .filter((s) => maxId === null || BigInt(s.id) < BigInt(maxId))
      .filter((s) => minId === null || BigInt(s.id) > BigInt(minId))
      .filter((s) => query.get("only_media") !== "true" || s.media.length > 0)
      .filter((s) => query.get("exclude_reblogs") !== "true" || !s.reblog)
      .slice(0, limit);
    const headers: Record<string, string> = {};
    if (linkHeaders && page.length > 0) {
      // Like Mastodon: `next` only when the page was full, `prev` always; both keep the filters.
      const link = (key: string, id: string) => {
        const q = new URLSearchParams(query);
        q.delete("max_id");
        q.delete("min_id");
        q.set(key, id);
        return `${base}/api/v1/accounts/${accountId}/statuses?${q.toString()}`;
      };
      const parts = [];
      if (page.length === limit) parts.push(`<${link("max_id", page.at(-1)!.id)}>; rel="next"`);
      parts.push(`<${link("min_id", page[0]!.id)}>; rel="prev"`);
      headers.link = parts.join(", ");
    }
    sendJson(res, 200, page.map(statusJson), headers);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const target = new URL(req.url ?? "/", "http://fake.invalid");
    const { pathname } = target;
    requests.push({
      method: req.method ?? "GET",
      path: `${pathname}${target.search}`,
      pathname,
      query: target.searchParams,
      authorization: req.headers.authorization,
    });

    const fault = takeFault(pathname);
    if (fault) {
      switch (fault.kind) {
        case "status": {
          const headers: Record<string, string> =
            fault.retryAfter === undefined ? {} : { "retry-after": String(fault.retryAfter) };
          return sendJson(res, fault.status, { error: `fault ${fault.status}` }, headers);
        }
        case "delay":
          await new Promise((resolve) => setTimeout(resolve, fault.ms));
          if (res.destroyed) return;
          break;
        case "malformed":
          res.writeHead(200, { "content-type": "application/json" });
          return res.end('[{"id": "1", "content": "<p>cut off');
        case "json":
          return sendJson(res, 200, fault.body);
        case "reset":
          return req.socket.destroy();
      }
    }

    const media = /^\/media\/([^/]+)$/.exec(pathname);
    if (req.method === "GET" && media) {
      const file = images[decodeURIComponent(media[1]!)];
      if (!file) return sendJson(res, 404, { error: "Record not found" });
      res.writeHead(200, { "content-type": file.contentType, "content-length": String(file.bytes.length) });
      return res.end(file.bytes);
    }

    if (!pathname.startsWith("/api/")) return sendJson(res, 404, { error: "Not found" });
    if (!authorised(req)) return sendJson(res, 401, { error: "The access token is invalid" });

    if (req.method === "GET" && pathname === "/api/v1/accounts/verify_credentials") {
      return sendJson(res, 200, accountJson());
    }
    const list = /^\/api\/v1\/accounts\/([^/]+)\/statuses$/.exec(pathname);
    if (req.method === "GET" && list)
      return listStatuses(res, decodeURIComponent(list[1]!), target.searchParams);

    const put = /^\/api\/v1\/media\/([^/]+)$/.exec(pathname);
    if (req.method === "PUT" && put) {
      const id = decodeURIComponent(put[1]!);
      const found = statuses.flatMap((s) => s.media).find((m) => m.mediaId === id);
      if (!found) return sendJson(res, 404, { error: "Record not found" });
      const raw = await readBody(req);
      const description = (req.headers["content-type"] ?? "").includes("json")
        ? (JSON.parse(raw) as { description?: string }).description
        : (new URLSearchParams(raw).get("description") ?? undefined);
      if (description !== undefined) descriptions.set(id, description);
      return sendJson(res, 200, mediaJson(found));
    }
    sendJson(res, 404, { error: "Not found" });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: String(error) });
      else res.destroy();
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url: base,
    requests,
    setFault(pathPrefix, fault) {
      if (fault === null) faults.delete(pathPrefix);
      else faults.set(pathPrefix, { fault, left: fault.times ?? Number.POSITIVE_INFINITY });
    },
    clearFaults: () => faults.clear(),
    setStatuses(next) {
      statuses = [...next].sort(compareIdsDesc);
    },
    descriptionOf(mediaId) {
      if (descriptions.has(mediaId)) return descriptions.get(mediaId);
      const found = statuses.flatMap((s) => s.media).find((m) => m.mediaId === mediaId);
      return found ? (found.description ?? null) : undefined;
    },
    async close() {
      // Slow-fault requests would otherwise keep close() waiting for their sockets.
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((e) => (e ? reject(e) : resolve())));
    },
  };
};
