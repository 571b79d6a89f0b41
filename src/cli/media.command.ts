import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { PvError } from '../core/errors.js';
import { THUMBNAIL_SIZES } from '../core/media.js';
import type { MediaView } from '../core/protocol.js';
import { action, formatBytes, printResult } from './io.js';
import { withApi } from './session.js';

export function registerMediaCommands(program: Command): void {
  program
    .command('info <path>')
    .description("show a photo's or video's metadata, its processing jobs and the derived files available")
    .option('--version <id>', 'this version instead of the latest')
    .option('--json', 'print it as JSON')
    .action(
      action(async (path: string, options: { version?: string; json?: boolean }) => {
        const media = await withApi((api) => api.media(path, options.version));
        printResult(options.json, media, () => describeMedia(media));
      }),
    );

  program
    .command('thumb <path>')
    .description('download a WebP thumbnail of a photo or video')
    .requiredOption('--size <px>', `longest edge: ${THUMBNAIL_SIZES.join(', ')}`)
    .option('--out <file>', 'file to write (default: <name>.<size>.webp in the current folder)')
    .option('--json', 'print the result as JSON')
    .action(
      action(async (path: string, options: { size: string; out?: string; json?: boolean }) => {
        const size = Number(options.size);
        if (!(THUMBNAIL_SIZES as readonly number[]).includes(size)) {
          throw new PvError('PV_INVALID_INPUT', `No thumbnail size ${options.size}.`, { fix: `Use --size ${THUMBNAIL_SIZES.join('|')}.` });
        }
        const out = resolve(options.out ?? `${basename(path)}.${size}.webp`);
        const thumbnail = await withApi(async (api) => {
          const media = await api.media(path);
          const wanted = media.thumbnails.find((candidate) => candidate.size === size);
          if (!wanted) throw notReady(media);
          // Written beside the target and renamed into place: never a partial thumbnail under its name.
          const { tempPathBeside } = await import('../daemon/downloader.js');
          const temp = tempPathBeside(out);
          try {
            await pipeline(await api.derived(wanted.url), createWriteStream(temp));
            await rename(temp, out);
          } finally {
            await rm(temp, { force: true });
          }
          return wanted;
        });
        printResult(
          options.json,
          { path, out, ...thumbnail },
          () => `${path} -> ${out} (${thumbnail.width}x${thumbnail.height}, ${formatBytes(thumbnail.bytes)})`,
        );
      }),
    );
}

function notReady(media: MediaView): PvError {
  const job = media.jobs.find((candidate) => candidate.job === 'thumbnails');
  if (job?.state === 'failed') return new PvError('PV_NOT_FOUND', `${media.path} has no thumbnails: ${job.error}.`);
  return new PvError('PV_NOT_FOUND', `${media.path} has no thumbnails yet (processing is ${job?.state ?? 'pending'}).`, {
    fix: 'Try again in a moment; `photovault info PATH` shows the jobs.',
  });
}

function describeMedia(media: MediaView): string {
  const meta = media.metadata;
  const lines = [`${media.path}  ${media.kind}  ${media.contentHash.slice(0, 12)}`];
  const row = (label: string, value: string | undefined | null | false) => {
    if (value) lines.push(`  ${label.padEnd(10)} ${value}`);
  };
  if (meta) {
    row('taken', meta.takenAt);
    row('camera', [meta.make, meta.model].filter(Boolean).join(' '));
    row('lens', meta.lens);
    row('size', meta.width && meta.height ? `${meta.width} x ${meta.height}` : null);
    row(
      'location',
      meta.gps &&
        `${meta.gps.latitude.toFixed(6)}, ${meta.gps.longitude.toFixed(6)}${meta.gps.altitude === undefined ? '' : ` (${meta.gps.altitude.toFixed(0)} m)`}`,
    );
    row('duration', meta.durationSeconds !== undefined && `${meta.durationSeconds.toFixed(1)} s`);
    row('codecs', [meta.videoCodec, meta.audioCodec].filter(Boolean).join(' + '));
  }
  for (const job of media.jobs) row(job.job, job.state === 'failed' ? `failed: ${job.error}` : job.state);
  row('thumbs', media.thumbnails.map((thumbnail) => `${thumbnail.size} (${thumbnail.width}x${thumbnail.height})`).join(', '));
  row('hls', media.hls && `${media.hls.renditions.map((rendition) => `${rendition.height}p`).join(', ')}  ${media.hls.master}`);
  return lines.join('\n');
}
