import { Schema } from "effect";

const intBetween = (min: number, max: number) => Schema.Int.pipe(Schema.between(min, max));

const Fields = {
  max_posts_per_run: intBetween(1, 500),
  max_caption_length: intBetween(50, 1000),
  optimal_min_length: intBetween(10, 500),
  optimal_max_length: intBetween(20, 1000),
  reprocess_existing: Schema.Boolean,
  /** Seconds to wait between posts, to be gentle with the user's instance. */
  processing_delay: Schema.Number.pipe(Schema.between(0, 60)),
};

/** What a client may send: every field optional (absent, not `undefined`, so errors stay single). */
const SettingsInput = Schema.Struct({
  max_posts_per_run: Schema.optionalWith(Fields.max_posts_per_run, { exact: true }),
  max_caption_length: Schema.optionalWith(Fields.max_caption_length, { exact: true }),
  optimal_min_length: Schema.optionalWith(Fields.optimal_min_length, { exact: true }),
  optimal_max_length: Schema.optionalWith(Fields.optimal_max_length, { exact: true }),
  reprocess_existing: Schema.optionalWith(Fields.reprocess_existing, { exact: true }),
  processing_delay: Schema.optionalWith(Fields.processing_delay, { exact: true }),
});

const SettingsFull = Schema.Struct(Fields).pipe(
  Schema.filter((s) => {
    const issues: Array<{ path: [string]; message: string }> = [];
    if (s.optimal_min_length > s.optimal_max_length) {
      issues.push({ path: ["optimal_min_length"], message: "must not exceed optimal_max_length" });
    }
    if (s.optimal_max_length > s.max_caption_length) {
      issues.push({ path: ["optimal_max_length"], message: "must not exceed max_caption_length" });
    }
    return issues.length === 0 ? true : issues;
  }),
);

/**
 * Per-task settings of a caption run, with Vedfolnir's defaults (50 posts, 500 characters at
 * most, 80-200 optimal, no reprocessing, 1 s between posts). A field left out defaults within
 * what the given ones allow: `{max_caption_length: 150}` gets an optimal range of 80-150, not a
 * refusal for a default the client never chose. Bounds keep one task from asking for unbounded work.
 */
export const CaptionSettings = Schema.transform(SettingsInput, Schema.typeSchema(SettingsFull), {
  strict: true,
  decode: (input) => {
    const max_caption_length = input.max_caption_length ?? 500;
    const optimal_max_length = input.optimal_max_length ?? Math.min(200, max_caption_length);
    const optimal_min_length = input.optimal_min_length ?? Math.min(80, optimal_max_length);
    return {
      max_posts_per_run: input.max_posts_per_run ?? 50,
      max_caption_length,
      optimal_min_length,
      optimal_max_length,
      reprocess_existing: input.reprocess_existing ?? false,
      processing_delay: input.processing_delay ?? 1.0,
    };
  },
  encode: (settings) => settings,
}).pipe(Schema.compose(SettingsFull, { strict: false }));
export type CaptionSettings = typeof SettingsFull.Type;

export const defaultCaptionSettings = (): CaptionSettings => Schema.decodeSync(CaptionSettings)({});
