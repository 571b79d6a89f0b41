/**
 * Thumbnail throughput: photovault's renderThumbnails (one decode per image, the four WebP sizes
 * made from its pixels) against its peer vipsthumbnail making the same four sizes (one decode
 * per size, with shrink-on-load each time).
 *
 *   npm run bench:thumbs
 *   PV_BENCH_PHONE=20 PV_BENCH_RUNS=1 npm run bench:thumbs     # a quick run
 *
 * Two data sets, made once per run in one temp dir:
 *   corpus  the corpus JPEGs (cameras, gps, orientation: 24 files, 100x66 to 640x480) copied
 *           round-robin to PV_BENCH_IMAGES files;
 *   phone   PV_BENCH_PHONE 12 MP JPEGs (4032x3024, quality 90), the corpus gps and orientation
 *           files upscaled with a film grain so they compress like photos (~3.4 MB each), EXIF
 *           orientation kept (half of them are stored sideways, as phones do).
 * For each, both sides with PV_BENCH_PARALLELISM (2) images in flight, writing every WebP to
 * disk, same WebP settings (THUMBNAIL_WEBP: quality 80, effort 2):
 *   photovault  a child process (bench/thumbs.child.ts) running renderThumbnails over the files,
 *               two at a time, after configureSharpForThumbnailWorker() as a worker would;
 *               one more photovault run, untimed, gives the peak RSS with MALLOC_ARENA_MAX=2;
 *   vips        the files split in 2 batches, one `vipsthumbnail --size SxS> -o DIR/%s_S.webp[...]
 *               FILE...` process per batch and size (8 processes), at most 2 at a time.
 * Printed (it never asserts a timing): images/s by wall time from spawn to exit, best of
 * PV_BENCH_RUNS (3); CPU-ms per image (the children's user + system time); the ratio
 * photovault / vips (goal >= 1.5); the photovault process's peak RSS; the WebP bytes each side
 * wrote; and the CPU other processes used meanwhile, since the machine may be shared.
 *
 * Environment: PV_BENCH_IMAGES (200), PV_BENCH_PHONE (60), PV_BENCH_RUNS (3),
 * PV_BENCH_PARALLELISM (2), PV_BENCH_TMP (/tmp). Everything it creates lives in one temp dir,
 * removed at the end, also on an error or ^C.
 */
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { runPool } from '../src/core/pool.js';
import { THUMBNAIL_SIZES } from '../src/core/media.js';
import { THUMBNAIL_WEBP } from '../src/workers/thumbnails/thumbnail.renderer.js';
import type { ThumbsChildFigures } from './thumbs.child.js';
import {
  machineBusyCpuSeconds,
  MiB,
  numberSetting,
  ownCpuSeconds,
  reapedChildrenCpuSeconds,
  removeAtExit,
  runOk,
  table,
} from './support.js';

// ---------------------------------------------------------------------------------------------
// Settings.

/** dist/bench/thumbs.bench.js -> the repository root. */
const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const childScript = join(repoRoot, 'dist', 'bench', 'thumbs.child.js');
const imagesDir = resolve(repoRoot, '..', 'shared', 'corpus', 'images');

const corpusCount = Math.round(numberSetting('PV_BENCH_IMAGES', 200));
const phoneCount = Math.round(numberSetting('PV_BENCH_PHONE', 60));
const runs = Math.round(numberSetting('PV_BENCH_RUNS', 3));
const parallelism = Math.round(numberSetting('PV_BENCH_PARALLELISM', 2));
const tmpBase = process.env.PV_BENCH_TMP || '/tmp';
/** 12 MP, the size of most phone photos. */
const PHONE_LONG_EDGE = 4032;
const PHONE_SHORT_EDGE = 3024;
/** Gaussian grain blended soft-light: a 12 MP quality-90 JPEG of ~3.4 MB, like a phone's, not ~1.5 MB of smooth upscale. */
const GRAIN_SIGMA = 20;
/**
 * glibc gives threads that malloc arenas of their own and seldom returns their memory, a known
 * source of RSS growth with libvips. MALLOC_ARENA_MAX caps them; it can only be set in a
 * process's environment (a systemd unit's Environment=), hence the separate run.
 */
const MALLOC_ARENAS = 2;
/** No run may hang the bench: generous next to ~1 s per 12 MP image on one core. */
const RUN_TIMEOUT_S = 1800;

// ---------------------------------------------------------------------------------------------
// Data sets.

interface DataSet {
  name: string;
  files: string[];
  /** The files, one a line, for the child process. */
  listFile: string;
  bytes: number;
  /** Displayed pixel sizes, smallest and largest. */
  sizes: string;
}

async function corpusJpegs(): Promise<string[]> {
  const files: string[] = [];
  for (const folder of ['cameras', 'gps', 'orientation']) {
    for (const name of (await readdir(join(imagesDir, folder))).sort())
      if (/\.jpe?g$/i.test(name)) files.push(join(imagesDir, folder, name));
  }
  return files;
}

async function describeSet(name: string, files: string[], root: string): Promise<DataSet> {
  const listFile = join(root, `${name}.list`);
  await writeFile(listFile, files.join('\n') + '\n');
  let bytes = 0;
  const pixels: [number, string][] = [];
  for (const file of files) {
    bytes += (await stat(file)).size;
    const { autoOrient } = await sharp(file).metadata();
    pixels.push([autoOrient.width * autoOrient.height, `${autoOrient.width}x${autoOrient.height}`]);
  }
  pixels.sort((a, b) => a[0] - b[0]);
  const sizes = pixels[0]![1] === pixels.at(-1)![1] ? pixels[0]![1] : `${pixels[0]![1]} to ${pixels.at(-1)![1]}`;
  return { name, files, listFile, bytes, sizes };
}

/** The corpus JPEGs copied round-robin to `count` files with distinct names. */
async function makeCorpusSet(root: string, count: number): Promise<DataSet> {
  const sources = await corpusJpegs();
  const dir = join(root, 'corpus');
  await mkdir(dir);
  const files: string[] = [];
  for (let i = 0; i < count; i++) {
    const source = sources[i % sources.length]!;
    const file = join(dir, `c${String(i).padStart(4, '0')}_${basename(source)}`);
    await copyFile(source, file);
    files.push(file);
  }
  return describeSet('corpus', files, root);
}

/** 12 MP JPEGs upscaled from the corpus's 4:3 photos (gps, orientation), grain added, EXIF kept. */
async function makePhoneSet(root: string, count: number): Promise<DataSet> {
  const sources = (await corpusJpegs()).filter((file) => !file.includes('/cameras/'));
  const dir = join(root, 'phone');
  await mkdir(dir);
  const files = Array.from({ length: count }, (_, i) =>
    join(dir, `p${String(i).padStart(3, '0')}_${basename(sources[i % sources.length]!)}`),
  );
  await runPool(
    files.map((file, i) => [file, sources[i % sources.length]!] as const),
    parallelism,
    async ([file, source]) => {
      // Stored pixels keep the source's stored shape, so the orientation tag still applies.
      const stored = await sharp(source).metadata();
      const [width, height] = stored.width >= stored.height ? [PHONE_LONG_EDGE, PHONE_SHORT_EDGE] : [PHONE_SHORT_EDGE, PHONE_LONG_EDGE];
      const grain = {
        width,
        height,
        channels: 3 as const,
        background: '#808080',
        noise: { type: 'gaussian' as const, mean: 128, sigma: GRAIN_SIGMA },
      };
      await sharp(source)
        .resize(width, height, { fit: 'fill' })
        .composite([{ input: { create: grain }, blend: 'soft-light' }])
        .keepExif()
        .jpeg({ quality: 90 })
        .toFile(file);
    },
  );
  return describeSet('phone', files, root);
}

// ---------------------------------------------------------------------------------------------
// The two sides.

interface SideRun {
  /** Wall time from the first spawn to the last exit. */
  seconds: number;
  /** User + system time of the child processes. */
  cpuSeconds: number;
  /** CPU the rest of the machine used meanwhile (not these children, not this process). */
  otherCpuSeconds: number;
  webpBytes: number;
  /** Photovault only: the child's peak RSS and its own time from first decode to last write. */
  maxRssBytes?: number;
  inProcessSeconds?: number;
}

async function freshDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
}

/** Times `work` and the CPU of the children it reaps. */
async function measured<T>(work: () => Promise<T>): Promise<{ result: T; seconds: number; cpuSeconds: number; otherCpuSeconds: number }> {
  const children0 = reapedChildrenCpuSeconds();
  const machine0 = machineBusyCpuSeconds();
  const own0 = ownCpuSeconds();
  const started = performance.now();
  const result = await work();
  const seconds = (performance.now() - started) / 1000;
  const cpuSeconds = reapedChildrenCpuSeconds() - children0;
  const otherCpuSeconds = machineBusyCpuSeconds() - machine0 - (ownCpuSeconds() - own0) - cpuSeconds;
  return { result, seconds, cpuSeconds, otherCpuSeconds };
}

/** Checks that `dir` holds the four WebPs of every file and returns their total size. */
async function checkOutput(dir: string, set: DataSet, side: string): Promise<number> {
  const names = await readdir(dir);
  if (names.length !== set.files.length * THUMBNAIL_SIZES.length) {
    throw new Error(`${side} wrote ${names.length} files for ${set.files.length} images, not ${set.files.length * THUMBNAIL_SIZES.length}`);
  }
  let bytes = 0;
  for (const name of names) bytes += (await stat(join(dir, name))).size;
  return bytes;
}

async function photovaultRun(set: DataSet, outDir: string, env: NodeJS.ProcessEnv = process.env): Promise<SideRun> {
  await freshDir(outDir);
  const run = await measured(() =>
    runOk(process.execPath, [childScript, set.listFile, outDir, String(parallelism)], { env, timeoutSeconds: RUN_TIMEOUT_S }),
  );
  const figures = JSON.parse(run.result.stdout) as ThumbsChildFigures;
  const webpBytes = await checkOutput(outDir, set, 'photovault');
  return {
    seconds: run.seconds,
    cpuSeconds: run.cpuSeconds,
    otherCpuSeconds: run.otherCpuSeconds,
    webpBytes,
    maxRssBytes: figures.maxRssBytes,
    inProcessSeconds: figures.seconds,
  };
}

/** vips' option syntax for the same WebP settings; strip, as sharp drops metadata by default. */
const vipsWebp = `[Q=${THUMBNAIL_WEBP.quality},effort=${THUMBNAIL_WEBP.effort},strip]`;

async function vipsRun(set: DataSet, outDir: string): Promise<SideRun> {
  await freshDir(outDir);
  const batchSize = Math.ceil(set.files.length / parallelism);
  const batches = Array.from({ length: parallelism }, (_, i) => set.files.slice(i * batchSize, (i + 1) * batchSize)).filter(
    (b) => b.length > 0,
  );
  const jobs = batches.flatMap((batch) => THUMBNAIL_SIZES.map((size) => ({ batch, size })));
  const run = await measured(() =>
    runPool(jobs, parallelism, async ({ batch, size }) => {
      // "SxS>": only ever shrink, as renderThumbnails never upscales.
      await runOk('vipsthumbnail', ['--size', `${size}x${size}>`, '-o', join(outDir, `%s_${size}.webp${vipsWebp}`), ...batch], {
        timeoutSeconds: RUN_TIMEOUT_S,
      });
    }),
  );
  const webpBytes = await checkOutput(outDir, set, 'vipsthumbnail');
  return { seconds: run.seconds, cpuSeconds: run.cpuSeconds, otherCpuSeconds: run.otherCpuSeconds, webpBytes };
}

interface SetFigures {
  set: DataSet;
  photovault: SideRun[];
  vips: SideRun[];
  /** One more photovault run, untimed, with glibc's malloc arenas capped: its peak RSS. */
  arenaCappedRssBytes: number;
}

async function measureSet(set: DataSet, root: string): Promise<SetFigures> {
  const figures: SetFigures = { set, photovault: [], vips: [], arenaCappedRssBytes: NaN };
  for (let r = 0; r < runs; r++) {
    // Alternating which side goes first spreads a shared machine's load over both.
    const order = r % 2 === 0 ? (['photovault', 'vips'] as const) : (['vips', 'photovault'] as const);
    for (const side of order) {
      const outDir = join(root, `out-${set.name}-${side}`);
      const run = side === 'photovault' ? await photovaultRun(set, outDir) : await vipsRun(set, outDir);
      figures[side].push(run);
      log(`${set.name} run ${r + 1}/${runs}: ${side} ${run.seconds.toFixed(2)} s, ${(set.files.length / run.seconds).toFixed(1)} images/s`);
      await rm(outDir, { recursive: true, force: true });
    }
  }
  const outDir = join(root, `out-${set.name}-arenas`);
  const capped = await photovaultRun(set, outDir, { ...process.env, MALLOC_ARENA_MAX: String(MALLOC_ARENAS) });
  figures.arenaCappedRssBytes = capped.maxRssBytes ?? NaN;
  await rm(outDir, { recursive: true, force: true });
  return figures;
}

// ---------------------------------------------------------------------------------------------
// Output.

const best = (sideRuns: SideRun[]) => sideRuns.reduce((a, b) => (b.seconds < a.seconds ? b : a));
const fixed = (value: number, digits: number) => (Number.isFinite(value) ? value.toFixed(digits) : '-');

function report(results: SetFigures[]): string {
  const column = (f: SetFigures) => `${f.set.name}: ${f.set.files.length} x ${f.set.sizes}`;
  const perSet = (show: (f: SetFigures, pv: SideRun, vips: SideRun) => string) =>
    results.map((f) => show(f, best(f.photovault), best(f.vips)));
  const imagesPerSecond = (f: SetFigures, run: SideRun) => f.set.files.length / run.seconds;
  const cpuMs = (f: SetFigures, run: SideRun) => (run.cpuSeconds * 1000) / f.set.files.length;
  const rows: [string, ...string[]][] = [
    ['data set size', ...results.map((f) => `${fixed(f.set.bytes / MiB, 1)} MiB`)],
    ['photovault: images/s (wall, best run)', ...perSet((f, pv) => fixed(imagesPerSecond(f, pv), 1))],
    ['vipsthumbnail x4 sizes: images/s', ...perSet((f, _pv, vips) => fixed(imagesPerSecond(f, vips), 1))],
    ['photovault / vips', ...perSet((f, pv, vips) => `${fixed(imagesPerSecond(f, pv) / imagesPerSecond(f, vips), 2)}x`)],
    ['CPU-ms per image: photovault / vips', ...perSet((f, pv, vips) => `${fixed(cpuMs(f, pv), 0)} / ${fixed(cpuMs(f, vips), 0)}`)],
    ['photovault in-process time (no node start)', ...perSet((f, pv) => `${fixed(pv.inProcessSeconds ?? NaN, 2)} s`)],
    [
      'photovault peak RSS (max over runs)',
      ...results.map((f) => `${fixed(Math.max(...f.photovault.map((r) => r.maxRssBytes ?? 0)) / MiB, 0)} MiB`),
    ],
    [`same, with MALLOC_ARENA_MAX=${MALLOC_ARENAS} (one more run)`, ...results.map((f) => `${fixed(f.arenaCappedRssBytes / MiB, 0)} MiB`)],
    [
      'WebP written: photovault / vips',
      ...perSet((_f, pv, vips) => `${fixed(pv.webpBytes / MiB, 1)} / ${fixed(vips.webpBytes / MiB, 1)} MiB`),
    ],
    [
      "other processes' CPU during the best runs",
      ...perSet((_f, pv, vips) => `${fixed(pv.otherCpuSeconds, 1)} + ${fixed(vips.otherCpuSeconds, 1)} s`),
    ],
  ];
  return table(`thumbnails, ${parallelism} in flight`, results.map(column), rows);
}

function log(message: string): void {
  process.stderr.write(`[thumbs.bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

// ---------------------------------------------------------------------------------------------
// Main.

async function main(): Promise<void> {
  if (!existsSync(childScript)) throw new Error('dist/ is missing: run `npm run build` first (npm run bench:thumbs does)');
  if (!existsSync(imagesDir)) throw new Error(`no corpus at ${imagesDir}`);
  if (!existsSync('/proc/self/stat')) throw new Error('this benchmark reads /proc: Linux only');
  const vipsVersion = (await runOk('vipsthumbnail', ['--vips-version'])).stdout.trim();

  await mkdir(tmpBase, { recursive: true });
  const root = await mkdtemp(join(tmpBase, 'pv-thumbs-bench-'));
  removeAtExit(root);
  log(
    `temp dir ${root}; load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  let started = performance.now();
  const corpus = await makeCorpusSet(root, corpusCount);
  const phone = await makePhoneSet(root, phoneCount);
  log(`data sets made in ${((performance.now() - started) / 1000).toFixed(1)} s`);

  started = performance.now();
  const results = [await measureSet(corpus, root), await measureSet(phone, root)];
  const load = loadavg();

  console.log(
    `\nphotovault (sharp ${sharp.versions.sharp}, libvips ${sharp.versions.vips}) against vipsthumbnail (${vipsVersion}), ` +
      `WebP ${vipsWebp}, ${parallelism} images in flight, best of ${runs}\n`,
  );
  console.log(report(results));
  console.log(
    `\n${((performance.now() - started) / 1000).toFixed(0)} s measuring; load average at the end ${load.map((l) => l.toFixed(2)).join(' ')}`,
  );
}

await main();
