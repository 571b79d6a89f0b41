import type { ChildProcess } from 'node:child_process';
import { copyFile, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MediaView } from '../../src/core/protocol.js';
import { CliSandbox, type CliServer, exited } from '../support/cli.js';
import { CORPUS_DIR } from '../support/corpus.js';
import { TIME_SCALE } from '../support/time-scale.js';

const PASSWORD = 'correct horse battery staple';

/** Processes whose command line names a path inside folder. */
async function processesUsing(folder: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const commandLine = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (commandLine.includes(`${folder}/`)) found.push(`${pid}: ${commandLine.split('\0').join(' ')}`);
  }
  return found;
}

/** A `photovault worker start` process and the JSON lines it logged. */
interface Worker {
  process: ChildProcess;
  lines: Record<string, unknown>[];
  output(): string;
}

/**
 * The processing workers as separate processes beside a server that runs none itself
 * (processing.inProcess false), as in the cluster form: jobs go through the bus they share.
 */
describe('processing workers as processes', () => {
  let sandbox: CliSandbox;
  let dataDir: string;
  let server: CliServer;

  beforeEach(async () => {
    sandbox = await CliSandbox.create();
    dataDir = await sandbox.dir('server-data');
    // A killed worker's job comes back after 3 s instead of 30.
    await writeFile(join(dataDir, 'config.json'), JSON.stringify({ processing: { inProcess: false, leaseSeconds: 3 } }));
    server = await sandbox.startServer(dataDir);
    await sandbox.addUserAndLogin(server, dataDir, 'alice', PASSWORD);
  });
  afterEach(async () => {
    await server.stop();
    await sandbox.dispose();
  });

  function startWorker(only: string): Worker {
    // Port 0: the workers of a test run side by side, and beside other tests' workers.
    const child = sandbox.spawn(['worker', 'start', '--data', dataDir, '--only', only, '--port', '0']);
    const lines: Record<string, unknown>[] = [];
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (piece: string) => (stderr += piece));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        lines.push({ text: line });
      }
    });
    return { process: child, lines, output: () => `${lines.map((line) => JSON.stringify(line)).join('\n')}\n${stderr}` };
  }

  async function waitForLine(worker: Worker, matches: (line: Record<string, unknown>) => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 120_000;
    while (!worker.lines.some(matches)) {
      if (Date.now() > deadline || worker.process.exitCode !== null) throw new Error(`worker: no "${what}"\n${worker.output()}`);
      await sleep(50);
    }
  }

  const info = async (path: string) => sandbox.json<MediaView>(['info', path, '--json']);

  it(
    'runs a job again after its worker is killed mid-transcode, completes it once, and serves the ladder and thumbnails',
    async () => {
      const media = await sandbox.dir('media');
      await copyFile(join(CORPUS_DIR, 'video', 'bbb-480p-30s.mp4'), join(media, 'movie.mp4'));
      await copyFile(join(CORPUS_DIR, 'images', 'gps', 'DSCN0012.jpg'), join(media, 'photo.jpg'));
      const upload = await sandbox.run(['upload', join(media, 'movie.mp4'), join(media, 'photo.jpg')]);
      expect(upload.code, upload.stderr).toBe(0);

      const stills = startWorker('thumbnails,metadata');
      let transcoder = startWorker('transcode');
      await waitForLine(transcoder, (line) => line.msg === 'job started' && line.job === 'transcode', 'job started');
      const scratch = join(dataDir, 'work', 'processing', String(transcoder.process.pid));
      for (let tries = 0; !(await processesUsing(scratch)).some((process) => process.includes('ffmpeg')); tries++) {
        if (tries > 600) throw new Error(`no ffmpeg started by the worker\n${transcoder.output()}`);
        await sleep(50);
      }
      await sleep(1_000); // well inside ffmpeg's run
      transcoder.process.kill('SIGKILL');
      await exited(transcoder.process);

      transcoder = startWorker('transcode');
      await waitForLine(transcoder, (line) => line.msg === 'photovault worker started', 'started');
      // The killed worker's ffmpeg, orphaned, was ended before its job was taken up again.
      expect(await processesUsing(scratch)).toEqual([]);
      await waitForLine(transcoder, (line) => line.msg === 'job finished' && line.job === 'transcode', 'job finished');

      let movie = await info('movie.mp4');
      for (let tries = 0; movie.jobs.some((job) => job.state === 'pending') && tries < 600; tries++) {
        await sleep(100);
        movie = await info('movie.mp4');
      }
      expect(movie.jobs.map((job) => [job.job, job.state])).toEqual([
        ['metadata', 'done'],
        ['thumbnails', 'done'],
        ['transcode', 'done'],
      ]);
      expect(movie.jobs.find((job) => job.job === 'transcode')!.attempts).toBe(2);
      expect(movie.metadata).toMatchObject({ kind: 'video', width: 854, height: 480, videoCodec: 'h264', audioCodec: 'aac' });
      expect(movie.metadata!.durationSeconds).toBeCloseTo(30, 0);
      expect(movie.hls!.renditions.map((rendition) => rendition.height)).toEqual([360, 480]);

      // Completed once in effect: one 'processed' change per job, whatever ran twice.
      const backends = await sandbox.openBackends(dataDir);
      try {
        const processed = await backends.db
          .selectFrom('changes')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where('kind', '=', 'processed')
          .where('path', '=', 'movie.mp4')
          .executeTakeFirstOrThrow();
        expect(Number(processed.n)).toBe(3);
      } finally {
        await backends.close();
      }

      // The poster frame's thumbnail, through the CLI.
      const out = join(sandbox.root, 'movie.256.webp');
      const thumb = await sandbox.run(['thumb', 'movie.mp4', '--size', '256', '--out', out]);
      expect(thumb.code, thumb.stderr).toBe(0);
      expect(await sharp(await readFile(out)).metadata()).toMatchObject({ format: 'webp', width: 256, height: 144 });

      const photo = await info('photo.jpg');
      expect(photo.jobs.every((job) => job.state === 'done')).toBe(true);
      const text = await sandbox.run(['info', 'photo.jpg']);
      expect(text.stdout).toMatch(/camera\s+NIKON/);
      expect(text.stdout).toMatch(/location\s+43\.\d+, 11\.\d+/);

      // Each worker process answers probes and counts its runs for Prometheus: the restarted
      // transcoder ran the killed one's job to the end.
      const endpoint = String(transcoder.lines.find((line) => line.msg === 'photovault worker started')!.url);
      expect(await (await fetch(`${endpoint}/healthz`)).json()).toEqual({ status: 'ok' });
      const metrics = await (await fetch(`${endpoint}/metrics`)).text();
      expect(metrics).toContain('photovault_job_runs_total{job="transcode",outcome="done"} 1');
      expect(metrics).toContain('photovault_process_resident_memory_bytes');
      expect((await fetch(`${endpoint}/elsewhere`)).status).toBe(404);

      for (const worker of [stills, transcoder]) {
        worker.process.kill('SIGTERM');
        expect(await exited(worker.process)).toEqual({ code: 0, signal: null });
      }
    },
    240_000 * TIME_SCALE,
  );
});
