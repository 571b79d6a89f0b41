import { describe, expect, it, onTestFinished } from 'vitest';
import { sha256Hex } from '../../src/core/hash.js';
import { S3BlobStore } from '../../src/infra/blobs/s3.blob-store.js';
import { S3StagingArea } from '../../src/infra/blobs/s3.staging-area.js';
import { pseudoRandomBytes } from '../support/random.js';
import { freezableProxy, s3rverForTest, SLOW_S3_TEST_MS, startS3rver, type TestS3Server } from '../support/s3rver.js';
import { readAll } from './blob-store.contract.js';
import { stagingAreaContract } from './staging-area.contract.js';

const MIB = 1024 * 1024;

stagingAreaContract('S3StagingArea', async () => {
  const server = await startS3rver();
  const blobs = await S3BlobStore.open({ buckets: server.locations });
  return {
    staging: new S3StagingArea(blobs),
    blobs,
    cleanup: async () => {
      await blobs.close();
      await server.close();
    },
  };
});

describe('S3StagingArea', () => {
  const server = s3rverForTest;
  /** What one server process builds: its own store and staging area on the shared S3 server. */
  async function processOn(s3: TestS3Server): Promise<{ blobs: S3BlobStore; staging: S3StagingArea }> {
    const blobs = await S3BlobStore.open({ buckets: s3.locations, partSize: 5 * MIB });
    onTestFinished(() => blobs.close());
    return { blobs, staging: new S3StagingArea(blobs) };
  }

  it('fails with PV_BACKEND_UNREACHABLE when the S3 server stops answering, and stages again once it answers', async () => {
    const s3 = await server();
    const proxy = await freezableProxy(new URL(s3.endpoint));
    const buckets = Object.fromEntries(
      Object.entries(s3.locations).map(([bucket, location]) => [bucket, { ...location, endpoint: proxy.endpoint }]),
    );
    const blobs = await S3BlobStore.open({ buckets: buckets as typeof s3.locations, requestIdleMs: 300 });
    onTestFinished(() => blobs.close());
    const staging = new S3StagingArea(blobs);
    await staging.write('u', Buffer.from('first'), [0]);
    proxy.freeze();
    for (const request of [() => staging.write('u', Buffer.from('second'), [5]), () => staging.digest('u'), () => staging.discard('u')]) {
      await expect(request()).rejects.toMatchObject({ code: 'PV_BACKEND_UNREACHABLE' });
    }
    proxy.thaw();
    await staging.write('u', Buffer.from('second'), [5]);
    expect((await staging.read('u', 0, 11)).toString()).toBe('firstsecond');
  });

  it('shares an upload between processes: chunks staged by two, promoted by a third', async () => {
    const s3 = await server();
    const [one, two, three] = [await processOn(s3), await processOn(s3), await processOn(s3)];
    const chunks = Array.from({ length: 6 }, (_, i) => pseudoRandomBytes(64 * 1024 + i, i + 1));
    const content = Buffer.concat(chunks);
    let offset = 0;
    for (const [i, chunk] of chunks.entries()) {
      await (i % 2 === 0 ? one : two).staging.write('shared', chunk, [offset]);
      offset += chunk.length;
    }
    const expected = { sha256: sha256Hex(content), size: content.length };
    expect(await three.staging.digest('shared')).toEqual(expected);
    expect((await one.staging.read('shared', 64 * 1024 - 10, 20)).equals(content.subarray(64 * 1024 - 10, 64 * 1024 + 10))).toBe(true);
    await three.staging.promote('shared', 'uploads', 'content/sh/ared', expected);
    expect((await readAll(await one.blobs.get('uploads', 'content/sh/ared'))).equals(content)).toBe(true);
    const left: string[] = [];
    for await (const id of two.staging.uploads()) left.push(id);
    expect(left).toEqual([]);
  });

  it('splits a write larger than one staged object and reads it back across the seams', async () => {
    const { staging } = await processOn(await server());
    const big = pseudoRandomBytes(9 * MIB + 7, 9);
    await staging.write('big', big, [100]);
    for (const [offset, length] of [
      [0, 200],
      [100 + 4 * MIB - 3, 6],
      [100 + 8 * MIB - 1, MIB + 50],
    ] as const) {
      const expected = Buffer.concat([Buffer.alloc(100), big, Buffer.alloc(100)]).subarray(offset, offset + length);
      expect((await staging.read('big', offset, length)).equals(expected)).toBe(true);
    }
    const content = Buffer.concat([Buffer.alloc(100), big]);
    expect(await staging.digest('big')).toEqual({ sha256: sha256Hex(content), size: content.length });
  });

  it(
    'promotes more chunks than one listing page holds into a multipart object, and removes them all',
    async () => {
      const { staging, blobs } = await processOn(await server());
      const size = 5 * 1024;
      const chunks = Array.from({ length: 1100 }, (_, i) => pseudoRandomBytes(size, i + 1));
      const content = Buffer.concat(chunks);
      for (let i = 0; i < chunks.length; i += 25) {
        await Promise.all(chunks.slice(i, i + 25).map((chunk, j) => staging.write('many', chunk, [(i + j) * size])));
      }
      const expected = { sha256: sha256Hex(content), size: content.length };
      expect((await staging.read('many', 1050 * size - 1, 2)).equals(content.subarray(1050 * size - 1, 1050 * size + 1))).toBe(true);
      await staging.promote('many', 'photos-warm', 'content/ma/ny', expected);
      expect(sha256Hex(await readAll(await blobs.get('photos-warm', 'content/ma/ny')))).toBe(expected.sha256);
      expect(await staging.digest('many')).toEqual({ sha256: sha256Hex(''), size: 0 });
    },
    SLOW_S3_TEST_MS,
  );

  it('reads the lower offset where writes overlap, in read, digest and promote alike', async () => {
    const { staging } = await processOn(await server());
    await staging.write('o', Buffer.from('bbbbbb'), [4]);
    await staging.write('o', Buffer.from('aaaaaa'), [0]);
    expect((await staging.read('o', 0, 10)).toString()).toBe('aaaaaabbbb');
    expect((await staging.read('o', 5, 4)).toString()).toBe('abbb');
    expect(await staging.digest('o')).toEqual({ sha256: sha256Hex('aaaaaabbbb'), size: 10 });
  });

  it('rejects negative or fractional offsets and lengths', async () => {
    const { staging } = await processOn(await server());
    await expect(staging.write('u', Buffer.from('x'), [-1])).rejects.toMatchObject({ code: 'PV_INVALID_INPUT' });
    await expect(staging.write('u', Buffer.from('x'), [0.5])).rejects.toMatchObject({ code: 'PV_INVALID_INPUT' });
    await expect(staging.read('u', -1, 1)).rejects.toMatchObject({ code: 'PV_INVALID_INPUT' });
    await expect(staging.read('u', 0, -1)).rejects.toMatchObject({ code: 'PV_INVALID_INPUT' });
  });
});
