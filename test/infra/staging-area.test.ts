import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256Hex } from '../../src/core/hash.js';
import { FsBlobStore, fsBucketRoots } from '../../src/infra/blobs/fs.blob-store.js';
import { FsStagingArea } from '../../src/infra/blobs/fs.staging-area.js';
import { expectPvError, readAll } from './blob-store.contract.js';

describe('FsStagingArea', () => {
  let dir: string;
  let blobs: FsBlobStore;
  let staging: FsStagingArea;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pv-staging-'));
    blobs = await FsBlobStore.open(fsBucketRoots(dir));
    staging = new FsStagingArea(blobs);
  });
  afterEach(async () => {
    await staging.close();
    await rm(dir, { recursive: true, force: true });
  });

  const ids = async () => {
    const found: string[] = [];
    for await (const id of staging.uploads()) found.push(id);
    return found;
  };

  it('lays chunks out at their offsets, a repeated chunk at each, holes reading as zeros', async () => {
    await staging.write('u1', Buffer.from('bbbb'), [4, 12]);
    await staging.write('u1', Buffer.from('aaaa'), [0]);
    expect((await staging.read('u1', 0, 16)).toString('latin1')).toBe('aaaabbbb\0\0\0\0bbbb');
    expect(await staging.digest('u1')).toEqual({ sha256: sha256Hex(Buffer.from('aaaabbbb\0\0\0\0bbbb', 'latin1')), size: 16 });
    expect(await ids()).toEqual(['u1']);
  });

  it('promotes verified content to an object by rename, consuming the staging', async () => {
    const content = Buffer.from('the whole file');
    await staging.write('u2', content, [0]);
    await staging.promote('u2', 'uploads', 'content/ab/thing', { sha256: sha256Hex(content), size: content.length });
    expect(await readAll(await blobs.get('uploads', 'content/ab/thing'))).toEqual(content);
    expect(await ids()).toEqual([]);
  });

  it('refuses to promote content with another hash or size, keeping the staging and making no object', async () => {
    await staging.write('u3', Buffer.from('not what was declared'), [0]);
    await expectPvError(staging.promote('u3', 'uploads', 'content/cd/other', { sha256: sha256Hex('x'), size: 21 }), 'PV_INTEGRITY');
    await expectPvError(
      staging.promote('u3', 'uploads', 'content/cd/other', { sha256: sha256Hex('not what was declared'), size: 5 }),
      'PV_INTEGRITY',
    );
    expect(await blobs.head('uploads', 'content/cd/other')).toBeNull();
    expect(await ids()).toEqual(['u3']);
  });

  it('promotes into another bucket by copying', async () => {
    const content = Buffer.from('cold storage');
    await staging.write('u4', content, [0]);
    await staging.promote('u4', 'photos-cold', 'content/ef/cold', { sha256: sha256Hex(content), size: content.length });
    expect(await readAll(await blobs.get('photos-cold', 'content/ef/cold'))).toEqual(content);
    expect(await ids()).toEqual([]);
  });

  it('hashes in-order chunks as they are written, and still sees bytes written out of order or again', async () => {
    const content = Buffer.from('0123456789abcdefghij');
    await staging.write('h1', content.subarray(0, 5), [0]);
    await staging.write('h1', content.subarray(10, 15), [10]);
    await staging.write('h1', content.subarray(5, 10), [5]);
    await staging.write('h1', content.subarray(15), [15]);
    expect(await staging.digest('h1')).toEqual({ sha256: sha256Hex(content), size: 20 });
    // A hashed range written again (a chunk resent after a crash tore it) is read back, not trusted.
    await staging.write('h1', Buffer.from('XY'), [3]);
    const changed = Buffer.concat([content.subarray(0, 3), Buffer.from('XY'), content.subarray(5)]);
    expect(await staging.digest('h1')).toEqual({ sha256: sha256Hex(changed), size: 20 });
    await staging.promote('h1', 'uploads', 'content/aa/h1', { sha256: sha256Hex(changed), size: 20 });
    expect(await readAll(await blobs.get('uploads', 'content/aa/h1'))).toEqual(changed);
  });

  it('keeps the running hash usable after a promotion it refused', async () => {
    const content = Buffer.from('in order');
    await staging.write('h2', content, [0]);
    await expectPvError(staging.promote('h2', 'uploads', 'content/bb/h2', { sha256: sha256Hex('other'), size: 8 }), 'PV_INTEGRITY');
    await staging.promote('h2', 'uploads', 'content/bb/h2', { sha256: sha256Hex(content), size: content.length });
    expect(await readAll(await blobs.get('uploads', 'content/bb/h2'))).toEqual(content);
  });

  it('reads back whole a staging an earlier process left, whose bytes it never saw', async () => {
    const content = Buffer.from('written after a restart, and before it');
    await staging.write('h3', content.subarray(24), [24]);
    await staging.close();
    const restarted = new FsStagingArea(blobs);
    try {
      await restarted.write('h3', content.subarray(0, 24), [0]);
      await expectPvError(
        restarted.promote('h3', 'uploads', 'content/cc/h3', { sha256: sha256Hex(content.subarray(0, 24)), size: 24 }),
        'PV_INTEGRITY',
      );
      await restarted.promote('h3', 'uploads', 'content/cc/h3', { sha256: sha256Hex(content), size: content.length });
      expect(await readAll(await blobs.get('uploads', 'content/cc/h3'))).toEqual(content);
    } finally {
      await restarted.close();
    }
  });

  it('treats an upload with nothing staged as empty content', async () => {
    expect(await staging.digest('u5')).toEqual({ sha256: sha256Hex(''), size: 0 });
    await staging.discard('u5');
    await staging.discard('never-staged');
    expect(await ids()).toEqual([]);
  });

  it('rejects upload ids that could name another path', async () => {
    for (const id of ['../x', 'a/b', '', '.']) await expectPvError(staging.write(id, Buffer.from('x'), [0]), 'PV_INVALID_INPUT');
  });

  it('keeps staging out of the bucket namespace', async () => {
    await staging.write('u6', Buffer.from('x'), [0]);
    const keys: string[] = [];
    for await (const blob of blobs.list('uploads')) keys.push(blob.key);
    expect(keys).toEqual([]);
    await expectPvError(blobs.get('uploads', '.staging/u6'), 'PV_INVALID_INPUT');
  });
});
