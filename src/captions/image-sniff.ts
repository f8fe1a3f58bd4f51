/**
 * What an image really is, from its first bytes. Servers lie about Content-Type in both directions
 * (S3 buckets answer `application/octet-stream` for photos; an expired link answers `image/png` with an
 * HTML login page), so the magic bytes decide and the header is only used in messages.
 */

/** How many leading bytes `sniffImageType` wants; fewer is fine when the body is shorter. */
export const SNIFF_BYTES = 64;

export interface SniffedType {
  /** The MIME type the bytes say, e.g. `image/png`. */
  readonly mime: string;
}

const ascii = (bytes: Uint8Array, start: number, length: number) =>
  bytes.length < start + length
    ? ""
    : Buffer.from(bytes.buffer, bytes.byteOffset + start, length).toString("latin1");

/** ISO BMFF brands (the `ftyp` box) of still images; AVIF first, as HEIF files may list `mif1` too. */
const AVIF_BRANDS = new Set(["avif", "avis"]);
const HEIC_BRANDS = new Set(["heic", "heix", "heim", "heis", "hevc", "hevx"]);
const HEIF_BRANDS = new Set(["mif1", "msf1", "mif2"]);

const sniffFtyp = (bytes: Uint8Array): SniffedType | undefined => {
  if (ascii(bytes, 4, 4) !== "ftyp") return undefined;
  const size = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).readUInt32BE(0);
  // Major brand at 8, minor version at 12, then compatible brands up to the end of the box (or of what
  // we have: the box is short, but a hostile size must not make us read past the prefix).
  const brands = [ascii(bytes, 8, 4)];
  for (let at = 16; at + 4 <= Math.min(size, bytes.length); at += 4) brands.push(ascii(bytes, at, 4));
  if (brands.some((brand) => AVIF_BRANDS.has(brand))) return { mime: "image/avif" };
  if (brands.some((brand) => HEIC_BRANDS.has(brand))) return { mime: "image/heic" };
  if (brands.some((brand) => HEIF_BRANDS.has(brand))) return { mime: "image/heif" };
  // Some other ISO BMFF file: an MP4 video, most likely. Not an image we can describe.
  return undefined;
};

/**
 * The image type of `bytes` (at least `SNIFF_BYTES` of them when the file is that long), or undefined
 * when they are not one of the formats sharp decodes here: JPEG, PNG, GIF, WebP, TIFF, AVIF/HEIF.
 */
export const sniffImageType = (bytes: Uint8Array): SniffedType | undefined => {
  const b = bytes;
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return { mime: "image/jpeg" };
  if (ascii(b, 0, 8) === "\x89PNG\r\n\x1a\n") return { mime: "image/png" };
  const gif = ascii(b, 0, 6);
  if (gif === "GIF87a" || gif === "GIF89a") return { mime: "image/gif" };
  if (ascii(b, 0, 4) === "RIFF" && ascii(b, 8, 4) === "WEBP") return { mime: "image/webp" };
  const tiff = ascii(b, 0, 4);
  if (tiff === "II*\0" || tiff === "MM\0*") return { mime: "image/tiff" };
  return sniffFtyp(b);
};
