import { describe, expect, it } from "vitest";
import { PRIORITIES } from "../../src/domain/priority.js";
import { type QueueKeys, queueKeys } from "../../src/queue/keys.js";

/** CRC16/XMODEM (poly 0x1021, init 0, no reflection, no final xor), as Redis Cluster uses it. */
const crc16 = (data: Uint8Array): number => {
  let crc = 0;
  for (const byte of data) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
  }
  return crc;
};

/**
 * The part of a key Redis Cluster hashes: the bytes between the first `{` and the first `}` after
 * it, if that is not empty; otherwise the whole key.
 */
const hashTagOf = (key: string): string => {
  const open = key.indexOf("{");
  if (open === -1) return key;
  const close = key.indexOf("}", open + 1);
  if (close === -1 || close === open + 1) return key;
  return key.slice(open + 1, close);
};

const keySlot = (key: string) => crc16(Buffer.from(hashTagOf(key), "utf8")) % 16384;

/** Every key a queue uses, over a spread of ids, users and minutes (some with awkward characters). */
const allKeys = (keys: QueueKeys): string[] => {
  const ids = ["1", "0b0e5c4e-8f7d-4f6c-9a1b-2c3d4e5f6a7b", "{other}", "}", "{", "a{b}c", "", "ü ñ"];
  const minutes = [0, 1, 28_000_000, 99_999_999];
  return [
    keys.base,
    keys.paused,
    keys.events,
    keys.completed,
    keys.live,
    // The buckets complete-jobs.lua derives from it: retention and period.
    `${keys.completed}:0`,
    `${keys.completed}:86400:20422`,
    ...PRIORITIES.flatMap((p) => [keys.stream(p), keys.delayed(p), keys.dead(p), keys.signal(p)]),
    ...ids.flatMap((id) => [keys.job(id), keys.user(id)]),
    ...minutes.map((m) => keys.metrics(m)),
  ];
};

const QUEUES = ["q", "captions", "a.b-c_d", "0", "UPPER_lower.09", "x".repeat(64), "-", "..", "_"];
const PREFIXES = ["ratatoskr", "", "app:v2", "a b", "rt"];

describe("CRC16 / slot helper (sanity of the test's own implementation)", () => {
  it("matches the CRC16/XMODEM check value", () => {
    expect(crc16(Buffer.from("123456789"))).toBe(0x31c3);
    expect(crc16(Buffer.from(""))).toBe(0);
  });

  it("matches slots Redis reports", () => {
    // Values from CLUSTER KEYSLOT.
    expect(keySlot("somekey")).toBe(11058);
    expect(keySlot("foo{hash_tag}")).toBe(2515);
    expect(keySlot("{hash_tag}bar")).toBe(2515);
    expect(keySlot("foo")).toBe(12182);
    expect(keySlot("bar")).toBe(5061);
  });

  it("extracts hash tags as Redis does", () => {
    expect(hashTagOf("{user1000}.following")).toBe("user1000");
    expect(hashTagOf("foo{}{bar}")).toBe("foo{}{bar}");
    expect(hashTagOf("foo{{bar}}zap")).toBe("{bar");
    expect(hashTagOf("foo{bar}{zap}")).toBe("bar");
    expect(hashTagOf("nobraces")).toBe("nobraces");
  });
});

describe("queueKeys", () => {
  it("builds keys under <prefix>:{<queue>}:", () => {
    const keys = queueKeys("ratatoskr", "captions");
    expect(keys.base).toBe("ratatoskr:{captions}:");
    expect(keys.stream("urgent")).toBe("ratatoskr:{captions}:s:urgent");
    expect(keys.delayed("low")).toBe("ratatoskr:{captions}:d:low");
    expect(keys.dead("high")).toBe("ratatoskr:{captions}:x:high");
    expect(keys.job("abc")).toBe("ratatoskr:{captions}:j:abc");
    expect(keys.live).toBe("ratatoskr:{captions}:live");
    expect(keys.user("42")).toBe("ratatoskr:{captions}:u:42");
    expect(keys.paused).toBe("ratatoskr:{captions}:paused");
    expect(keys.signal("normal")).toBe("ratatoskr:{captions}:signal:normal");
    expect(keys.events).toBe("ratatoskr:{captions}:events");
    expect(keys.metrics(28_000_000)).toBe("ratatoskr:{captions}:m:28000000");
  });

  it("starts every key with the base", () => {
    for (const queue of QUEUES) {
      const keys = queueKeys("p", queue);
      for (const key of allKeys(keys)) expect(key.startsWith(keys.base), key).toBe(true);
    }
  });

  it("gives every key of a queue the same {queue} hash tag", () => {
    for (const prefix of PREFIXES) {
      for (const queue of QUEUES) {
        for (const key of allKeys(queueKeys(prefix, queue))) {
          expect(hashTagOf(key), key).toBe(queue);
          expect(key).toContain(`{${queue}}`);
        }
      }
    }
  });

  it("puts every key of a queue in one cluster slot", () => {
    for (const prefix of PREFIXES) {
      for (const queue of QUEUES) {
        const slots = new Set(allKeys(queueKeys(prefix, queue)).map(keySlot));
        expect([...slots], `${prefix} ${queue}`).toEqual([crc16(Buffer.from(queue)) % 16384]);
      }
    }
  });

  it("puts the same queue in the same slot whatever the prefix", () => {
    const slots = new Set(PREFIXES.map((prefix) => keySlot(queueKeys(prefix, "captions").stream("normal"))));
    expect(slots.size).toBe(1);
  });

  it("spreads different queues over different slots", () => {
    const slots = new Set(Array.from({ length: 50 }, (_, i) => keySlot(queueKeys("p", `queue-${i}`).base)));
    expect(slots.size).toBeGreaterThan(40);
  });

  it("gives distinct keys to distinct things", () => {
    const keys = queueKeys("p", "q");
    const named = [
      keys.base,
      keys.paused,
      keys.signal,
      keys.events,
      ...PRIORITIES.flatMap((p) => [keys.stream(p), keys.delayed(p), keys.dead(p), keys.signal(p)]),
      keys.job("x"),
      keys.live,
      keys.job("live"),
      keys.user("x"),
      keys.metrics(1),
    ];
    expect(new Set(named).size).toBe(named.length);
  });

  it("keeps queues and prefixes apart", () => {
    const a = allKeys(queueKeys("p", "a"));
    const b = new Set(allKeys(queueKeys("p", "b")));
    const c = new Set(allKeys(queueKeys("other", "a")));
    for (const key of a) {
      expect(b.has(key), key).toBe(false);
      expect(c.has(key), key).toBe(false);
    }
  });

  it("accepts queue names of 1 to 64 characters of A-Z a-z 0-9 _ . -", () => {
    for (const queue of QUEUES) expect(() => queueKeys("p", queue)).not.toThrow();
  });

  it("rejects other queue names with a clear message", () => {
    const bad = [
      "",
      "x".repeat(65),
      "a b",
      "a{b",
      "a}b",
      "{a}",
      "a:b",
      "a/b",
      "a*",
      "é",
      "a\n",
      "\na",
      "a\u0000",
      "queue!",
    ];
    for (const queue of bad) {
      expect(() => queueKeys("p", queue), JSON.stringify(queue)).toThrow(
        `queue name ${JSON.stringify(queue)} must be 1-64 characters of A-Z a-z 0-9 _ . -`,
      );
    }
  });

  it("rejects prefixes with braces with a clear message", () => {
    for (const prefix of ["{", "}", "a{b", "a}b", "{tag}", "rt:{x}"]) {
      expect(() => queueKeys(prefix, "q"), prefix).toThrow(
        `key prefix ${JSON.stringify(prefix)} must not contain braces (the queue name is the hash tag)`,
      );
    }
  });

  it("checks the queue name before the prefix", () => {
    expect(() => queueKeys("{", "")).toThrow(/queue name/);
  });
});
