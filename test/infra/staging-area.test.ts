import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256Hex } from '../../src/core/hash.js';
import { FsBlobStore, fsBucketRoots } from '../../src/infra/blobs/fs.blob-store.js';
import { FsStagingArea } from '../../src/infra/blobs/fs.staging-area.js';
import { expectPvError, readAll } from './blob-store.contract.js';
import { stagingAreaContract } from './staging-area.contract.js';

stagingAreaContract('FsStagingArea', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'pv-staging-'));
  const blobs = await FsBlobStore.open(fsBucketRoots(dir));
  return {
    staging: new FsStagingArea(blobs),
    blobs,
    cleanup: async () => {
      await blobs.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

/** The fs staging hashes chunks written in order as they come, so that promote need not read them back. */
describe('FsStagingArea: running hash', () => {
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
});
