import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/daemon/api-client.js';
import { LocalIndex } from '../../src/daemon/local-index.js';
import { SyncEngine, type SyncSummary } from '../../src/daemon/sync-engine.js';
import { createTestServer, type TestServer } from '../support/server.js';
import { pseudoRandomBytes } from '../support/uploads.js';

/** One synced folder on one device. */
interface Device {
  root: string;
  api: ApiClient;
  index: LocalIndex;
  sync(): Promise<SyncSummary>;
}

/** Every file under root (without the daemon's state) with its content, for comparing folders. */
async function contents(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (dir: string) => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (entry.name === '.photovault') continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else out[relative(root, path)] = (await readFile(path)).toString('base64');
    }
  };
  await walk(root);
  return out;
}

describe('two-way folder sync, one pass at a time', () => {
  let server: TestServer;
  let url: string;
  let laptop: Device;
  let desktop: Device;

  const device = async (name: string): Promise<Device> => {
    const { token } = await server.login('alice', { deviceName: name });
    const root = await mkdtemp(join(tmpdir(), `pv-sync-${name}-`));
    const api = new ApiClient(url, token);
    const index = await LocalIndex.open(join(root, '.photovault', 'index.db'));
    const engine = new SyncEngine(api, root, 'Sync', index, join(root, '.photovault', 'state.json'));
    return { root, api, index, sync: () => engine.syncOnce() };
  };

  /** Both devices pass until neither changes anything. */
  const converge = async () => {
    for (let round = 0; round < 4; round++) {
      const [a, b] = [await laptop.sync(), await desktop.sync()];
      for (const s of [a, b]) expect(s.failed).toEqual([]);
      if (a.uploaded + a.downloaded + a.deleted + b.uploaded + b.downloaded + b.deleted === 0) return;
    }
    throw new Error('the folders did not converge in 4 rounds');
  };

  beforeAll(async () => {
    server = await createTestServer('sqlite');
    await server.app.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(server.app.server.address() as { port: number }).port}`;
    laptop = await device('laptop');
    desktop = await device('desktop');
  });
  afterAll(async () => {
    for (const d of [laptop, desktop]) {
      await d.index.close();
      await d.api.close();
      await rm(d.root, { recursive: true, force: true });
    }
    await server.close();
  });

  it('brings new files, nested folders, empty files and non-ASCII names to the other device', async () => {
    await mkdir(join(laptop.root, 'Photos/2024/Été'), { recursive: true });
    await writeFile(join(laptop.root, 'Photos/2024/Été/plage.jpg'), pseudoRandomBytes(700_000, 1));
    await writeFile(join(laptop.root, 'empty.txt'), '');
    await writeFile(join(laptop.root, 'notes.md'), '# notes');
    const first = await laptop.sync();
    expect(first).toMatchObject({ uploaded: 3, failed: [] });
    const second = await desktop.sync();
    expect(second).toMatchObject({ downloaded: 3, failed: [] });
    expect(await contents(desktop.root)).toEqual(await contents(laptop.root));
  });

  it('propagates edits, deletes and local renames the other way', async () => {
    await writeFile(join(desktop.root, 'notes.md'), '# notes\n- more');
    await rm(join(desktop.root, 'empty.txt'));
    await rename(join(desktop.root, 'Photos/2024/Été/plage.jpg'), join(desktop.root, 'Photos/beach.jpg'));
    await converge();
    expect(await contents(laptop.root)).toEqual(await contents(desktop.root));
    expect(Object.keys(await contents(laptop.root)).sort()).toEqual(['Photos/beach.jpg', 'notes.md']);
  });

  it('keeps both contents of a file edited on both devices, one under a conflict name', async () => {
    await writeFile(join(laptop.root, 'notes.md'), 'laptop version');
    await writeFile(join(desktop.root, 'notes.md'), 'desktop version');
    await converge();
    const files = await contents(laptop.root);
    expect(files).toEqual(await contents(desktop.root));
    const texts = Object.entries(files)
      .filter(([path]) => path.startsWith('notes'))
      .map(([path, content]) => [path, Buffer.from(content, 'base64').toString()]);
    expect(texts.map(([, text]) => text).sort()).toEqual(['desktop version', 'laptop version']);
    expect(texts.some(([path]) => /^notes\.conflict-.+-\d{8}-\d{6}\.md$/.test(path!))).toBe(true);
  });

  it('keeps a modification over a delete made elsewhere', async () => {
    await writeFile(join(laptop.root, 'keep.txt'), 'v1');
    await converge();
    await rm(join(laptop.root, 'keep.txt'));
    await writeFile(join(desktop.root, 'keep.txt'), 'v2, edited');
    await converge();
    for (const d of [laptop, desktop]) expect(await readFile(join(d.root, 'keep.txt'), 'utf8')).toBe('v2, edited');
  });

  it('applies a move made on the server, folder and contents, without downloading again', async () => {
    const moved = await laptop.api.move('Sync/Photos', 'Sync/Pictures');
    expect(moved.path).toBe('Sync/Pictures');
    const summary = await desktop.sync();
    expect(summary).toMatchObject({ downloaded: 0, bytesReceived: 0, failed: [] });
    expect(Object.keys(await contents(desktop.root))).toContain('Pictures/beach.jpg');
    await converge();
    expect(await contents(laptop.root)).toEqual(await contents(desktop.root));
  });

  it('backs up one way: uploads changes, never deletes on the server or downloads', async () => {
    const root = await mkdtemp(join(tmpdir(), 'pv-backup-'));
    const { token } = await server.login('alice', { deviceName: 'nas' });
    const api = new ApiClient(url, token);
    const index = await LocalIndex.open(join(root, '.photovault', 'index.db'));
    const backup = new SyncEngine(api, root, 'Backup', index, join(root, '.photovault', 'state.json'));
    try {
      await writeFile(join(root, 'a.txt'), 'a');
      await writeFile(join(root, 'b.txt'), 'b');
      expect(await backup.backupOnce()).toMatchObject({ uploaded: 2, deleted: 0, failed: [] });
      await rm(join(root, 'a.txt'));
      await writeFile(join(root, 'b.txt'), 'b, edited');
      expect(await backup.backupOnce()).toMatchObject({ uploaded: 1, deleted: 0, downloaded: 0 });
      expect((await api.stat('Backup/a.txt')).size).toBe(1);
      expect((await api.versions('Backup/b.txt')).length).toBe(2);
    } finally {
      await index.close();
      await api.close();
      await rm(root, { recursive: true, force: true });
    }
  });
});
