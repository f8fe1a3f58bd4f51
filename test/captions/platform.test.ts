import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { imagesNeedingAltText, platformClient, PlatformFailure } from "../../src/captions/platform.js";
import { describeFailure, JobFailure } from "../../src/queue/failures.js";
import { fakeStatus, startFakeMastodon, type FakeMastodon } from "../support/fake-mastodon.js";

const TOKEN = "tok-3f9a8b7c6d5e4f3a2b1c";
const ACCOUNT = { id: "77", username: "alice" };
const STATUSES_PATH = `/api/v1/accounts/${ACCOUNT.id}/statuses`;

/** Awaits a rejection and returns it, failing the test when the promise resolves. */
const rejectionOf = async (promise: Promise<unknown>): Promise<unknown> => {
  try {
    const value = await promise;
    throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
  } catch (error) {
    return error;
  }
};

/** The failure's kind and message, checking it never leaks the token or a query string. */
const failureOf = async (promise: Promise<unknown>) => {
  const error = await rejectionOf(promise);
  expect(error).toBeInstanceOf(JobFailure);
  const failure = error as JobFailure;
  const text = describeFailure(failure);
  expect(text).not.toContain(TOKEN);
  expect(text).not.toMatch(/\?[a-z_]+=/);
  return failure;
};

/** Statuses `first` down to `first - count + 1`, each with one image; alt text on those in `described`. */
const numbered = (first: number, count: number, described: ReadonlySet<number> = new Set()) =>
  Array.from({ length: count }, (_, i) => {
    const n = first - i;
    return fakeStatus({
      id: String(n),
      images: [{ mediaId: `m${n}`, ...(described.has(n) ? { description: "a cat" } : {}) }],
    });
  });

describe("platform client against a fake Mastodon", () => {
  let server: FakeMastodon;
  const client = (
    overrides: { timeoutMs?: number; platform?: "mastodon" | "pixelfed"; token?: string } = {},
  ) =>
    platformClient({
      instanceUrl: `${server.url}/`,
      accessToken: overrides.token ?? TOKEN,
      platform: overrides.platform ?? "mastodon",
      ...(overrides.timeoutMs === undefined ? {} : { timeoutMs: overrides.timeoutMs }),
    });

  beforeAll(async () => {
    server = await startFakeMastodon({
      token: TOKEN,
      account: ACCOUNT,
      statuses: [
        fakeStatus({
          id: "1005",
          content: '<p>Mixed <a href="https://x.example/">media</a></p>',
          images: [
            { mediaId: "a1", description: "A dog on a beach" },
            { mediaId: "a2", description: "" },
            { mediaId: "a3", type: "video" },
            { mediaId: "a4", description: "   " },
            { mediaId: "a5", type: "gifv" },
          ],
        }),
        fakeStatus({
          id: "1004",
          images: [
            { mediaId: "b1", type: "audio" },
            { mediaId: "b2", type: "video" },
          ],
        }),
        fakeStatus({ id: "1003", images: [{ mediaId: "c1", description: "Described" }] }),
        fakeStatus({ id: "1002", images: [{ mediaId: "d1", remoteOnly: true, file: "remote.png" }] }),
        fakeStatus({ id: "1001", reblog: true, images: [{ mediaId: "e1" }] }),
        fakeStatus({ id: "1000" }),
      ],
    });
  });
  afterEach(() => {
    server.clearFaults();
    server.requests.length = 0;
  });
  afterAll(() => server.close());

  it("verifies credentials with the bearer token and strips the trailing slash", async () => {
    const c = client();
    expect(c.instanceUrl).toBe(server.url);
    await expect(c.verifyCredentials()).resolves.toEqual({ id: "77", username: "alice", acct: "alice" });
    expect(server.requests).toEqual([
      expect.objectContaining({
        method: "GET",
        path: "/api/v1/accounts/verify_credentials",
        authorization: `Bearer ${TOKEN}`,
      }),
    ]);
  });

  it("reports a refused token as invalid without the token in the message", async () => {
    const wrong = "wrong-token-0123456789";
    const error = await rejectionOf(client({ token: wrong }).verifyCredentials());
    expect(error).toBeInstanceOf(PlatformFailure);
    const failure = error as PlatformFailure;
    expect(failure.kind).toBe("invalid");
    expect(failure.message).toMatch(/access token was refused.*401/);
    expect(failure.message).not.toContain(wrong);
    expect(failure.details.status).toBe(401);
  });

  it("maps 403 to invalid as well", async () => {
    server.setFault("/api/v1/accounts/verify_credentials", { kind: "status", status: 403 });
    const failure = await failureOf(client().verifyCredentials());
    expect(failure.kind).toBe("invalid");
    expect(failure.message).toMatch(/access token was refused.*403/);
  });

  it("asks for media-only statuses without reblogs and keeps only images lacking alt text", async () => {
    const statuses = await client().recentStatuses(ACCOUNT.id, { limit: 10 });
    expect(server.requests[0]!.pathname).toBe(STATUSES_PATH);
    expect(Object.fromEntries(server.requests[0]!.query)).toEqual({
      limit: "40",
      exclude_reblogs: "true",
      only_media: "true",
    });
    // The fake honours both filters: the reblog and the post without media are not served.
    expect(statuses.map((s) => s.id)).toEqual(["1005", "1004", "1003", "1002"]);

    const posts = imagesNeedingAltText(statuses, 10);
    expect(posts).toEqual([
      {
        post: {
          id: "1005",
          url: `${server.url}/@alice/1005`,
          content: '<p>Mixed <a href="https://x.example/">media</a></p>',
          createdAt: statuses[0]!.created_at,
        },
        images: [
          {
            mediaId: "a2",
            url: `${server.url}/media/photo.jpg`,
            previewUrl: `${server.url}/media/photo.jpg?preview=1`,
            description: "",
            index: 1,
            mediaType: "image",
          },
          expect.objectContaining({ mediaId: "a4", description: "   ", index: 3 }),
        ],
      },
      {
        post: expect.objectContaining({ id: "1002" }),
        // url is null on this attachment: the remote_url stands in.
        images: [expect.objectContaining({ mediaId: "d1", url: `${server.url}/media/remote.png`, index: 0 })],
      },
    ]);
  });

  it("limits the posts to maxPosts, newest first", async () => {
    const statuses = await client().recentStatuses(ACCOUNT.id, { limit: 10 });
    expect(imagesNeedingAltText(statuses, 1).map((p) => p.post.id)).toEqual(["1005"]);
    expect(imagesNeedingAltText(statuses, 0)).toEqual([]);
  });

  it("maps 404 to invalid, naming the path", async () => {
    const failure = await failureOf(client().recentStatuses("999", { limit: 5 }));
    expect(failure.kind).toBe("invalid");
    expect(failure.message).toContain("GET /api/v1/accounts/999/statuses not found");
    expect(failure.message).toContain("404");
  });

  it.each([
    [500, "transient"],
    [502, "transient"],
    [503, "unavailable"],
    [400, "invalid"],
  ] as const)("maps HTTP %i to %s", async (status, kind) => {
    server.setFault(STATUSES_PATH, { kind: "status", status });
    const failure = await failureOf(client().recentStatuses(ACCOUNT.id, { limit: 5 }));
    expect(failure.kind).toBe(kind);
    expect(failure.message).toContain(`HTTP ${status}`);
    expect(failure.message).toContain(`GET ${STATUSES_PATH}`);
  });

  it("maps 429 to unavailable and passes Retry-After on", async () => {
    server.setFault(STATUSES_PATH, { kind: "status", status: 429, retryAfter: 120 });
    const failure = await failureOf(client().recentStatuses(ACCOUNT.id, { limit: 5 }));
    expect(failure.kind).toBe("unavailable");
    expect(failure.message).toMatch(/rate limited.*HTTP 429; Retry-After 120 s/);
    expect((failure as PlatformFailure).details.retryAfterMs).toBe(120_000);
  });

  it("reads an HTTP-date Retry-After too", async () => {
    const at = new Date(Date.now() + 90_000).toUTCString();
    server.setFault(STATUSES_PATH, { kind: "status", status: 429, retryAfter: at });
    const failure = (await failureOf(client().recentStatuses(ACCOUNT.id, { limit: 5 }))) as PlatformFailure;
    expect(failure.details.retryAfterMs).toBeGreaterThan(80_000);
    expect(failure.details.retryAfterMs).toBeLessThanOrEqual(90_000);
  });

  it("maps a timeout to transient", async () => {
    server.setFault(STATUSES_PATH, { kind: "delay", ms: 3_000 });
    const started = Date.now();
    const failure = await failureOf(client({ timeoutMs: 200 }).recentStatuses(ACCOUNT.id, { limit: 5 }));
    expect(failure.kind).toBe("transient");
    expect(failure.message).toContain("within 200 ms");
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it("waits for a slow answer within the timeout", async () => {
    server.setFault("/api/v1/accounts/verify_credentials", { kind: "delay", ms: 150 });
    await expect(client({ timeoutMs: 2_000 }).verifyCredentials()).resolves.toMatchObject({ id: "77" });
  });

  it("maps a connection reset to transient", async () => {
    server.setFault(STATUSES_PATH, { kind: "reset" });
    const failure = await failureOf(client().recentStatuses(ACCOUNT.id, { limit: 5 }));
    expect(failure.kind).toBe("transient");
  });

  it("rethrows the caller's abort reason as is", async () => {
    server.setFault(STATUSES_PATH, { kind: "delay", ms: 3_000 });
    const controller = new AbortController();
    const reason = new Error("job cancelled");
    setTimeout(() => controller.abort(reason), 100);
    const error = await rejectionOf(
      client().recentStatuses(ACCOUNT.id, { limit: 5, signal: controller.signal }),
    );
    expect(error).toBe(reason);
  });

  it("does not even send a request when the signal is already aborted", async () => {
    const reason = new Error("already cancelled");
    const error = await rejectionOf(client().verifyCredentials(AbortSignal.abort(reason)));
    expect(error).toBe(reason);
    expect(server.requests).toEqual([]);
  });

  it("maps malformed JSON to invalid", async () => {
    server.setFault(STATUSES_PATH, { kind: "malformed" });
    const failure = await failureOf(client().recentStatuses(ACCOUNT.id, { limit: 5 }));
    expect(failure.kind).toBe("invalid");
    expect(failure.message).toContain("malformed JSON");
  });

  it("maps a wrong shape to invalid with the path of the bad field", async () => {
    server.setFault(STATUSES_PATH, {
      kind: "json",
      body: [
        { id: "5", content: "", created_at: "2026-01-01T00:00:00Z", media_attachments: [] },
        {
          id: "4",
          content: "",
          created_at: "2026-01-01T00:00:00Z",
          media_attachments: [{ id: "x", type: "image", url: "http://x/1.jpg", description: 42 }],
        },
      ],
    });
    const failure = await failureOf(client().recentStatuses(ACCOUNT.id, { limit: 5 }));
    expect(failure.kind).toBe("invalid");
    expect(failure.message).toContain("[1].media_attachments[0].description");
  });

  it("maps an account without a username to invalid, naming the field", async () => {
    server.setFault("/api/v1/accounts/verify_credentials", { kind: "json", body: { id: "77", acct: "a" } });
    const failure = await failureOf(client().verifyCredentials());
    expect(failure.kind).toBe("invalid");
    expect(failure.message).toMatch(/username: is missing/);
  });

  it("uses the same endpoints in Pixelfed mode and names Pixelfed in messages", async () => {
    const pixelfed = client({ platform: "pixelfed" });
    await expect(pixelfed.verifyCredentials()).resolves.toMatchObject({ username: "alice" });
    const statuses = await pixelfed.recentStatuses(ACCOUNT.id, { limit: 1 });
    expect(imagesNeedingAltText(statuses, 5).map((p) => p.post.id)).toEqual(["1005", "1002"]);
    expect(server.requests.map((r) => r.pathname)).toEqual([
      "/api/v1/accounts/verify_credentials",
      STATUSES_PATH,
    ]);
    server.setFault(STATUSES_PATH, { kind: "status", status: 503 });
    const failure = await failureOf(pixelfed.recentStatuses(ACCOUNT.id, { limit: 1 }));
    expect(failure.message).toContain("Pixelfed");
  });
});

describe("pagination", () => {
  let server: FakeMastodon | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });
  const start = async (options: Omit<Parameters<typeof startFakeMastodon>[0], "token" | "account">) => {
    server = await startFakeMastodon({ token: TOKEN, account: ACCOUNT, ...options });
    return server;
  };
  const statusesClient = (fake: FakeMastodon, platform: "mastodon" | "pixelfed" = "mastodon") =>
    platformClient({ instanceUrl: fake.url, accessToken: TOKEN, platform });
  const allDescribed = (first: number, count: number) =>
    new Set(Array.from({ length: count }, (_, i) => first - i));

  it("follows Link rel=next across three pages until the limit is reached", async () => {
    // 200 statuses, newest 2200; the newest 75 already have alt text, so 2125 and older need it.
    const fake = await start({ statuses: numbered(2200, 200, allDescribed(2200, 75)) });
    const statuses = await statusesClient(fake).recentStatuses(ACCOUNT.id, { limit: 10 });
    // Page 1: 2200..2161 (none need alt text), page 2: 2160..2121 (5), page 3: 2120..2081 (enough),
    // and no fourth page although the third had a next link.
    expect(fake.requests.map((r) => r.query.get("max_id"))).toEqual([null, "2161", "2121"]);
    expect(fake.requests.every((r) => r.authorization === `Bearer ${TOKEN}`)).toBe(true);
    expect(statuses).toHaveLength(120);
    const posts = imagesNeedingAltText(statuses, 10);
    expect(posts.map((p) => p.post.id)).toEqual(Array.from({ length: 10 }, (_, i) => String(2125 - i)));
  });

  it("stops after the first page once limit posts were found", async () => {
    const fake = await start({ statuses: numbered(3100, 100) });
    const statuses = await statusesClient(fake).recentStatuses(ACCOUNT.id, { limit: 3 });
    expect(fake.requests).toHaveLength(1);
    expect(statuses).toHaveLength(40);
  });

  it("stops when there are no more pages", async () => {
    // 50 statuses: a full page with a next link, then 10, whose page has no next link.
    const fake = await start({ statuses: numbered(4050, 50, allDescribed(4050, 50)) });
    const statuses = await statusesClient(fake).recentStatuses(ACCOUNT.id, { limit: 10 });
    expect(fake.requests.map((r) => r.query.get("max_id"))).toEqual([null, "4011"]);
    expect(statuses).toHaveLength(50);
  });

  it("pages by the last status id without Link headers (as some Pixelfed versions)", async () => {
    const fake = await start({ statuses: numbered(5090, 90, allDescribed(5090, 90)), linkHeaders: false });
    // Nothing needs alt text: it reads to the end, where an empty page stops it.
    const statuses = await statusesClient(fake, "pixelfed").recentStatuses(ACCOUNT.id, { limit: 1 });
    expect(fake.requests.map((r) => r.query.get("max_id"))).toEqual([null, "5051", "5011", "5001"]);
    expect(statuses).toHaveLength(90);
  });

  it("caps the number of pages", async () => {
    const fake = await start({ statuses: numbered(6200, 200, allDescribed(6200, 200)) });
    await statusesClient(fake).recentStatuses(ACCOUNT.id, { limit: 1, maxPages: 2 });
    expect(fake.requests).toHaveLength(2);
  });

  it("takes only max_id from a Link header pointing elsewhere, never sending the token there", async () => {
    const elsewhere: string[] = [];
    const other = createServer((req, res) => {
      elsewhere.push(req.url ?? "");
      res.end("[]");
    });
    await new Promise<void>((resolve) => other.listen(0, "127.0.0.1", resolve));
    const otherUrl = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
    const seen: Array<string | null> = [];
    // A hand-made instance whose next link points at another host.
    const hostile = createServer((req, res) => {
      const maxId = new URL(req.url ?? "/", "http://x").searchParams.get("max_id");
      seen.push(maxId);
      const body =
        maxId === null
          ? [{ id: "10", content: "", created_at: "2026-01-01T00:00:00Z", media_attachments: [] }]
          : [];
      res.writeHead(200, {
        "content-type": "application/json",
        link: `<${otherUrl}/steal?max_id=7>; rel="next"`,
      });
      res.end(JSON.stringify(body));
    });
    await new Promise<void>((resolve) => hostile.listen(0, "127.0.0.1", resolve));
    const hostileUrl = `http://127.0.0.1:${(hostile.address() as AddressInfo).port}`;
    try {
      const statuses = await platformClient({
        instanceUrl: hostileUrl,
        accessToken: TOKEN,
        platform: "mastodon",
      }).recentStatuses("1", { limit: 1 });
      expect(statuses.map((s) => s.id)).toEqual(["10"]);
      // The cursor came from the link; the request went to the instance, not to the link's host.
      expect(seen).toEqual([null, "7"]);
      expect(elsewhere).toEqual([]);
    } finally {
      await new Promise<void>((r) => hostile.close(() => r()));
      await new Promise<void>((r) => other.close(() => r()));
    }
  });
});

describe("unreachable instances and bad settings", () => {
  it("maps connection refused to unavailable", async () => {
    const server = await startFakeMastodon({ token: TOKEN, account: ACCOUNT, statuses: [] });
    const url = server.url;
    await server.close();
    const failure = await failureOf(
      platformClient({ instanceUrl: url, accessToken: TOKEN, platform: "mastodon" }).verifyCredentials(),
    );
    expect(failure.kind).toBe("unavailable");
    expect(failure.message).toContain("ECONNREFUSED");
  });

  it("maps an unknown host to unavailable", async () => {
    const failure = await failureOf(
      platformClient({
        instanceUrl: "https://no-such-host.invalid",
        accessToken: TOKEN,
        platform: "mastodon",
        timeoutMs: 5_000,
      }).verifyCredentials(),
    );
    expect(failure.kind).toBe("unavailable");
    expect(failure.message).toMatch(/ENOTFOUND|EAI_AGAIN/);
  });

  it.each([
    ["ftp://files.example", /must be http\(s\), not ftp/],
    ["not a url", /not a valid URL/],
    ["mastodon.example", /must be http\(s\)|not a valid URL/],
    ["https://user:pw@mastodon.example", /user name or password/],
    [`https://mastodon.example/?token=${TOKEN}`, /query or fragment/],
  ])("refuses the instance URL %s as invalid", (instanceUrl, message) => {
    let error: unknown;
    try {
      platformClient({ instanceUrl, accessToken: TOKEN, platform: "mastodon" });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(JobFailure);
    expect((error as JobFailure).kind).toBe("invalid");
    expect((error as JobFailure).message).toMatch(message);
    expect((error as JobFailure).message).not.toContain(TOKEN);
  });

  it("refuses a token that cannot go in a header, without quoting it", () => {
    const bad = `${TOKEN}\r\nX-Evil: 1`;
    expect(() =>
      platformClient({ instanceUrl: "https://m.example", accessToken: bad, platform: "mastodon" }),
    ).toThrow(expect.objectContaining({ kind: "invalid", message: expect.not.stringContaining(TOKEN) }));
  });
});

describe("imagesNeedingAltText", () => {
  const media = (id: string, extra: Record<string, unknown> = {}) => ({
    id,
    type: "image",
    url: `https://m.example/${id}.jpg`,
    preview_url: null,
    remote_url: null,
    description: null,
    ...extra,
  });
  const status = (id: string, attachments: ReturnType<typeof media>[]) =>
    ({
      id,
      url: null,
      uri: `https://m.example/statuses/${id}`,
      content: "<p>hi</p>",
      created_at: "2026-01-01T00:00:00Z",
      media_attachments: attachments,
    }) as Parameters<typeof imagesNeedingAltText>[0][number];

  it("skips images with neither url nor remote_url, and falls back to the uri for the post url", () => {
    const posts = imagesNeedingAltText(
      [
        status("1", [
          media("a", { url: null }),
          media("b", { url: null, remote_url: "https://r.example/b.jpg" }),
        ]),
      ],
      5,
    );
    expect(posts).toEqual([
      {
        post: {
          id: "1",
          url: "https://m.example/statuses/1",
          content: "<p>hi</p>",
          createdAt: "2026-01-01T00:00:00Z",
        },
        images: [expect.objectContaining({ mediaId: "b", url: "https://r.example/b.jpg", index: 1 })],
      },
    ]);
  });
});

describe("the fake server itself (used by the pipeline tests too)", () => {
  let server: FakeMastodon;
  const jpeg = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 0xff, 0xd9]);
  beforeAll(async () => {
    server = await startFakeMastodon({
      token: TOKEN,
      account: ACCOUNT,
      statuses: [fakeStatus({ id: "1", images: [{ mediaId: "m1", file: "photo.jpg" }] })],
      images: { "photo.jpg": { bytes: jpeg, contentType: "image/jpeg" } },
    });
  });
  afterAll(() => server.close());

  it("serves image bytes at the attachment url, and 404 for unknown files", async () => {
    const client = platformClient({ instanceUrl: server.url, accessToken: TOKEN, platform: "mastodon" });
    const [post] = imagesNeedingAltText(await client.recentStatuses(ACCOUNT.id, { limit: 1 }), 1);
    const response = await fetch(post!.images[0]!.url);
    expect(response.headers.get("content-type")).toBe("image/jpeg");
    expect(Buffer.from(await response.arrayBuffer())).toEqual(jpeg);
    expect((await fetch(`${server.url}/media/missing.jpg`)).status).toBe(404);
  });

  it("applies a fault only `times` times", async () => {
    server.setFault("/api/v1/accounts/verify_credentials", { kind: "status", status: 500, times: 1 });
    const client = platformClient({ instanceUrl: server.url, accessToken: TOKEN, platform: "mastodon" });
    await expect(client.verifyCredentials()).rejects.toMatchObject({ kind: "transient" });
    await expect(client.verifyCredentials()).resolves.toMatchObject({ id: ACCOUNT.id });
  });

  it("stores a description written with PUT /api/v1/media/:id", async () => {
    const put = await fetch(`${server.url}/api/v1/media/m1`, {
      method: "PUT",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ description: "A red bicycle" }),
    });
    expect(put.status).toBe(200);
    expect(server.descriptionOf("m1")).toBe("A red bicycle");
    const client = platformClient({ instanceUrl: server.url, accessToken: TOKEN, platform: "mastodon" });
    const statuses = await client.recentStatuses(ACCOUNT.id, { limit: 1 });
    expect(statuses[0]!.media_attachments[0]!.description).toBe("A red bicycle");
    expect(imagesNeedingAltText(statuses, 5)).toEqual([]);
  });
});
