import { describe, expect, it } from "vitest";
import { seedUsers } from "../support/ledger.js";
import { eventually } from "../support/queue.js";
import { useRedis } from "../support/redis.js";
import { useWebServer } from "../support/web.js";
import { User } from "../../src/db/entities.js";
import { hashToken, newApiToken } from "../../src/security/tokens.js";

describe("the caption API under a burst", () => {
  const redis = useRedis();
  const web = useWebServer(redis);

  it("accepts 200 concurrent submissions from 200 users and completes every one", async () => {
    const users = await seedUsers(web.db.orm, 200);
    const tokens = users.map(() => newApiToken());
    const em = web.db.orm.em.fork();
    for (const [i, id] of users.entries())
      await em.nativeUpdate(User, { id }, { apiTokenHash: hashToken(tokens[i]!) });
    const answers = await Promise.all(
      tokens.map(async (token) => {
        const response = await fetch(`${web.base}/caption/start`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify({ processing_delay: 0.05 }),
        });
        return { status: response.status, body: (await response.json()) as { data?: { task_id: string } } };
      }),
    );
    expect(answers.filter((a) => a.status !== 202)).toEqual([]);
    const ids = answers.map((a) => a.body.data!.task_id);
    expect(new Set(ids).size).toBe(200);
    await eventually(
      async () => (await Promise.all(ids.map((id) => web.row(id)))).every((r) => r.status === "completed"),
      120_000,
      "all 200 tasks",
    );
  }, 180_000);
});
