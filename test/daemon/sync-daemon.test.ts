import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/daemon/api-client.js';
import { LocalIndex } from '../../src/daemon/local-index.js';
import { SyncDaemon } from '../../src/daemon/sync-daemon.js';
import { SyncEngine } from '../../src/daemon/sync-engine.js';
import { createTestServer, type TestServer } from '../support/server.js';

/** Waits until the check passes, up to 15 s; the daemons work in the background. */
let errorsSeen: unknown[] = [];

async function eventually(check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not reached within 15 s; errors: ${String(errorsSeen)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const contentOf = (path: string) => readFile(path, 'utf8').catch(() => null);

describe('sync daemon', () => {
  let server: TestServer;
  const running: { daemon: SyncDaemon; index: LocalIndex; api: ApiClient; root: string }[] = [];
  const errors: unknown[] = [];
  errorsSeen = errors;

  const startDaemon = async (url: string, name: string) => {
    const { token } = await server.login('alice', { deviceName: name });
    const root = await mkdtemp(join(tmpdir(), `pv-daemon-${name}-`));
    const api = new ApiClient(url, token);
    const index = await LocalIndex.open(join(root, '.photovault', 'index.db'));
    const engine = new SyncEngine(api, root, '', index, join(root, '.photovault', 'state.json'), { settleMs: 200 });
    const daemon = new SyncDaemon(engine, root, { server: url, token, onError: (error) => errors.push(error) });
    await daemon.start();
    running.push({ daemon, index, api, root });
    return root;
  };

  beforeAll(async () => {
    server = await createTestServer('sqlite');
    await server.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    for (const { daemon, index, api, root } of running) {
      await daemon.stop();
      await index.close();
      await api.close();
      await rm(root, { recursive: true, force: true });
    }
    await server.close();
  });

  it('carries a new file and an edit between two running daemons without being asked', async () => {
    const url = `http://127.0.0.1:${(server.app.server.address() as { port: number }).port}`;
    const a = await startDaemon(url, 'a');
    const b = await startDaemon(url, 'b');

    await writeFile(join(a, 'hello.txt'), 'from a');
    await eventually(async () => (await contentOf(join(b, 'hello.txt'))) === 'from a');

    await writeFile(join(b, 'hello.txt'), 'edited on b');
    await eventually(async () => (await contentOf(join(a, 'hello.txt'))) === 'edited on b');

    await rm(join(a, 'hello.txt'));
    await eventually(async () => (await contentOf(join(b, 'hello.txt'))) === null);
    // The pass that removed the file counts it once it is over.
    await eventually(async () => running[1]!.daemon.status().state === 'idle');
    expect(errors).toEqual([]);

    const status = running[1]!.daemon.status();
    expect(status).toMatchObject({ folder: b, connected: true, totals: { downloaded: 1, uploaded: 1, deleted: 1 } });
    expect(status.recent.map((event) => event.text)).toContain('connected to the server');
  });

  it('sees the user delete or edit a file a pull wrote, once the pull is long over', async () => {
    const [a, b] = [running[0]!.root, running[1]!.root];
    for (const name of ['to-delete.txt', 'to-edit.txt']) await writeFile(join(a, name), `${name} from a`);
    await eventually(
      async () => (await contentOf(join(b, 'to-delete.txt'))) !== null && (await contentOf(join(b, 'to-edit.txt'))) !== null,
    );
    // Past the window in which the daemon takes the pull's writes for its own, and past the
    // pass over the whole folder that follows a downloading pass: only the watcher can tell now.
    await eventually(async () => running[1]!.daemon.status().state === 'idle');
    await new Promise((resolve) => setTimeout(resolve, 5 * 200));
    await rm(join(b, 'to-delete.txt'));
    await writeFile(join(b, 'to-edit.txt'), 'edited on b');
    await eventually(
      async () => (await contentOf(join(a, 'to-delete.txt'))) === null && (await contentOf(join(a, 'to-edit.txt'))) === 'edited on b',
    );
    expect(errors).toEqual([]);
  });

  it('sees the user edit a file right after a pull wrote it, when the watcher took the edit for the pull', async () => {
    const [a, b] = [running[0]!.root, running[1]!.root];
    await writeFile(join(a, 'edited-at-once.txt'), 'from a');
    await eventually(async () => (await contentOf(join(b, 'edited-at-once.txt'))) === 'from a');
    // Well within the 2 * 200 ms in which the daemon drops the watcher's reports of this file:
    // only the look it takes at the files it wrote, once that window is over, can find the edit.
    await writeFile(join(b, 'edited-at-once.txt'), 'edited on b at once');
    await eventually(async () => (await contentOf(join(a, 'edited-at-once.txt'))) === 'edited on b at once');
    expect(errors).toEqual([]);
  });

  it('uploads a file written in pieces only once the writing is over', async () => {
    const [a, b] = [running[0]!.root, running[1]!.root];
    // Pieces 20 ms apart for three times the settle delay (200 ms): the watcher reports the file
    // many times while it grows, and each pause is far shorter than the delay, even under load.
    const piece = 'x'.repeat(10_000);
    const file = await open(join(a, 'growing.bin'), 'w');
    let pieces = 0;
    for (const started = Date.now(); Date.now() - started < 3 * 200; pieces++) {
      await file.write(piece);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await file.close();
    await eventually(async () => (await contentOf(join(b, 'growing.bin'))) === piece.repeat(pieces));
    const versions = await server.app.inject({
      url: '/api/v1/files/versions?path=growing.bin',
      headers: { authorization: `Bearer ${(await server.login('alice')).token}` },
    });
    expect(versions.json().map((version: { size: number }) => version.size)).toEqual([pieces * piece.length]);
    expect(errors).toEqual([]);
  });
});
