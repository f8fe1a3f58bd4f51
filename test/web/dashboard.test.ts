import { existsSync } from "node:fs";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueueAdmin } from "../../src/queue/admin.js";
import { eventually } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";
import { useWebServer } from "../support/web.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
// CI installs Debian's chromium and sets RT_REQUIRE_BROWSER, so a missing browser fails there.
const runnable = existsSync(CHROMIUM) || process.env.RT_REQUIRE_BROWSER === "1";

describe.skipIf(!runnable)("the admin dashboard in a real browser", () => {
  const redis = useRedis();
  const web = useWebServer(redis);
  let browser: Browser;

  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  });
  afterAll(async () => {
    await browser?.close();
  });

  const open = async (token?: string): Promise<Page> => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await page.goto(`${web.base}/admin`);
    if (token) {
      await page.getByLabel("Admin API token").fill(token);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.locator("#app").waitFor({ state: "visible" });
    }
    return page;
  };

  const cell = (page: Page, priority: string, field: string) =>
    page.locator(`#queues tr[data-priority="${priority}"] td[data-field="${field}"]`);

  const confirm = async (page: Page) => {
    const dialog = page.getByRole("dialog");
    await dialog.waitFor();
    await dialog.getByRole("button", { name: "Confirm" }).click();
  };

  it("refuses an unauthenticated visit, a wrong token and a non-admin", async () => {
    const page = await open();
    expect(await page.locator("#sign-in").isVisible()).toBe(true);
    expect(await page.locator("#app").isHidden()).toBe(true);
    const api = await page.evaluate(async () => (await fetch("/admin/api/dashboard")).status);
    expect(api).toBe(401);
    await page.getByLabel("Admin API token").fill("rt_wrong");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").filter({ hasText: "That token was refused." }).waitFor();
    const viewer = await web.account();
    await page.getByLabel("Admin API token").fill(viewer.token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").filter({ hasText: "not an administrator's" }).waitFor();
    expect(await page.locator("#app").isHidden()).toBe(true);
    await page.close();
  });

  it("shows live numbers while jobs run; pause and resume work from the page", async () => {
    const admin = await web.account("admin");
    const page = await open(admin.token);
    await page.locator("#workers tbody tr").filter({ hasText: web.runtime.workerId }).waitFor();
    const before = Number(await cell(page, "normal", "completedLastHour").textContent());
    // Load: twelve users' tasks at once, each running 9 s (the test job waits delay x 0.3 s).
    const users = await Promise.all(Array.from({ length: 12 }, () => web.account()));
    const taskIds = await Promise.all(
      users.map(async (u) => {
        const response = await fetch(`${web.base}/caption/start`, {
          method: "POST",
          headers: { authorization: `Bearer ${u.token}`, "content-type": "application/json" },
          body: JSON.stringify({ processing_delay: 30 }),
        });
        return ((await response.json()) as { data: { task_id: string } }).data.task_id;
      }),
    );
    // Pushed over the socket: no reload.
    await eventually(
      async () => Number(await cell(page, "normal", "running").textContent()) > 0,
      15_000,
      "running jobs on the page",
    );
    // The worker's row names what it runs (from its heartbeat).
    await eventually(
      async () => {
        const text = (await page.locator("#workers tbody").textContent()) ?? "";
        return taskIds.some((id) => text.includes(id.slice(0, 8)));
      },
      15_000,
      "the worker's current jobs",
    );
    if (process.env.RT_DASHBOARD_SCREENSHOT) {
      // For docs/dashboard.png: mid-run, with the first completions charted.
      await eventually(
        async () => Number(await cell(page, "normal", "completedLastHour").textContent()) >= before + 8,
        60_000,
        "the first completions",
      );
      await page.screenshot({ path: process.env.RT_DASHBOARD_SCREENSHOT, fullPage: true });
    }
    await eventually(
      async () => Number(await cell(page, "normal", "completedLastHour").textContent()) >= before + 12,
      60_000,
      "completions on the page",
    );
    expect(
      await page.locator("#overview [data-name='Completed in the last hour'] dd").textContent(),
    ).not.toBe("0");

    const admin$ = new QueueAdmin(web.runtime.queue);
    const paused = async () => (await run(admin$.stats())).find((s) => s.priority === "normal")!.paused;
    await page
      .locator('#queues tr[data-priority="normal"]')
      .getByRole("button", { name: "Pause normal" })
      .click();
    await confirm(page);
    await page.getByRole("status").filter({ hasText: "Pause normal: done" }).waitFor();
    expect(await paused()).toBe(true);
    await eventually(
      async () => (await cell(page, "normal", "state").textContent()) === "paused",
      10_000,
      "paused",
    );
    await page
      .locator('#queues tr[data-priority="normal"]')
      .getByRole("button", { name: "Resume normal" })
      .click();
    await confirm(page);
    await page.getByRole("status").filter({ hasText: "Resume normal: done" }).waitFor();
    expect(await paused()).toBe(false);
    await page.close();
  }, 120_000);

  it("shows operator alerts of the last hour as a banner, live, and announces a new one", async () => {
    const admin = await web.account("admin");
    const page = await open(admin.token);
    // As a health actor writes one (another process may have).
    await redis
      .client()
      .xadd(
        web.runtime.queue.keys.alerts,
        "*",
        "at",
        String(Date.now()),
        "level",
        "warning",
        "message",
        "redis is down (test)",
        "source",
        "elsewhere:1",
      );
    await page
      .locator("#alerts-list li")
      .filter({ hasText: "redis is down (test)" })
      .waitFor({ timeout: 10_000 });
    expect(await page.locator("#alerts").isVisible()).toBe(true);
    expect(await page.locator("#alerts-news").textContent()).toBe("New alert: redis is down (test)");
    await page.close();
  }, 30_000);

  it("retries a dead letter from the page: the task runs again", async () => {
    const admin = await web.account("admin");
    const user = await web.account();
    const taskId = await web.doomedTask(user.userId, "low");
    await eventually(async () => (await web.row(taskId)).status === "failed", 15_000, "the task to fail");
    const page = await open(admin.token);
    const letters = page.locator("#dead tbody tr").filter({ hasText: taskId.slice(0, 8) });
    await letters.first().waitFor();
    const entry = await letters.first().getAttribute("data-entry");
    await letters
      .first()
      .getByRole("button", { name: /^Retry/ })
      .click();
    await confirm(page);
    await page.getByRole("status").filter({ hasText: "Retry: queued again" }).waitFor();
    // It ran again as attempt 2 (and, this test job being what it is, failed again): the page
    // shows the new dead letter in place of the old without a reload.
    await eventually(
      async () => {
        const row = await web.row(taskId);
        return row.attempt === 2 && row.status === "failed";
      },
      20_000,
      "the second run",
    );
    await page
      .locator(`#dead tbody tr[data-entry]:not([data-entry="${entry}"])`)
      .filter({ hasText: taskId.slice(0, 8) })
      .waitFor();
    expect(await page.locator(`#dead tbody tr[data-entry="${entry}"]`).count()).toBe(0);
    await page.close();
  }, 60_000);

  it("finds a task, shows its details and progress history, and cancels it with a reason", async () => {
    const admin = await web.account("admin");
    const user = await web.account();
    const response = await fetch(`${web.base}/caption/start`, {
      method: "POST",
      headers: { authorization: `Bearer ${user.token}`, "content-type": "application/json" },
      body: JSON.stringify({ processing_delay: 30 }),
    });
    const taskId = ((await response.json()) as { data: { task_id: string } }).data.task_id;
    await eventually(async () => (await web.row(taskId)).progressPercent > 0, 15_000, "progress");
    const page = await open(admin.token);
    await page.getByLabel("Task id or user name").fill(taskId.slice(0, 13));
    await page.getByRole("button", { name: "Search" }).click();
    await page.locator("#tasks-caption").filter({ hasText: "of 1," }).waitFor();
    await page.getByRole("button", { name: `details of task ${taskId}` }).click();
    await page.locator("#details-steps li").filter({ hasText: "attempt 1" }).first().waitFor();
    await page.getByRole("button", { name: "Cancel the task" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.getByLabel("Reason (shown to the user)").fill("spam account");
    await dialog.getByRole("button", { name: "Confirm" }).click();
    await page.getByRole("status").filter({ hasText: "Cancel: cancelling" }).waitFor();
    await eventually(async () => (await web.row(taskId)).status === "cancelled", 15_000, "the cancel");
    // The details' audit trail names the admin who asked.
    await page
      .locator("#details-audit tbody tr")
      .filter({ hasText: "cancel requested" })
      .filter({ hasText: `admin:${admin.userId}` })
      .waitFor();
    expect(await web.row(taskId)).toMatchObject({
      cancellationReason: "spam account",
      cancelledByAdmin: true,
    });
    await page.close();
  }, 60_000);
});
