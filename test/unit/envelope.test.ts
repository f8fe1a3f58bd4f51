import { DateTime, Either, Schema } from "effect";
import { describe, expect, it } from "vitest";
import {
  CaptionTaskPayload,
  type CaptionTaskPayloadInput,
  ENVELOPE_VERSION,
  EnvelopeBodyInvalid,
  type EnvelopeCorrupt,
  type EnvelopeError,
  EnvelopeKindUnknown,
  EnvelopeVersionUnsupported,
  jobCodec,
  jobKinds,
  MAX_BODY_DEPTH,
  makeEnvelopeCodec,
  newTaskId,
} from "../../src/domain/index.js";

const TAGS = ["EnvelopeCorrupt", "EnvelopeVersionUnsupported", "EnvelopeKindUnknown", "EnvelopeBodyInvalid"];

const validBody = (): CaptionTaskPayloadInput => ({
  task_id: newTaskId(),
  user_id: 42,
  platform_connection_id: 9,
  priority: "high",
  settings: { max_posts_per_run: 20, processing_delay: 0.5 },
  created_at: "2024-02-29T12:34:56.789Z",
  retry_count: 1,
  max_retries: 4,
});

const payload = (): CaptionTaskPayload => Schema.decodeUnknownSync(CaptionTaskPayload)(validBody());

const raw = (value: unknown) => JSON.stringify(value);

/** The error of a decode that must fail. */
const leftOf = (input: string): EnvelopeError => {
  const result = jobCodec.decode(input);
  if (Either.isRight(result))
    throw new Error(`expected ${input} to be rejected, got ${JSON.stringify(result.right)}`);
  return result.left;
};

const bodyIssues = (body: unknown) => {
  const error = leftOf(raw({ v: 1, kind: "caption", body }));
  expect(error).toBeInstanceOf(EnvelopeBodyInvalid);
  return (error as EnvelopeBodyInvalid).issues;
};

const issuePaths = (body: unknown) => [...new Set(bodyIssues(body).map((i) => i.path))].sort();

describe("jobCodec encode", () => {
  it("writes a version 1 caption envelope", () => {
    expect(ENVELOPE_VERSION).toBe(1);
    const p = payload();
    const parsed = JSON.parse(jobCodec.encode("caption", p));
    expect(Object.keys(parsed)).toEqual(["v", "kind", "body"]);
    expect(parsed.v).toBe(1);
    expect(parsed.kind).toBe("caption");
    expect(parsed.body).toEqual({
      task_id: p.task_id,
      user_id: 42,
      platform_connection_id: 9,
      priority: "high",
      settings: {
        max_posts_per_run: 20,
        max_caption_length: 500,
        optimal_min_length: 80,
        optimal_max_length: 200,
        reprocess_existing: false,
        processing_delay: 0.5,
      },
      created_at: "2024-02-29T12:34:56.789Z",
      retry_count: 1,
      max_retries: 4,
    });
  });

  it("throws EnvelopeKindUnknown for a kind it does not know", () => {
    // Cast past the type: a caller in plain JS (or with a stale kind name) can still do this.
    const encode = jobCodec.encode as (kind: string, body: unknown) => string;
    expect(() => encode("resize", payload())).toThrow(EnvelopeKindUnknown);
  });

  it("refuses to encode an invalid payload", () => {
    expect(() => jobCodec.encode("caption", { ...payload(), user_id: -1 })).toThrow();
  });
});

describe("jobCodec round trip", () => {
  it("decodes what it encodes", () => {
    const p = payload();
    const result = jobCodec.decode(jobCodec.encode("caption", p));
    expect(Either.isRight(result)).toBe(true);
    if (Either.isLeft(result)) return;
    expect(result.right.kind).toBe("caption");
    const body = result.right.body;
    expect(DateTime.Equivalence(body.created_at, p.created_at)).toBe(true);
    expect({ ...body, created_at: null }).toEqual({ ...p, created_at: null });
  });

  it("round-trips many payloads with varied settings", () => {
    for (let i = 0; i < 50; i++) {
      const min = 10 + i;
      const p = Schema.decodeUnknownSync(CaptionTaskPayload)({
        ...validBody(),
        user_id: i + 1,
        priority: (["urgent", "high", "normal", "low"] as const)[i % 4],
        settings: {
          max_posts_per_run: 1 + i * 10,
          optimal_min_length: min,
          optimal_max_length: min + 20 + i,
          max_caption_length: 1000 - i,
          reprocess_existing: i % 2 === 0,
          processing_delay: i / 10,
        },
        created_at: new Date(Date.UTC(2020, 0, 1) + i * 86_399_123).toISOString(),
        retry_count: i,
        max_retries: i % 21,
      });
      const encoded = jobCodec.encode("caption", p);
      const decoded = Either.getOrThrow(jobCodec.decode(encoded));
      expect(jobCodec.encode("caption", decoded.body)).toBe(encoded);
      expect(decoded.body.settings).toEqual(p.settings);
    }
  });

  it("fills defaults for fields an older writer left out", () => {
    const { retry_count: _r, max_retries: _m, ...body } = validBody();
    const decoded = Either.getOrThrow(
      jobCodec.decode(raw({ v: 1, kind: "caption", body: { ...body, settings: {} } })),
    );
    expect(decoded.body.retry_count).toBe(0);
    expect(decoded.body.max_retries).toBe(3);
    expect(decoded.body.settings.max_posts_per_run).toBe(50);
  });

  it("ignores extra fields in the envelope and the body", () => {
    const body = { ...validBody(), extra: "x", settings: { future_field: true } };
    const decoded = Either.getOrThrow(jobCodec.decode(raw({ v: 1, kind: "caption", body, trace: "abc" })));
    expect(decoded.body).not.toHaveProperty("extra");
    expect(decoded.body.settings).not.toHaveProperty("future_field");
  });

  it("accepts the version written as 1.0", () => {
    const text = jobCodec.encode("caption", payload()).replace('"v":1', '"v":1.0');
    expect(text).toContain('"v":1.0');
    expect(Either.isRight(jobCodec.decode(text))).toBe(true);
  });
});

describe("jobCodec decode errors", () => {
  it("reports non-JSON as EnvelopeCorrupt", () => {
    for (const input of ["", " ", "{", "not json", "{'v':1}", "undefined", "NaN", '{"v":1,}', "\u0000"]) {
      const error = leftOf(input);
      expect(error._tag, JSON.stringify(input)).toBe("EnvelopeCorrupt");
      expect((error as EnvelopeCorrupt).reason).toBe("not JSON");
    }
  });

  it("reports JSON that is not an object as EnvelopeCorrupt", () => {
    for (const input of [
      "[]",
      "[1,2]",
      '[{"v":1,"kind":"caption"}]',
      "0",
      "1",
      "-3.5",
      "null",
      "true",
      '"caption"',
    ]) {
      const error = leftOf(input);
      expect(error._tag, input).toBe("EnvelopeCorrupt");
      expect((error as EnvelopeCorrupt).reason).toBe("not a JSON object");
    }
  });

  it("reports a missing version as EnvelopeCorrupt", () => {
    for (const input of ["{}", raw({ kind: "caption", body: validBody() }), raw({ V: 1, kind: "caption" })]) {
      const error = leftOf(input);
      expect(error._tag).toBe("EnvelopeCorrupt");
      expect((error as EnvelopeCorrupt).reason).toBe("no version field");
    }
  });

  it("reports an unknown version as EnvelopeVersionUnsupported, keeping the version", () => {
    for (const v of [2, 0, -1, 1.5, "1", null, true, [1], { n: 1 }]) {
      const error = leftOf(raw({ v, kind: "caption", body: validBody() }));
      expect(error, JSON.stringify(v)).toBeInstanceOf(EnvelopeVersionUnsupported);
      expect(error._tag).toBe("EnvelopeVersionUnsupported");
      expect((error as EnvelopeVersionUnsupported).version).toEqual(v);
    }
    expect(leftOf(raw({ v: 2, kind: "caption" })).message).toBe(
      "unsupported envelope version 2 (this runtime reads 1)",
    );
    expect(leftOf(raw({ v: "1", kind: "caption" })).message).toContain('version "1"');
  });

  it("checks the version before the kind", () => {
    expect(leftOf(raw({ v: 2 }))._tag).toBe("EnvelopeVersionUnsupported");
    expect(leftOf(raw({ v: 2, kind: "resize" }))._tag).toBe("EnvelopeVersionUnsupported");
  });

  it("reports a missing or non-string kind as EnvelopeCorrupt", () => {
    for (const kind of [undefined, null, 1, true, ["caption"], { caption: 1 }]) {
      const error = leftOf(raw({ v: 1, kind, body: validBody() }));
      expect(error._tag, JSON.stringify(kind)).toBe("EnvelopeCorrupt");
      expect((error as EnvelopeCorrupt).reason).toBe("no kind field");
    }
  });

  it("reports an unknown kind as EnvelopeKindUnknown, keeping the kind", () => {
    for (const kind of [
      "resize",
      "",
      "Caption",
      "caption ",
      "toString",
      "__proto__",
      "constructor",
      "hasOwnProperty",
    ]) {
      const error = leftOf(raw({ v: 1, kind, body: validBody() }));
      expect(error, kind).toBeInstanceOf(EnvelopeKindUnknown);
      expect((error as EnvelopeKindUnknown).kind).toBe(kind);
    }
    expect(leftOf(raw({ v: 1, kind: "resize" })).message).toBe('unknown job kind "resize"');
  });

  it("reports a missing or non-object body as EnvelopeBodyInvalid at the root", () => {
    for (const body of [undefined, null, 1, "x", [], true]) {
      const error = leftOf(raw({ v: 1, kind: "caption", body }));
      expect(error, JSON.stringify(body)).toBeInstanceOf(EnvelopeBodyInvalid);
      expect((error as EnvelopeBodyInvalid).kind).toBe("caption");
      expect((error as EnvelopeBodyInvalid).issues.map((i) => i.path)).toEqual([""]);
    }
    expect(leftOf(raw({ v: 1, kind: "caption" })).message).toMatch(/^invalid caption payload: \(root\): /);
  });

  it("names the bad field paths of an invalid body", () => {
    expect(issuePaths({ ...validBody(), user_id: 0 })).toEqual(["user_id"]);
    expect(issuePaths({ ...validBody(), settings: { max_posts_per_run: 0 } })).toEqual([
      "settings.max_posts_per_run",
    ]);
    expect(issuePaths({ ...validBody(), settings: { processing_delay: 61 } })).toEqual([
      "settings.processing_delay",
    ]);
    expect(issuePaths({ ...validBody(), task_id: "nope" })).toEqual(["task_id"]);
  });

  it("names every bad field at once", () => {
    const body = {
      ...validBody(),
      task_id: 5,
      user_id: "7",
      platform_connection_id: 0,
      priority: "soon",
      created_at: "later",
      retry_count: -1,
      max_retries: 99,
      settings: { max_posts_per_run: 501, max_caption_length: 1.5, reprocess_existing: "yes" },
    };
    expect(issuePaths(body)).toEqual([
      "created_at",
      "max_retries",
      "platform_connection_id",
      "priority",
      "retry_count",
      "settings.max_caption_length",
      "settings.max_posts_per_run",
      "settings.reprocess_existing",
      "task_id",
      "user_id",
    ]);
  });

  it("names missing required fields", () => {
    const { user_id: _u, created_at: _c, ...body } = validBody();
    expect(issuePaths(body)).toEqual(["created_at", "user_id"]);
  });

  it("reports broken cross-field rules on the settings field", () => {
    const issues = bodyIssues({
      ...validBody(),
      settings: { optimal_min_length: 300, optimal_max_length: 250, max_caption_length: 100 },
    });
    expect(issues).toEqual([
      { path: "settings.optimal_min_length", message: "must not exceed optimal_max_length" },
      { path: "settings.optimal_max_length", message: "must not exceed max_caption_length" },
    ]);
  });

  it("puts every issue in its message", () => {
    const error = leftOf(
      raw({
        v: 1,
        kind: "caption",
        body: { ...validBody(), user_id: 0, settings: { max_posts_per_run: 0 } },
      }),
    );
    expect(error.message).toMatch(/^invalid caption payload: /);
    expect(error.message).toContain("user_id: ");
    expect(error.message).toContain("settings.max_posts_per_run: ");
  });

  it("returns errors that are Errors with a message", () => {
    const errors = [
      leftOf("nope"),
      leftOf(raw({ v: 3 })),
      leftOf(raw({ v: 1, kind: "resize" })),
      leftOf(raw({ v: 1, kind: "caption", body: {} })),
    ];
    expect(errors.map((e) => e._tag)).toEqual(TAGS);
    for (const e of errors) {
      expect(e).toBeInstanceOf(Error);
      expect(e.message.length).toBeGreaterThan(0);
    }
    expect(errors[0]?.message).toBe("corrupt envelope: not JSON");
  });
});

describe("makeEnvelopeCodec", () => {
  const codec = makeEnvelopeCodec({
    caption: jobKinds.caption,
    ping: Schema.Struct({ n: Schema.NumberFromString }),
  });

  it("dispatches on the kind", () => {
    const text = codec.encode("ping", { n: 5 });
    expect(JSON.parse(text)).toEqual({ v: 1, kind: "ping", body: { n: "5" } });
    expect(Either.getOrThrow(codec.decode(text))).toEqual({ kind: "ping", body: { n: 5 } });
    const caption = Either.getOrThrow(codec.decode(jobCodec.encode("caption", payload())));
    expect(caption.kind).toBe("caption");
  });

  it("decodes a body with the schema of its own kind only", () => {
    const error = Either.getLeft(codec.decode(raw({ v: 1, kind: "ping", body: validBody() })));
    expect(error._tag === "Some" && error.value._tag).toBe("EnvelopeBodyInvalid");
    expect(error._tag === "Some" && (error.value as EnvelopeBodyInvalid).kind).toBe("ping");
  });

  it("knows no kinds when given none", () => {
    const empty = makeEnvelopeCodec({});
    expect(
      Either.getLeft(empty.decode(raw({ v: 1, kind: "caption", body: validBody() }))).pipe((o) => o._tag),
    ).toBe("Some");
    const result = empty.decode(raw({ v: 1, kind: "caption" }));
    expect(Either.isLeft(result) && result.left._tag).toBe("EnvelopeKindUnknown");
  });
});

// ---------------------------------------------------------------------------------------------
// Garbage in: decode must never throw and must always return Left.

/** mulberry32: a small seeded PRNG, so a failure can be replayed. */
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

const ALPHABET = [
  "{",
  "}",
  "[",
  "]",
  '"',
  ":",
  ",",
  "v",
  "1",
  "kind",
  "caption",
  "body",
  " ",
  "\\",
  "n",
  "u",
  "0",
  "-",
  "e",
  ".",
];

const randomJson = (r: () => number, depth: number): unknown => {
  const pick = Math.floor(r() * (depth > 3 ? 6 : 9));
  switch (pick) {
    case 0:
      return null;
    case 1:
      return r() < 0.5;
    case 2:
      return Math.floor((r() - 0.5) * 1e6) / (r() < 0.5 ? 1 : 7);
    case 3:
      return ["", "caption", "1", "v", "kind", "body", "\u0000", "\ud800", "💥", "__proto__"][
        Math.floor(r() * 10)
      ];
    case 4:
      return [1, 2, "1", 1.5, 0, -1][Math.floor(r() * 6)];
    case 5:
      return Math.random().toString(36);
    case 6:
    case 7: {
      const obj: Record<string, unknown> = {};
      const keys = ["v", "kind", "body", "task_id", "user_id", "settings", "__proto__", "constructor", "x"];
      const n = Math.floor(r() * 5);
      for (let i = 0; i < n; i++) obj[keys[Math.floor(r() * keys.length)] ?? "x"] = randomJson(r, depth + 1);
      return obj;
    }
    default:
      return Array.from({ length: Math.floor(r() * 4) }, () => randomJson(r, depth + 1));
  }
};

const decodeSafely = (input: string) => {
  let result: ReturnType<typeof jobCodec.decode> | undefined;
  expect(() => {
    result = jobCodec.decode(input);
  }, JSON.stringify(input)).not.toThrow();
  return result as ReturnType<typeof jobCodec.decode>;
};

const expectGarbageRejected = (input: string) => {
  const result = decodeSafely(input);
  expect(Either.isLeft(result), input).toBe(true);
  if (Either.isLeft(result)) {
    expect(TAGS).toContain(result.left._tag);
    expect(typeof result.left.message).toBe("string");
  }
};

describe("jobCodec decode on garbage", () => {
  it("never throws on random strings of JSON-ish tokens", () => {
    const r = prng(1);
    for (let i = 0; i < 1500; i++) {
      const n = Math.floor(r() * 30);
      let s = "";
      for (let j = 0; j < n; j++) s += ALPHABET[Math.floor(r() * ALPHABET.length)];
      expectGarbageRejected(s);
    }
  });

  it("never throws on random code units and bytes", () => {
    const r = prng(2);
    for (let i = 0; i < 1000; i++) {
      const units = Array.from({ length: Math.floor(r() * 64) }, () => Math.floor(r() * 0x10000));
      expectGarbageRejected(String.fromCharCode(...units));
      const bytes = Buffer.from(Array.from({ length: Math.floor(r() * 64) }, () => Math.floor(r() * 256)));
      expectGarbageRejected(bytes.toString("utf8"));
      expectGarbageRejected(bytes.toString("latin1"));
    }
  });

  it("never throws on random JSON values, and never accepts them", () => {
    const r = prng(3);
    for (let i = 0; i < 2000; i++) expectGarbageRejected(JSON.stringify(randomJson(r, 0)) ?? "undefined");
  });

  it("never throws on envelopes with random versions, kinds and bodies", () => {
    const r = prng(4);
    for (let i = 0; i < 1500; i++) {
      const envelope = {
        v: [1, 1, 1, 2, "1", null, 0][Math.floor(r() * 7)],
        kind: ["caption", "caption", "resize", 1, null][Math.floor(r() * 5)],
        body: randomJson(r, 0),
      };
      expectGarbageRejected(JSON.stringify(envelope));
    }
  });

  it("never throws on a valid envelope with one field of its body broken", () => {
    const r = prng(5);
    const fields = Object.keys(validBody());
    const bad = [null, -1, 0, 1.5, "", "x", [], {}, true, 1e308, "9".repeat(400)];
    for (let i = 0; i < 500; i++) {
      const body: Record<string, unknown> = { ...validBody() };
      const field = fields[Math.floor(r() * fields.length)] ?? "user_id";
      const value = bad[Math.floor(r() * bad.length)];
      body[field] = value;
      const result = decodeSafely(raw({ v: 1, kind: "caption", body }));
      // A few replacements are valid (e.g. retry_count 0); everything else must name the field.
      if (Either.isLeft(result)) {
        expect(result.left._tag).toBe("EnvelopeBodyInvalid");
        const paths = (result.left as EnvelopeBodyInvalid).issues.map((x) => x.path.split(".")[0]);
        expect(paths.length).toBeGreaterThan(0);
        for (const p of paths) expect(p).toBe(field);
      } else {
        expect(["retry_count", "max_retries", "settings"]).toContain(field);
      }
    }
  });

  it("never throws on truncations of a valid envelope", () => {
    const text = jobCodec.encode("caption", payload());
    for (let i = 0; i < text.length; i++) expectGarbageRejected(text.slice(0, i));
  });

  it("never throws on deeply nested JSON", () => {
    expectGarbageRejected(`${"[".repeat(5000)}${"]".repeat(5000)}`);
    expectGarbageRejected(`{"v":1,"kind":"caption","body":${'{"a":'.repeat(5000)}1${"}".repeat(5000)}}`);
    expectGarbageRejected("[".repeat(200_000));
  });

  it("refuses a body nested too deep to describe, wherever the nesting is, as invalid", () => {
    // effect formats a rejected value recursively: these overflowed its stack (a RangeError the
    // worker retried as transient) instead of failing the job as invalid at once.
    const arrays = (n: number) => `${"[".repeat(n)}${"]".repeat(n)}`;
    const objects = (n: number) => `${'{"a":'.repeat(n)}1${"}".repeat(n)}`;
    const valid = raw(validBody()).slice(0, -1);
    for (const deep of [arrays(50_000), objects(50_000), arrays(MAX_BODY_DEPTH + 1)]) {
      for (const body of [deep, `${valid},"user_id":${deep}}`, `${valid},"settings":{"x":${deep}}}`]) {
        const error = leftOf(`{"v":1,"kind":"caption","body":${body}}`);
        expect(error).toBeInstanceOf(EnvelopeBodyInvalid);
        expect(error.message).toBe(
          `invalid caption payload: (root): nested more than ${MAX_BODY_DEPTH} levels deep`,
        );
      }
    }
    // At the limit the body is decoded as usual (an extra field nested that deep is ignored).
    const atLimit = `${valid},"extra":${arrays(MAX_BODY_DEPTH - 1)}}`;
    expect(Either.isRight(jobCodec.decode(`{"v":1,"kind":"caption","body":${atLimit}}`))).toBe(true);
    expect(issuePaths(JSON.parse(`${valid},"user_id":${arrays(MAX_BODY_DEPTH - 1)}}`))).toEqual(["user_id"]);
  });
});
