import { mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type IndexedFile, LocalIndex } from '../../src/daemon/local-index.js';

function entry(path: string, overrides: Partial<IndexedFile> = {}): IndexedFile {
  return {
    path,
    size: 10,
    mtimeMs: 1_700_000_000_000,
    inode: 7,
    contentHash: 'a'.repeat(64),
    manifest: 'bWFuaWZlc3Q=',
    syncedVersionId: null,
    syncedHash: null,
    syncedManifest: null,
    ...overrides,
  };
}

describe('LocalIndex', () => {
  let dir: string;
  let file: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pv-local-index-'));
    file = join(dir, '.photovault', 'index.db');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps every field of an entry, replaces it by path, and keeps it across a reopen', async () => {
    const index = await LocalIndex.open(file);
    const synced = entry('photos/ä b.jpg', { syncedVersionId: 'v1', syncedHash: 'b'.repeat(64), syncedManifest: 'b2xk' });
    await index.put(entry('photos/ä b.jpg'));
    await index.put(synced);
    expect(await index.get('photos/ä b.jpg')).toEqual(synced);
    expect(await index.get('photos/missing.jpg')).toBeUndefined();
    await index.close();
    const again = await LocalIndex.open(file);
    expect(await again.all()).toEqual(new Map([['photos/ä b.jpg', synced]]));
    await again.close();
  });

  it('writes puts made together in one batch, each resolving once written', async () => {
    const index = await LocalIndex.open(file);
    await Promise.all(Array.from({ length: 300 }, (_, i) => index.put(entry(`f${i}`, { size: i }))));
    const all = await index.all();
    expect(all.size).toBe(300);
    expect(all.get('f299')?.size).toBe(299);
    await index.close();
  });

  it('gives the stamps of a folder and what is under it, not of names that only start like it', async () => {
    const index = await LocalIndex.open(file);
    for (const path of ['a/b', 'a/b/c', 'a/b/d/e', 'a/b0', 'a/bc', 'a/b-c', 'z']) await index.put(entry(path, { inode: path.length }));
    expect([...(await index.stamps('a/b')).keys()].sort()).toEqual(['a/b', 'a/b/c', 'a/b/d/e']);
    expect(await index.stamps('a/b/c')).toEqual(new Map([['a/b/c', { size: 10, mtimeMs: 1_700_000_000_000, inode: 5 }]]));
    expect((await index.stamps()).size).toBe(7);
    await index.close();
  });

  it('lists unsynced entries, finds synced content held elsewhere, and moves and removes entries', async () => {
    const index = await LocalIndex.open(file);
    const hash = 'c'.repeat(64);
    await index.put(entry('new.txt'));
    await index.put(entry('edited.txt', { contentHash: 'd'.repeat(64), syncedVersionId: 'v2', syncedHash: hash }));
    await index.put(entry('dir/kept.txt', { contentHash: hash, syncedVersionId: 'v3', syncedHash: hash }));
    await index.put(entry('dir/sub/deep.txt', { syncedVersionId: 'v4', syncedHash: 'a'.repeat(64) }));
    expect((await index.unsynced()).map((file) => file.path).sort()).toEqual(['edited.txt', 'new.txt']);
    expect(await index.holdsSyncedContent(hash, 'elsewhere.txt')).toBe(true);
    expect(await index.holdsSyncedContent(hash, 'dir/kept.txt')).toBe(false);
    expect(await index.holdsSyncedContent('d'.repeat(64), 'elsewhere.txt')).toBe(false);
    expect(await index.existing(['new.txt', 'gone.txt', 'dir/kept.txt'])).toEqual(new Set(['new.txt', 'dir/kept.txt']));
    await index.move('dir', 'moved');
    expect([...(await index.all()).keys()].sort()).toEqual(['edited.txt', 'moved/kept.txt', 'moved/sub/deep.txt', 'new.txt']);
    await index.remove('new.txt');
    expect(await index.get('new.txt')).toBeUndefined();
    await index.close();
  });

  it('opens an index written before synced_manifest existed, its entries gaining it empty', async () => {
    mkdirSync(join(dir, '.photovault'));
    const old = new SQLite(file);
    old.exec(`create table files (path text primary key, size integer not null, mtime_ms integer not null, inode integer not null,
      content_hash text not null, manifest text not null, synced_version_id text, synced_hash text)`);
    old.prepare("insert into files values ('old.txt', 3, 5, 9, ?, 'bQ==', 'v1', ?)").run('e'.repeat(64), 'e'.repeat(64));
    old.close();
    const index = await LocalIndex.open(file);
    expect(await index.get('old.txt')).toEqual({
      path: 'old.txt',
      size: 3,
      mtimeMs: 5,
      inode: 9,
      contentHash: 'e'.repeat(64),
      manifest: 'bQ==',
      syncedVersionId: 'v1',
      syncedHash: 'e'.repeat(64),
      syncedManifest: null,
    });
    expect(await index.holdsSyncedContent('e'.repeat(64), 'new.txt')).toBe(true);
    await index.close();
  });
});
