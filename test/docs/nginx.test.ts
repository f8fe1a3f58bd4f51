import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { eventually } from "../support/queue.js";
import { useRedis } from "../support/redis.js";
import { useWebServer } from "../support/web.js";

const SITE = fileURLToPath(new URL("../../deploy/nginx/ratatoskr.conf", import.meta.url));
// CI installs Debian's nginx and sets RT_REQUIRE_NGINX, so a missing nginx fails there.
const runnable = spawnSync("nginx", ["-v"]).status === 0 || process.env.RT_REQUIRE_NGINX === "1";
if (!runnable) console.warn("nginx is not installed: deploy/nginx/ratatoskr.conf is NOT checked");

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

/** The site as docs/deployment.md ships it, pointed at this test's server, port and certificate. */
const siteFor = (upstreamPort: number, port: number, dir: string) => {
  const replacements: Array<[string, string]> = [
    ["server 127.0.0.1:8000;", `server 127.0.0.1:${upstreamPort};`],
    ["listen 443 ssl;", `listen 127.0.0.1:${port} ssl;`],
    ["/etc/ssl/captions.example.org.pem", join(dir, "cert.pem")],
    ["/etc/ssl/captions.example.org.key", join(dir, "key.pem")],
  ];
  let site = readFileSync(SITE, "utf8");
  for (const [from, to] of replacements) {
    // A site changed so that this no longer applies must fail here, not pass unchecked.
    expect(site, `the site has ${from}`).toContain(from);
    site = site.replace(from, to);
  }
  return site;
};

describe.skipIf(!runnable)("deploy/nginx/ratatoskr.conf in front of a served instance", () => {
  const redis = useRedis();
  const web = useWebServer(redis);
  const dir = mkdtempSync(join(tmpdir(), "rt-nginx-"));
  let nginx: ChildProcess | undefined;
  let port = 0;
  let ca: Buffer;

  /** A request through the proxy over TLS, trusting only this test's certificate. */
  const get = (
    path: string,
    init: { method?: string; headers?: Record<string, string>; body?: string } = {},
  ) =>
    new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
      const req = request(
        { host: "127.0.0.1", port, path, ca, method: init.method ?? "GET", headers: init.headers },
        (res) => {
          let body = "";
          res.on("data", (chunk: Buffer) => (body += chunk.toString()));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        },
      );
      req.on("error", reject);
      req.end(init.body);
    });

  beforeAll(async () => {
    execFileSync(
      "openssl",
      [
        ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"],
        ...["-addext", "subjectAltName=IP:127.0.0.1"],
        ...["-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")],
      ],
      { stdio: "ignore" },
    );
    ca = readFileSync(join(dir, "cert.pem"));
    port = await freePort();
    writeFileSync(join(dir, "site.conf"), siteFor(web.server.port, port, dir));
    for (const temp of ["body", "proxy", "fastcgi", "uwsgi", "scgi"]) mkdirSync(join(dir, temp));
    // The site goes in as an operator's would: included in the http block of a main config.
    writeFileSync(
      join(dir, "nginx.conf"),
      [
        "daemon off;",
        "master_process off;",
        `pid ${join(dir, "nginx.pid")};`,
        `error_log ${join(dir, "error.log")} warn;`,
        "events { worker_connections 64; }",
        "http {",
        `  access_log ${join(dir, "access.log")};`,
        ...["body", "proxy", "fastcgi", "uwsgi", "scgi"].map(
          (t) => `  ${t === "body" ? "client_body" : t}_temp_path ${join(dir, t)};`,
        ),
        `  include ${join(dir, "site.conf")};`,
        "}",
      ].join("\n"),
    );
    nginx = spawn("nginx", ["-p", dir, "-c", join(dir, "nginx.conf")], { stdio: "ignore" });
    await eventually(async () => (await get("/healthz").catch(() => ({ status: 0 }))).status === 200);
  });
  afterAll(() => {
    nginx?.kill();
  });

  it("is a configuration nginx accepts", () => {
    const check = spawnSync("nginx", ["-t", "-p", dir, "-c", join(dir, "nginx.conf")], { encoding: "utf8" });
    expect(check.status, check.stderr).toBe(0);
  });

  it("passes requests through with nginx's request id, and keeps /metrics from outsiders", async () => {
    const health = await get("/healthz");
    expect(health.status).toBe(200);
    // The id nginx made ($request_id: 32 hex digits) is the one Ratatoskr answers with.
    expect(health.headers["x-request-id"]).toMatch(/^[0-9a-f]{32}$/);
    expect((await get("/metrics")).status).toBe(403);
  });

  it("carries a submission and its progress socket (the WebSocket upgrade) to the end of the task", async () => {
    const me = await web.account();
    const submitted = await get("/caption/start", {
      method: "POST",
      headers: { authorization: `Bearer ${me.token}`, "content-type": "application/json" },
      body: JSON.stringify({ processing_delay: 1 }),
    });
    expect(submitted.status).toBe(202);
    const taskId = (JSON.parse(submitted.body) as { data: { task_id: string } }).data.task_id;

    const socket = new WebSocket(`wss://127.0.0.1:${port}/ws?token=${me.token}`, { ca });
    const events: string[] = [];
    socket.on("message", (data) => events.push((JSON.parse(String(data)) as { event: string }).event));
    await new Promise<void>((resolve, reject) => socket.once("open", resolve).once("error", reject));
    await eventually(() => events.includes("authenticated"));
    socket.send(JSON.stringify({ event: "join_task", data: { task_id: taskId } }));
    await eventually(() => events.includes("task_completed"), 20_000, "task_completed through the proxy");
    socket.close();
  });
});
