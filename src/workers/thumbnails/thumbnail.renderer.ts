/**
 * The thumbnails of one image (DESIGN section 6): four WebP sizes and a thumbhash, from a single
 * decode. The image is decoded once, shrunk on load to at most the largest size and turned
 * upright by its EXIF orientation, into raw pixels; every size and the thumbhash are made from
 * those pixels. A pure function of the image: storing the results is the job handler's business.
 */
import sharp, { type Channels, type WebpOptions } from 'sharp';
import { rgbaToThumbHash } from 'thumbhash';
import { THUMBNAIL_SIZES, type ThumbnailSize } from '../../core/media.js';
import { UnprocessableMediaError } from '../unprocessable-media.error.js';
import { type HeifConvertOptions, isHevcHeif, isMissingHeifCodec, readHeader, withHeifAsPng } from './heif.decoder.js';

export interface Thumbnail {
  size: ThumbnailSize;
  /** Pixel size of this WebP: longest edge `size`, or the source's own size when smaller. */
  width: number;
  height: number;
  webp: Buffer;
}

export interface ThumbnailSet {
  /** Source pixel size as displayed (after EXIF orientation). */
  width: number;
  height: number;
  /** One per THUMBNAIL_SIZES, ascending. */
  thumbnails: Thumbnail[];
  /** Base64 of the thumbhash bytes, made from at most 100x100 pixels. */
  thumbhash: string;
}

export interface RenderOptions {
  /** How HEVC-coded HEIF files are decoded (heif-convert's path, its time limit). */
  heif?: HeifConvertOptions;
}

/**
 * Quality 80 is libwebp's and sharp's default, indistinguishable from the source at thumbnail
 * sizes. Effort (libwebp's method) 2 instead of the default 4: on the 1920 size, the one that
 * costs, it encodes ~2.3x faster for ~5% more bytes (measured 139 vs 313 ms on a 1920x1440
 * photo on the development machine), and a Raspberry Pi has a long backlog to get through after
 * an import. Above 4 the gain is ~1% for twice the time again.
 */
export const THUMBNAIL_WEBP: Readonly<WebpOptions> = Object.freeze({ quality: 80, effort: 2 });

/**
 * sharp's own default limit (0x3FFF squared, ~268 MP), stated here because it is also checked
 * before heif-convert decodes a whole HEIF into memory. Larger images are refused as
 * unprocessable: no real camera comes near it, a decompression bomb does.
 */
export const MAX_INPUT_PIXELS = 0x3fff * 0x3fff;

const LARGEST_SIZE = Math.max(...THUMBNAIL_SIZES);
/** rgbaToThumbHash takes at most 100x100 pixels. */
const THUMBHASH_EDGE = 100;

/** An image decoded once: upright sRGB pixels, longest edge at most LARGEST_SIZE. */
interface DecodedImage {
  /** Source size as displayed. */
  width: number;
  height: number;
  pixels: Buffer;
  raw: { width: number; height: number; channels: Channels };
}

/** Renders the four WebP thumbnails and the thumbhash of an image file or encoded image buffer. */
export async function renderThumbnails(source: string | Buffer, options: RenderOptions = {}): Promise<ThumbnailSet> {
  const decoded = await decodeSource(source, options);
  const thumbnails: Thumbnail[] = [];
  for (const size of [...THUMBNAIL_SIZES].sort((a, b) => b - a)) thumbnails.push(await encodeWebp(decoded, size));
  thumbnails.reverse();
  return { width: decoded.width, height: decoded.height, thumbnails, thumbhash: await thumbhashOf(decoded) };
}

/**
 * Process-wide sharp settings for a worker process that renders thumbnails; not applied by this
 * module because they are global to the process. Call it once at worker start:
 * - the libvips operation cache (by default up to 50 MB and 20 open files) is turned off: a
 *   worker never sees the same image twice, so the cache only holds memory;
 * - libvips threads per image (default: 1 with glibc, else the core count) is set explicitly:
 *   a worker gets its parallelism from images in flight (one per core), and more threads per
 *   image would only multiply the per-thread buffers.
 * Peak RSS is then bounded by the images in flight (each at most 1920 pixels a side once decoded,
 * whatever the source's size) plus node's and the allocator's overhead: ~210-390 MiB over
 * hundreds of images, small or 12 MP, two at a time (bench:thumbs). Capping glibc's malloc
 * arenas (MALLOC_ARENA_MAX=2, only settable in the worker's environment) took 0-15% off that.
 */
export function configureSharpForThumbnailWorker(threadsPerImage = 1): void {
  sharp.cache(false);
  sharp.concurrency(threadsPerImage);
}

async function decodeSource(source: string | Buffer, options: RenderOptions): Promise<DecodedImage> {
  const header = await readHeader(source);
  // A HEIC would fail in sharp after its header was parsed: skip that wasted attempt.
  if (isHevcHeif(header)) return decodeHeif(source, options);
  try {
    return await decodeOnce(source, true);
  } catch (error) {
    if (isMissingHeifCodec(error)) return decodeHeif(source, options);
    throw unprocessable(error);
  }
}

async function decodeHeif(source: string | Buffer, options: RenderOptions): Promise<DecodedImage> {
  // sharp parses a HEIC's header fine, only not its pixels: this refuses an image over the
  // pixel limit before heif-convert decodes all of it into memory.
  try {
    await sharp(source, { limitInputPixels: MAX_INPUT_PIXELS }).metadata();
  } catch (error) {
    throw unprocessable(error);
  }
  return withHeifAsPng(
    source,
    async (png) => {
      try {
        // libheif already applied the HEIF's own rotation and mirroring (irot/imir), which
        // take precedence over EXIF orientation in HEIF: the PNG is upright as it is.
        return await decodeOnce(png, false);
      } catch (error) {
        throw unprocessable(error);
      }
    },
    options.heif,
  );
}

/**
 * The one decode: sharp shrinks JPEG and WebP on load when the resize is in the same pipeline
 * (libjpeg decodes at 1/2, 1/4 or 1/8 scale directly), then resizes exactly to fit LARGEST_SIZE.
 */
async function decodeOnce(input: string | Buffer, autoOrient: boolean): Promise<DecodedImage> {
  const image = sharp(input, {
    autoOrient,
    // 'error' rather than sharp's default 'warning': a truncated file or a decoder error is
    // refused (no grey lower half), but libjpeg's benign warnings ("extraneous bytes before
    // marker"), common in files from old cameras that every viewer shows fine, are not.
    failOn: 'error',
    limitInputPixels: MAX_INPUT_PIXELS,
  });
  // The header alone: sharp refuses here, before any decoding, an image over the pixel limit.
  const metadata = await image.metadata();
  const { data, info } = await image
    .resize(LARGEST_SIZE, LARGEST_SIZE, { fit: 'inside', withoutEnlargement: true })
    // Greyscale, CMYK and 16-bit sources become 8-bit sRGB (alpha kept): what WebP and
    // thumbhash take. An embedded ICC profile is applied on the way.
    .toColourspace('srgb')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  const displayed = autoOrient ? metadata.autoOrient : { width: metadata.width, height: metadata.height };
  return {
    width: displayed.width,
    height: displayed.height,
    pixels: data,
    raw: { width: info.width, height: info.height, channels: info.channels },
  };
}

async function encodeWebp(decoded: DecodedImage, size: ThumbnailSize): Promise<Thumbnail> {
  let image = sharp(decoded.pixels, { raw: decoded.raw });
  // Never upscale: a source no larger than the size is encoded at its own size.
  if (Math.max(decoded.raw.width, decoded.raw.height) > size) image = image.resize(size, size, { fit: 'inside' });
  const { data, info } = await image.webp(THUMBNAIL_WEBP).toBuffer({ resolveWithObject: true });
  return { size, width: info.width, height: info.height, webp: data };
}

async function thumbhashOf(decoded: DecodedImage): Promise<string> {
  const { data, info } = await sharp(decoded.pixels, { raw: decoded.raw })
    .resize(THUMBHASH_EDGE, THUMBHASH_EDGE, { fit: 'inside', withoutEnlargement: true })
    .ensureAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return Buffer.from(rgbaToThumbHash(info.width, info.height, data)).toString('base64');
}

/**
 * A decode failure as an UnprocessableMediaError. Passed on as they are: PvErrors (already
 * classified), system errors (ENOENT, EMFILE, ...) and sharp's failures that are no fault of the
 * file (a missing input, a memory shortage), for the job to retry.
 */
function unprocessable(error: unknown): unknown {
  if (!(error instanceof Error) || error instanceof UnprocessableMediaError || 'code' in error) return error;
  if (/^Input file is missing|out of memory/i.test(error.message)) return error;
  if (/exceeds pixel limit/i.test(error.message)) {
    return new UnprocessableMediaError(`image too large: more than ${MAX_INPUT_PIXELS} pixels`, { cause: error });
  }
  return new UnprocessableMediaError(`not a decodable image: ${decoderReason(error.message)}`, { cause: error });
}

/**
 * libvips stacks every layer's message on its own line, and libheif adds one "bad seek" line per
 * probe and a bare error code: what is left, on one line.
 */
function decoderReason(message: string): string {
  const lines = message
    .split('\n')
    .map((line) =>
      line
        .replace(/(?:\S+: )?bad seek to \d+/g, '')
        .trim()
        .replace(/:$/, ''),
    )
    .filter((line) => line !== '' && !/^\(\d+\.\d+\)$/.test(line));
  return [...new Set(lines)].join('; ') || message.trim();
}
