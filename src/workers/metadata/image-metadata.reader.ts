import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import exifr from 'exifr';
import sharp, { type Metadata as ImageHeader } from 'sharp';
import type { GpsPosition, MediaMetadata } from '../../core/media.js';
import { UnprocessableMediaError } from '../unprocessable-media.error.js';
import { formatTakenAt, parseMetadataDate, parseSubSeconds, parseUtcOffset, type WallClockTime } from './metadata-date.parser.js';

type Tags = Record<string, unknown>;

/** The EXIF blocks as exifr returns them with mergeOutput: false. */
interface ExifBlocks {
  ifd0?: Tags;
  exif?: Tags;
  gps?: Tags;
  errors?: unknown[];
}

/** XMP properties by namespace prefix, as exifr's XMP parser returns them. */
type XmpNamespaces = Record<string, Tags | undefined>;

// One exifr pass over the EXIF block. pick makes exifr read only these values (it stops once it
// has them) and skips the maker note and the thumbnail IFD.
// reviveValues: false keeps dates as the strings the camera wrote: revived, they become Dates
// read in the worker's zone and the camera's wall-clock is lost.
// translateValues: false keeps GPSAltitudeRef a number rather than a sentence.
// silentErrors: true is what makes exifr close its file handle when parsing fails (it leaks it
// otherwise); the errors come back in `errors` and are thrown below, not ignored.
const EXIF_OPTIONS = {
  ifd0: { pick: ['Make', 'Model'] },
  exif: {
    pick: [
      'DateTimeOriginal',
      'CreateDate',
      'SubSecTimeOriginal',
      'SubSecTimeDigitized',
      'OffsetTimeOriginal',
      'OffsetTimeDigitized',
      'OffsetTime',
      'LensModel',
    ],
  },
  gps: {
    pick: ['GPSLatitudeRef', 'GPSLatitude', 'GPSLongitudeRef', 'GPSLongitude', 'GPSAltitudeRef', 'GPSAltitude'],
  },
  ifd1: false,
  interop: false,
  makerNote: false,
  userComment: false,
  xmp: false,
  icc: false,
  iptc: false,
  jfif: false,
  ihdr: false,
  translateValues: false,
  reviveValues: false,
  mergeOutput: false,
  silentErrors: true,
};

const EXIF_HEADER = Buffer.from('Exif\0\0', 'latin1');

/**
 * Reads what an image file says about itself (taken-at time, GPS, camera, lens, displayed size,
 * orientation) from its header, without decoding pixels. A file with no EXIF or XMP at all gives
 * its size alone.
 * Throws UnprocessableMediaError for an empty file, a file libvips cannot read as an image, or an
 * unreadable EXIF or XMP block; file-system errors (missing file, I/O) pass through unchanged,
 * since a retry may succeed.
 */
export async function readImageMetadata(path: string): Promise<MediaMetadata> {
  const header = await readHeader(path);
  const exif = await readExifBlocks(path, header);
  const xmp = header.xmp === undefined ? {} : readXmp(header.xmp);

  const metadata: MediaMetadata = {
    kind: 'image',
    // libvips reads EXIF Orientation and gives the size after it (swapped for 5..8), as the
    // thumbnailer will rotate. For HEIF/AVIF it reports none: libheif applies irot/imir itself and
    // the EXIF tag there is only informational, so the decoded pixels are already upright.
    width: header.autoOrient.width,
    height: header.autoOrient.height,
    orientation: displayOrientation(header.orientation),
  };
  const takenAt = takenAtOf(exif.exif ?? {}, xmp);
  if (takenAt !== undefined) {
    metadata.takenAt = formatTakenAt(takenAt);
    if (takenAt.offsetMinutes !== undefined) metadata.utcOffsetMinutes = takenAt.offsetMinutes;
  }
  const gps = gpsPositionOf(exif.gps ?? {});
  if (gps !== undefined) metadata.gps = gps;
  const make = text(exif.ifd0?.Make) ?? text(xmp.tiff?.Make);
  if (make !== undefined) metadata.make = make;
  const model = text(exif.ifd0?.Model) ?? text(xmp.tiff?.Model);
  if (model !== undefined) metadata.model = model;
  const lens = text(exif.exif?.LensModel) ?? text(xmp.exifEX?.LensModel) ?? text(xmp.aux?.Lens);
  if (lens !== undefined) metadata.lens = lens;
  return metadata;
}

async function readHeader(path: string): Promise<ImageHeader> {
  // stat first so that a missing or unreadable file fails with its fs error, not as bad media.
  const { size } = await stat(path);
  if (size === 0) throw new UnprocessableMediaError('The file is empty.');
  try {
    return await sharp(path).metadata();
  } catch (error) {
    throw new UnprocessableMediaError(`Not an image libvips can read: ${messageOf(error)}.`);
  }
}

/**
 * libvips has already found the EXIF block of a JPEG, PNG, WebP or HEIF/AVIF while reading the
 * header, so exifr parses that buffer: no second read of the file, and none of exifr's container
 * parsers, which know no WebP and miss HEIF files whose brands or item layout they do not expect.
 * A TIFF's tags are the file's own IFDs, which libvips does not hand out, so exifr reads the file.
 */
async function readExifBlocks(path: string, header: ImageHeader): Promise<ExifBlocks> {
  let source: string | Uint8Array;
  if (header.format === 'tiff') {
    // exifr fetches a string holding "://" as a URL; a resolved path never holds "//".
    source = resolve(path);
  } else if (header.exif !== undefined && header.exif.length > 0) {
    // JPEG, WebP and HEIF blocks start with "Exif\0\0", a PNG eXIf chunk with the TIFF header.
    const exif = header.exif;
    source = exif.subarray(0, EXIF_HEADER.length).equals(EXIF_HEADER) ? exif.subarray(EXIF_HEADER.length) : exif;
  } else {
    return {};
  }
  let blocks: ExifBlocks | undefined;
  try {
    blocks = (await exifr.parse(source, EXIF_OPTIONS)) as ExifBlocks | undefined;
  } catch (error) {
    if (isFsError(error)) throw error;
    throw new UnprocessableMediaError(`Unreadable EXIF block: ${messageOf(error)}.`);
  }
  if (blocks?.errors !== undefined && blocks.errors.length > 0) {
    throw new UnprocessableMediaError(`Unreadable EXIF block: ${blocks.errors.map(messageOf).join('; ')}.`);
  }
  return blocks ?? {};
}

function readXmp(packet: Buffer): XmpNamespaces {
  const xmpParser = exifr.segmentParsers.get('xmp') as { parse(xml: string): unknown } | undefined;
  if (xmpParser === undefined) throw new Error('exifr was loaded without its XMP parser');
  try {
    return (xmpParser.parse(packet.toString('utf8')) ?? {}) as XmpNamespaces;
  } catch (error) {
    throw new UnprocessableMediaError(`Unreadable XMP packet: ${messageOf(error)}.`);
  }
}

/**
 * When the photo was taken: EXIF DateTimeOriginal, else CreateDate (DateTimeDigitized), else the
 * XMP dates. EXIF 2.31 added the OffsetTime tags, so older cameras record no offset; editors such
 * as Lightroom do write one into the XMP copy of the same date. The XMP offset is taken only when
 * that XMP date shows the very same wall-clock, so a date some tool converted to UTC never lends
 * its offset.
 */
function takenAtOf(exif: Tags, xmp: XmpNamespaces): WallClockTime | undefined {
  const xmpDates = [xmp.exif?.DateTimeOriginal, xmp.photoshop?.DateCreated, xmp.xmp?.CreateDate, xmp.exif?.DateTimeDigitized].map(
    parseMetadataDate,
  );
  const recorded =
    exifDate(exif.DateTimeOriginal, exif.SubSecTimeOriginal, exif.OffsetTimeOriginal ?? exif.OffsetTime) ??
    exifDate(exif.CreateDate, exif.SubSecTimeDigitized, exif.OffsetTimeDigitized ?? exif.OffsetTime);
  if (recorded === undefined) return xmpDates.find((date) => date !== undefined);
  if (recorded.offsetMinutes === undefined) {
    const sameClock = xmpDates.find((date) => date?.local === recorded.local && date.offsetMinutes !== undefined);
    if (sameClock?.offsetMinutes !== undefined) recorded.offsetMinutes = sameClock.offsetMinutes;
  }
  return recorded;
}

function exifDate(value: unknown, subSeconds: unknown, offset: unknown): WallClockTime | undefined {
  const time = parseMetadataDate(value);
  if (time === undefined) return undefined;
  const fraction = parseSubSeconds(subSeconds);
  if (time.fraction === undefined && fraction !== undefined) time.fraction = fraction;
  const minutes = parseUtcOffset(offset);
  if (minutes !== undefined) time.offsetMinutes = minutes;
  return time;
}

/**
 * Signed decimal degrees from the GPS IFD. Left out when a coordinate or its hemisphere is
 * missing (a position in the wrong hemisphere is worse than none; exiftool's composite tags make
 * the same call), and at exactly 0/0: receivers without a fix write zeros rather than nothing,
 * and no photo is ever taken at exactly that spot in the Gulf of Guinea.
 */
function gpsPositionOf(gps: Tags): GpsPosition | undefined {
  const latitude = signedDegrees(gps.GPSLatitude, gps.GPSLatitudeRef, 'N', 'S', 90);
  const longitude = signedDegrees(gps.GPSLongitude, gps.GPSLongitudeRef, 'E', 'W', 180);
  if (latitude === undefined || longitude === undefined) return undefined;
  if (latitude === 0 && longitude === 0) return undefined;
  const position: GpsPosition = { latitude, longitude };
  const altitude = gps.GPSAltitude;
  if (typeof altitude === 'number' && Number.isFinite(altitude)) {
    // GPSAltitudeRef is a BYTE: 1 means below sea level.
    position.altitude = firstNumber(gps.GPSAltitudeRef) === 1 ? -Math.abs(altitude) : altitude;
  }
  return position;
}

function signedDegrees(value: unknown, ref: unknown, positive: string, negative: string, limit: number): number | undefined {
  // Degrees, minutes, seconds as three rationals; some writers put decimal degrees in the first.
  const parts = Array.isArray(value) ? value : [value];
  if (parts.length === 0 || parts.length > 3 || !parts.every((part) => typeof part === 'number' && Number.isFinite(part))) {
    return undefined;
  }
  const [degrees = 0, minutes = 0, seconds = 0] = parts as number[];
  const magnitude = Math.abs(degrees) + minutes / 60 + seconds / 3600;
  if (magnitude > limit) return undefined;
  const hemisphere = text(ref)?.toUpperCase();
  if (hemisphere === positive) return magnitude;
  if (hemisphere === negative) return -magnitude;
  return undefined;
}

/** Orientation 1..8 as libvips read it; 1 when absent or out of range, as libvips then treats it. */
function displayOrientation(orientation: number | undefined): number {
  return orientation !== undefined && Number.isInteger(orientation) && orientation >= 1 && orientation <= 8 ? orientation : 1;
}

/** A text tag without the NUL padding and spaces cameras leave in fixed-width fields. */
function text(value: unknown): string | undefined {
  if (typeof value === 'number') return String(value);
  if (typeof value !== 'string') return undefined;
  const end = value.indexOf('\0');
  const trimmed = (end === -1 ? value : value.slice(0, end)).trim();
  return trimmed === '' ? undefined : trimmed;
}

function firstNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  if (value instanceof Uint8Array || Array.isArray(value)) {
    const first: unknown = value[0];
    return typeof first === 'number' ? first : undefined;
  }
  return undefined;
}

function isFsError(error: unknown): boolean {
  return error instanceof Error && typeof (error as NodeJS.ErrnoException).code === 'string';
}

function messageOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  // libvips and exifr messages hold newlines and end with a period or not; the reason adds its own.
  return message.replace(/\s+/g, ' ').trim().replace(/\.$/, '');
}
