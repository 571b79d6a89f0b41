/**
 * bench:cluster — the cluster backends (PostgreSQL, Redis, NATS JetStream, S3) against the
 * embedded ones (SQLite, memory, the SQLite bus, folders) on this machine (issue 5):
 *   1. upload throughput: `photovault upload DIR --json` of the same files to a fresh server of each kind;
 *   2. listing a 10,000-file folder: p50 / p99 of a whole listing (pages of 1,000) and of its first
 *      page (200 entries), the files put there by whole-file dedup (one content, many names);
 *   3. change propagation between two `server start` processes on the same cluster backends: from
 *      sending a commit to one until a sync socket on the other says `changed` (p50 / p99; the
 *      commit's own work included), beside a socket on the committing process itself;
 *   4. 1,000 no-op jobs through the NATS bus and through the SQLite bus (published one after
 *      another while a consumer of 4 slots acks them): jobs per second.
 * Prints figures and ratios cluster / embedded; asserts nothing.
 *
 *   ./scripts/setup.sh --test        # once: PostgreSQL, Redis and NATS running
 *   npm run bench:cluster
 *
 * S3 is s3rver (an S3 server written in node, for tests) in a process of its own: far slower than
 * MinIO, so the upload figure is a floor for the cluster form. Environment: PV_BENCH_MIB (64),
 * PV_BENCH_FILES (64), PV_BENCH_LISTED (10000), PV_BENCH_RUNS (100 listings and propagations),
 * PV_BENCH_JOBS (1000); PHOTOVAULT_TEST_POSTGRES_URL / _REDIS_URL / _NATS_URL as for the tests.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect as connectNats } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import pg from 'pg';
import { WebSocket } from 'ws';
import { fingerprint } from '../src/core/chunker.js';
import { encodeManifest } from '../src/core/manifest.js';
import type { UploadRequest } from '../src/core/protocol.js';
import { ApiClient } from '../src/daemon/api-client.js';
import { STREAMS, type EventBus } from '../src/infra/bus/event-bus.js';
import { DEAD_LETTERS, jetStreamName, NatsEventBus } from '../src/infra/bus/nats.event-bus.js';
import { SqliteEventBus } from '../src/infra/bus/sqlite.event-bus.js';
import { runPool } from '../src/core/pool.js';
import { atExit, Cli, MiB, numberSetting, removeAtExit, type ServerProcess, spawnBackground, table } from './support.js';

const REPO = resolve(fileURLToPath(import.meta.url), '../../..');
const PASSWORD = 'benchmark password';
const UPLOAD_MIB = numberSetting('PV_BENCH_MIB', 64);
const UPLOAD_FILES = numberSetting('PV_BENCH_FILES', 64);
const LISTED = numberSetting('PV_BENCH_LISTED', 10_000);
const RUNS = numberSetting('PV_BENCH_RUNS', 100);
const JOBS = numberSetting('PV_BENCH_JOBS', 1000);
const POSTGRES_URL = process.env.PHOTOVAULT_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.PHOTOVAULT_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const NATS_URL = process.env.PHOTOVAULT_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const ms = (value: number) => `${value.toFixed(1)} ms`;
const ratio = (cluster: number, embedded: number) => `${(cluster / embedded).toFixed(2)}x`;

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => done(port));
    });
    probe.once('error', fail);
  });
}

/** Fresh, isolated cluster backends: a database, a Redis prefix, a NATS prefix, an s3rver process. */
async function clusterBackends(work: string): Promise<{ env: NodeJS.ProcessEnv; drop(): Promise<void> }> {
  const id = `pvbench${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: POSTGRES_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${id}`);
  await admin.end();
  const database = new URL(POSTGRES_URL);
  database.pathname = `/${id}`;

  // s3rver's ListObjectsV2 tokens use single DES, which Node 24's OpenSSL keeps in its legacy provider.
  const port = await freePort();
  const s3Dir = join(work, 's3rver');
  await mkdir(s3Dir);
  const s3rver = spawnBackground(process.execPath, [
    '--openssl-legacy-provider',
    join(REPO, 'node_modules', 's3rver', 'bin', 's3rver.js'),
    ...['-d', s3Dir, '-a', '127.0.0.1', '-p', String(port), '--silent'],
  ]);
  for (let tries = 0; ; tries++) {
    if (
      await fetch(`http://127.0.0.1:${port}/`).then(
        () => true,
        () => false,
      )
    )
      break;
    if (tries > 100) throw new Error('s3rver did not start within 10 s');
    await new Promise((done) => setTimeout(done, 100));
  }
  return {
    env: {
      PHOTOVAULT_DATABASE_URL: database.toString(),
      PHOTOVAULT_REDIS_URL: REDIS_URL,
      PHOTOVAULT_REDIS_KEY_PREFIX: `${id}:`,
      PHOTOVAULT_NATS_URL: NATS_URL,
      PHOTOVAULT_NATS_PREFIX: id,
      PHOTOVAULT_S3_ENDPOINT: `http://127.0.0.1:${port}`,
      PHOTOVAULT_S3_ACCESS_KEY: 'S3RVER',
      PHOTOVAULT_S3_SECRET_KEY: 'S3RVER',
      PHOTOVAULT_S3_BUCKET_PREFIX: `${id}-`,
    },
    drop: async () => {
      s3rver.kill('SIGKILL');
      const again = new pg.Client({ connectionString: POSTGRES_URL });
      await again.connect();
      await again.query(`DROP DATABASE IF EXISTS ${id} WITH (FORCE)`);
      await again.end();
      await dropNatsStreams(id);
      const redis = new Redis(REDIS_URL);
      for await (const keys of redis.scanStream({ match: `${id}:*` }) as AsyncIterable<string[]>)
        if (keys.length) await redis.unlink(...keys);
      redis.disconnect();
    },
  };
}

async function dropNatsStreams(prefix: string): Promise<void> {
  const nc = await connectNats({ servers: NATS_URL });
  const jsm = await jetstreamManager(nc);
  for (const stream of [...STREAMS, DEAD_LETTERS] as const) await jsm.streams.delete(jetStreamName(prefix, stream)).catch(() => false);
  await nc.close();
}

interface Deployment {
  name: string;
  server: ServerProcess;
  cli: Cli;
  dataDir: string;
  token: string;
  api: ApiClient;
}

/** A server on a fresh data dir (and the given backends), the user (unless the backends have it), and a logged-in API client. */
async function deploy(work: string, name: string, env: NodeJS.ProcessEnv, options: { userExists?: boolean } = {}): Promise<Deployment> {
  const dataDir = join(work, `${name}-data`);
  const cli = new Cli(join(REPO, 'bin', 'photovault'), { ...process.env, ...env, PHOTOVAULT_CONFIG_DIR: join(work, `${name}-client`) });
  const server = await cli.startServer(dataDir);
  atExit(() => void server.stop());
  if (!options.userExists) await cli.runOk(['user', 'add', 'alice', '--password-stdin', '--data', dataDir], { input: PASSWORD });
  await cli.runOk(['login', '--server', server.url, '--user', 'alice', '--password-stdin', '--device', name], { input: PASSWORD });
  const login = await new ApiClient(server.url, null).login({ user: 'alice', password: PASSWORD, deviceName: `${name}-bench` });
  return { name, server, cli, dataDir, token: login.token, api: new ApiClient(server.url, login.token, { connections: 16 }) };
}

/** Uploads a small new file through the protocol; resolves when the commit has answered. */
/** Uploads a new small file; returns when (performance.now()) its commit request was sent. */
async function uploadSmall(api: ApiClient, path: string, bytes: Buffer): Promise<number> {
  const print = await fingerprint([bytes]);
  const request: UploadRequest = {
    path,
    size: print.size,
    mtime: Date.now(),
    contentHash: print.contentHash,
    manifest: encodeManifest(print.chunks).toString('base64'),
  };
  const status = await api.beginUpload(request);
  if (status.state === 'committed') throw new Error(`${path}: the server holds this content already; propagation needs new content`);
  for (const chunk of print.chunks)
    await api.putChunk(status.uploadId!, chunk.hash, bytes.subarray(chunk.offset, chunk.offset + chunk.length));
  const committing = performance.now();
  await api.commitUpload(status.uploadId!);
  return committing;
}

async function uploadFigure(deployment: Deployment, source: string): Promise<number> {
  const started = performance.now();
  await deployment.cli.runOk(['upload', source, '--to', 'upload', '--json'], { timeoutSeconds: 3600 });
  return (performance.now() - started) / 1000;
}

/**
 * Seeds LISTED names of one content into /listed (whole-file dedup: each a commit without bytes,
 * 64 negotiations per request, 4 requests at once); then the latencies of whole listings and of
 * first pages.
 */
async function listingFigures(api: ApiClient): Promise<{ whole: number[]; page: number[]; seedSeconds: number }> {
  const content = randomBytes(1024);
  await uploadSmall(api, 'listed/seed.bin', content);
  const print = await fingerprint([content]);
  const request = (i: number): UploadRequest => ({
    path: `listed/f${String(i).padStart(5, '0')}.bin`,
    size: print.size,
    mtime: Date.now(),
    contentHash: print.contentHash,
    manifest: encodeManifest(print.chunks).toString('base64'),
  });
  const batches: UploadRequest[][] = [];
  for (let i = 0; i < LISTED - 1; i += 64) batches.push(Array.from({ length: Math.min(64, LISTED - 1 - i) }, (_, j) => request(i + j)));
  const started = performance.now();
  await runPool(batches, 4, async (batch) => {
    for (const result of await api.beginUploads(batch)) {
      if (result instanceof Error || result.state !== 'committed') throw new Error(`seeding: not committed by dedup: ${String(result)}`);
    }
  });
  const seedSeconds = (performance.now() - started) / 1000;
  const whole: number[] = [];
  const page: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    let t0 = performance.now();
    let entries = 0;
    let cursor: string | undefined;
    do {
      const listed = await api.list('listed', cursor, 1000);
      entries += listed.entries.length;
      cursor = listed.nextCursor ?? undefined;
    } while (cursor);
    whole.push(performance.now() - t0);
    if (entries !== LISTED) throw new Error(`listing gave ${entries} entries, not ${LISTED}`);
    t0 = performance.now();
    await api.list('listed', undefined, 200);
    page.push(performance.now() - t0);
  }
  return { whole, page, seedSeconds };
}

/** A sync socket's `changed` messages, as a promise per commit. */
class ChangeWatcher {
  private waiting: ((at: number) => void) | null = null;
  private constructor(private readonly socket: WebSocket) {
    socket.on('message', (data) => {
      const message = JSON.parse(data.toString()) as { type: string };
      if (message.type === 'changed') this.waiting?.(performance.now());
    });
  }

  static async open(server: string, token: string): Promise<ChangeWatcher> {
    const socket = new WebSocket(`${server.replace(/^http/, 'ws')}/api/v1/sync`, { headers: { authorization: `Bearer ${token}` } });
    await new Promise((done, fail) => socket.once('open', done).once('error', fail));
    return new ChangeWatcher(socket);
  }

  next(): Promise<number> {
    return new Promise((done) => (this.waiting = done));
  }

  close(): void {
    this.socket.close();
  }
}

/** Milliseconds from a commit's answer on `through` to `changed` on each watcher. */
async function propagationFigures(through: ApiClient, watchers: ChangeWatcher[]): Promise<number[][]> {
  const latencies = watchers.map(() => [] as number[]);
  for (let run = 0; run < RUNS; run++) {
    const heard = watchers.map((watcher) => watcher.next());
    const committing = await uploadSmall(through, `propagation/p${run}.bin`, randomBytes(2048));
    const at = await Promise.all(heard);
    at.forEach((when, i) => latencies[i]!.push(when - committing));
  }
  return latencies;
}

/** Seconds for JOBS no-op jobs: published one after another while a 4-slot consumer acks them. */
async function jobSeconds(bus: EventBus): Promise<number> {
  const durable = `bench-${randomBytes(4).toString('hex')}`;
  await bus.declare(durable, 'processing-jobs');
  let handled = 0;
  let allHandled!: () => void;
  const done = new Promise<void>((resolve) => (allHandled = resolve));
  const subscription = await bus.subscribe({ durable, stream: 'processing-jobs', concurrency: 4 }, async () => {
    if (++handled === JOBS) allHandled();
  });
  const started = performance.now();
  for (let i = 0; i < JOBS; i++) {
    await bus.publish('processing.requested', { contentHash: i.toString(16).padStart(64, '0'), job: 'metadata', mediaKind: 'image' });
  }
  await done;
  const seconds = (performance.now() - started) / 1000;
  await subscription.stop();
  return seconds;
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'pv-bench-cluster-'));
  removeAtExit(work);
  const load = loadavg()[0]!.toFixed(2);
  const source = join(work, 'source');
  await mkdir(source);
  const perFile = Math.round((UPLOAD_MIB * MiB) / UPLOAD_FILES);
  for (let i = 0; i < UPLOAD_FILES; i++) await writeFile(join(source, `f${i}.bin`), randomBytes(perFile));

  const cluster = await clusterBackends(work);
  try {
    const embedded = await deploy(work, 'embedded', {});
    const clustered = await deploy(work, 'cluster-a', cluster.env);
    const second = await deploy(work, 'cluster-b', cluster.env, { userExists: true });

    const upload = { embedded: await uploadFigure(embedded, source), cluster: await uploadFigure(clustered, source) };
    const listing = { embedded: await listingFigures(embedded.api), cluster: await listingFigures(clustered.api) };

    const onOther = await ChangeWatcher.open(clustered.server.url, clustered.token);
    const onSame = await ChangeWatcher.open(second.server.url, second.token);
    const [crossing, local] = await propagationFigures(second.api, [onOther, onSame]);
    onOther.close();
    onSame.close();

    const sqliteBus = await SqliteEventBus.open(join(work, 'jobs-bus.db'));
    const natsPrefix = `pvbenchjobs${randomBytes(4).toString('hex')}`;
    const natsBus = await NatsEventBus.open({ url: NATS_URL, prefix: natsPrefix });
    const jobs = { embedded: await jobSeconds(sqliteBus), cluster: await jobSeconds(natsBus) };
    await sqliteBus.close();
    await natsBus.close();
    await dropNatsStreams(natsPrefix);

    for (const deployment of [embedded, clustered, second]) {
      await deployment.api.close();
      await deployment.server.stop();
    }

    const mibs = (seconds: number) => (UPLOAD_FILES * perFile) / MiB / seconds;
    console.log(
      `\nphotovault cluster benchmark: node ${process.version}, ${availableParallelism()} cores, load average ${load} at the start ` +
        `and ${loadavg()[0]!.toFixed(2)} at the end. Cluster: PostgreSQL, Redis, NATS JetStream on this machine, S3 = s3rver (slow, node).\n`,
    );
    console.log(
      table(
        'figure',
        ['embedded', 'cluster', 'cluster / embedded'],
        [
          [
            `upload ${UPLOAD_FILES} files / ${UPLOAD_MIB} MiB (MiB/s)`,
            mibs(upload.embedded).toFixed(1),
            mibs(upload.cluster).toFixed(1),
            ratio(mibs(upload.cluster), mibs(upload.embedded)),
          ],
          [
            `seeding ${LISTED} names by whole-file dedup (commits/s)`,
            (LISTED / listing.embedded.seedSeconds).toFixed(0),
            (LISTED / listing.cluster.seedSeconds).toFixed(0),
            ratio(listing.embedded.seedSeconds, listing.cluster.seedSeconds),
          ],
          ...([50, 99] as const).flatMap((p): [string, ...string[]][] => [
            [
              `list all ${LISTED} entries (pages of 1000), p${p}`,
              ms(percentile(listing.embedded.whole, p)),
              ms(percentile(listing.cluster.whole, p)),
              ratio(percentile(listing.cluster.whole, p), percentile(listing.embedded.whole, p)),
            ],
            [
              `first page of 200 of them, p${p}`,
              ms(percentile(listing.embedded.page, p)),
              ms(percentile(listing.cluster.page, p)),
              ratio(percentile(listing.cluster.page, p), percentile(listing.embedded.page, p)),
            ],
          ]),
          [
            `${JOBS} no-op jobs (jobs/s)`,
            (JOBS / jobs.embedded).toFixed(0),
            (JOBS / jobs.cluster).toFixed(0),
            ratio(jobs.embedded, jobs.cluster),
          ],
        ],
      ),
    );
    console.log('');
    console.log(
      table(
        `change propagation: from sending each of ${RUNS} commits to server b until a socket hears it`,
        ['p50', 'p99'],
        [
          ['socket on server a (the other process)', ms(percentile(crossing!, 50)), ms(percentile(crossing!, 99))],
          ['socket on server b (the same process)', ms(percentile(local!, 50)), ms(percentile(local!, 99))],
        ],
      ),
    );
    console.log('\nRatios above 1x favour the cluster form for throughputs (MiB/s, commits/s, jobs/s), below 1x for latencies.');
  } finally {
    await cluster.drop();
  }
}

await main();
