/**
 * The HLS ladder of a video (DESIGN section 6): one ffmpeg process decodes the source once,
 * splits the frames and scales them to each rung, encodes H.264 + AAC per rung and cuts ~6 s
 * MPEG-TS segments, with a VOD media playlist per rendition and a master playlist over them.
 *
 * Output layout under outDir: master.m3u8, and <name>/index.m3u8 + <name>/segment-NNNN.ts per
 * rendition, <name> being its rung ("360p"). Everything is written into a .partial-* directory
 * inside outDir first and moved into place at the end, master.m3u8 last: a master playlist in
 * outDir always stands for a complete ladder. One transcode per outDir at a time.
 *
 * Not handled: HDR sources are converted to 8-bit yuv420p without tone mapping (colours come out
 * flat), and subtitle or extra audio tracks are dropped.
 */
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { UnprocessableMediaError } from '../unprocessable-media.error.js';
import { ffmpegCommand, runFfmpeg } from './ffmpeg.process.js';
import { formatMasterPlaylist, type HlsVariant, parseMasterPlaylist, parseMediaPlaylist } from './hls.playlist.js';
import type { VideoProbe } from './video.probe.js';

export interface HlsRendition {
  /** Pixel size of the coded frames: upright, square pixels. */
  width: number;
  height: number;
  /** BANDWIDTH in the master playlist: the peak bit rate of a segment, audio included. */
  bandwidth: number;
  /** Relative path of the media playlist ("360p/index.m3u8"). */
  playlist: string;
}

export interface HlsLadder {
  /** Relative path of the master playlist ("master.m3u8"). */
  master: string;
  /** Lowest first, the order of the master playlist. */
  renditions: HlsRendition[];
  /** Every file written, relative to outDir, with "/" separators: playlists and segments. */
  files: string[];
}

export interface TranscodeOptions {
  /** Kills ffmpeg and removes what was written; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** One rendition to encode. */
export interface RenditionPlan {
  /** Directory and variant name: the rung's shorter edge, "360p". */
  name: string;
  width: number;
  height: number;
  /** Cap on the video bit rate (x264 VBV maxrate; bufsize is twice this), kbit/s. */
  videoKbps: number;
  audioKbps: number;
}

/**
 * Rungs by their shorter edge, so that a portrait phone video (1080x1920) gets the same ladder as
 * its landscape twin instead of a 608x1080 top rung. Bit rates are caps for 16:9 at up to 30 fps;
 * planRenditions scales them by pixel area.
 */
const RUNGS = [
  { edge: 360, videoKbps: 800, audioKbps: 96 },
  { edge: 720, videoKbps: 2800, audioKbps: 128 },
  { edge: 1080, videoKbps: 5000, audioKbps: 128 },
] as const;

/** Segment length, and the keyframe interval forced on every rendition so that all cut at the same instants. */
export const SEGMENT_SECONDS = 6;
/** x264 speed: veryfast keeps 1080p near real time on a Raspberry Pi 4-class CPU at an acceptable size. */
export const X264_PRESET = 'veryfast';
/** x264 constant quality; the VBV caps bound the bit rate on hard scenes. */
export const X264_CRF = 23;
/** Faster sources (slow-motion 120/240 fps) are played at this rate: the ladder is for watching, not for editing. */
const MAX_FRAME_RATE = 60;
/** A rung this close below the source's own size is dropped: the source-sized rung covers it. */
const NEAR_DUPLICATE = 1.1;
/** Bit-rate cap floor, kbit/s, so that tiny videos are not starved. */
const MIN_VIDEO_KBPS = 100;
const MASTER = 'master.m3u8';
/** ffmpeg's own master playlist, read for its CODECS strings (taken from the encoded SPS) and then deleted. */
const FFMPEG_MASTER = 'ffmpeg-master.m3u8';
const PARTIAL_PREFIX = '.partial-';

/**
 * The renditions for a video of the given displayed size: every rung whose shorter edge is below
 * the source's, plus the next rung capped to the source (so the source's own resolution is the
 * top); a source smaller than the lowest rung gets one rendition of its own size. A rung within
 * 10% below the source is left to the source-sized one. Sizes keep the displayed aspect ratio
 * and are even (yuv420p).
 */
export function planRenditions(width: number, height: number): RenditionPlan[] {
  const short = Math.min(width, height);
  const long = Math.max(width, height);
  const sourceEdge = Math.max(2, short - (short % 2));
  const chosen: { rung: (typeof RUNGS)[number]; edge: number }[] = [];
  for (const rung of RUNGS) {
    if (rung.edge * NEAR_DUPLICATE < sourceEdge) {
      chosen.push({ rung, edge: rung.edge });
    } else {
      chosen.push({ rung, edge: sourceEdge });
      break;
    }
  }
  return chosen.map(({ rung, edge }) => {
    const edgeLong = Math.max(2, Math.round((edge * long) / short / 2) * 2);
    const [w, h] = width >= height ? [edgeLong, edge] : [edge, edgeLong];
    // The rung's cap is for its own 16:9 size; a capped or other-shaped rendition gets it pro rata of its pixels.
    const nominalArea = (rung.edge * rung.edge * 16) / 9;
    const videoKbps = Math.max(MIN_VIDEO_KBPS, Math.round((rung.videoKbps * w * h) / nominalArea));
    return { name: `${edge}p`, width: w, height: h, videoKbps, audioKbps: rung.audioKbps };
  });
}

/**
 * The ffmpeg filter graph and output options for a ladder, to be run with the rendition
 * directories' parent as the working directory (the paths are relative, so that no character of
 * outDir is read as a pattern by the HLS muxer).
 */
function hlsArguments(probe: VideoProbe, plans: RenditionPlan[]): { filterGraph: string; outputOptions: string[]; output: string } {
  // ffmpeg autorotates while decoding (a transpose ahead of this graph), so the frames arrive upright;
  // MPEG-TS has no display matrix, so no rotation can survive into the segments.
  const head: string[] = [];
  if (probe.interlaced) head.push('yadif');
  if ((probe.frameRate ?? 0) > MAX_FRAME_RATE + 0.5) head.push(`fps=${MAX_FRAME_RATE}`);
  head.push(`split=${plans.length}${plans.map((_, i) => `[s${i}]`).join('')}`);
  const filterGraph = [
    `[0:${probe.videoStream}]${head.join(',')}`,
    ...plans.map((plan, i) => `[s${i}]scale=${plan.width}:${plan.height},setsar=1,format=yuv420p[v${i}]`),
  ].join(';');

  const audio = probe.audioStream !== undefined;
  const options: string[] = [];
  for (const [i] of plans.entries()) {
    options.push('-map', `[v${i}]`);
    if (audio) options.push('-map', `0:${probe.audioStream}`);
  }
  options.push('-c:v', 'libx264', '-preset', X264_PRESET, '-crf', String(X264_CRF), '-profile:v', 'high');
  for (const [i, plan] of plans.entries()) {
    options.push(`-maxrate:v:${i}`, `${plan.videoKbps}k`, `-bufsize:v:${i}`, `${plan.videoKbps * 2}k`);
  }
  // Keyframes exactly on the segment grid, so every segment is SEGMENT_SECONDS long and starts decodable.
  options.push('-force_key_frames:v', `expr:gte(t,n_forced*${SEGMENT_SECONDS})`);
  if (audio) {
    // Stereo for every player; 5.1 is downmixed by ffmpeg's default matrix.
    options.push('-c:a', 'aac', '-ac', '2');
    for (const [i, plan] of plans.entries()) options.push(`-b:a:${i}`, `${plan.audioKbps}k`);
  }
  const muxer: [string, string][] = [
    ['-f', 'hls'],
    ['-hls_time', String(SEGMENT_SECONDS)],
    ['-hls_playlist_type', 'vod'],
    ['-hls_flags', 'independent_segments'],
    ['-hls_segment_type', 'mpegts'],
    ['-hls_segment_filename', '%v/segment-%04d.ts'],
    ['-master_pl_name', FFMPEG_MASTER],
    ['-var_stream_map', plans.map((plan, i) => `v:${i}${audio ? `,a:${i}` : ''},name:${plan.name}`).join(' ')],
  ];
  options.push(...muxer.flat());
  return { filterGraph, outputOptions: options, output: '%v/index.m3u8' };
}

/**
 * Transcodes a probed video into an HLS ladder under outDir (created if missing; a previous ladder
 * there is replaced). Rejects with UnprocessableMediaError when ffmpeg cannot decode the file or
 * the decodable part falls short of the stated duration (a truncated file), with
 * PV_MEDIA_DECODER_MISSING without ffmpeg, and with the signal's reason on abort; in every case
 * ffmpeg has exited and nothing new is left in outDir.
 */
export async function transcodeHls(input: string, outDir: string, probe: VideoProbe, options: TranscodeOptions = {}): Promise<HlsLadder> {
  const { signal } = options;
  signal?.throwIfAborted();
  const plans = planRenditions(probe.width, probe.height);
  await mkdir(outDir, { recursive: true });
  await removeStalePartials(outDir);
  const work = await mkdtemp(join(outDir, PARTIAL_PREFIX));
  try {
    for (const plan of plans) await mkdir(join(work, plan.name));
    const { filterGraph, outputOptions, output } = hlsArguments(probe, plans);
    const { command, source } = ffmpegCommand(input, { cwd: work });
    // Spread, not an array: fluent-ffmpeg splits an array element holding exactly one space into
    // two arguments, which would break a two-rendition -var_stream_map.
    command
      .complexFilter(filterGraph)
      .outputOptions(...outputOptions)
      .output(output);
    await runFfmpeg(command, source, signal);
    signal?.throwIfAborted();

    const renditions = await finishLadder(work, plans, probe);
    const files = await listFiles(work);
    signal?.throwIfAborted();
    await promote(work, outDir, plans);
    return { master: MASTER, renditions, files };
  } catch (error) {
    await rm(work, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Checks each media playlist, measures its bit rates from the segments' sizes and writes the
 * master playlist. ffmpeg's own master would do, but its BANDWIDTH is a guess from the VBV cap
 * (+10%) where RFC 8216 asks for the measured peak segment bit rate, and it leaves out variants
 * whose bit rate it cannot guess.
 */
async function finishLadder(work: string, plans: RenditionPlan[], probe: VideoProbe): Promise<HlsRendition[]> {
  const codecsByUri = new Map<string, string[] | undefined>();
  try {
    for (const variant of parseMasterPlaylist(await readFile(join(work, FFMPEG_MASTER), 'utf8'))) {
      codecsByUri.set(variant.uri, variant.codecs);
    }
  } catch {
    // No usable CODECS: the attribute is optional, and players then probe the first segment.
  }
  await rm(join(work, FFMPEG_MASTER), { force: true });

  const expected = probe.videoDurationSeconds ?? probe.durationSeconds;
  const variants: HlsVariant[] = [];
  const renditions: HlsRendition[] = [];
  for (const plan of plans) {
    const uri = `${plan.name}/index.m3u8`;
    const path = join(work, plan.name, 'index.m3u8');
    let text = await readFile(path, 'utf8');
    const playlist = parseMediaPlaylist(text);
    if (!playlist.ended || playlist.segments.length === 0) {
      throw new UnprocessableMediaError(`ffmpeg wrote no complete ${plan.name} rendition: no frame decodes`);
    }
    const seconds = playlist.segments.reduce((sum, segment) => sum + segment.duration, 0);
    // ffmpeg stops quietly at the end of what it can read: a file cut short still exits 0.
    if (seconds < expected - Math.max(1, expected * 0.05)) {
      throw new UnprocessableMediaError(
        `only ${seconds.toFixed(1)} s of the video's ${expected.toFixed(1)} s decode: the file is truncated or damaged`,
      );
    }
    // ffmpeg rounds a sub-second clip's target duration down to 0, which some players divide by.
    if (playlist.targetDuration < 1) {
      text = text.replace(/^#EXT-X-TARGETDURATION:\d+$/m, '#EXT-X-TARGETDURATION:1');
      await writeFile(path, text);
    }
    let peak = 0;
    let bytes = 0;
    for (const segment of playlist.segments) {
      const size = (await stat(join(work, plan.name, segment.uri))).size;
      bytes += size;
      if (segment.duration > 0) peak = Math.max(peak, (size * 8) / segment.duration);
    }
    const bandwidth = Math.max(1, Math.ceil(peak || (bytes * 8) / Math.max(seconds, 1e-3)));
    const variant: HlsVariant = {
      uri,
      bandwidth,
      averageBandwidth: Math.max(1, Math.ceil((bytes * 8) / Math.max(seconds, 1e-3))),
      width: plan.width,
      height: plan.height,
    };
    if (probe.frameRate !== undefined) variant.frameRate = Math.min(probe.frameRate, MAX_FRAME_RATE);
    const codecs = codecsByUri.get(uri);
    if (codecs) variant.codecs = codecs;
    variants.push(variant);
    renditions.push({ width: plan.width, height: plan.height, bandwidth, playlist: uri });
  }
  await writeFile(join(work, MASTER), formatMasterPlaylist(variants));
  return renditions;
}

/**
 * Moves a finished ladder from its work directory into outDir. The old master goes first and the
 * new one comes last, so a crash in between leaves renditions without a master (an incomplete
 * ladder, to be transcoded again), never a master over mixed or missing renditions.
 */
async function promote(work: string, outDir: string, plans: RenditionPlan[]): Promise<void> {
  await rm(join(outDir, MASTER), { force: true });
  for (const plan of plans) {
    await rm(join(outDir, plan.name), { recursive: true, force: true });
    await rename(join(work, plan.name), join(outDir, plan.name));
  }
  await rename(join(work, MASTER), join(outDir, MASTER));
  await rm(work, { recursive: true, force: true });
}

/** Work directories of transcodes that a crash or a kill -9 interrupted. */
async function removeStalePartials(outDir: string): Promise<void> {
  for (const entry of await readdir(outDir)) {
    if (entry.startsWith(PARTIAL_PREFIX)) await rm(join(outDir, entry), { recursive: true, force: true });
  }
}

async function listFiles(root: string, dir = root): Promise<string[]> {
  const files: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await listFiles(root, path)));
    else files.push(relative(root, path).split(sep).join('/'));
  }
  return files.sort();
}
