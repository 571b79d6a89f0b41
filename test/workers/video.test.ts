import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, open, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import ffmpeg from 'fluent-ffmpeg';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isPvError } from '../../src/core/errors.js';
import { formatMasterPlaylist, parseMasterPlaylist, parseMediaPlaylist } from '../../src/workers/transcode/hls.playlist.js';
import { type HlsLadder, planRenditions, SEGMENT_SECONDS, transcodeHls } from '../../src/workers/transcode/hls.transcoder.js';
import { extractPosterFrame, posterTime } from '../../src/workers/transcode/poster.frame.js';
import { parseIso6709, probeVideo, type VideoProbe, videoMetadata } from '../../src/workers/transcode/video.probe.js';
import { UnprocessableMediaError } from '../../src/workers/unprocessable-media.error.js';
import { CORPUS_DIR } from '../support/corpus.js';

const run = promisify(execFile);
const BBB = join(CORPUS_DIR, 'video', 'bbb-480p-30s.mp4');
const ROTATED = join(CORPUS_DIR, 'video', 'video_rotation_90.mp4');
/** Generous bound for the BBB ladder on a loaded 2-core machine; a hang guard, not a timing assertion. */
const TRANSCODE_TIMEOUT = 180_000;

let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'pv-video-test-'));
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** ffprobe run directly (JSON output), independent of the code under test. */
async function ffprobeJson(path: string): Promise<{
  streams: {
    codec_type: string;
    codec_name: string;
    width?: number;
    height?: number;
    channels?: number;
    side_data_list?: unknown[];
    tags?: Record<string, string>;
  }[];
  format: { duration?: string };
}> {
  const { stdout } = await run('ffprobe', ['-v', 'error', '-print_format', 'json', '-show_streams', '-show_format', path]);
  return JSON.parse(stdout);
}

/** The first frame of a video as 8-bit grey pixels, row by row. */
async function firstFrameGrey(path: string, width: number, height: number): Promise<Buffer> {
  const { stdout } = await run('ffmpeg', ['-v', 'error', '-i', path, '-frames:v', '1', '-f', 'rawvideo', '-pix_fmt', 'gray', '-'], {
    encoding: 'buffer',
    maxBuffer: 64 * 1024 * 1024,
  });
  expect(stdout.length).toBe(width * height);
  return stdout;
}

/**
 * A stream copy of a video with metadata tags: "com.apple.quicktime.*" keys go where an iPhone
 * puts them (mdta keys), creation_time into the movie header, location into udta (©xyz).
 */
async function copyWithTags(source: string, target: string, tags: Record<string, string>): Promise<void> {
  const apple = Object.keys(tags).some((key) => key.startsWith('com.apple.'));
  const metadata = Object.entries(tags).flatMap(([key, value]) => ['-metadata', `${key}=${value}`]);
  await run('ffmpeg', [
    '-v',
    'error',
    '-i',
    source,
    '-c',
    'copy',
    ...(apple ? ['-movflags', 'use_metadata_tags'] : []),
    ...metadata,
    target,
  ]);
}

/** Mean brightness of rows [from, to) of a grey image. */
function rowsMean(pixels: Buffer, width: number, from: number, to: number): number {
  let sum = 0;
  for (let i = from * width; i < to * width; i++) sum += pixels[i]!;
  return sum / ((to - from) * width);
}

/** Every file under a directory, hidden ones included, relative, sorted. */
async function filesUnder(dir: string): Promise<string[]> {
  const files: string[] = [];
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) files.push(relative(dir, join(entry.parentPath, entry.name)));
  }
  return files.sort();
}

/** Throws unless `promise` rejects with an UnprocessableMediaError; returns it. */
async function unprocessable(promise: Promise<unknown>): Promise<UnprocessableMediaError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(UnprocessableMediaError);
  expect(isPvError(error, 'PV_MEDIA_UNPROCESSABLE')).toBe(true);
  return error as UnprocessableMediaError;
}

describe('probeVideo', () => {
  test('reads the BBB clip: 30 s, 854x480 H.264 with 5.1 AAC, 24 fps, no rotation', async () => {
    const probe = await probeVideo(BBB);
    expect(probe.durationSeconds).toBeCloseTo(30, 1);
    expect(probe).toMatchObject({
      codedWidth: 854,
      codedHeight: 480,
      rotation: 0,
      width: 854,
      height: 480,
      videoCodec: 'h264',
      audioCodec: 'aac',
      audioChannels: 6,
      frameRate: 24,
      interlaced: false,
    });
    expect(probe.bitRate).toBeGreaterThan(500_000);
  });

  test('reads the -90 degree display matrix as 90 degrees clockwise and swaps the displayed size', async () => {
    const probe = await probeVideo(ROTATED);
    expect(probe).toMatchObject({ codedWidth: 100, codedHeight: 60, rotation: 90, width: 60, height: 100, videoCodec: 'h264' });
    expect(probe.audioCodec).toBeUndefined();
    expect(probe.durationSeconds).toBeGreaterThan(0);
    expect(probe.durationSeconds).toBeLessThan(0.1);
  });

  test('maps a probe to MediaMetadata of kind video, with the displayed size', async () => {
    expect(videoMetadata(await probeVideo(BBB))).toEqual({
      kind: 'video',
      width: 854,
      height: 480,
      rotation: 0,
      durationSeconds: expect.closeTo(30, 1),
      videoCodec: 'h264',
      audioCodec: 'aac',
    });
    expect(videoMetadata(await probeVideo(ROTATED))).toMatchObject({ kind: 'video', width: 60, height: 100, rotation: 90 });
  });

  test("reads Apple's QuickTime keys: local creation date with offset, ISO 6709 location, make and model", async () => {
    const tagged = join(scratch, 'tagged.mov');
    await copyWithTags(ROTATED, tagged, {
      'com.apple.quicktime.creationdate': '2019-05-12T14:03:22+0200',
      'com.apple.quicktime.location.ISO6709': '+37.7858-122.4064+010.000/',
      'com.apple.quicktime.make': 'Apple',
      'com.apple.quicktime.model': 'iPhone 12',
      creation_time: '2019-05-12T12:03:22Z',
    });
    const probe = await probeVideo(tagged);
    expect(probe).toMatchObject({
      creationTime: '2019-05-12T12:03:22Z',
      localCreationDate: '2019-05-12T14:03:22+02:00',
      location: { latitude: 37.7858, longitude: -122.4064, altitude: 10 },
      make: 'Apple',
      model: 'iPhone 12',
    });
    expect(videoMetadata(probe)).toMatchObject({
      takenAt: '2019-05-12T14:03:22+02:00',
      utcOffsetMinutes: 120,
      gps: { latitude: 37.7858, longitude: -122.4064, altitude: 10 },
      make: 'Apple',
      model: 'iPhone 12',
      rotation: 90,
    });
  });

  test('falls back to creation_time (UTC, offset unknown) and the plain location tag', async () => {
    const plain = join(scratch, 'plain.mp4');
    await copyWithTags(ROTATED, plain, { location: '+48.8584+002.2945/', creation_time: '2020-01-02T03:04:05Z' });
    const metadata = videoMetadata(await probeVideo(plain));
    expect(metadata.takenAt).toBe('2020-01-02T03:04:05Z');
    expect(metadata.utcOffsetMinutes).toBeUndefined();
    expect(metadata.gps).toEqual({ latitude: 48.8584, longitude: 2.2945 });
  });

  test.each([
    ['+37.7858-122.4064+010.000/', { latitude: 37.7858, longitude: -122.4064, altitude: 10 }],
    ['+48.8584+002.2945/', { latitude: 48.8584, longitude: 2.2945 }],
    ['-33.8568+151.2153-005.5/', { latitude: -33.8568, longitude: 151.2153, altitude: -5.5 }],
    ['+3747.148-12224.384/', { latitude: 37 + 47.148 / 60, longitude: -(122 + 24.384 / 60) }],
    ['+374708.88-1222423.04/', { latitude: 37 + 47 / 60 + 8.88 / 3600, longitude: -(122 + 24 / 60 + 23.04 / 3600) }],
    ['+00.0000+000.0000/', undefined],
    ['+91.0000+000.5000/', undefined],
    ['somewhere', undefined],
    [undefined, undefined],
  ])('parses the ISO 6709 point %s', (value, expected) => {
    const position = parseIso6709(value);
    if (expected === undefined) return expect(position).toBeUndefined();
    expect(position?.latitude).toBeCloseTo(expected.latitude, 6);
    expect(position?.longitude).toBeCloseTo(expected.longitude, 6);
    expect(position?.altitude).toBe('altitude' in expected ? expected.altitude : undefined);
  });

  test("rejects random bytes named .mp4 as unprocessable, with ffprobe's reason", async () => {
    const random = join(scratch, 'random.mp4');
    // Fixed pseudo-random bytes: the same file on every run.
    const bytes = Buffer.alloc(64 * 1024);
    for (let i = 0, x = 0x2545f491; i < bytes.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      bytes[i] = x & 0xff;
    }
    await writeFile(random, bytes);
    const error = await unprocessable(probeVideo(random));
    expect(error.message).toMatch(/Invalid data found when processing input/);
    expect(error.message).not.toContain(scratch);
  });

  test('rejects a truncated copy of the BBB clip (its moov atom, at the end, is gone) as unprocessable', async () => {
    const truncated = join(scratch, 'truncated.mp4');
    const source = await readFile(BBB);
    await writeFile(truncated, source.subarray(0, source.length / 2));
    const error = await unprocessable(probeVideo(truncated));
    expect(error.message).toMatch(/moov atom not found/);
  });

  test('rejects a still image as not a video', async () => {
    const png = join(scratch, 'still.png');
    await sharp({ create: { width: 32, height: 16, channels: 3, background: '#808080' } })
      .png()
      .toFile(png);
    const error = await unprocessable(probeVideo(png));
    expect(error.message).toMatch(/not a video/);
  });

  test('without ffprobe or ffmpeg, probe, transcode and poster fail with PV_MEDIA_DECODER_MISSING and its fix', async () => {
    const ffprobePath = (await run('sh', ['-c', 'command -v ffprobe'])).stdout.trim();
    const ffmpegPath = (await run('sh', ['-c', 'command -v ffmpeg'])).stdout.trim();
    const probe = await probeVideo(ROTATED);
    // fluent-ffmpeg's documented overrides of the binaries it found on PATH (process-wide, restored below).
    ffmpeg.setFfprobePath('/nonexistent/ffprobe');
    ffmpeg.setFfmpegPath('/nonexistent/ffmpeg');
    try {
      const missing = { code: 'PV_MEDIA_DECODER_MISSING', fix: expect.stringContaining('ffmpeg') };
      await expect(probeVideo(ROTATED)).rejects.toMatchObject(missing);
      await expect(transcodeHls(ROTATED, join(scratch, 'no-ffmpeg'), probe)).rejects.toMatchObject(missing);
      await expect(extractPosterFrame(ROTATED, probe)).rejects.toMatchObject(missing);
      expect(await readdir(join(scratch, 'no-ffmpeg'))).toEqual([]);
    } finally {
      ffmpeg.setFfprobePath(ffprobePath);
      ffmpeg.setFfmpegPath(ffmpegPath);
    }
  });

  test('a missing file fails with ENOENT, not as unprocessable media', async () => {
    await expect(probeVideo(join(scratch, 'nowhere.mp4'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('planRenditions', () => {
  test.each([
    [854, 480, ['360p 640x360', '480p 854x480']],
    [1280, 720, ['360p 640x360', '720p 1280x720']],
    [1920, 1080, ['360p 640x360', '720p 1280x720', '1080p 1920x1080']],
    [3840, 2160, ['360p 640x360', '720p 1280x720', '1080p 1920x1080']],
    // Portrait phone video: rungs by the shorter edge.
    [1080, 1920, ['360p 360x640', '720p 720x1280', '1080p 1080x1920']],
    [1440, 1080, ['360p 480x360', '720p 960x720', '1080p 1440x1080']],
    // Just above a rung: the source's own size only, not 360 and 370.
    [658, 370, ['370p 658x370']],
    // Below the lowest rung, and odd: one rendition, even-sized.
    [60, 100, ['60p 60x100']],
    [481, 271, ['270p 480x270']],
  ])('%ix%i -> %j', (width, height, expected) => {
    const plans = planRenditions(width, height);
    expect(plans.map((plan) => `${plan.name} ${plan.width}x${plan.height}`)).toEqual(expected);
    for (const plan of plans) {
      expect((plan.width % 2) + (plan.height % 2)).toBe(0);
      expect(plan.videoKbps).toBeGreaterThan(0);
    }
    // Higher rungs get higher caps.
    const caps = plans.map((plan) => plan.videoKbps);
    expect([...caps].sort((a, b) => a - b)).toEqual(caps);
  });
});

describe('HLS playlists', () => {
  test('parses a master playlist whose CODECS hold a quoted comma', () => {
    const variants = [
      {
        uri: '360p/index.m3u8',
        bandwidth: 700_000,
        averageBandwidth: 500_000,
        width: 640,
        height: 360,
        frameRate: 24,
        codecs: ['avc1.64001e', 'mp4a.40.2'],
      },
      { uri: '480p/index.m3u8', bandwidth: 900_000 },
    ];
    expect(parseMasterPlaylist(formatMasterPlaylist(variants))).toEqual(variants);
  });

  test.each([
    ['no #EXTM3U', '#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n'],
    ['no variant', '#EXTM3U\n#EXT-X-VERSION:3\n'],
    ['a variant without BANDWIDTH', '#EXTM3U\n#EXT-X-STREAM-INF:RESOLUTION=2x2\na.m3u8\n'],
    ['a variant without URI', '#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n'],
  ])('rejects a master playlist with %s', (_, text) => {
    expect(() => parseMasterPlaylist(text)).toThrow(/invalid/);
  });

  test('parses a VOD media playlist', () => {
    const text =
      '#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:6.000,\na.ts\n#EXTINF:2.5,\nb.ts\n#EXT-X-ENDLIST\n';
    expect(parseMediaPlaylist(text)).toEqual({
      targetDuration: 6,
      playlistType: 'VOD',
      ended: true,
      segments: [
        { uri: 'a.ts', duration: 6 },
        { uri: 'b.ts', duration: 2.5 },
      ],
    });
    expect(() => parseMediaPlaylist('#EXTM3U\n#EXTINF:6,\na.ts\n')).toThrow(/TARGETDURATION/);
  });
});

describe('transcodeHls', () => {
  let bbbProbe: VideoProbe;
  let bbbDir: string;
  let bbb: HlsLadder;

  // One transcode of the BBB clip, shared by the tests below.
  beforeAll(async () => {
    bbbProbe = await probeVideo(BBB);
    bbbDir = join(scratch, 'bbb-ladder');
    bbb = await transcodeHls(BBB, bbbDir, bbbProbe);
  }, TRANSCODE_TIMEOUT);

  test('the BBB clip gives a 360p and a 480p rendition, each probing as H.264 + stereo AAC of that size', async () => {
    expect(bbb.master).toBe('master.m3u8');
    expect(bbb.renditions.map(({ width, height, playlist }) => ({ width, height, playlist }))).toEqual([
      { width: 640, height: 360, playlist: '360p/index.m3u8' },
      { width: 854, height: 480, playlist: '480p/index.m3u8' },
    ]);
    for (const rendition of bbb.renditions) {
      const playlist = parseMediaPlaylist(await readFile(join(bbbDir, rendition.playlist), 'utf8'));
      const folder = rendition.playlist.split('/')[0]!;
      for (const segment of [playlist.segments[0]!, playlist.segments.at(-1)!]) {
        const { streams } = await ffprobeJson(join(bbbDir, folder, segment.uri));
        const video = streams.filter((s) => s.codec_type === 'video');
        const audio = streams.filter((s) => s.codec_type === 'audio');
        expect(video).toHaveLength(1);
        expect(video[0]).toMatchObject({ codec_name: 'h264', width: rendition.width, height: rendition.height });
        // The source's 5.1 downmixed to stereo.
        expect(audio).toHaveLength(1);
        expect(audio[0]).toMatchObject({ codec_name: 'aac', channels: 2 });
      }
    }
  });

  test('the master playlist lists every rendition with BANDWIDTH, RESOLUTION and CODECS', async () => {
    const text = await readFile(join(bbbDir, bbb.master), 'utf8');
    expect(text.startsWith('#EXTM3U\n')).toBe(true);
    const variants = parseMasterPlaylist(text);
    expect(variants).toHaveLength(bbb.renditions.length);
    for (const [i, variant] of variants.entries()) {
      const rendition = bbb.renditions[i]!;
      expect(variant).toMatchObject({
        uri: rendition.playlist,
        bandwidth: rendition.bandwidth,
        width: rendition.width,
        height: rendition.height,
      });
      expect(variant.codecs).toEqual([expect.stringMatching(/^avc1\.64[0-9a-f]{4}$/), 'mp4a.40.2']);
      expect(variant.averageBandwidth).toBeLessThanOrEqual(variant.bandwidth);
    }
    expect(variants[0]!.bandwidth).toBeLessThan(variants[1]!.bandwidth);
  });

  test('each media playlist is a complete VOD list of ~6 s segments adding up to the clip duration within 0.5 s', async () => {
    for (const rendition of bbb.renditions) {
      const playlist = parseMediaPlaylist(await readFile(join(bbbDir, rendition.playlist), 'utf8'));
      expect(playlist.playlistType).toBe('VOD');
      expect(playlist.ended).toBe(true);
      expect(playlist.targetDuration).toBeGreaterThanOrEqual(SEGMENT_SECONDS);
      const total = playlist.segments.reduce((sum, segment) => sum + segment.duration, 0);
      expect(Math.abs(total - bbbProbe.durationSeconds)).toBeLessThan(0.5);
      // Keyframes are forced on the 6 s grid: every segment but the last is 6 s.
      for (const segment of playlist.segments.slice(0, -1)) expect(segment.duration).toBeCloseTo(SEGMENT_SECONDS, 1);
      expect(playlist.segments.at(-1)!.duration).toBeLessThanOrEqual(SEGMENT_SECONDS + 0.1);
    }
  });

  test('files lists exactly the files in outDir, and no work directory is left', async () => {
    expect(await filesUnder(bbbDir)).toEqual(bbb.files);
    expect(bbb.files).toContain('master.m3u8');
    expect(bbb.files.filter((file) => file.endsWith('.ts')).length).toBeGreaterThanOrEqual(2 * 5);
    expect((await readdir(bbbDir)).filter((entry) => entry.startsWith('.'))).toEqual([]);
  });

  test('the rotated clip is coded upright: 60x100 where the source frame is 100x60, no rotation left, no audio', async () => {
    const probe = await probeVideo(ROTATED);
    const dir = join(scratch, 'rotated-ladder');
    const ladder = await transcodeHls(ROTATED, dir, probe);
    expect(ladder.renditions).toEqual([{ width: 60, height: 100, bandwidth: expect.any(Number), playlist: '60p/index.m3u8' }]);
    const [variant] = parseMasterPlaylist(await readFile(join(dir, ladder.master), 'utf8'));
    expect(variant!.codecs).toEqual([expect.stringMatching(/^avc1\./)]);

    const segment = join(dir, '60p', parseMediaPlaylist(await readFile(join(dir, '60p/index.m3u8'), 'utf8')).segments[0]!.uri);
    const { streams } = await ffprobeJson(segment);
    expect(streams).toHaveLength(1);
    expect(streams[0]).toMatchObject({ codec_type: 'video', codec_name: 'h264', width: 60, height: 100 });
    expect(streams[0]!.side_data_list ?? []).toEqual([]);
    expect(streams[0]!.tags?.rotate).toBeUndefined();
    // The source's white band runs down its left edge; turned 90 degrees clockwise it is on top.
    const pixels = await firstFrameGrey(segment, 60, 100);
    expect(rowsMean(pixels, 60, 0, 15)).toBeGreaterThan(200);
    expect(rowsMean(pixels, 60, 40, 100)).toBeLessThan(50);
  });

  test("a second transcode into the same outDir replaces the ladder and clears a crashed run's work directory", async () => {
    const probe = await probeVideo(ROTATED);
    const dir = join(scratch, 'twice');
    await transcodeHls(ROTATED, dir, probe);
    await mkdir(join(dir, '.partial-crashed', '60p'), { recursive: true });
    await writeFile(join(dir, '.partial-crashed', '60p', 'segment-0000.ts'), 'half');
    const ladder = await transcodeHls(ROTATED, dir, probe);
    expect(await filesUnder(dir)).toEqual(ladder.files);
  });

  test(
    'a truncated mp4 that still probes (moov first) is rejected as unprocessable and leaves no ladder',
    async () => {
      // A web-optimised ("faststart") copy cut to a quarter: ffprobe reads the full 30 s index, but only
      // ~7 s of frames exist. ffmpeg exits 0 after what it can read; a partial ladder would pass for the video.
      const faststart = join(scratch, 'faststart.mp4');
      await run('ffmpeg', ['-v', 'error', '-i', BBB, '-c', 'copy', '-movflags', '+faststart', faststart]);
      const truncated = join(scratch, 'faststart-truncated.mp4');
      const whole = await readFile(faststart);
      await writeFile(truncated, whole.subarray(0, Math.floor(whole.length / 4)));
      const probe = await probeVideo(truncated);
      expect(probe.durationSeconds).toBeCloseTo(30, 0);

      const dir = join(scratch, 'truncated-ladder');
      const error = await unprocessable(transcodeHls(truncated, dir, probe));
      expect(error.message).toMatch(/truncated/);
      expect(await readdir(dir)).toEqual([]);
    },
    TRANSCODE_TIMEOUT,
  );

  test('random bytes fail the transcode as unprocessable too', async () => {
    const random = join(scratch, 'random-transcode.mp4');
    await writeFile(random, Buffer.alloc(4096, 0x5a));
    const dir = join(scratch, 'random-ladder');
    const probe = await probeVideo(ROTATED);
    await unprocessable(transcodeHls(random, dir, probe));
    expect(await readdir(dir)).toEqual([]);
  });

  test(
    'an aborted transcode kills ffmpeg and leaves no master playlist',
    async () => {
      const dir = join(scratch, 'aborted-ladder');
      const controller = new AbortController();
      const transcode = transcodeHls(BBB, dir, bbbProbe, { signal: controller.signal });
      const settled = transcode.then(
        () => 'resolved',
        (reason: unknown) => reason,
      );

      // Wait for ffmpeg to be writing segments: the process whose working directory is the work dir.
      let pid: number | undefined;
      while (pid === undefined) {
        await new Promise((resolve) => setImmediate(resolve));
        const work = (await readdir(dir).catch(() => [])).find((entry) => entry.startsWith('.partial-'));
        if (!work) continue;
        const segments = await readdir(join(dir, work, '360p')).catch(() => []);
        if (!segments.some((name) => name.endsWith('.ts'))) continue;
        pid = await processWithCwd(join(dir, work));
      }
      expect(await readFile(`/proc/${pid}/comm`, 'utf8')).toMatch(/^ffmpeg/);
      controller.abort();

      const reason = await settled;
      expect(reason).toBeInstanceOf(Error);
      expect((reason as Error).name).toBe('AbortError');
      // Settled only once ffmpeg has exited (and been reaped): its /proc entry is gone.
      await expect(readFile(`/proc/${pid}/comm`, 'utf8')).rejects.toMatchObject({ code: 'ENOENT' });
      expect(await readdir(dir)).toEqual([]);
    },
    TRANSCODE_TIMEOUT,
  );

  test('an already aborted signal writes nothing', async () => {
    const dir = join(scratch, 'pre-aborted');
    await mkdir(dir);
    await expect(transcodeHls(BBB, dir, bbbProbe, { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    expect(await readdir(dir)).toEqual([]);
  });
});

/** The pid of the process whose working directory is `dir`, if any (Linux /proc). */
async function processWithCwd(dir: string): Promise<number | undefined> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if ((await readlink(`/proc/${entry}/cwd`)) === dir) return Number(entry);
    } catch {
      // Exited meanwhile, or not ours to inspect.
    }
  }
  return undefined;
}

describe('extractPosterFrame', () => {
  test('the BBB poster is an 854x480 PNG', async () => {
    const png = await extractPosterFrame(BBB, await probeVideo(BBB));
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    expect(await sharp(png).metadata()).toMatchObject({ format: 'png', width: 854, height: 480 });
  });

  test('the rotated clip gives an upright 60x100 poster from its only frame', async () => {
    const png = await extractPosterFrame(ROTATED, await probeVideo(ROTATED));
    const { data, info } = await sharp(png).greyscale().raw().toBuffer({ resolveWithObject: true });
    expect({ width: info.width, height: info.height, format: (await sharp(png).metadata()).format }).toEqual({
      width: 60,
      height: 100,
      format: 'png',
    });
    expect(rowsMean(data, 60, 0, 15)).toBeGreaterThan(200);
    expect(rowsMean(data, 60, 40, 100)).toBeLessThan(50);
  });

  test('a truncated file whose frames run out before the poster time still gives the first frame', async () => {
    // The BBB index claims 30 s, the copy holds the first ~1.5 s: 3 s in decodes nothing.
    const faststart = join(scratch, 'poster-faststart.mp4');
    await run('ffmpeg', ['-v', 'error', '-i', BBB, '-c', 'copy', '-movflags', '+faststart', faststart]);
    const short = join(scratch, 'poster-short.mp4');
    const handle = await open(faststart, 'r');
    const head = Buffer.alloc(200 * 1024);
    await handle.read(head, 0, head.length, 0);
    await handle.close();
    await writeFile(short, head);
    const probe = await probeVideo(short);
    expect(posterTime(probe.durationSeconds)).toBe(3);
    const png = await extractPosterFrame(short, probe);
    expect(await sharp(png).metadata()).toMatchObject({ width: 854, height: 480 });
  });

  test.each([
    [30, 3],
    [10, 1],
    [5, 0.5],
    [0.042, 0],
    [3600, 3],
  ])('a %d s clip is shown %d s in', (duration, expected) => {
    expect(posterTime(duration)).toBeCloseTo(expected, 6);
  });
});
