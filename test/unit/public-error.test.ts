import { describe, expect, it } from "vitest";
import { publicFailure } from "../../src/web/public-error.js";

describe("the failure a user sees", () => {
  it("keeps the first line, the origin of a URL, and nothing secret", () => {
    const stored = [
      "unavailable: GET https://social.example/api/v1/accounts/7/statuses?access_token=abc123XYZ&limit=5 answered 503",
      "    at fetchPosts (/srv/ratatoskr/src/captions/platform.ts:88:11)",
    ].join("\n");
    const seen = publicFailure(stored);
    expect(seen).toEqual({
      category: "unavailable",
      message: "unavailable: GET https://social.example answered 503",
    });
  });

  it("removes file paths and never shows query text", () => {
    expect(
      publicFailure("ENOENT: no such file or directory, open '/var/lib/rt/images/9/a.jpg'").message,
    ).toBe("ENOENT: no such file or directory, open '[path]'");
    const sql = publicFailure(
      "insert into `caption_generation_tasks` (`id`) values ('x') - SQLITE_CONSTRAINT: UNIQUE constraint failed",
    );
    expect(sql.message).toBe("Caption generation failed (the details are in the server log, by task id)");
    expect(publicFailure("update caption_generation_tasks set status = 'failed'").message).not.toContain(
      "update",
    );
  });

  it("names a category a user can act on", () => {
    expect(publicFailure("attempt timed out after 300 s").category).toBe("timeout");
    expect(publicFailure("validation failed: settings.max_posts_per_run must be <= 500").category).toBe(
      "invalid",
    );
    expect(publicFailure("Bearer rt_abcdefghijklmnopqrstuvwxyz0123 was refused").message).toBe(
      "Bearer [redacted] was refused",
    );
    expect(publicFailure(null)).toEqual({
      category: "failed",
      message: "Caption generation failed (the details are in the server log, by task id)",
    });
    expect(publicFailure("x".repeat(5000)).message).toHaveLength(300);
  });
});
