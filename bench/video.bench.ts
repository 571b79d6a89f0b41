/**
 * HLS transcoding speed: transcodeHls() on the corpus's BBB clip (30 s, 854x480 H.264 + 5.1
 * AAC -> 360p + 480p renditions), against
 *   (a) the same single ffmpeg command, written out by hand and spawned directly: what the
 *       wrapper (fluent-ffmpeg, playlist checks, the move into place) costs; goal: >= 0.95x;
 *   (b) one ffmpeg run per rendition, one after the other, the same settings otherwise: what
 *       decoding once and encoding the rungs side by side in one process gains.
 *
 *   npm run bench:video
 *   PV_BENCH_RUNS=3 npm run bench:video     # fewer repetitions (default 5)
 *
 * Figures (it never asserts a timing): wall time and realtime factor (seconds of video per
 * second of wall time), as the median of the runs and of the best run; CPU seconds of the ffmpeg
 * processes; and the CPU other processes used meanwhile, the noise on a shared machine (with two
 * cores, one other busy process moves wall times by tens of percent, CPU seconds hardly). The
 * three are run interleaved, each round starting with the next one, after one untimed
 * transcodeHls() (page cache, fluent-ffmpeg's capability probe). Everything is written to one
 * temp dir, removed at the end, also on an error or ^C.
 */
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { availableParallelism, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { planRenditions, SEGMENT_SECONDS, transcodeHls, X264_CRF, X264_PRESET } from '../src/workers/transcode/hls.transcoder.js';
import { probeVideo } from '../src/workers/transcode/video.probe.js';
import { machineBusyCpuSeconds, numberSetting, ownCpuSeconds, reapedChildrenCpuSeconds, removeAtExit, runOk, table } from './support.js';

/** dist/bench/video.bench.js -> the repository root. */
const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const input = resolve(repoRoot, '..', 'shared', 'corpus', 'video', 'bbb-480p-30s.mp4');
const runs = Math.max(1, Math.round(numberSetting('PV_BENCH_RUNS', 5)));
const tmpBase = process.env.PV_BENCH_TMP || '/tmp';

// ---------------------------------------------------------------------------------------------
// The hand-written commands. Spelled out for this clip (stream 0 video, stream 1 audio); checked
// against planRenditions() and the transcoder's constants at start, so they cannot drift apart.

const LADDER = [
  { name: '360p', width: 640, height: 360, videoKbps: 800, audioKbps: 96 },
  { name: '480p', width: 854, height: 480, videoKbps: 1245, audioKbps: 128 },
];

const ENCODE = ['-c:v', 'libx264', '-preset', 'veryfast', '-crf', '23', '-profile:v', 'high'];
const KEYFRAMES = ['-force_key_frames:v', 'expr:gte(t,n_forced*6)'];
const HLS = [
  '-f',
  'hls',
  '-hls_time',
  '6',
  '-hls_playlist_type',
  'vod',
  '-hls_flags',
  'independent_segments',
  '-hls_segment_type',
  'mpegts',
];
const QUIET = ['-nostdin', '-hide_banner', '-loglevel', 'error'];

/** (a): one process, split + scale per rung, like transcodeHls. */
function singleCommand(dir: string): string[] {
  // prettier-ignore
  return [
    ...QUIET,
    '-i', input,
    '-filter_complex',
    '[0:0]split=2[s0][s1];[s0]scale=640:360,setsar=1,format=yuv420p[v0];[s1]scale=854:480,setsar=1,format=yuv420p[v1]',
    '-map', '[v0]', '-map', '0:1', '-map', '[v1]', '-map', '0:1',
    ...ENCODE,
    '-maxrate:v:0', '800k', '-bufsize:v:0', '1600k', '-maxrate:v:1', '1245k', '-bufsize:v:1', '2490k',
    ...KEYFRAMES,
    '-c:a', 'aac', '-ac', '2', '-b:a:0', '96k', '-b:a:1', '128k',
    ...HLS,
    '-hls_segment_filename', `${dir}/%v/segment-%04d.ts`,
    '-master_pl_name', 'master.m3u8',
    '-var_stream_map', 'v:0,a:0,name:360p v:1,a:1,name:480p',
    `${dir}/%v/index.m3u8`,
  ];
}

/** (b): one process per rendition, each decoding the source again. */
function renditionCommand(dir: string, rung: (typeof LADDER)[number]): string[] {
  // prettier-ignore
  return [
    ...QUIET,
    '-i', input,
    '-map', '0:0', '-map', '0:1',
    '-vf', `scale=${rung.width}:${rung.height},setsar=1,format=yuv420p`,
    ...ENCODE,
    '-maxrate:v', `${rung.videoKbps}k`, '-bufsize:v', `${rung.videoKbps * 2}k`,
    ...KEYFRAMES,
    '-c:a', 'aac', '-ac', '2', '-b:a', `${rung.audioKbps}k`,
    ...HLS,
    '-hls_segment_filename', `${dir}/${rung.name}/segment-%04d.ts`,
    `${dir}/${rung.name}/index.m3u8`,
  ];
}

/** Fails when the transcoder's settings moved away from the hand-written ones. */
function checkSameSettings(width: number, height: number): void {
  const plan = planRenditions(width, height).map(({ name, width, height, videoKbps, audioKbps }) => ({
    name,
    width,
    height,
    videoKbps,
    audioKbps,
  }));
  const same = JSON.stringify(plan) === JSON.stringify(LADDER) && X264_PRESET === 'veryfast' && X264_CRF === 23 && SEGMENT_SECONDS === 6;
  if (!same) {
    throw new Error(
      `bench/video.bench.ts: the hand-written commands no longer match the transcoder (plan ${JSON.stringify(plan)}, ` +
        `preset ${X264_PRESET}, crf ${X264_CRF}, segments ${SEGMENT_SECONDS} s): update them`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Measuring.

interface Sample {
  seconds: number;
  /** CPU of the ffmpeg processes (reaped children) plus this process's own. */
  cpu: number;
  /** CPU the rest of the machine used meanwhile. */
  otherCpu: number;
  segments: number;
}

async function measure(dir: string, task: () => Promise<void>): Promise<Sample> {
  await mkdir(dir, { recursive: true });
  const busy = machineBusyCpuSeconds();
  const children = reapedChildrenCpuSeconds();
  const own = ownCpuSeconds();
  const started = performance.now();
  await task();
  const seconds = (performance.now() - started) / 1000;
  const cpu = reapedChildrenCpuSeconds() - children + (ownCpuSeconds() - own);
  const otherCpu = machineBusyCpuSeconds() - busy - cpu;
  let segments = 0;
  for (const entry of await readdir(dir, { recursive: true })) if (entry.endsWith('.ts')) segments++;
  await rm(dir, { recursive: true, force: true });
  return { seconds, cpu, otherCpu, segments };
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};
const fixed = (value: number, digits: number) => (Number.isFinite(value) ? value.toFixed(digits) : '-');
const ratio = (value: number) => (Number.isFinite(value) ? `${value.toFixed(2)}x` : '-');

async function main(): Promise<void> {
  const probe = await probeVideo(input);
  checkSameSettings(probe.width, probe.height);
  const root = await mkdtemp(join(tmpBase, 'pv-bench-video-'));
  removeAtExit(root);
  const loadBefore = loadavg();

  const variants: { label: string; run: (dir: string) => Promise<void> }[] = [
    { label: 'transcodeHls()', run: async (dir) => void (await transcodeHls(input, dir, probe)) },
    { label: '(a) same command, by hand', run: async (dir) => void (await runOk('ffmpeg', singleCommand(dir))) },
    {
      label: '(b) one ffmpeg per rendition',
      run: async (dir) => {
        for (const rung of LADDER) {
          // Without -var_stream_map the HLS muxer does not create the directory.
          await mkdir(join(dir, rung.name));
          await runOk('ffmpeg', renditionCommand(dir, rung));
        }
      },
    },
  ];

  process.stderr.write(`warm-up: transcodeHls() once\n`);
  await measure(join(root, 'warm-up'), () => variants[0]!.run(join(root, 'warm-up')));
  const samples = variants.map(() => [] as Sample[]);
  for (let round = 1; round <= runs; round++) {
    // Each round starts with the next variant, so that none always follows the same neighbour.
    for (let k = 0; k < variants.length; k++) {
      const i = (round - 1 + k) % variants.length;
      const variant = variants[i]!;
      const dir = join(root, `run-${round}-${i}`);
      const sample = await measure(dir, () => variant.run(dir));
      samples[i]!.push(sample);
      process.stderr.write(`round ${round}/${runs}: ${variant.label} ${sample.seconds.toFixed(2)} s\n`);
    }
  }
  const loadAfter = loadavg();

  const seconds = samples.map((list) => median(list.map((s) => s.seconds)));
  const realtime = seconds.map((s) => probe.durationSeconds / s);
  const cpu = samples.map((list) => median(list.map((s) => s.cpu)));
  // Load from elsewhere only ever slows a run down: the best run is the least disturbed one.
  const best = samples.map((list) => probe.durationSeconds / Math.min(...list.map((s) => s.seconds)));
  const out: string[] = [''];
  out.push(`photovault video benchmark: node ${process.version}, ${availableParallelism()} cores, ffmpeg libx264 preset ${X264_PRESET}`);
  out.push(
    `input: ${probe.durationSeconds.toFixed(1)} s ${probe.width}x${probe.height} ${probe.videoCodec} + ${probe.audioChannels ?? 0}ch ${probe.audioCodec ?? 'no audio'} ` +
      `-> ${LADDER.map((rung) => rung.name).join(' + ')}; median of ${runs} interleaved runs`,
  );
  out.push(`load average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, after ${loadAfter.map((l) => l.toFixed(2)).join(' ')}`);
  out.push('');
  out.push(
    table(
      'HLS ladder of bbb-480p-30s.mp4',
      variants.map((variant) => variant.label),
      [
        ['wall s, median', ...seconds.map((s) => fixed(s, 2))],
        [
          'wall s, min-max',
          ...samples.map(
            (list) => `${fixed(Math.min(...list.map((s) => s.seconds)), 2)}-${fixed(Math.max(...list.map((s) => s.seconds)), 2)}`,
          ),
        ],
        ['realtime factor (video s / wall s)', ...realtime.map((r) => `${fixed(r, 2)}x`)],
        ['transcodeHls() / this, realtime factor', ...realtime.map((r) => ratio(realtime[0]! / r))],
        ['realtime factor, best run', ...best.map((r) => `${fixed(r, 2)}x`)],
        ['transcodeHls() / this, best runs', ...best.map((r) => ratio(best[0]! / r))],
        ['CPU s (ffmpeg + node), median', ...cpu.map((c) => fixed(c, 1))],
        ['this / transcodeHls(), CPU s', ...cpu.map((c) => ratio(c / cpu[0]!))],
        ["other processes' CPU s meanwhile, median", ...samples.map((list) => fixed(Math.max(0, median(list.map((s) => s.otherCpu))), 1))],
        ['segments written', ...samples.map((list) => String(list[0]?.segments ?? '-'))],
      ],
    ),
  );
  out.push('');
  out.push(
    `goal (a): transcodeHls() at >= 0.95x the hand-written command: ${ratio(realtime[0]! / realtime[1]!)} (medians), ` +
      `${ratio(best[0]! / best[1]!)} (best runs)`,
  );
  out.push('');
  process.stdout.write(`${out.join('\n')}\n`);
}

await main();
