import { createRequire } from "node:module";

/**
 * HEIC (HEVC inside HEIF: iPhone photos) decoded with libheif compiled to WebAssembly. sharp's
 * prebuilt libvips reads the HEIF container but ships no HEVC decoder (patents), so without this
 * every iPhone photo would be refused.
 */
interface Decoded {
  readonly width: number;
  readonly height: number;
  /** RGBA, 8 bits per channel. */
  readonly data: Uint8ClampedArray;
}

const require = createRequire(import.meta.url);
const decode = require("heic-decode") as (input: { buffer: Buffer }) => Promise<Decoded>;

/** The first (primary) image of a HEIC file, with its rotation and mirroring applied. */
export const decodeHeic = async (bytes: Buffer): Promise<Decoded> => decode({ buffer: bytes });
