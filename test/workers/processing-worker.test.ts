import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RESULTS_QUEUE, type ProcessingOutcome } from '../../src/core/media.js';
import { FsBlobStore, fsBucketRoots } from '../../src/infra/blobs/fs.blob-store.js';
import { objectKey } from '../../src/infra/blobs/object-keys.js';
import { SqliteEventBus } from '../../src/infra/bus/sqlite.event-bus.js';
import type { JobHandlers, JobInput } from '../../src/workers/job-handler.js';
import { ProcessingWorker } from '../../src/workers/processing.worker.js';
import { UnprocessableMediaError } from '../../src/workers/unprocessable-media.error.js';

const HASH = 'ab'.repeat(32);
const quiet = { info() {}, error() {} };
const metadata = { kind: 'image' as const, width: 1, height: 1 };

describe('processing worker', () => {
  let dir: string;
  let bus: SqliteEventBus;
  let blobs: FsBlobStore;
  let outcomes: ProcessingOutcome[];
  let stops: (() => Promise<void>)[];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pv-worker-'));
    bus = await SqliteEventBus.open(join(dir, 'bus.db'), { pollIntervalMs: 10 });
    blobs = await FsBlobStore.open(fsBucketRoots(dir));
    await blobs.put('uploads', objectKey(HASH), Readable.from([Buffer.from('original bytes')]));
    outcomes = [];
    stops = [];
    const recorder = await bus.subscribe({ durable: RESULTS_QUEUE, stream: 'processing-results' }, async (message) => {
      outcomes.push(message.payload as ProcessingOutcome);
    });
    stops.push(() => recorder.stop());
  });
  afterEach(async () => {
    for (const stop of stops.reverse()) await stop();
    await bus.close();
    await blobs.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Starts a worker running only metadata jobs with the given handler, 3 tries, 20 ms backoff. */
  async function startWorker(handler: (input: JobInput) => Promise<typeof metadata>) {
    const handlers = { metadata: handler } as unknown as JobHandlers;
    const catalog = { bucketOf: async () => 'uploads' as const, stateOf: async () => null };
    const worker = new ProcessingWorker(bus, blobs, catalog, handlers, quiet, {
      concurrency: { metadata: 1 },
      maxAttempts: 3,
      workRoot: join(dir, 'work'),
      backoffMs: [20],
    });
    const subscription = await worker.start();
    stops.push(() => subscription.stop());
  }

  async function outcome(): Promise<ProcessingOutcome> {
    const deadline = Date.now() + 10_000;
    while (outcomes.length === 0) {
      if (Date.now() > deadline) throw new Error('no outcome within 10 s');
      await sleep(10);
    }
    return outcomes[0]!;
  }

  const request = () => bus.publish('processing.requested', { contentHash: HASH, job: 'metadata', mediaKind: 'image' });

  it('retries a failing job after a backoff and reports it done with the attempts it took', async () => {
    const sources: string[] = [];
    await startWorker(async (input) => {
      sources.push(input.source);
      if (sources.length === 1) throw new Error('disk hiccup');
      return metadata;
    });
    await request();
    expect(await outcome()).toEqual({
      contentHash: HASH,
      job: 'metadata',
      mediaKind: 'image',
      attempts: 2,
      state: 'done',
      output: metadata,
    });
    // Each try got its own copy of the original, and its scratch folder is gone.
    expect(new Set(sources).size).toBe(2);
    expect(await readdir(join(dir, 'work', String(process.pid)))).toEqual([]);
  });

  it('ends a job that keeps failing as failed with the last error after maxAttempts, and tries no more', async () => {
    let calls = 0;
    await startWorker(async () => {
      calls++;
      throw new Error(`still broken (${calls})`);
    });
    await request();
    expect(await outcome()).toEqual({
      contentHash: HASH,
      job: 'metadata',
      mediaKind: 'image',
      attempts: 3,
      state: 'failed',
      error: 'still broken (3)',
    });
    await sleep(200);
    expect(calls).toBe(3);
    expect(outcomes).toHaveLength(1);
  });

  it('fails an unprocessable file at once, without retrying', async () => {
    let calls = 0;
    await startWorker(async () => {
      calls++;
      throw new UnprocessableMediaError('not a decodable image: unsupported format');
    });
    await request();
    expect(await outcome()).toMatchObject({ attempts: 1, state: 'failed', error: 'not a decodable image: unsupported format' });
    await sleep(100);
    expect(calls).toBe(1);
  });
});
