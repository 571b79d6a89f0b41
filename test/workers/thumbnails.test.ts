import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import sharp, { type Sharp } from 'sharp';
import { thumbHashToRGBA } from 'thumbhash';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPvError } from '../../src/core/errors.js';
import { THUMBNAIL_SIZES } from '../../src/core/media.js';
import { renderThumbnails, type Thumbnail, type ThumbnailSet } from '../../src/workers/thumbnails/thumbnail.renderer.js';
import { UnprocessableMediaError } from '../../src/workers/unprocessable-media.error.js';
import { CORPUS_DIR } from '../support/corpus.js';

const IMAGES = join(CORPUS_DIR, 'images');
const LANDSCAPE_JPEG = join(IMAGES, 'gps', 'DSCN0010.jpg'); // 640x480

/**
 * Mean absolute difference per channel (0-255) between two same-sized 256 thumbnails. The 16
 * orientation files are the same scene saved separately, so even correctly rotated they differ
 * by their own JPEG and WebP noise: measured 4.3-5.2. The nearest wrong orientation (mirrored)
 * measured 37, upside down 49-65. 12 sits well clear of both.
 */
const SAME_PICTURE_MAD = 12;

let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'pv-thumbs-test-'));
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function rgbPixels(image: Buffer, transform: (s: Sharp) => Sharp = (s) => s) {
  const { data, info } = await transform(sharp(image)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

function meanAbsoluteDifference(a: Buffer, b: Buffer): number {
  expect(a.length).toBe(b.length);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
  return sum / a.length;
}

function thumbnailOf(set: ThumbnailSet, size: number): Thumbnail {
  const thumbnail = set.thumbnails.find((t) => t.size === size);
  if (!thumbnail) throw new Error(`no ${size} thumbnail`);
  return thumbnail;
}

/** The size sharp would give fitting (width, height) inside edge x edge, never enlarged. */
function expectedSize(width: number, height: number, edge: number): [number, number] {
  const longest = Math.max(width, height);
  if (longest <= edge) return [width, height];
  return width >= height ? [edge, Math.round((height * edge) / width)] : [Math.round((width * edge) / height), edge];
}

/** Four valid WebPs, ascending, each fitting its size without upscaling and keeping the aspect ratio. */
async function expectValidSet(set: ThumbnailSet, width: number, height: number): Promise<void> {
  expect([set.width, set.height]).toEqual([width, height]);
  expect(set.thumbnails.map((t) => t.size)).toEqual([...THUMBNAIL_SIZES]);
  for (const thumbnail of set.thumbnails) {
    const [w, h] = expectedSize(width, height, thumbnail.size);
    expect(Math.max(thumbnail.width, thumbnail.height), `${thumbnail.size} longest edge`).toBe(Math.max(w, h));
    // Shrink-on-load may round the short edge the other way: one pixel either side.
    expect(Math.abs(Math.min(thumbnail.width, thumbnail.height) - Math.min(w, h)), `${thumbnail.size} short edge`).toBeLessThanOrEqual(1);
    expect(thumbnail.width >= thumbnail.height).toBe(width >= height);
    const metadata = await sharp(thumbnail.webp).metadata();
    expect(metadata.format).toBe('webp');
    expect([metadata.width, metadata.height]).toEqual([thumbnail.width, thumbnail.height]);
  }
}

async function expectUnprocessable(source: string | Buffer, reason: RegExp): Promise<void> {
  const error = await renderThumbnails(source).then(
    () => null,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(UnprocessableMediaError);
  expect(isPvError(error, 'PV_MEDIA_UNPROCESSABLE')).toBe(true);
  expect((error as Error).message).toMatch(reason);
}

describe('orientation', () => {
  const cases = ['landscape', 'portrait'].flatMap((shape) => [1, 2, 3, 4, 5, 6, 7, 8].map((n) => [shape, n] as const));

  it.each(cases)('%s_%i.jpg comes out upright, like the orientation-1 file', async (shape, n) => {
    const reference = await renderThumbnails(join(IMAGES, 'orientation', `${shape}_1.jpg`));
    const set = await renderThumbnails(join(IMAGES, 'orientation', `${shape}_${n}.jpg`));
    await expectValidSet(set, reference.width, reference.height);
    expect(reference.width > reference.height).toBe(shape === 'landscape');

    const expected = await rgbPixels(thumbnailOf(reference, 256).webp);
    const actual = await rgbPixels(thumbnailOf(set, 256).webp);
    expect([actual.width, actual.height]).toEqual([expected.width, expected.height]);
    expect(meanAbsoluteDifference(actual.data, expected.data)).toBeLessThan(SAME_PICTURE_MAD);
    // The check can fail: the same thumbnail turned the wrong way is far over the threshold.
    for (const wrong of [(s: Sharp) => s.rotate(180), (s: Sharp) => s.flop(), (s: Sharp) => s.flip()]) {
      const turned = await rgbPixels(thumbnailOf(set, 256).webp, wrong);
      expect(meanAbsoluteDifference(turned.data, expected.data)).toBeGreaterThan(SAME_PICTURE_MAD);
    }
  });
});

describe('sizes', () => {
  it('shrinks a 12 MP photo to longest edges of exactly 64, 256, 512 and 1920', async () => {
    const phone = join(tmp, 'phone-12mp.jpg');
    await sharp(LANDSCAPE_JPEG).resize(4032, 3024).jpeg({ quality: 90 }).toFile(phone);
    const set = await renderThumbnails(phone);
    await expectValidSet(set, 4032, 3024);
    expect(set.thumbnails.map((t) => [t.width, t.height])).toEqual([
      [64, 48],
      [256, 192],
      [512, 384],
      [1920, 1440],
    ]);
  });

  it('turns a large photo stored sideways (EXIF orientation 6) upright before sizing it', async () => {
    // landscape_6.jpg stores 450x600 pixels to be shown turned 90 degrees: 600x450.
    const sideways = join(tmp, 'sideways-6.jpg');
    await sharp(join(IMAGES, 'orientation', 'landscape_6.jpg'))
      .resize(3024, 4032)
      .keepExif()
      .jpeg({ quality: 90 })
      .toFile(sideways);
    expect((await sharp(sideways).metadata()).orientation).toBe(6);
    const set = await renderThumbnails(sideways);
    await expectValidSet(set, 4032, 3024);
    expect(thumbnailOf(set, 1920)).toMatchObject({ width: 1920, height: 1440 });

    const upright = await rgbPixels(thumbnailOf(await renderThumbnails(join(IMAGES, 'orientation', 'landscape_1.jpg')), 256).webp);
    const actual = await rgbPixels(thumbnailOf(set, 256).webp);
    expect(meanAbsoluteDifference(actual.data, upright.data)).toBeLessThan(SAME_PICTURE_MAD);
  });

  it('never upscales: a 640x480 photo keeps its size in the 1920 slot', async () => {
    const set = await renderThumbnails(LANDSCAPE_JPEG);
    await expectValidSet(set, 640, 480);
    expect(set.thumbnails.map((t) => [t.width, t.height])).toEqual([
      [64, 48],
      [256, 192],
      [512, 384],
      [640, 480],
    ]);
  });

  it('never upscales: a 100x68 photo keeps its size in the 256, 512 and 1920 slots', async () => {
    const set = await renderThumbnails(join(IMAGES, 'cameras', 'Canon_40D.jpg'));
    await expectValidSet(set, 100, 68);
    expect(set.thumbnails.map((t) => [t.width, t.height])).toEqual([
      [64, 44],
      [100, 68],
      [100, 68],
      [100, 68],
    ]);
  });

  it('renders every corpus JPEG to a valid set', async () => {
    for (const folder of ['cameras', 'gps']) {
      for (const name of await readdir(join(IMAGES, folder))) {
        const path = join(IMAGES, folder, name);
        const metadata = await sharp(path).metadata();
        await expectValidSet(await renderThumbnails(path), metadata.autoOrient.width, metadata.autoOrient.height);
      }
    }
  });
});

describe('formats', () => {
  let reference: Buffer;

  beforeAll(async () => {
    reference = (await rgbPixels(thumbnailOf(await renderThumbnails(LANDSCAPE_JPEG), 256).webp)).data;
  });

  /** Renders `source` and checks it is the 640x480 corpus photo, within the format's own loss. */
  async function expectSamePhoto(source: string | Buffer): Promise<ThumbnailSet> {
    const set = await renderThumbnails(source);
    await expectValidSet(set, 640, 480);
    const actual = await rgbPixels(thumbnailOf(set, 256).webp);
    expect(meanAbsoluteDifference(actual.data, reference)).toBeLessThan(SAME_PICTURE_MAD);
    return set;
  }

  it.each([
    ['png', (s: Sharp) => s.png()],
    ['webp', (s: Sharp) => s.webp({ quality: 90 })],
    ['avif', (s: Sharp) => s.avif({ quality: 70, effort: 2 })],
    ['tiff', (s: Sharp) => s.tiff({ compression: 'lzw' })],
  ])('decodes %s', async (extension, encode) => {
    const path = join(tmp, `photo.${extension}`);
    await encode(sharp(LANDSCAPE_JPEG)).toFile(path);
    expect((await sharp(path).metadata()).format).toBe(extension === 'avif' ? 'heif' : extension);
    await expectSamePhoto(path);
  });

  it('decodes an encoded image passed as a buffer (a video poster frame)', async () => {
    await expectSamePhoto(await sharp(LANDSCAPE_JPEG).png().toBuffer());
  });

  it('takes the first frame of an animated GIF', async () => {
    const first = await sharp(LANDSCAPE_JPEG).png().toBuffer();
    const second = await sharp(LANDSCAPE_JPEG).rotate(180).png().toBuffer();
    const path = join(tmp, 'animated.gif');
    await sharp([first, second], { join: { animated: true } })
      .gif({ delay: [500, 500] })
      .toFile(path);
    expect((await sharp(path).metadata()).pages).toBe(2);
    await expectSamePhoto(path);
  });

  it('turns 16-bit greyscale into 8-bit thumbnails', async () => {
    const path = join(tmp, 'grey16.png');
    await sharp(LANDSCAPE_JPEG).greyscale().toColourspace('grey16').png().toFile(path);
    expect((await sharp(path).metadata()).depth).toBe('ushort');
    const set = await renderThumbnails(path);
    await expectValidSet(set, 640, 480);
    expect(thumbHashToRGBA(Buffer.from(set.thumbhash, 'base64')).w).toBeGreaterThan(0);
  });

  it('keeps transparency', async () => {
    const path = join(tmp, 'alpha.png');
    await sharp(LANDSCAPE_JPEG).ensureAlpha(0.5).png().toFile(path);
    const set = await renderThumbnails(path);
    await expectValidSet(set, 640, 480);
    for (const thumbnail of set.thumbnails) expect((await sharp(thumbnail.webp).metadata()).hasAlpha).toBe(true);
  });
});

describe('HEIC / HEIF', () => {
  it.each([
    ['IMG_5195.HEIC', 2566, 3313],
    ['samplefilehub.heif', 640, 426],
  ])('renders %s (HEVC) through heif-convert, leaving no temp file behind', async (name, width, height) => {
    const tempDir = join(tmp, `heif-${name}`);
    await mkdir(tempDir);
    const set = await renderThumbnails(join(IMAGES, 'heic', name), { heif: { tempDir } });
    await expectValidSet(set, width, height);
    // Real pixels, not a blank or grey frame.
    const stats = await sharp(thumbnailOf(set, 256).webp).stats();
    expect(Math.min(...stats.channels.slice(0, 3).map((c) => c.stdev))).toBeGreaterThan(20);
    expect(await readdir(tempDir)).toEqual([]);
  });

  it('renders a HEIC passed as a buffer', async () => {
    const set = await renderThumbnails(await readFile(join(IMAGES, 'heic', 'samplefilehub.heif')));
    await expectValidSet(set, 640, 426);
  });

  it('reports a missing heif-convert as PV_MEDIA_DECODER_MISSING, naming the package', async () => {
    const error = await renderThumbnails(join(IMAGES, 'heic', 'samplefilehub.heif'), {
      heif: { command: join(tmp, 'no-such-heif-convert') },
    }).catch((caught: unknown) => caught);
    expect(isPvError(error, 'PV_MEDIA_DECODER_MISSING')).toBe(true);
    expect(isPvError(error) && error.fix).toMatch(/libheif-examples/);
  });

  it('rejects a truncated HEIC as unprocessable and removes the temp files', async () => {
    const whole = await readFile(join(IMAGES, 'heic', 'samplefilehub.heif'));
    const tempDir = join(tmp, 'heif-truncated');
    await mkdir(tempDir);
    const error = await renderThumbnails(whole.subarray(0, whole.length >> 1), { heif: { tempDir } }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UnprocessableMediaError);
    expect((error as Error).message).toMatch(/HEIF/);
    expect(await readdir(tempDir)).toEqual([]);
  });
});

describe('unprocessable input', () => {
  it('rejects a truncated JPEG instead of rendering a grey half', async () => {
    const whole = await readFile(LANDSCAPE_JPEG);
    const path = join(tmp, 'truncated.jpg');
    await writeFile(path, whole.subarray(0, whole.length >> 1));
    await expectUnprocessable(path, /^not a decodable image: .*(premature end|truncated)/i);
    await expectUnprocessable(whole.subarray(0, whole.length >> 1), /^not a decodable image/);
  });

  it('rejects random bytes named .jpg', async () => {
    const path = join(tmp, 'random.jpg');
    // A fixed byte pattern (no JPEG, PNG, ... signature) rather than crypto noise: reproducible.
    await writeFile(path, Buffer.from(Array.from({ length: 64 * 1024 }, (_, i) => (i * 7919 + 13) & 0xff)));
    await expectUnprocessable(path, /^not a decodable image: .*unsupported image format/i);
  });

  it('rejects an image whose header claims more pixels than the limit, before decoding it', async () => {
    await expectUnprocessable(await pngClaimingSize(20_000, 20_000), /^image too large: more than 268402689 pixels/);
  });

  it('passes on a missing file as it is: not the media is at fault', async () => {
    const error = await renderThumbnails(join(tmp, 'does-not-exist.jpg')).catch((caught: unknown) => caught);
    expect(error).not.toBeInstanceOf(UnprocessableMediaError);
    expect((error as NodeJS.ErrnoException).code).toBe('ENOENT');
  });
});

describe('thumbhash', () => {
  it.each([
    ['orientation/landscape_6.jpg', 600, 450],
    ['orientation/portrait_8.jpg', 450, 600],
    ['heic/IMG_5195.HEIC', 2566, 3313],
  ])('of %s decodes to a placeholder of the same aspect ratio', async (name, width, height) => {
    const set = await renderThumbnails(join(IMAGES, name));
    const placeholder = thumbHashToRGBA(Buffer.from(set.thumbhash, 'base64'));
    expect(placeholder.rgba.length).toBe(placeholder.w * placeholder.h * 4);
    expect(placeholder.w >= placeholder.h).toBe(width >= height);
    // ThumbHash stores the aspect ratio coarsely, as the numbers of its horizontal and vertical
    // components (at most 7 each): 4:3 comes back as 7:5, 2566x3313 as 5:7. Within 10%.
    expect(placeholder.w / placeholder.h / (width / height)).toBeGreaterThan(0.9);
    expect(placeholder.w / placeholder.h / (width / height)).toBeLessThan(1.1);
  });
});

/** A real 100x68 PNG whose IHDR chunk was rewritten to claim another size (CRC fixed, so the header parses). */
async function pngClaimingSize(width: number, height: number): Promise<Buffer> {
  const png = await sharp(join(IMAGES, 'cameras', 'Canon_40D.jpg'))
    .png()
    .toBuffer();
  // Signature (8), IHDR length and type (8), then width and height; the CRC covers type and data.
  png.writeUInt32BE(width, 16);
  png.writeUInt32BE(height, 20);
  png.writeUInt32BE(crc32(png.subarray(12, 29)), 29);
  return png;
}
