import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { PvError } from '../../src/core/errors.js';
import { ApiClient } from '../../src/daemon/api-client.js';
import { PART_SUFFIX } from '../../src/daemon/downloader.js';
import { loadIgnoreRules } from '../../src/daemon/ignore-rules.js';
import { LocalIndex } from '../../src/daemon/local-index.js';
import { scanFolder } from '../../src/daemon/scanner.js';
import { SyncEngine, type SyncSummary } from '../../src/daemon/sync-engine.js';
import type { Bucket } from '../../src/infra/blobs/blob-store.js';
import { objectKey } from '../../src/infra/blobs/object-keys.js';
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

/** The download temp files left anywhere under root. */
async function partsUnder(root: string): Promise<string[]> {
  return (await readdir(root, { recursive: true })).filter((path) => path.endsWith(PART_SUFFIX));
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
    return { root, api, index, sync: () => engine.converge(() => engine.syncOnce()) };
  };

  /** Both devices pass until neither changes anything. */
  const converge = async () => {
    for (let round = 0; round < 4; round++) {
      const [a, b] = [await laptop.sync(), await desktop.sync()];
      for (const s of [a, b]) expect(s.failed).toEqual([]);
      if ([a, b].every((s) => s.uploaded + s.downloaded + s.deleted + s.moved === 0)) return;
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

  /** Requests the server has answered so far, by method and route. */
  const requests = async () => {
    const counts = new Map<string, number>();
    for (const value of (await server.context.metrics.httpDuration.get()).values) {
      if (!String(value.metricName).endsWith('_count')) continue;
      const key = `${value.labels.method} ${value.labels.route}`;
      counts.set(key, (counts.get(key) ?? 0) + value.value);
    }
    return counts;
  };
  const delta = (before: Map<string, number>, after: Map<string, number>, key: string) => (after.get(key) ?? 0) - (before.get(key) ?? 0);

  it('sends and fetches many new files whole, many to a request, their negotiations and manifests going many to a request too', async () => {
    // Written a while ago, so that none is left to settle for a later pass.
    const past = new Date(Date.now() - 60_000);
    for (let i = 0; i < 40; i++) {
      await writeFile(join(laptop.root, `many-${i}.bin`), pseudoRandomBytes(100_000 + i, 100 + i));
      await utimes(join(laptop.root, `many-${i}.bin`), past, past);
    }
    const beforeUp = await requests();
    expect(await laptop.sync()).toMatchObject({ uploaded: 40, failed: [] });
    const afterUp = await requests();
    expect(delta(beforeUp, afterUp, 'POST /api/v1/uploads/batch')).toBe(2);
    expect(delta(beforeUp, afterUp, 'POST /api/v1/uploads')).toBe(0);
    // Sent whole, many to a request: 32 files of ~100 KB fill one, the last 8 another.
    expect(delta(beforeUp, afterUp, 'POST /api/v1/uploads/files')).toBe(2);
    expect(delta(beforeUp, afterUp, 'POST /api/v1/uploads/:id/commit')).toBe(0);
    expect(await desktop.sync()).toMatchObject({ downloaded: 40, failed: [] });
    const afterDown = await requests();
    expect(delta(afterUp, afterDown, 'POST /api/v1/files/manifests')).toBe(1);
    expect(delta(afterUp, afterDown, 'GET /api/v1/files/manifest')).toBe(0);
    // 40 files of 100 KB: one request brings them all.
    expect(delta(afterUp, afterDown, 'POST /api/v1/files/contents')).toBe(1);
    expect(delta(afterUp, afterDown, 'GET /api/v1/files/content')).toBe(0);
    expect(await contents(desktop.root)).toEqual(await contents(laptop.root));
    expect(await partsUnder(desktop.root)).toEqual([]);
    for (let i = 0; i < 40; i++) await rm(join(laptop.root, `many-${i}.bin`));
    await converge();
  });

  it('fetches many new small files in requests of about 8 MiB, byte for byte, leaving no temp file', async () => {
    const written = new Map<string, Buffer>();
    for (let i = 0; i < 150; i++) {
      const path = `Small/${i % 5}/p${i}.jpg`;
      written.set(path, pseudoRandomBytes(110_000 + i * 101, 2_000 + i));
      await mkdir(join(laptop.root, dirname(path)), { recursive: true });
      await writeFile(join(laptop.root, path), written.get(path)!);
    }
    expect(await laptop.sync()).toMatchObject({ uploaded: 150, failed: [] });
    const before = await requests();
    const bytes = [...written.values()].reduce((n, b) => n + b.length, 0);
    expect(await desktop.sync()).toMatchObject({ downloaded: 150, bytesReceived: bytes, failed: [] });
    const after = await requests();
    // 64 files at most to a request, and about 8 MiB: 150 files of ~120 KB (17.5 MiB) take 3.
    expect(delta(before, after, 'POST /api/v1/files/contents')).toBe(3);
    expect(delta(before, after, 'GET /api/v1/files/content')).toBe(0);
    for (const [path, content] of written) expect((await readFile(join(desktop.root, path))).equals(content)).toBe(true);
    expect(await partsUnder(desktop.root)).toEqual([]);
    await rm(join(laptop.root, 'Small'), { recursive: true });
    await converge();
  });

  it('never places a file fetched whole whose bytes lost their hash on the server, and fetches the rest of its request', async () => {
    const good = pseudoRandomBytes(150_000, 7_001);
    const bad = pseudoRandomBytes(160_000, 7_002);
    await mkdir(join(laptop.root, 'Damaged'));
    await writeFile(join(laptop.root, 'Damaged/good.jpg'), good);
    await writeFile(join(laptop.root, 'Damaged/bad.jpg'), bad);
    expect(await laptop.sync()).toMatchObject({ uploaded: 2, failed: [] });
    // A failing disk on the server: one byte of the stored object flipped, unchecked.
    const { blobs, db } = server.context;
    const hash = createHash('sha256').update(bad).digest('hex');
    const { bucket } = await db.selectFrom('objects').select('bucket').where('hash', '=', hash).executeTakeFirstOrThrow();
    const flipped = Buffer.from(bad);
    flipped[80_000]! ^= 1;
    await blobs.put(bucket as Bucket, objectKey(hash), Readable.from([flipped]));

    const summary = await desktop.sync();
    expect(summary).toMatchObject({ downloaded: 1, failed: [{ path: 'Sync/Damaged/bad.jpg', code: 'PV_INTEGRITY' }] });
    expect((await readFile(join(desktop.root, 'Damaged/good.jpg'))).equals(good)).toBe(true);
    await expect(stat(join(desktop.root, 'Damaged/bad.jpg'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await partsUnder(desktop.root)).toEqual([]);

    await blobs.put(bucket as Bucket, objectKey(hash), Readable.from([bad]));
    await rm(join(laptop.root, 'Damaged'), { recursive: true });
    await converge();
  });

  it('leaves alone a file that took the path of one fetched whole before its change was applied, and removes the temp file', async () => {
    await mkdir(join(laptop.root, 'Raced'));
    await writeFile(join(laptop.root, 'Raced/photo.jpg'), pseudoRandomBytes(50_000, 3_001));
    await writeFile(join(laptop.root, 'Raced/other.jpg'), pseudoRandomBytes(50_000, 3_002));
    expect(await laptop.sync()).toMatchObject({ uploaded: 2, failed: [] });
    // The desktop's own photo lands at the path once the fetch has begun, before the change is
    // applied (changes are applied as their files arrive).
    const fetchContents = desktop.api.contents.bind(desktop.api);
    const spy = vi.spyOn(desktop.api, 'contents').mockImplementation(async function* (versionIds) {
      await mkdir(join(desktop.root, 'Raced'), { recursive: true });
      await writeFile(join(desktop.root, 'Raced/photo.jpg'), 'taken on the desktop');
      yield* fetchContents(versionIds);
    });
    try {
      expect(await desktop.sync()).toMatchObject({ downloaded: 1, failed: [] });
      expect(spy).toHaveBeenCalledTimes(1);
    } finally {
      spy.mockRestore();
    }
    expect(await readFile(join(desktop.root, 'Raced/photo.jpg'), 'utf8')).toBe('taken on the desktop');
    expect((await readFile(join(desktop.root, 'Raced/other.jpg'))).equals(await readFile(join(laptop.root, 'Raced/other.jpg')))).toBe(true);
    expect(await partsUnder(desktop.root)).toEqual([]);
    // The desktop's file goes up as the path's new version, and the laptop takes it.
    await converge();
    expect(await readFile(join(laptop.root, 'Raced/photo.jpg'), 'utf8')).toBe('taken on the desktop');
    await rm(join(laptop.root, 'Raced'), { recursive: true });
    await converge();
  });

  it('applies a folder move and a new file in the moved folder from one page, the file fetched whole or not', async () => {
    await mkdir(join(laptop.root, 'Album'));
    await writeFile(join(laptop.root, 'Album/old.jpg'), pseudoRandomBytes(40_000, 5_001));
    await converge();
    await laptop.api.move('Sync/Album', 'Sync/Album 2024');
    expect(await laptop.sync()).toMatchObject({ downloaded: 0, failed: [] });
    await writeFile(join(laptop.root, 'Album 2024/new.jpg'), pseudoRandomBytes(40_000, 5_002));
    expect(await laptop.sync()).toMatchObject({ uploaded: 1, failed: [] });
    // The desktop reads the move and then the new file: fetching the file ahead must not make
    // the folder the move goes to before the move is applied.
    expect(await desktop.sync()).toMatchObject({ downloaded: 1, failed: [] });
    expect(await readdir(desktop.root)).not.toContain('Album');
    expect(await contents(desktop.root)).toEqual(await contents(laptop.root));
    await rm(join(laptop.root, 'Album 2024'), { recursive: true });
    await converge();
  });

  it('fetches files one by one from a server without POST /files/contents, or when a body breaks off, asking an old server only once', async () => {
    const folder = async (name: string) => {
      const root = await mkdtemp(join(tmpdir(), `pv-sync-${name}-`));
      const api = new ApiClient(url, (await server.login('alice', { deviceName: name })).token);
      const index = await LocalIndex.open(join(root, '.photovault', 'index.db'));
      const engine = new SyncEngine(api, root, 'Fallback', index, join(root, '.photovault', 'state.json'));
      return {
        root,
        api,
        sync: () => engine.converge(() => engine.syncOnce()),
        close: async () => {
          await index.close();
          await api.close();
          await rm(root, { recursive: true, force: true });
        },
      };
    };
    const [source, old, broken] = [await folder('source'), await folder('old'), await folder('broken')];
    try {
      const write = async (from: number) => {
        for (let i = from; i < from + 6; i++) await writeFile(join(source.root, `f${i}.bin`), pseudoRandomBytes(30_000, 4_000 + i));
        expect(await source.sync()).toMatchObject({ uploaded: 6, failed: [] });
      };
      await write(0);
      const noRoute = vi.spyOn(old.api, 'contents').mockImplementation(async function* () {
        throw new PvError('PV_NOT_FOUND', 'No route POST /api/v1/files/contents.');
      });
      const fetchContents = broken.api.contents.bind(broken.api);
      const breakingOff = vi.spyOn(broken.api, 'contents').mockImplementation(async function* (versionIds) {
        let records = 0;
        for await (const record of fetchContents(versionIds)) {
          yield record;
          if (++records === 2) throw new PvError('PV_SERVER_UNREACHABLE', 'The server broke off its answer.');
        }
      });
      expect(await old.sync()).toMatchObject({ downloaded: 6, failed: [] });
      expect(await broken.sync()).toMatchObject({ downloaded: 6, failed: [] });
      await write(6);
      expect(await old.sync()).toMatchObject({ downloaded: 6, failed: [] });
      expect(await broken.sync()).toMatchObject({ downloaded: 6, failed: [] });
      expect(noRoute).toHaveBeenCalledTimes(1);
      expect(breakingOff).toHaveBeenCalledTimes(2);
      for (const device of [old, broken]) {
        expect(await contents(device.root)).toEqual(await contents(source.root));
        expect(await partsUnder(device.root)).toEqual([]);
      }
    } finally {
      for (const device of [source, old, broken]) await device.close();
    }
  });

  it('sends an edit as a delta, and its chunks whole when the server offers a signature format this client cannot read', async () => {
    const original = pseudoRandomBytes(2 * 1024 * 1024, 90);
    const insert = (into: Buffer, seed: number) =>
      Buffer.concat([into.subarray(0, 1024 * 1024), pseudoRandomBytes(1024, seed), into.subarray(1024 * 1024)]);
    await writeFile(join(laptop.root, 'edited.bin'), original);
    expect(await laptop.sync()).toMatchObject({ uploaded: 1, failed: [] });
    const once = insert(original, 91);
    await writeFile(join(laptop.root, 'edited.bin'), once);
    const asDelta = await laptop.sync();
    expect(asDelta).toMatchObject({ uploaded: 1, failed: [] });
    expect(asDelta.bytesSent).toBeLessThan(4 * 1024);

    // A newer server's signature: an unknown format byte.
    const beginUpload = laptop.api.beginUpload.bind(laptop.api);
    const newer = vi.spyOn(laptop.api, 'beginUpload').mockImplementation(async (request) => {
      const status = await beginUpload(request);
      const deltaBases = status.deltaBases?.map((offer) => ({ ...offer, signature: Buffer.from([0x7f, 1, 2, 3]).toString('base64') }));
      return { ...status, deltaBases };
    });
    try {
      const twice = insert(once, 92);
      await writeFile(join(laptop.root, 'edited.bin'), twice);
      const whole = await laptop.sync();
      expect(newer).toHaveBeenCalled();
      expect(whole).toMatchObject({ uploaded: 1, failed: [] });
      expect(whole.bytesSent).toBeGreaterThan(16 * 1024);
      expect(await desktop.sync()).toMatchObject({ downloaded: 1, failed: [] });
      expect((await readFile(join(desktop.root, 'edited.bin'))).equals(twice)).toBe(true);
    } finally {
      newer.mockRestore();
    }
    await rm(join(laptop.root, 'edited.bin'));
    await converge();
  });

  it('propagates edits, deletes and local renames the other way, a rename as a move that keeps the history', async () => {
    const before = await desktop.api.stat('Sync/Photos/2024/Été/plage.jpg');
    await writeFile(join(desktop.root, 'notes.md'), '# notes\n- more');
    await rm(join(desktop.root, 'empty.txt'));
    await rename(join(desktop.root, 'Photos/2024/Été/plage.jpg'), join(desktop.root, 'Photos/beach.jpg'));
    expect(await desktop.sync()).toMatchObject({ uploaded: 1, deleted: 1, moved: 1, failed: [] });
    // The laptop renames its copy: nothing to download but the edit.
    expect(await laptop.sync()).toMatchObject({ downloaded: 1, failed: [] });
    await converge();
    expect(await contents(laptop.root)).toEqual(await contents(desktop.root));
    expect(Object.keys(await contents(laptop.root)).sort()).toEqual(['Photos/beach.jpg', 'notes.md']);
    expect((await desktop.api.stat('Sync/Photos/beach.jpg')).versionId).toBe(before.versionId);
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

  it('renames a folder everywhere, leaving no empty folder behind on the server or the other device', async () => {
    await rename(join(desktop.root, 'Pictures'), join(desktop.root, 'Fotos'));
    await converge();
    const files = await contents(laptop.root);
    expect(Object.keys(files)).toContain('Fotos/beach.jpg');
    expect(files).toEqual(await contents(desktop.root));
    await expect(desktop.api.stat('Sync/Pictures')).rejects.toMatchObject({ code: 'PV_NOT_FOUND' });
    expect(await readdir(laptop.root)).not.toContain('Pictures');
  });

  it('brings many files in many folders across in one pass each way', async () => {
    const written = new Map<string, Buffer>();
    for (let i = 0; i < 48; i++) {
      const path = `Batch/${i % 4}/${i % 3}/f${i}.bin`;
      written.set(path, pseudoRandomBytes(1_000 + i * 9_973, 500 + i));
      await mkdir(join(laptop.root, dirname(path)), { recursive: true });
      await writeFile(join(laptop.root, path), written.get(path)!);
    }
    expect(await laptop.sync()).toMatchObject({ uploaded: 48, failed: [] });
    expect(await desktop.sync()).toMatchObject({
      downloaded: 48,
      bytesReceived: [...written.values()].reduce((n, b) => n + b.length, 0),
      failed: [],
    });
    for (const [path, bytes] of written) expect((await readFile(join(desktop.root, path))).equals(bytes)).toBe(true);
    expect(await contents(desktop.root)).toEqual(await contents(laptop.root));
  });

  it('uploads new files while the scan is still reading others', async () => {
    await mkdir(join(laptop.root, 'Streamed'), { recursive: true });
    const settled = new Date(Date.now() - 60_000);
    for (let i = 0; i < 80; i++) {
      await writeFile(join(laptop.root, `Streamed/s${i}.bin`), pseudoRandomBytes(2_000 + i, 900 + i));
      await utimes(join(laptop.root, `Streamed/s${i}.bin`), settled, settled);
    }
    // Past a group's worth of files, the scan waits for an upload to be recorded: a pass that
    // uploaded only after its scan would wait forever.
    let uploadRecorded!: () => void;
    const recorded = new Promise<void>((resolve) => (uploadRecorded = resolve));
    const stalled = sleep(20_000).then(() => {
      throw new Error('no upload was recorded while the scan went on');
    });
    stalled.catch(() => undefined);
    const put = laptop.index.put.bind(laptop.index);
    let scanned = 0;
    const puts = vi.spyOn(laptop.index, 'put').mockImplementation(async (file) => {
      if (file.syncedVersionId !== null) uploadRecorded();
      else if (++scanned > 40) await Promise.race([recorded, stalled]);
      return put(file);
    });
    try {
      expect(await laptop.sync()).toMatchObject({ uploaded: 80, failed: [] });
    } finally {
      puts.mockRestore();
    }
    expect(scanned).toBe(80);
    expect(await desktop.sync()).toMatchObject({ downloaded: 80, failed: [] });
    expect(await contents(desktop.root)).toEqual(await contents(laptop.root));
  });

  it('applies a folder deleted and made again in feed order, within one pass', async () => {
    await mkdir(join(laptop.root, 'Cycle'));
    await writeFile(join(laptop.root, 'Cycle/a.txt'), 'a, first');
    await writeFile(join(laptop.root, 'Cycle/b.txt'), 'b');
    await converge();
    await laptop.api.remove('Sync/Cycle');
    await laptop.sync();
    await mkdir(join(laptop.root, 'Cycle'));
    await writeFile(join(laptop.root, 'Cycle/a.txt'), 'a, made again');
    expect(await laptop.sync()).toMatchObject({ uploaded: 1, failed: [] });
    // The desktop reads the folder's tombstone, the folder, and the new file in one pass.
    expect(await desktop.sync()).toMatchObject({ downloaded: 1, deleted: 1, failed: [] });
    expect(await readdir(join(desktop.root, 'Cycle'))).toEqual(['a.txt']);
    expect(await readFile(join(desktop.root, 'Cycle/a.txt'), 'utf8')).toBe('a, made again');
  });

  it('skips a new file the server no longer holds when the pass reaches it', async () => {
    await mkdir(join(laptop.root, 'Brief'));
    await writeFile(join(laptop.root, 'Brief/gone.txt'), 'here for a moment');
    expect(await laptop.sync()).toMatchObject({ uploaded: 1, failed: [] });
    await laptop.api.remove('Sync/Brief/gone.txt');
    // The desktop reads the upsert, then the delete: the file is gone by the time it gets to it.
    expect(await desktop.sync()).toMatchObject({ downloaded: 0, failed: [] });
    expect(await readdir(join(desktop.root, 'Brief'))).toEqual([]);
    await converge();
    expect(await contents(desktop.root)).toEqual(await contents(laptop.root));
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
      const backupOnce = () => backup.converge(() => backup.backupOnce());
      expect(await backupOnce()).toMatchObject({ uploaded: 2, deleted: 0, failed: [] });
      await rm(join(root, 'a.txt'));
      await writeFile(join(root, 'b.txt'), 'b, edited');
      expect(await backupOnce()).toMatchObject({ uploaded: 1, deleted: 0, downloaded: 0 });
      expect((await api.stat('Backup/a.txt')).size).toBe(1);
      expect((await api.versions('Backup/b.txt')).length).toBe(2);
    } finally {
      await index.close();
      await api.close();
      await rm(root, { recursive: true, force: true });
    }
  });

  describe('files still being written and passes cut short', () => {
    let root: string;
    let api: ApiClient;
    let index: LocalIndex;
    let clock: number;
    let engine: SyncEngine;

    beforeAll(async () => {
      root = await mkdtemp(join(tmpdir(), 'pv-settle-'));
      api = new ApiClient(url, (await server.login('alice', { deviceName: 'camera' })).token);
      index = await LocalIndex.open(join(root, '.photovault', 'index.db'));
      engine = new SyncEngine(api, root, 'Settle', index, join(root, '.photovault', 'state.json'), { settleMs: 1000, now: () => clock });
    });
    afterAll(async () => {
      await index.close();
      await api.close();
      await rm(root, { recursive: true, force: true });
    });

    it('leaves a file modified within the settle time for a later pass, then uploads it', async () => {
      await writeFile(join(root, 'import.jpg'), 'first half');
      const mtime = (await stat(join(root, 'import.jpg'))).mtimeMs;
      clock = mtime + 500;
      expect(await engine.syncOnce()).toMatchObject({ uploaded: 0, deferred: 1 });
      await expect(api.stat('Settle/import.jpg')).rejects.toMatchObject({ code: 'PV_NOT_FOUND' });
      clock = mtime + 1000;
      expect(await engine.syncOnce()).toMatchObject({ uploaded: 1, deferred: 0 });
      expect((await api.stat('Settle/import.jpg')).size).toBe('first half'.length);
    });

    it('takes a future mtime (a skewed clock) as settled', async () => {
      await writeFile(join(root, 'future.jpg'), 'from a camera set a year ahead');
      const future = new Date(Date.now() + 365 * 24 * 3600 * 1000);
      await utimes(join(root, 'future.jpg'), future, future);
      clock = Date.now();
      expect(await engine.syncOnce()).toMatchObject({ uploaded: 1, deferred: 0 });
    });

    it('sends a delete an earlier pass saw but never sent (it failed or was killed)', async () => {
      await writeFile(join(root, 'doomed.jpg'), 'to be deleted');
      clock = Date.now() + 5000;
      expect(await engine.syncOnce()).toMatchObject({ uploaded: 1 });
      await rm(join(root, 'doomed.jpg'));
      // What a pass killed right after its scan leaves behind: the file seen gone, nothing sent.
      expect((await scanFolder(root, index, { ignored: await loadIgnoreRules(root) })).deleted.map((f) => f.path)).toEqual(['doomed.jpg']);
      expect(await engine.syncOnce()).toMatchObject({ deleted: 1, failed: [] });
      await expect(api.stat('Settle/doomed.jpg')).rejects.toMatchObject({ code: 'PV_NOT_FOUND' });
      expect(await index.get('doomed.jpg')).toBeUndefined();
    });

    it('uploads a file an earlier pass indexed but never uploaded (it failed or was killed)', async () => {
      await writeFile(join(root, 'interrupted.jpg'), 'indexed, not uploaded');
      // What a pass killed between its scan and the upload leaves behind: the file indexed as changed.
      await scanFolder(root, index, { ignored: await loadIgnoreRules(root) });
      clock = Date.now() + 5000;
      expect(await engine.syncOnce()).toMatchObject({ uploaded: 1, failed: [] });
      expect((await api.stat('Settle/interrupted.jpg')).size).toBe('indexed, not uploaded'.length);
    });
  });
});
