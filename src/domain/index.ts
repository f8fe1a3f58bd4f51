export * from "./caption-settings.js";
export * from "./caption-task.js";
export * from "./envelope.js";
export * from "./priority.js";
export * from "./status.js";
export * from "./task-id.js";

import { CaptionTaskPayload } from "./caption-task.js";
import { makeEnvelopeCodec } from "./envelope.js";

/** Every job kind this runtime knows, by the name its envelope carries. */
export const jobKinds = { caption: CaptionTaskPayload };
export const jobCodec = makeEnvelopeCodec(jobKinds);
