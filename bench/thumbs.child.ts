/**
 * Child process of bench:thumbs: the photovault side, in a process of its own so that its peak
 * RSS is the renderer's alone, as a thumbnail worker's would be.
 *
 *   node dist/bench/thumbs.child.js LIST OUT_DIR PARALLELISM
 *
 * LIST is a file of image paths, one a line. Each image's four WebPs are written to OUT_DIR as
 * `<name>_<size>.webp` (as vipsthumbnail's are on the other side). Prints one JSON line.
 * PV_BENCH_SHARP_DEFAULTS=1 leaves sharp's process-wide settings as they are.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { runPool } from '../src/core/pool.js';
import { configureSharpForThumbnailWorker, renderThumbnails } from '../src/workers/thumbnails/thumbnail.renderer.js';

export interface ThumbsChildFigures {
  images: number;
  /** From the first decode to the last file written, in this process. */
  seconds: number;
  /** Peak resident set size of this process (getrusage ru_maxrss), in bytes. */
  maxRssBytes: number;
  webpBytes: number;
}

const [list, outDir, parallelismArg] = process.argv.slice(2);
if (!list || !outDir || !parallelismArg) throw new Error('usage: thumbs.child.js LIST OUT_DIR PARALLELISM');
if (process.env.PV_BENCH_SHARP_DEFAULTS !== '1') configureSharpForThumbnailWorker();

const paths = (await readFile(list, 'utf8')).split('\n').filter(Boolean);
let webpBytes = 0;
const started = performance.now();
await runPool(paths, Number(parallelismArg), async (path) => {
  const set = await renderThumbnails(path);
  const name = basename(path, extname(path));
  for (const thumbnail of set.thumbnails) {
    await writeFile(join(outDir, `${name}_${thumbnail.size}.webp`), thumbnail.webp);
    webpBytes += thumbnail.webp.length;
  }
});
const figures: ThumbsChildFigures = {
  images: paths.length,
  seconds: (performance.now() - started) / 1000,
  maxRssBytes: process.resourceUsage().maxRSS * 1024,
  webpBytes,
};
console.log(JSON.stringify(figures));
