import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { ChangePage, MediaView } from '../../src/core/protocol.js';
import type { Subscription } from '../../src/infra/bus/event-bus.js';
import { workerCatalog } from '../../src/server/context.js';
import { JobMetrics } from '../../src/workers/job-metrics.js';
import { startWorkers } from '../../src/workers/workers.js';
import { CORPUS_DIR } from '../support/corpus.js';
import { describeEachDatabase } from '../support/databases.js';
import { createTestServer, type TestServer } from '../support/server.js';
import { pseudoRandomBytes, uploadBytes } from '../support/uploads.js';

const quiet = { info() {}, error() {} };
const corpus = (path: string) => readFile(join(CORPUS_DIR, 'images', path));

/** Polls until check passes (up to 60 s: the machine may be busy), then returns its last value. */
async function eventually<T>(what: string, read: () => Promise<T>, check: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const value = await read();
    if (check(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not reached within 60 s; last: ${JSON.stringify(value)}`);
    await sleep(50);
  }
}

describeEachDatabase('processing pipeline', (kind) => {
  let server: TestServer;
  let running: Subscription[];

  beforeEach(async () => {
    server = await createTestServer(kind);
    running = [];
  });
  afterEach(async () => {
    for (const subscription of running.reverse()) await subscription.stop();
    await server.close();
  });

  /** Starts the server's half (dispatcher, recorder) and in-process workers, as `server start` does. */
  async function startPipeline() {
    const { context, config } = server;
    for (const subscription of await context.processing.start()) running.push(subscription);
    const metrics = new JobMetrics(context.metrics.registry);
    running.push(
      await startWorkers({ bus: context.bus, blobs: context.blobs, catalog: workerCatalog(context), log: quiet, metrics }, config),
    );
  }

  const mediaOf = async (auth: { authorization: string }, path: string) => {
    const response = await server.app.inject({ url: `/api/v1/files/media?path=${encodeURIComponent(path)}`, headers: auth });
    return { status: response.statusCode, media: response.json<MediaView>() };
  };
  const finished = (media: MediaView) => media.jobs.length > 0 && media.jobs.every((job) => job.state !== 'pending');

  it('derives metadata and four thumbnails of a photo, records them in the feed, and serves them with ETags to its owner only', async () => {
    const alice = await server.login('alice');
    const bob = await server.login('bob');
    await startPipeline();
    const photo = await corpus('gps/DSCN0010.jpg');
    await uploadBytes(server.app, alice.auth, 'Trips/DSCN0010.jpg', photo);
    await uploadBytes(server.app, alice.auth, 'notes.txt', Buffer.from('not a photo'));

    const { media } = await eventually(
      'photo processed',
      () => mediaOf(alice.auth, 'Trips/DSCN0010.jpg'),
      ({ media }) => finished(media),
    );
    expect(media.jobs.map((job) => [job.job, job.state])).toEqual([
      ['metadata', 'done'],
      ['thumbnails', 'done'],
    ]);
    expect(media.metadata).toMatchObject({ kind: 'image', make: 'NIKON', width: 640, height: 480 });
    expect(media.metadata?.gps?.latitude).toBeCloseTo(43.4671, 3);
    expect(media.thumbhash).toMatch(/^[A-Za-z0-9+/]+=*$/);
    expect(media.thumbnails.map((thumbnail) => [thumbnail.size, thumbnail.width, thumbnail.height])).toEqual([
      [64, 64, 48],
      [256, 256, 192],
      [512, 512, 384],
      [1920, 640, 480],
    ]);

    const url = media.thumbnails[1]!.url;
    const thumbnail = await server.app.inject({ url, headers: alice.auth });
    expect(thumbnail.statusCode).toBe(200);
    expect(thumbnail.headers['content-type']).toBe('image/webp');
    expect(thumbnail.headers['cache-control']).toContain('private');
    expect(await sharp(thumbnail.rawPayload).metadata()).toMatchObject({ format: 'webp', width: 256, height: 192 });
    const etag = String(thumbnail.headers.etag);
    expect((await server.app.inject({ url, headers: { ...alice.auth, 'if-none-match': etag } })).statusCode).toBe(304);

    // Another user: the same answers as for content that does not exist.
    expect((await server.app.inject({ url, headers: bob.auth })).statusCode).toBe(404);
    expect((await server.app.inject({ url, headers: { ...bob.auth, 'if-none-match': etag } })).statusCode).toBe(404);
    expect((await mediaOf(bob.auth, 'Trips/DSCN0010.jpg')).status).toBe(404);
    expect((await server.app.inject({ url })).statusCode).toBe(401);
    // A file that is not media has no derived files, and says so.
    const text = await mediaOf(alice.auth, 'notes.txt');
    expect(text.status).toBe(404);
    expect(JSON.stringify(text.media)).toContain('not a photo or a video');

    const feed = (await server.app.inject({ url: '/api/v1/changes?since=0', headers: alice.auth })).json<ChangePage>();
    const processed = feed.changes.filter((change) => change.kind === 'processed');
    expect(processed.map((change) => [change.path, change.contentHash])).toEqual([
      ['Trips/DSCN0010.jpg', media.contentHash],
      ['Trips/DSCN0010.jpg', media.contentHash],
    ]);
  });

  it("transcodes a rotated phone clip upright and serves its HLS ladder behind the original's authorisation", async () => {
    const alice = await server.login('alice');
    const bob = await server.login('bob');
    await startPipeline();
    await uploadBytes(server.app, alice.auth, 'clip.mp4', await readFile(join(CORPUS_DIR, 'video', 'video_rotation_90.mp4')));

    const { media } = await eventually(
      'clip processed',
      () => mediaOf(alice.auth, 'clip.mp4'),
      ({ media }) => finished(media),
    );
    expect(media.jobs.map((job) => [job.job, job.state, job.error])).toEqual([
      ['metadata', 'done', null],
      ['thumbnails', 'done', null],
      ['transcode', 'done', null],
    ]);
    expect(media.metadata).toMatchObject({ kind: 'video', rotation: 90, videoCodec: 'h264' });
    // Displayed portrait (the coded frame is landscape): so are the rendition and the poster.
    const { width, height } = media.metadata!;
    expect(height!).toBeGreaterThan(width!);
    expect(media.hls!.renditions).toHaveLength(1);
    expect(media.hls!.renditions[0]!.height).toBeGreaterThan(media.hls!.renditions[0]!.width);
    expect(media.thumbnails[3]!.height).toBeGreaterThan(media.thumbnails[3]!.width);

    const master = await server.app.inject({ url: media.hls!.master, headers: alice.auth });
    expect(master.statusCode).toBe(200);
    expect(master.headers['content-type']).toBe('application/vnd.apple.mpegurl');
    expect(master.body).toMatch(/^#EXTM3U/);
    const playlistPath = master.body.split('\n').find((line) => line.endsWith('.m3u8'))!;
    const base = media.hls!.master.slice(0, media.hls!.master.lastIndexOf('/') + 1);
    const playlist = await server.app.inject({ url: base + playlistPath, headers: alice.auth });
    expect(playlist.body).toContain('#EXT-X-ENDLIST');
    const segmentPath = playlist.body.split('\n').find((line) => line !== '' && !line.startsWith('#'))!;
    const segmentUrl = base + playlistPath.slice(0, playlistPath.lastIndexOf('/') + 1) + segmentPath;
    const segment = await server.app.inject({ url: segmentUrl, headers: alice.auth });
    expect(segment.statusCode).toBe(200);
    expect(segment.rawPayload.length).toBeGreaterThan(0);

    expect((await server.app.inject({ url: media.hls!.master, headers: bob.auth })).statusCode).toBe(404);
    expect((await server.app.inject({ url: segmentUrl, headers: bob.auth })).statusCode).toBe(404);
    const escape = `${base}..%2F..%2Fthumbnails%2F256.m3u8`;
    expect((await server.app.inject({ url: escape, headers: alice.auth })).statusCode).toBe(404);
  });

  it('ends corrupt and fake images as failed with a reason, and goes on with the next file', async () => {
    const alice = await server.login('alice');
    await startPipeline();
    const photo = await corpus('cameras/Canon_40D.jpg');
    await uploadBytes(server.app, alice.auth, 'random.jpg', pseudoRandomBytes(50_000, 7));
    await uploadBytes(server.app, alice.auth, 'truncated.jpg', photo.subarray(0, Math.floor(photo.length / 2)));
    await uploadBytes(server.app, alice.auth, 'good.jpg', photo);

    const good = await eventually(
      'good photo processed',
      () => mediaOf(alice.auth, 'good.jpg'),
      ({ media }) => finished(media),
    );
    expect(good.media.jobs.every((job) => job.state === 'done')).toBe(true);
    const random = await eventually(
      'random bytes finished',
      () => mediaOf(alice.auth, 'random.jpg'),
      ({ media }) => finished(media),
    );
    expect(random.media.jobs.map((job) => job.state)).toEqual(['failed', 'failed']);
    for (const job of random.media.jobs) expect(job.error).toMatch(/\w{8,}/);
    const truncated = await eventually(
      'truncated finished',
      () => mediaOf(alice.auth, 'truncated.jpg'),
      ({ media }) => media.jobs.some((job) => job.job === 'thumbnails' && job.state !== 'pending'),
    );
    const thumbnails = truncated.media.jobs.find((job) => job.job === 'thumbnails')!;
    expect(thumbnails.state).toBe('failed');
    expect(thumbnails.attempts).toBe(1); // unprocessable: never retried
    expect(truncated.media.thumbnails).toEqual([]);

    // The server's /metrics counts the runs of its in-process workers.
    const metrics = await eventually(
      'thumbnail runs counted',
      async () => (await server.app.inject({ url: '/metrics' })).body,
      (body) => body.includes('photovault_job_runs_total{job="thumbnails",outcome="failed"} 2'),
    );
    expect(metrics).toContain('photovault_job_runs_total{job="thumbnails",outcome="done"} 1');
    expect(metrics).toContain('photovault_jobs_running{job="thumbnails"} 0');
    expect(metrics).toMatch(/photovault_job_duration_seconds_count\{job="thumbnails",outcome="done"\} 1/);
  });

  it('processes content uploaded while no pipeline ran once it starts, and the same content only once', async () => {
    const alice = await server.login('alice');
    const bob = await server.login('bob');
    const photo = await corpus('orientation/landscape_6.jpg');
    // Nothing subscribed yet: these file.uploaded events reach no dispatcher, as after a crash
    // between the commit and the publish.
    await uploadBytes(server.app, alice.auth, 'a.jpg', photo);
    await uploadBytes(server.app, alice.auth, 'copy of a.jpg', photo);
    await uploadBytes(server.app, bob.auth, 'b.jpg', photo);
    await startPipeline();

    const { media } = await eventually(
      'reconciled',
      () => mediaOf(alice.auth, 'a.jpg'),
      ({ media }) => finished(media),
    );
    expect(media.jobs.every((job) => job.state === 'done' && job.attempts === 1)).toBe(true);
    // Stored 450x600 with orientation 6: displayed as the landscape it is.
    expect(media.metadata).toMatchObject({ orientation: 6, width: 600, height: 450 });
    expect(media.thumbnails.find((thumbnail) => thumbnail.size === 256)).toMatchObject({ width: 256, height: 192 });
    expect((await mediaOf(bob.auth, 'b.jpg')).media.jobs.every((job) => job.state === 'done')).toBe(true);

    const rows = await server.context.processingJobs.jobsOf(media.contentHash);
    expect(rows.map((row) => [row.job, row.state])).toEqual([
      ['metadata', 'done'],
      ['thumbnails', 'done'],
    ]);
    const processedPaths = async (auth: { authorization: string }) =>
      (await server.app.inject({ url: '/api/v1/changes?since=0', headers: auth }))
        .json<ChangePage>()
        .changes.filter((change) => change.kind === 'processed')
        .map((change) => change.path)
        .sort();
    // Each job told every live file holding the content, once.
    expect(await processedPaths(alice.auth)).toEqual(['a.jpg', 'a.jpg', 'copy of a.jpg', 'copy of a.jpg']);
    expect(await processedPaths(bob.auth)).toEqual(['b.jpg', 'b.jpg']);
  });
});
