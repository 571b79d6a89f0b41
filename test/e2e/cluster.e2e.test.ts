import { copyFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { LoginResponse, MediaView } from '../../src/core/protocol.js';
import { CLUSTER_BACKENDS } from '../support/backends.js';
import { CliSandbox, type CliServer } from '../support/cli.js';
import { CORPUS_DIR } from '../support/corpus.js';
import { TIME_SCALE } from '../support/time-scale.js';

const PASSWORD = 'correct horse battery staple';

/** A sync socket of its own on a server, recording when each `changed` arrived. */
async function syncSocket(server: CliServer, token: string): Promise<{ changedAt: number[]; close(): void }> {
  const socket = new WebSocket(`${server.url.replace(/^http/, 'ws')}/api/v1/sync`, { headers: { authorization: `Bearer ${token}` } });
  const changedAt: number[] = [];
  socket.on('message', (data) => {
    if ((JSON.parse(data.toString()) as { type: string }).type === 'changed') changedAt.push(performance.now());
  });
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
  return { changedAt, close: () => socket.close() };
}

async function login(server: CliServer, deviceName: string): Promise<string> {
  const response = await fetch(`${server.url}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user: 'alice', password: PASSWORD, deviceName }),
  });
  expect(response.status).toBe(200);
  return ((await response.json()) as LoginResponse).token;
}

/**
 * The cluster form as processes (issue 5): two `server start` processes and a `worker start`,
 * each on a data dir of its own, sharing only PostgreSQL, Redis, NATS and S3. Only the cluster
 * run has those backends; the embedded form is one process by design.
 */
const describeCluster = CLUSTER_BACKENDS
  ? describe
  : (name: string, suite: () => void) =>
      describe.skip(`${name} (skipped: the embedded pass has no shared backends; npm run test:cluster runs it)`, suite);

describeCluster('several processes on the cluster backends', () => {
  let sandbox: CliSandbox;
  let one: CliServer;
  let other: CliServer;

  beforeEach(async () => {
    sandbox = await CliSandbox.create();
    const [oneData, otherData] = [await sandbox.dir('server-one'), await sandbox.dir('server-other')];
    for (const dir of [oneData, otherData]) await writeFile(join(dir, 'config.json'), JSON.stringify({ processing: { inProcess: false } }));
    one = await sandbox.startServer(oneData);
    other = await sandbox.startServer(otherData);
    await sandbox.addUserAndLogin(other, otherData, 'alice', PASSWORD);
  });
  afterEach(async () => {
    await Promise.all([one.stop(), other.stop()]);
    await sandbox.dispose();
  });

  it(
    "shows a commit through one server on the other's sync sockets within a second, and a worker apart processes it",
    async () => {
      const watching = await syncSocket(one, await login(one, 'watching-desktop'));
      try {
        const photo = join(await sandbox.dir('photos'), 'photo.jpg');
        await copyFile(join(CORPUS_DIR, 'images', 'cameras', 'Canon_40D.jpg'), photo);
        const uploaded = await sandbox.json<{ files: number; failed: unknown[] }>(['upload', photo, '--json']);
        const committed = performance.now();
        expect(uploaded).toMatchObject({ files: 1, failed: [] });
        while (watching.changedAt.length === 0 && performance.now() - committed < 1000) await sleep(5);
        expect(watching.changedAt.length, 'no `changed` on the other server within a second of the commit').toBeGreaterThan(0);

        // No server runs workers: the job waits in NATS for a worker process.
        const worker = sandbox.spawn(['worker', 'start', '--data', await sandbox.dir('worker-data'), '--port', '0']);
        const deadline = Date.now() + 60_000;
        let media: MediaView | undefined;
        while (Date.now() < deadline) {
          media = await sandbox.json<MediaView>(['info', 'photo.jpg', '--json']);
          if (media.jobs.every((job) => job.state === 'done')) break;
          await sleep(250);
        }
        worker.kill('SIGTERM');
        expect(media!.jobs.map((job) => [job.job, job.state])).toEqual([
          ['metadata', 'done'],
          ['thumbnails', 'done'],
        ]);
        expect(media!.thumbnails).toHaveLength(4);
      } finally {
        watching.close();
      }
    },
    120_000 * TIME_SCALE,
  );
});
