import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPvError } from '../../src/core/errors.js';
import type { MediaMetadata } from '../../src/core/media.js';
import { readImageMetadata } from '../../src/workers/metadata/image-metadata.reader.js';
import { CORPUS_DIR } from '../support/corpus.js';
import { pseudoRandomBytes } from '../support/random.js';

const IMAGES = join(CORPUS_DIR, 'images');
const image = (name: string): string => join(IMAGES, name);

const run = promisify(execFile);
const HAS_EXIFTOOL = spawnSync('exiftool', ['-ver']).status === 0;
// CI must have exiftool (scripts/setup.sh installs it); a laptop without it skips these tests.
const SKIP_EXIFTOOL = !HAS_EXIFTOOL && !process.env.CI;
if (SKIP_EXIFTOOL) {
  console.warn('exiftool is not installed: skipping the image metadata tests that compare with it (apt install libimage-exiftool-perl)');
}

type ExiftoolTags = Record<string, string | number | undefined>;

/** What exiftool reads from a file, as numbers (-n): signed GPS degrees, altitude in metres. */
async function exiftool(file: string, tags: string[]): Promise<ExiftoolTags> {
  const { stdout } = await run('exiftool', ['-n', '-json', ...tags.map((tag) => `-${tag}`), file]);
  const [entry] = JSON.parse(stdout) as ExiftoolTags[];
  if (entry === undefined) throw new Error(`exiftool printed nothing for ${file}`);
  return entry;
}

/** Writes a copy of a file with some tags changed by exiftool arguments (the original is never touched). */
async function exiftoolCopy(source: string, target: string, args: string[]): Promise<string> {
  await run('exiftool', ['-q', '-n', ...args, '-o', target, source]);
  return target;
}

/** exiftool's "2008:10:22 16:28:39" with its sub-seconds and offset tags, as takenAt spells it. */
function takenAtFromExiftool(tags: ExiftoolTags, date: string, subSeconds: string, offset: string): string | undefined {
  const value = tags[date];
  if (value === undefined) return undefined;
  const [day = '', time = ''] = String(value).split(' ');
  const fraction = tags[subSeconds] === undefined ? '' : `.${String(tags[subSeconds])}`;
  return `${day.replaceAll(':', '-')}T${time}${fraction}${tags[offset] ?? ''}`;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'pv-image-metadata-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

const describeWithExiftool = SKIP_EXIFTOOL
  ? (name: string, suite: () => void) => describe.skip(`${name} (skipped: exiftool is not installed, and not in CI)`, suite)
  : describe;

describeWithExiftool('readImageMetadata compared with exiftool', () => {
  beforeAll(() => {
    if (!HAS_EXIFTOOL) throw new Error('exiftool is required in CI: apt install libimage-exiftool-perl');
  });

  it.each(['gps/DSCN0010.jpg', 'gps/DSCN0012.jpg', 'gps/DSCN0021.jpg'])(
    'reads the GPS position and taken-at time of %s as exiftool does',
    async (name) => {
      const tags = await exiftool(image(name), ['GPSLatitude', 'GPSLongitude', 'GPSAltitude', 'DateTimeOriginal', 'OffsetTimeOriginal']);
      const metadata = await readImageMetadata(image(name));

      expect(metadata.kind).toBe('image');
      expect(metadata.gps?.latitude).toBeCloseTo(Number(tags.GPSLatitude), 5);
      expect(metadata.gps?.longitude).toBeCloseTo(Number(tags.GPSLongitude), 5);
      // These Nikons write GPSAltitudeRef but no GPSAltitude.
      expect(metadata.gps?.altitude).toBe(tags.GPSAltitude);
      expect(metadata.takenAt).toBe(takenAtFromExiftool(tags, 'DateTimeOriginal', 'none', 'OffsetTimeOriginal'));
      expect(metadata.utcOffsetMinutes).toBeUndefined();
    },
  );

  it.each([
    'cameras/Canon_40D.jpg',
    'cameras/Fujifilm_FinePix6900ZOOM.jpg',
    'cameras/Nikon_D70.jpg',
    'cameras/Pentax_K10D.jpg',
    'cameras/Samsung_Digimax_i50_MP3.jpg',
  ])('reads the make, model and lens of %s as exiftool does', async (name) => {
    const tags = await exiftool(image(name), ['Make', 'Model', 'LensModel', 'Lens']);
    const metadata = await readImageMetadata(image(name));

    expect(metadata.make).toBe(tags.Make);
    expect(metadata.model).toBe(tags.Model);
    expect(metadata.lens).toBe(tags.LensModel ?? tags.Lens);
  });

  it('reads size, camera, lens, taken-at time with sub-seconds and offset, and GPS of an iPhone HEIC as exiftool does', async () => {
    const file = image('heic/IMG_5195.HEIC');
    const tags = await exiftool(file, [
      'ImageWidth',
      'ImageHeight',
      'Make',
      'Model',
      'LensModel',
      'DateTimeOriginal',
      'SubSecTimeOriginal',
      'OffsetTimeOriginal',
      'GPSLatitude',
      'GPSLongitude',
      'GPSAltitude',
    ]);
    const metadata = await readImageMetadata(file);

    expect(metadata).toMatchObject({
      kind: 'image',
      width: tags.ImageWidth,
      height: tags.ImageHeight,
      orientation: 1,
      make: tags.Make,
      model: tags.Model,
      lens: tags.LensModel,
      takenAt: takenAtFromExiftool(tags, 'DateTimeOriginal', 'SubSecTimeOriginal', 'OffsetTimeOriginal'),
      utcOffsetMinutes: -300,
    });
    expect(metadata.takenAt).toBe('2021-04-11T15:47:53.054-05:00');
    expect(metadata.gps?.latitude).toBeCloseTo(Number(tags.GPSLatitude), 5);
    expect(metadata.gps?.longitude).toBeCloseTo(Number(tags.GPSLongitude), 5);
    expect(metadata.gps?.longitude).toBeLessThan(0);
    expect(metadata.gps?.altitude).toBeCloseTo(Number(tags.GPSAltitude), 5);
  });

  it('reads only the size of a HEIF that records no camera, time or place, as exiftool does', async () => {
    const file = image('heic/samplefilehub.heif');
    const tags = await exiftool(file, ['ImageWidth', 'ImageHeight', 'Make', 'Model', 'DateTimeOriginal', 'GPSLatitude']);

    expect([tags.Make, tags.Model, tags.DateTimeOriginal, tags.GPSLatitude]).toEqual([undefined, undefined, undefined, undefined]);
    expect(await readImageMetadata(file)).toEqual({
      kind: 'image',
      width: tags.ImageWidth,
      height: tags.ImageHeight,
      orientation: 1,
    });
  });

  it('keeps a HEIF at its decoded size with orientation 1 when its EXIF says 6, since irot/imir carry HEIF rotation', async () => {
    const file = await exiftoolCopy(image('heic/samplefilehub.heif'), join(scratch, 'orientation-6.heif'), ['-Orientation=6']);
    expect((await exiftool(file, ['Orientation'])).Orientation).toBe(6);

    expect(await readImageMetadata(file)).toMatchObject({ width: 640, height: 426, orientation: 1 });
  });

  it('gives south and west negative degrees and an altitude below sea level negative metres, as exiftool does', async () => {
    const file = await exiftoolCopy(image('gps/DSCN0010.jpg'), join(scratch, 'sydney.jpg'), [
      '-GPSLatitude=33.856789',
      '-GPSLatitudeRef=S',
      '-GPSLongitude=70.5',
      '-GPSLongitudeRef=W',
      '-GPSAltitude=12.5',
      '-GPSAltitudeRef=1',
    ]);
    const tags = await exiftool(file, ['GPSLatitude', 'GPSLongitude', 'GPSAltitude']);
    const { gps } = await readImageMetadata(file);

    expect(gps?.latitude).toBeCloseTo(Number(tags.GPSLatitude), 5);
    expect(gps?.longitude).toBeCloseTo(Number(tags.GPSLongitude), 5);
    expect(gps?.altitude).toBeCloseTo(Number(tags.GPSAltitude), 5);
    expect(gps).toMatchObject({ latitude: -33.856789, longitude: -70.5, altitude: -12.5 });
  });

  it('leaves out a 0/0 position written without a fix, and keeps the rest', async () => {
    const file = await exiftoolCopy(image('gps/DSCN0010.jpg'), join(scratch, 'null-island.jpg'), ['-GPSLatitude=0', '-GPSLongitude=0']);
    const metadata = await readImageMetadata(file);

    expect(metadata.gps).toBeUndefined();
    expect(metadata.takenAt).toBe('2008-10-22T16:28:39');
  });

  it('leaves out a position whose hemisphere is missing', async () => {
    const file = await exiftoolCopy(image('gps/DSCN0010.jpg'), join(scratch, 'no-ref.jpg'), ['-GPSLatitudeRef=']);

    expect((await readImageMetadata(file)).gps).toBeUndefined();
  });

  it('reads EXIF from a TIFF, whose tags libvips does not hand out', async () => {
    const pixels = join(scratch, 'pixels.tif');
    await sharp(image('gps/DSCN0010.jpg')).tiff().toFile(pixels);
    const file = await exiftoolCopy(pixels, join(scratch, 'tagged.tif'), ['-TagsFromFile', image('gps/DSCN0010.jpg'), '-all:all']);
    const { gps, ...jpeg } = await readImageMetadata(image('gps/DSCN0010.jpg'));
    const { gps: tiffGps, ...tiff } = await readImageMetadata(file);

    expect(tiff).toEqual(jpeg);
    // exiftool rewrites the GPS rationals with other denominators.
    expect(tiffGps?.latitude).toBeCloseTo(gps?.latitude ?? Number.NaN, 5);
    expect(tiffGps?.longitude).toBeCloseTo(gps?.longitude ?? Number.NaN, 5);
  });
});

describe('readImageMetadata', () => {
  it.each([1, 2, 3, 4, 5, 6, 7, 8])(
    'reports orientation %i and the displayed size of the landscape and portrait corpus files',
    async (orientation) => {
      const landscape = await readImageMetadata(image(`orientation/landscape_${orientation}.jpg`));
      const portrait = await readImageMetadata(image(`orientation/portrait_${orientation}.jpg`));

      expect(landscape).toMatchObject({ orientation, width: 600, height: 450 });
      expect(portrait).toMatchObject({ orientation, width: 450, height: 600 });
    },
  );

  it('takes the UTC offset from XMP when it records the same wall-clock time as EXIF', async () => {
    // Lightroom and Photoshop wrote XMP dates with offsets; the cameras predate EXIF's OffsetTime.
    expect(await readImageMetadata(image('cameras/Nikon_D70.jpg'))).toMatchObject({
      takenAt: '2008-03-15T09:52:01-04:00',
      utcOffsetMinutes: -240,
      lens: '100.0 mm f/2.8',
    });
    expect(await readImageMetadata(image('cameras/Pentax_K10D.jpg'))).toMatchObject({
      takenAt: '2008-05-04T16:47:24+09:00',
      utcOffsetMinutes: 540,
    });
  });

  it('drops sub-seconds of zero', async () => {
    // The 40D writes SubSecTimeOriginal "00".
    expect((await readImageMetadata(image('cameras/Canon_40D.jpg'))).takenAt).toBe('2008-05-30T15:56:01');
  });

  it('keeps the camera wall-clock time whatever the time zone of the process', async () => {
    const before = process.env.TZ;
    process.env.TZ = 'Pacific/Chatham';
    try {
      // The zone really changed: +13:45 in October (summer time), so a Date would shift the hour.
      expect(new Date(Date.UTC(2008, 9, 22, 16, 28, 39)).getTimezoneOffset()).toBe(-825);
      expect((await readImageMetadata(image('gps/DSCN0010.jpg'))).takenAt).toBe('2008-10-22T16:28:39');
      expect((await readImageMetadata(image('heic/IMG_5195.HEIC'))).takenAt).toBe('2021-04-11T15:47:53.054-05:00');
    } finally {
      if (before === undefined) delete process.env.TZ;
      else process.env.TZ = before;
    }
  });

  it('reads EXIF from a WebP, a format exifr cannot open itself', async () => {
    const file = join(scratch, 'with-exif.webp');
    await sharp(image('gps/DSCN0010.jpg')).keepMetadata().webp().toFile(file);
    const jpeg = await readImageMetadata(image('gps/DSCN0010.jpg'));

    expect(await readImageMetadata(file)).toEqual(jpeg);
  });

  it('reads the metadata of a truncated JPEG whose header is intact', async () => {
    const original = await readFile(image('gps/DSCN0010.jpg'));
    const file = join(scratch, 'truncated.jpg');
    await writeFile(file, original.subarray(0, 40_000));

    expect(await readImageMetadata(file)).toEqual(await readImageMetadata(image('gps/DSCN0010.jpg')));
  });

  it('gives only the size of a PNG without EXIF', async () => {
    const file = join(scratch, 'plain.png');
    await sharp({ create: { width: 30, height: 20, channels: 3, background: '#c0ffee' } })
      .png()
      .toFile(file);

    expect(await readImageMetadata(file)).toEqual<MediaMetadata>({ kind: 'image', width: 30, height: 20, orientation: 1 });
  });

  it.each([
    ['random bytes named .jpg', 'random.jpg', pseudoRandomBytes(64 * 1024, 7), 'Not an image'],
    ['an empty file', 'empty.jpg', Buffer.alloc(0), 'empty'],
  ])('rejects %s as unprocessable media', async (_, name, bytes, reason) => {
    const file = join(scratch, name);
    await writeFile(file, bytes);

    const error = await rejection(readImageMetadata(file));
    expect(isPvError(error, 'PV_MEDIA_UNPROCESSABLE')).toBe(true);
    expect((error as Error).message).toContain(reason);
  });

  it('rejects a JPEG whose EXIF block points outside itself as unprocessable media', async () => {
    const bytes = Buffer.from(await readFile(image('gps/DSCN0010.jpg')));
    // The IFD0 offset sits 4 bytes into the TIFF header, which follows "Exif\0\0".
    const tiff = bytes.indexOf('Exif\0\0', 0, 'latin1') + 6;
    const byteOrder = bytes.toString('latin1', tiff, tiff + 2);
    if (byteOrder === 'II') bytes.writeUInt32LE(0x7fff_fff0, tiff + 4);
    else bytes.writeUInt32BE(0x7fff_fff0, tiff + 4);
    const file = join(scratch, 'bad-exif.jpg');
    await writeFile(file, bytes);

    const error = await rejection(readImageMetadata(file));
    expect(isPvError(error, 'PV_MEDIA_UNPROCESSABLE')).toBe(true);
    expect((error as Error).message).toContain('EXIF');
  });

  it('lets a missing file fail with its fs error, which a retry may fix', async () => {
    const error = await rejection(readImageMetadata(join(scratch, 'missing.jpg')));

    expect(isPvError(error)).toBe(false);
    expect((error as NodeJS.ErrnoException).code).toBe('ENOENT');
  });
});
