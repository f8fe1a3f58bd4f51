import { readdirSync, readFileSync } from "node:fs";
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";

/**
 * The demo's post source: a local HTTP server that answers the part of the Mastodon API the
 * caption pipeline calls (Pixelfed serves the same), with accounts whose recent posts carry the
 * sample photos in `demo/images` without alt text. The pipeline talks to it exactly as to a real
 * instance, so the demo runs the real thing offline.
 */
export interface SampleAccount {
  readonly id: string;
  readonly username: string;
  readonly token: string;
  /** Each post's photos, as file names in `demo/images`. */
  readonly posts: ReadonlyArray<ReadonlyArray<string>>;
}

export interface SampleInstance {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  close(): Promise<void>;
}

export const SAMPLE_IMAGES_DIR = fileURLToPath(new URL("../../demo/images/", import.meta.url));

/** The sample photos shipped with the repository, by file name. */
export const sampleImages = (): string[] =>
  readdirSync(SAMPLE_IMAGES_DIR)
    .filter((f) => f.endsWith(".jpg"))
    .sort();

const json = (res: ServerResponse, status: number, body: unknown) => {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
};

export const startSampleInstance = async (accounts: readonly SampleAccount[]): Promise<SampleInstance> => {
  const photos = new Map(sampleImages().map((f) => [f, readFileSync(`${SAMPLE_IMAGES_DIR}${f}`)]));
  let base = "";
  // Post ids are digits and newest is largest, as Mastodon's; each account's posts are its own.
  const statusesOf = (account: SampleAccount, index: number) =>
    account.posts.map((files, p) => {
      const id = String(1_000_000 * (index + 1) + p + 1);
      return {
        id,
        url: `${base}/@${account.username}/${id}`,
        uri: `${base}/users/${account.username}/statuses/${id}`,
        content: `<p>${account.username}'s post ${p + 1}: ${files.map((f) => f.replace(".jpg", "")).join(" and ")}</p>`,
        created_at: new Date(Date.UTC(2026, 10, 1) + Number(id) * 1000).toISOString(),
        media_attachments: files.map((file, m) => ({
          id: `${id}${m}`,
          type: "image",
          url: `${base}/media/${file}`,
          preview_url: `${base}/media/${file}`,
          remote_url: null,
          description: null,
        })),
      };
    });

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", base);
    const media = /^\/media\/([a-z0-9-]+\.jpg)$/.exec(url.pathname);
    if (req.method === "GET" && media) {
      const bytes = photos.get(media[1]!);
      if (!bytes) return json(res, 404, { error: "Record not found" });
      res.writeHead(200, { "content-type": "image/jpeg", "content-length": bytes.length });
      return res.end(bytes);
    }
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
    const index = accounts.findIndex((a) => a.token === token);
    const account = accounts[index];
    if (!account) return json(res, 401, { error: "The access token is invalid" });
    if (req.method === "GET" && url.pathname === "/api/v1/accounts/verify_credentials")
      return json(res, 200, { id: account.id, username: account.username, acct: account.username });
    if (req.method === "GET" && url.pathname === `/api/v1/accounts/${account.id}/statuses`) {
      const maxId = url.searchParams.get("max_id");
      const limit = Math.min(40, Number(url.searchParams.get("limit") ?? 20) || 20);
      const page = statusesOf(account, index)
        .reverse()
        .filter((s) => maxId === null || BigInt(s.id) < BigInt(maxId))
        .slice(0, limit);
      return json(res, 200, page);
    }
    return json(res, 404, { error: "Record not found" });
  });
  server.listen(0, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    server.once("listening", resolve);
    server.once("error", reject);
  });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: base,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
};
