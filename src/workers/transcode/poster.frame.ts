/**
 * A video's poster frame: one representative frame as a PNG, upright and at the displayed size,
 * for the thumbnail renderer to turn into its WebP sizes like any photo.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnprocessableMediaError } from '../unprocessable-media.error.js';
import { ffmpegCommand, runFfmpeg } from './ffmpeg.process.js';
import type { VideoProbe } from './video.probe.js';

/** Clips shorter than this show their first frame: 10% in could be past their only frame. */
const SHORT_CLIP_SECONDS = 1;
/** The frame is taken 10% in, but no later than this: past fades from black, before the viewer would have given up. */
const LATEST_POSTER_SECONDS = 3;

/** Where in a video of this duration the poster frame is taken, in seconds. */
export function posterTime(durationSeconds: number): number {
  if (!(durationSeconds >= SHORT_CLIP_SECONDS)) return 0;
  return Math.min(durationSeconds * 0.1, LATEST_POSTER_SECONDS);
}

/**
 * The poster frame of a probed video as a PNG (8-bit RGB) of probe.width x probe.height. Falls
 * back to the first frame when nothing decodes at the chosen time (a container that overstates its
 * duration). Rejects like transcodeHls: UnprocessableMediaError when no frame decodes,
 * PV_MEDIA_DECODER_MISSING without ffmpeg, the signal's reason on abort.
 */
export async function extractPosterFrame(input: string, probe: VideoProbe, options: { signal?: AbortSignal } = {}): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'pv-poster-'));
  try {
    const at = posterTime(probe.durationSeconds);
    const frame =
      (await grabFrame(input, probe, at, dir, options.signal)) ??
      (at > 0 ? await grabFrame(input, probe, 0, dir, options.signal) : undefined);
    if (!frame) throw new UnprocessableMediaError('no video frame decodes');
    return frame;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** One frame at `at` seconds, or undefined when ffmpeg succeeds without writing one (seeked past the end). */
async function grabFrame(input: string, probe: VideoProbe, at: number, dir: string, signal?: AbortSignal): Promise<Buffer | undefined> {
  const { command, source } = ffmpegCommand(input, { cwd: dir });
  // -ss before the input seeks to the keyframe before `at`, then decodes up to `at` exactly.
  if (at > 0) command.inputOptions('-ss', at.toFixed(3));
  const output: [string, string][] = [
    ['-map', `0:${probe.videoStream}`],
    ['-frames:v', '1'],
    // Autorotation has already turned the frame upright; the scale only undoes non-square pixels.
    ['-vf', `scale=${probe.width}:${probe.height},setsar=1,format=rgb24`],
    ['-c:v', 'png'],
    ['-f', 'image2'],
    ['-update', '1'],
  ];
  command.outputOptions(...output.flat()).output('poster.png');
  await runFfmpeg(command, source, signal);
  try {
    const png = await readFile(join(dir, 'poster.png'));
    return png.length > 0 ? png : undefined;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}
