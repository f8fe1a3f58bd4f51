import { randomUUID } from "node:crypto";
import type { HttpRequest, HttpResponse } from "uWebSockets.js";

/** An answer with a status, as JSON. Every route returns one; nothing writes to uWS directly. */
export interface Reply {
  readonly status: number;
  readonly body: unknown;
  readonly headers?: Readonly<Record<string, string>>;
  /** The body is text of the given type, sent as it is (not JSON). */
  readonly textType?: string;
  /** Added to the request's log line (say, the task it made), beside the request id. */
  readonly log?: Readonly<Record<string, string>>;
}

export const reply = (status: number, body: unknown, headers?: Record<string, string>): Reply =>
  headers ? { status, body, headers } : { status, body };

export const textReply = (status: number, text: string, type: string): Reply => ({
  status,
  body: text,
  textType: type,
});

/**
 * A refusal with a status and a Vedfolnir-style body (`success: false`, `error`, `error_type`,
 * and any detail fields). Thrown anywhere in a route; the server turns it into the reply.
 */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly errorType: string,
    message: string,
    readonly extra: Readonly<Record<string, unknown>> = {},
    readonly headers?: Readonly<Record<string, string>>,
  ) {
    super(message);
    this.name = "HttpError";
  }

  toReply(): Reply {
    return reply(
      this.status,
      { success: false, error: this.message, error_type: this.errorType, ...this.extra },
      this.headers ? { ...this.headers } : undefined,
    );
  }
}

/** What a route sees of a request: read from uWS at once (its request object dies with the call). */
export interface Request {
  readonly id: string;
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly params: readonly string[];
  header(name: string): string | undefined;
  /** The body as an object: JSON or form-encoded; empty is `{}`. Read once, on demand. */
  body(): Promise<Record<string, unknown>>;
}

const STATUS_TEXT: Record<number, string> = {
  200: "200 OK",
  202: "202 Accepted",
  400: "400 Bad Request",
  401: "401 Unauthorized",
  403: "403 Forbidden",
  404: "404 Not Found",
  405: "405 Method Not Allowed",
  409: "409 Conflict",
  413: "413 Payload Too Large",
  415: "415 Unsupported Media Type",
  426: "426 Upgrade Required",
  500: "500 Internal Server Error",
  503: "503 Service Unavailable",
};

export const statusLine = (status: number): string => STATUS_TEXT[status] ?? `${status} Status`;

/** A caller's request id is kept if it looks like one, so logs line up across services. */
const requestIdFrom = (header: string) => (/^[A-Za-z0-9._:-]{1,128}$/.test(header) ? header : randomUUID());

/** Lower-case header names a route may read; uWS only hands them out during the call. */
const HEADERS = ["authorization", "content-type", "content-length", "x-request-id", "cookie"];

export interface Exchange {
  readonly request: Request;
  /** Writes the reply unless the client went away meanwhile. */
  send(answer: Reply): void;
  readonly aborted: () => boolean;
}

/**
 * Captures a uWS request and wires its response: the body is read through `onData` with a size
 * limit (413 past it, the rest ignored), the answer is written corked, and nothing is written
 * after the client aborted.
 */
export const exchange = (res: HttpResponse, req: HttpRequest, bodyLimitBytes: number): Exchange => {
  const headers = new Map(HEADERS.map((h) => [h, req.getHeader(h)] as const));
  const method = req.getMethod().toUpperCase();
  const path = req.getUrl();
  const query = new URLSearchParams(req.getQuery() ?? "");
  const id = requestIdFrom(headers.get("x-request-id") ?? "");
  let aborted = false;
  let done = false;
  res.onAborted(() => {
    aborted = true;
  });

  // uWS hands the body over only to an onData attached during this call: a route that reads it
  // after an await (a database query, say) would wait forever. So it is read now, for methods that
  // carry one, and kept until asked for.
  const readBody = () =>
    new Promise<Buffer>((resolve, reject) => {
      const declared = Number(headers.get("content-length") || 0);
      if (declared > bodyLimitBytes) {
        reject(tooLarge(bodyLimitBytes));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      let refused = false;
      res.onData((chunk, isLast) => {
        if (refused) return;
        size += chunk.byteLength;
        if (size > bodyLimitBytes) {
          refused = true;
          reject(tooLarge(bodyLimitBytes));
          return;
        }
        // uWS reuses the chunk's memory after this call: copy it.
        chunks.push(Buffer.from(chunk.slice(0)));
        if (isLast) resolve(Buffer.concat(chunks));
      });
    });
  const bodyPromise = method === "GET" || method === "HEAD" ? Promise.resolve(Buffer.alloc(0)) : readBody();
  // A refusal (too large) is answered only if the route asks for the body; never unhandled.
  bodyPromise.catch(() => {});
  const rawBody = () => bodyPromise;

  const request: Request = {
    id,
    method,
    path,
    query,
    params: [],
    header: (name) => headers.get(name.toLowerCase()) || undefined,
    body: async () => parseBody(await rawBody(), headers.get("content-type") ?? ""),
  };

  const send = (answer: Reply) => {
    if (aborted || done) return;
    done = true;
    res.cork(() => {
      res.writeStatus(statusLine(answer.status));
      res.writeHeader("content-type", answer.textType ?? "application/json; charset=utf-8");
      res.writeHeader("x-request-id", id);
      for (const [k, v] of Object.entries(answer.headers ?? {})) res.writeHeader(k, v);
      res.end(answer.textType ? String(answer.body) : JSON.stringify(answer.body));
    });
  };
  return { request, send, aborted: () => aborted };
};

const tooLarge = (limit: number) =>
  new HttpError(413, "payload_too_large", `the request body is larger than ${Math.round(limit / 1024)} KiB`);

const parseBody = (raw: Buffer, contentType: string): Record<string, unknown> => {
  const text = raw.toString("utf8");
  if (text.trim() === "") return {};
  const type = contentType.split(";")[0]?.trim().toLowerCase() ?? "";
  if (type === "application/x-www-form-urlencoded") return Object.fromEntries(new URLSearchParams(text));
  if (type === "application/json" || type === "") {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new HttpError(400, "invalid_json", `the body is not valid JSON: ${(error as Error).message}`);
    }
    if (typeof value !== "object" || value === null || Array.isArray(value))
      throw new HttpError(400, "invalid_json", "the body must be a JSON object");
    return value as Record<string, unknown>;
  }
  throw new HttpError(
    415,
    "unsupported_media_type",
    `send application/json or application/x-www-form-urlencoded, not ${type}`,
  );
};
