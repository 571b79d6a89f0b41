import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { BUCKETS, type Bucket } from '../../src/infra/blobs/blob-store.js';
import { FsBlobStore, fsBucketRoots } from '../../src/infra/blobs/fs.blob-store.js';
import { blobStoreContract, expectPvError, readAll } from './blob-store.contract.js';

blobStoreContract('FsBlobStore', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'pv-blobs-'));
  const store = await FsBlobStore.open(fsBucketRoots(dataDir));
  return { store, cleanup: () => rm(dataDir, { recursive: true, force: true }) };
});

describe('FsBlobStore', () => {
  const dirs: string[] = [];
  async function tempDir(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'pv-blobs-'));
    dirs.push(dir);
    return dir;
  }
  afterEach(async () => {
    await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
  });

  it('defaults each bucket to <dataDir>/blobs/<bucket>', () => {
    expect(fsBucketRoots('/data')).toEqual(Object.fromEntries(BUCKETS.map((b) => [b, join('/data', 'blobs', b)])));
  });

  it("removes temp files of a dead process's puts at open, keeps a live process's, and keeps finished objects", async () => {
    const roots = fsBucketRoots(await tempDir());
    const store = await FsBlobStore.open(roots);
    await store.put('uploads', 'done', Readable.from([Buffer.from('whole')]));
    const tmp = join(roots.uploads, '.tmp');
    const deadPid = String(2 ** 30); // above any pid_max: no such process
    await mkdir(join(tmp, deadPid));
    await writeFile(join(tmp, deadPid, 'crashed-put'), 'half of a fi');
    await writeFile(join(tmp, 'older-release-put'), 'half');
    // A server and a worker process share the data dir: the other's puts in flight must survive.
    const livePid = String(process.ppid);
    await mkdir(join(tmp, livePid));
    await writeFile(join(tmp, livePid, 'in-flight'), 'still being written');

    const reopened = await FsBlobStore.open(roots);
    expect((await readdir(tmp)).sort()).toEqual([livePid, String(process.pid)].sort());
    expect(await readdir(join(tmp, livePid))).toEqual(['in-flight']);
    expect(await reopened.head('uploads', 'done')).toEqual({ key: 'done', size: 5 });
  });

  it('leaves nothing in its temp folder after a failed put', async () => {
    const roots = fsBucketRoots(await tempDir());
    const store = await FsBlobStore.open(roots);
    await expectPvError(store.put('uploads', 'k', Readable.from([Buffer.from('abc')]), { size: 2 }), 'PV_INTEGRITY');
    await expectPvError(store.put('uploads', 'k', Readable.from([Buffer.from('abc')]), { sha256: '0'.repeat(64) }), 'PV_INTEGRITY');
    expect(await readdir(join(roots.uploads, '.tmp', String(process.pid)))).toEqual([]);
  });

  it('creates missing bucket roots on separate directories and stores keys as nested files', async () => {
    const [a, b] = [await tempDir(), await tempDir()];
    const roots = Object.fromEntries(
      BUCKETS.map((bucket) => [bucket, join(bucket === 'thumbnails' ? b : a, 'not', 'yet', bucket)]),
    ) as Record<Bucket, string>;
    const store = await FsBlobStore.open(roots);
    await store.put('thumbnails', 'ab/cd/abcdef', Readable.from([Buffer.from('thumb')]));
    await store.put('photos-cold', 'ab/cd/abcdef', Readable.from([Buffer.from('photo')]));
    expect(await readFile(join(b, 'not', 'yet', 'thumbnails', 'ab', 'cd', 'abcdef'), 'utf8')).toBe('thumb');
    expect(await readFile(join(a, 'not', 'yet', 'photos-cold', 'ab', 'cd', 'abcdef'), 'utf8')).toBe('photo');
  });

  it('rejects buckets that share or nest directories', async () => {
    const dir = await tempDir();
    const shared = { ...fsBucketRoots(dir), thumbnails: join(dir, 'blobs', 'uploads') };
    expect(() => new FsBlobStore({ roots: shared })).toThrow(expect.objectContaining({ code: 'PV_CONFIG_INVALID' }));
    const nested = { ...fsBucketRoots(dir), thumbnails: join(dir, 'blobs', 'uploads', 'thumbs') };
    expect(() => new FsBlobStore({ roots: nested })).toThrow(expect.objectContaining({ code: 'PV_CONFIG_INVALID' }));
  });

  it('reserves the .tmp directory: keys under it are rejected and list skips it', async () => {
    const roots = fsBucketRoots(await tempDir());
    const store = await FsBlobStore.open(roots);
    await writeFile(join(roots.uploads, '.tmp', 'in-flight'), 'x');
    await expectPvError(store.put('uploads', '.tmp/x', Readable.from([Buffer.from('x')])), 'PV_INVALID_INPUT');
    await expectPvError(store.get('uploads', '.tmp/in-flight'), 'PV_INVALID_INPUT');
    const listed = [];
    for await (const info of store.list('uploads')) listed.push(info);
    expect(listed).toEqual([]);
  });

  it('never lists or reads outside the bucket root', async () => {
    const dataDir = await tempDir();
    const roots = fsBucketRoots(dataDir);
    const store = await FsBlobStore.open(roots);
    await writeFile(join(dataDir, 'blobs', 'secret'), 'outside');
    const listed = [];
    for await (const info of store.list('uploads', '../')) listed.push(info);
    for await (const info of store.list('uploads', '../secret')) listed.push(info);
    expect(listed).toEqual([]);
    await expectPvError(store.get('uploads', '../secret'), 'PV_INVALID_INPUT');
  });

  it('reads objects and ranges on both sides of its whole-read size (1 MiB), and closes every file it opened', async () => {
    const store = await FsBlobStore.open(fsBucketRoots(await tempDir()));
    const big = randomBytes(3 * 1024 * 1024 + 17);
    await store.put('uploads', 'big', Readable.from([big.subarray(0, 1_000_000), big.subarray(1_000_000)]));
    const openFiles = async () => (await readdir('/proc/self/fd')).length;
    const before = await openFiles();
    expect((await readAll(await store.get('uploads', 'big'))).equals(big)).toBe(true);
    for (const [start, end] of [
      [0, 1024 * 1024 - 1], // exactly the whole-read size
      [5, 1024 * 1024 + 5], // one byte more: streamed
      [big.length - 10, big.length + 100], // the tail, clamped
      [1_500_000, 3_000_000],
    ] as const) {
      expect((await readAll(await store.get('uploads', 'big', { start, end }))).equals(big.subarray(start, end + 1))).toBe(true);
    }
    // A reader that stops early (a client gone) destroys the stream: its file is closed too.
    const abandoned = await store.get('uploads', 'big');
    for await (const _piece of abandoned) break;
    await expectPvError(store.get('uploads', 'missing'), 'PV_BLOB_NOT_FOUND');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await openFiles()).toBe(before);
  });
});
