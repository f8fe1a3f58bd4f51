import { HttpError, type Reply, type Request } from "./http.js";

export type Handler = (request: Request) => Promise<Reply>;

interface Route {
  readonly method: string;
  readonly pattern: RegExp;
  readonly handler: Handler;
}

/**
 * Routes as `METHOD /path/:param`: parameters are one path segment each, handed to the handler
 * in order. An unknown path is 404 and a known path with another method 405, both as JSON.
 */
export class Router {
  private readonly routes: Route[] = [];

  add(method: string, path: string, handler: Handler): this {
    const source = path
      .split("/")
      .map((part) => (part.startsWith(":") ? "([^/]+)" : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")))
      .join("/");
    this.routes.push({ method, pattern: new RegExp(`^${source}/?$`), handler });
    return this;
  }

  resolve(request: Request): { handler: Handler; params: string[] } {
    let pathMatched = false;
    for (const route of this.routes) {
      const match = route.pattern.exec(request.path);
      if (!match) continue;
      pathMatched = true;
      if (route.method === request.method) {
        return { handler: route.handler, params: match.slice(1).map(decodeSegment) };
      }
    }
    if (pathMatched) throw new HttpError(405, "method_not_allowed", `${request.method} is not allowed here`);
    throw new HttpError(404, "not_found", `no route for ${request.method} ${request.path}`);
  }
}

const decodeSegment = (segment: string) => {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, "bad_request", "a path segment is not valid percent-encoding");
  }
};
