import { Data, Either, ParseResult, Schema } from "effect";

/**
 * What goes into Redis: `{"v":1,"kind":"caption","body":{...}}`. The version lets a newer
 * runtime read older entries (and an older one refuse newer ones) instead of guessing.
 */
export const ENVELOPE_VERSION = 1;
const SUPPORTED_VERSIONS: ReadonlySet<number> = new Set([ENVELOPE_VERSION]);

/** Not JSON, or JSON that is not an envelope at all. */
export class EnvelopeCorrupt extends Data.TaggedError("EnvelopeCorrupt")<{ readonly reason: string }> {
  override get message() {
    return `corrupt envelope: ${this.reason}`;
  }
}

export class EnvelopeVersionUnsupported extends Data.TaggedError("EnvelopeVersionUnsupported")<{
  readonly version: unknown;
}> {
  override get message() {
    return `unsupported envelope version ${JSON.stringify(this.version)} (this runtime reads ${[...SUPPORTED_VERSIONS].join(", ")})`;
  }
}

export class EnvelopeKindUnknown extends Data.TaggedError("EnvelopeKindUnknown")<{ readonly kind: string }> {
  override get message() {
    return `unknown job kind ${JSON.stringify(this.kind)}`;
  }
}

export class EnvelopeBodyInvalid extends Data.TaggedError("EnvelopeBodyInvalid")<{
  readonly kind: string;
  readonly issues: ReadonlyArray<{ readonly path: string; readonly message: string }>;
}> {
  override get message() {
    return `invalid ${this.kind} payload: ${this.issues.map((i) => `${i.path || "(root)"}: ${i.message}`).join("; ")}`;
  }
}

export type EnvelopeError =
  EnvelopeCorrupt | EnvelopeVersionUnsupported | EnvelopeKindUnknown | EnvelopeBodyInvalid;

// A registry holds schemas of any shape; each decode is typed by its kind.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnySchema = Schema.Schema<any, any, never>;

export interface Decoded<K extends string, A> {
  readonly kind: K;
  readonly body: A;
}

export type DecodedOf<Kinds extends Record<string, AnySchema>> = {
  [K in keyof Kinds & string]: Decoded<K, Schema.Schema.Type<Kinds[K]>>;
}[keyof Kinds & string];

/** Issues as `path: message` pairs, the shape HTTP validation errors and dead letters both use. */
export const describeIssues = (error: ParseResult.ParseError) =>
  ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) => ({
    path: issue.path.join("."),
    message: issue.message,
  }));

/**
 * Reads an envelope's version and kind and leaves the body undecoded: enough for a dispatcher
 * to route a job without loading the schemas (and code) of every kind.
 */
export const peekEnvelope = (
  raw: string,
): Either.Either<
  { readonly kind: string; readonly body: unknown },
  EnvelopeCorrupt | EnvelopeVersionUnsupported
> => {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return Either.left(new EnvelopeCorrupt({ reason: "not JSON" }));
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    return Either.left(new EnvelopeCorrupt({ reason: "not a JSON object" }));
  }
  const { v, kind, body } = parsed as Record<string, unknown>;
  if (v === undefined) return Either.left(new EnvelopeCorrupt({ reason: "no version field" }));
  if (typeof v !== "number" || !SUPPORTED_VERSIONS.has(v)) {
    return Either.left(new EnvelopeVersionUnsupported({ version: v }));
  }
  if (typeof kind !== "string") return Either.left(new EnvelopeCorrupt({ reason: "no kind field" }));
  return Either.right({ kind, body });
};

/**
 * How deep a body may nest (each object or array one level). A job body is a small record; the
 * limit is far above any schema's depth. Past it, decoding refuses the body unread: effect's
 * formatter renders a rejected value recursively, so a body nested some thousands deep (a few
 * kilobytes of `[`) overflowed the stack, and the RangeError was retried as transient instead
 * of failing the job as invalid.
 */
export const MAX_BODY_DEPTH = 64;

/** Whether `value` nests deeper than `limit`; iterative, so any depth is safe to measure. */
const nestsDeeperThan = (value: unknown, limit: number): boolean => {
  const pending: Array<{ readonly value: unknown; readonly depth: number }> = [{ value, depth: 0 }];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (typeof next.value !== "object" || next.value === null) continue;
    const depth = next.depth + 1;
    if (depth > limit) return true;
    for (const child of Object.values(next.value)) pending.push({ value: child, depth });
  }
  return false;
};

export const makeEnvelopeCodec = <Kinds extends Record<string, AnySchema>>(kinds: Kinds) => {
  const encoders = new Map<string, (body: unknown) => Either.Either<unknown, ParseResult.ParseError>>();
  const decoders = new Map<string, (body: unknown) => Either.Either<unknown, ParseResult.ParseError>>();
  for (const [kind, schema] of Object.entries(kinds)) {
    encoders.set(kind, Schema.encodeEither(schema, { errors: "all" }));
    decoders.set(kind, Schema.decodeUnknownEither(schema, { errors: "all", onExcessProperty: "ignore" }));
  }

  const encode = <K extends keyof Kinds & string>(kind: K, body: Schema.Schema.Type<Kinds[K]>): string => {
    const encodeBody = encoders.get(kind);
    if (!encodeBody) throw new EnvelopeKindUnknown({ kind });
    const encoded = encodeBody(body);
    // Only a caller that bypassed the types gets here; say which fields are wrong.
    if (Either.isLeft(encoded)) throw new EnvelopeBodyInvalid({ kind, issues: describeIssues(encoded.left) });
    return JSON.stringify({ v: ENVELOPE_VERSION, kind, body: encoded.right });
  };

  const decode = (raw: string): Either.Either<DecodedOf<Kinds>, EnvelopeError> =>
    Either.flatMap(peekEnvelope(raw), ({ kind, body }): Either.Either<DecodedOf<Kinds>, EnvelopeError> => {
      const decodeBody = decoders.get(kind);
      if (!decodeBody) return Either.left(new EnvelopeKindUnknown({ kind }));
      if (nestsDeeperThan(body, MAX_BODY_DEPTH)) {
        const message = `nested more than ${MAX_BODY_DEPTH} levels deep`;
        return Either.left(new EnvelopeBodyInvalid({ kind, issues: [{ path: "", message }] }));
      }
      // No `Either.match`: its two callbacks, made per job, each get their name set in a bundle
      // that keeps names (thread-bundle.ts), a cost a no-op job notices.
      const decoded = decodeBody(body);
      return Either.isLeft(decoded)
        ? Either.left(new EnvelopeBodyInvalid({ kind, issues: describeIssues(decoded.left) }))
        : Either.right({ kind, body: decoded.right } as DecodedOf<Kinds>);
    });

  return { encode, decode };
};

export type EnvelopeCodec<Kinds extends Record<string, AnySchema>> = ReturnType<
  typeof makeEnvelopeCodec<Kinds>
>;
