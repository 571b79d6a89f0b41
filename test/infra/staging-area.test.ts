import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FsBlobStore, fsBucketRoots } from '../../src/infra/blobs/fs.blob-store.js';
import { FsStagingArea } from '../../src/infra/blobs/fs.staging-area.js';
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
