/**
 * Where Redis is and how to reach it, read from one URL so that REDIS_URL alone describes any
 * deployment:
 *
 * - `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS: one server;
 * - `redis+sentinel://[user:password@]host:port,host:port/<master name>[/db]`: the master that
 *   Sentinel names (the credentials are the master's; the sentinels' own password, if any, is
 *   REDIS_SENTINEL_PASSWORD);
 * - `redis+cluster://[user:password@]host:port,host:port`: a Redis Cluster, seeded by those nodes.
 *
 * `rediss+sentinel://` and `rediss+cluster://` use TLS for every connection.
 */
export interface RedisNode {
  readonly host: string;
  readonly port: number;
}

export interface RedisTarget {
  readonly kind: "single" | "sentinel" | "cluster";
  readonly tls: boolean;
  readonly nodes: readonly RedisNode[];
  readonly username: string | undefined;
  readonly password: string | undefined;
  readonly db: number;
  /** The master's name, for Sentinel. */
  readonly masterName: string | undefined;
}

export class RedisUrlError extends Error {
  override name = "RedisUrlError";
}

const SHAPE = /^(redis|rediss)(?:\+(sentinel|cluster))?:\/\/(?:([^@/]*)@)?([^/?#]+)(?:\/([^?#]*))?$/;

const DEFAULT_PORT = { single: 6379, sentinel: 26379, cluster: 6379 } as const;

const decode = (part: string, what: string) => {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new RedisUrlError(`the ${what} in the Redis URL is not valid percent-encoding`);
  }
};

const parseNode = (text: string, defaultPort: number): RedisNode => {
  // `[::1]:6379` for IPv6, `host:port` or `host` otherwise.
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(text);
  const host = match?.[1] ?? match?.[2];
  const port = match?.[3] === undefined ? defaultPort : Number(match[3]);
  if (!host || port < 1 || port > 65_535) {
    throw new RedisUrlError(`"${text}" is not a host[:port]`);
  }
  return { host, port };
};

const parseDb = (text: string | undefined): number => {
  if (text === undefined || text === "") return 0;
  if (!/^\d{1,2}$/.test(text)) throw new RedisUrlError(`"${text}" is not a database number`);
  return Number(text);
};

/** Parses a Redis URL; the error never repeats the password. */
export const parseRedisUrl = (url: string): RedisTarget => {
  const match = SHAPE.exec(url);
  if (!match) {
    throw new RedisUrlError(
      "expected redis://, rediss://, redis+sentinel:// or redis+cluster:// followed by [user:password@]host:port",
    );
  }
  const [, scheme, mode, userinfo, hostList, path] = match;
  const kind = mode === "sentinel" ? "sentinel" : mode === "cluster" ? "cluster" : "single";
  const nodes = hostList!.split(",").map((h) => parseNode(h.trim(), DEFAULT_PORT[kind]));
  if (kind === "single" && nodes.length > 1) {
    throw new RedisUrlError("several hosts need redis+sentinel:// or redis+cluster://");
  }
  let username: string | undefined;
  let password: string | undefined;
  if (userinfo !== undefined && userinfo !== "") {
    const colon = userinfo.indexOf(":");
    const user = colon === -1 ? userinfo : userinfo.slice(0, colon);
    username = user === "" ? undefined : decode(user, "user name");
    password = colon === -1 ? undefined : decode(userinfo.slice(colon + 1), "password");
  }
  const segments = (path ?? "").split("/").filter((s) => s !== "");
  let masterName: string | undefined;
  let db = 0;
  if (kind === "sentinel") {
    masterName = segments[0] === undefined ? undefined : decode(segments[0], "master name");
    if (!masterName) throw new RedisUrlError("redis+sentinel:// needs the master's name: .../<name>");
    db = parseDb(segments[1]);
  } else if (kind === "cluster") {
    if (segments.length > 0) throw new RedisUrlError("a Redis Cluster has only database 0");
  } else {
    if (segments.length > 1) throw new RedisUrlError(`"/${path}" is not a database number`);
    db = parseDb(segments[0]);
  }
  return { kind, tls: scheme === "rediss", nodes, username, password, db, masterName };
};
