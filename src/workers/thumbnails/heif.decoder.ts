/**
 * HEVC-coded HEIF (iPhone photos) through Debian's `heif-convert` (package libheif-examples):
 * sharp's prebuilt libvips carries libheif without an HEVC decoder (it can read AVIF and the
 * header of a HEIC, not its pixels), and libde265 is not something to bundle ourselves.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, open, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PvError } from '../../core/errors.js';
import { UnprocessableMediaError } from '../unprocessable-media.error.js';

export interface HeifConvertOptions {
  /** The heif-convert executable; looked up on PATH by default. */
  command?: string;
  /** Killed after this long (default 120 s): the corpus's 8.5 MP iPhone file takes ~3 s on a desktop core. */
  timeoutMs?: number;
  /** Where the temporary PNG goes (default: the OS temp dir); it needs room for 3 bytes a pixel. */
  tempDir?: string;
}

const DEFAULT_TIMEOUT_MS = 120_000;

/**
 * ISO BMFF brands of HEIF files whose images are HEVC-coded (ISO/IEC 23008-12 Annex B): what
 * sharp cannot decode. `mif1` / `msf1` only say "a HEIF structure" (AVIF files carry them too),
 * so they are not enough to skip sharp: such a file goes to heif-convert only if sharp fails.
 */
const HEVC_BRANDS = new Set(['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis', 'hevm', 'hevs']);

/** Enough for any real ftyp box (iPhones write 24-40 bytes). */
export const HEADER_BYTES = 512;

/** The first bytes of a file or buffer: enough to read its ftyp box. */
export async function readHeader(source: string | Buffer): Promise<Buffer> {
  if (typeof source !== 'string') return source.subarray(0, HEADER_BYTES);
  const handle = await open(source, 'r');
  try {
    const buffer = Buffer.alloc(HEADER_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, HEADER_BYTES, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** Major and compatible brands of a leading ISO BMFF ftyp box, or null when there is none. */
export function ftypBrands(header: Buffer): string[] | null {
  if (header.length < 16 || header.toString('latin1', 4, 8) !== 'ftyp') return null;
  const boxSize = Math.min(header.readUInt32BE(0), header.length);
  if (boxSize < 16) return null;
  const brands = [header.toString('latin1', 8, 12)];
  // Bytes 12-15 are the minor version, not a brand.
  for (let offset = 16; offset + 4 <= boxSize; offset += 4) brands.push(header.toString('latin1', offset, offset + 4));
  return brands;
}

/** True when the header's ftyp box names an HEVC-coded HEIF brand (heic, heix, hevc, ...). */
export function isHevcHeif(header: Buffer): boolean {
  return ftypBrands(header)?.some((brand) => HEVC_BRANDS.has(brand)) ?? false;
}

/** True when sharp failed because its libheif has no decoder for the file's codec. */
export function isMissingHeifCodec(error: unknown): boolean {
  return error instanceof Error && /libde265|decoder plugin|compression format has not been built in/i.test(error.message);
}

/**
 * Decodes a HEIF with heif-convert into a lossless PNG in a temp dir of its own, hands the PNG's
 * path to `use`, and removes the temp dir however `use` or the decode ends. The PNG's pixels are
 * already rotated and mirrored by the file's irot/imir boxes (libheif applies them); its EXIF
 * orientation, when copied, must not be applied again.
 */
export async function withHeifAsPng<T>(
  source: string | Buffer,
  use: (pngPath: string) => Promise<T>,
  options: HeifConvertOptions = {},
): Promise<T> {
  const dir = await mkdtemp(join(options.tempDir ?? tmpdir(), 'pv-heif-'));
  try {
    let input: string;
    if (typeof source === 'string') input = source;
    else {
      input = join(dir, 'input.heic');
      await writeFile(input, source);
    }
    await runHeifConvert(input, join(dir, 'decoded.png'), options);
    return await use(await decodedPng(dir));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function runHeifConvert(input: string, output: string, options: HeifConvertOptions): Promise<void> {
  const command = options.command ?? 'heif-convert';
  const timeout = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    execFile(command, ['--quiet', input, output], { timeout, killSignal: 'SIGKILL', maxBuffer: 1024 * 1024 }, (error, _stdout, stderr) => {
      if (!error) return resolve();
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        return reject(
          new PvError('PV_MEDIA_DECODER_MISSING', `HEIC/HEIF images need ${command}, which is not installed`, {
            fix: 'install the Debian package libheif-examples (scripts/setup.sh does)',
            cause: error,
          }),
        );
      }
      if (error.killed || error.signal) {
        // Load or a huge file, not necessarily a bad one: left for a retry to judge.
        return reject(new PvError('PV_INTERNAL', `${command} did not finish within ${timeout / 1000} s`, { cause: error }));
      }
      const reason = String(stderr).trim().split('\n').filter(Boolean).at(-1) ?? `exit code ${String(code)}`;
      reject(new UnprocessableMediaError(`not a decodable HEIF image: ${command}: ${reason}`));
    });
  });
}

/**
 * heif-convert names its output `decoded.png`, or `decoded-1.png`, `decoded-2.png`, ... when the
 * file holds several top-level images (bursts); the first is taken then.
 */
async function decodedPng(dir: string): Promise<string> {
  const names = await readdir(dir);
  if (names.includes('decoded.png')) return join(dir, 'decoded.png');
  const numbered = names
    .map((name) => /^decoded-(\d+)\.png$/.exec(name))
    .filter((match) => match !== null)
    .sort((a, b) => Number(a[1]) - Number(b[1]));
  if (numbered.length === 0) throw new UnprocessableMediaError('not a decodable HEIF image: heif-convert wrote no image');
  return join(dir, numbered[0]![0]);
}
