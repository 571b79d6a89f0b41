import { Readable } from 'node:stream';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { Bucket } from '../../src/core/buckets.js';
import { objectKey, thumbnailKey } from '../../src/infra/blobs/object-keys.js';
import { describeEachDatabase } from '../support/databases.js';
import { createTestServer, type TestServer } from '../support/server.js';
import { pseudoRandomBytes, uploadBytes } from '../support/uploads.js';

const DAY = 86_400_000;

describeEachDatabase('server verify', (kind) => {
  let server: TestServer;
  let auth: { authorization: string };
  const stored: { hash: string; bytes: Buffer }[] = [];

  beforeEach(async () => {
    server = await createTestServer(kind, { auth: { sessionDays: 3650 } });
    auth = (await server.login('alice')).auth;
    stored.length = 0;
    // Objects in every tier: one cold, one warm, two hot.
    for (const [i, size] of [200_000, 90_000, 1, 70_000].entries()) {
      const bytes = pseudoRandomBytes(size, 100 + i);
      stored.push({ hash: (await uploadBytes(server.app, auth, `v/${i}.bin`, bytes)).status.version!.contentHash, bytes });
      if (i < 2) server.clock.advance((i === 0 ? 150 : 40) * DAY);
    }
    const tiered = await server.context.tiering.run();
    expect(tiered.transitions.filter((t) => t.objects > 0).map((t) => `${t.from}->${t.to}`)).toEqual([
      'uploads->photos-warm',
      'uploads->photos-cold',
    ]);
  });
  afterEach(async () => {
    await server.close();
  });

  const blobs = () => server.context.blobs;
  const bucketOf = async (hash: string) =>
    (await server.context.db.selectFrom('objects').select('bucket').where('hash', '=', hash).executeTakeFirstOrThrow()).bucket as Bucket;
  /** Damage as a failing disk or a hand in the bucket would do it, through whichever store the run uses: the object is replaced unchecked. */
  const damage = async (bucket: Bucket, key: string, change: (bytes: Buffer) => Buffer) => {
    const chunks: Buffer[] = [];
    for await (const chunk of await blobs().get(bucket, key)) chunks.push(chunk as Buffer);
    await blobs().put(bucket, key, Readable.from([change(Buffer.concat(chunks))]));
  };

  it('is clean on a healthy store, having read every object in every tier', async () => {
    const report = await server.context.integrity.verify();
    expect(report).toMatchObject({
      ok: true,
      checked: { objects: stored.length, bytes: stored.reduce((sum, s) => sum + s.bytes.length, 0) },
      counts: { mismatched: 0, missing: 0, orphans: 0, derivedWithoutContent: 0, unfinishedMoves: 0 },
      mismatched: [],
      missing: [],
      orphans: [],
    });
  });

  it('finds a flipped byte, a missing blob and orphans, naming the bucket of each', async () => {
    const [cold, warm, , hot] = stored;
    const coldBucket = await bucketOf(cold!.hash);
    expect(coldBucket).toBe('photos-cold');
    await damage(coldBucket, objectKey(cold!.hash), (bytes) => {
      bytes.writeUInt8(bytes.readUInt8(12_345) ^ 0x01, 12_345);
      return bytes;
    });

    const warmBucket = await bucketOf(warm!.hash);
    await blobs().delete(warmBucket, objectKey(warm!.hash));

    // A copy of a hot object in the cold tier, and a stray file: neither is recorded there.
    await blobs().put('photos-cold', objectKey(hot!.hash), Readable.from([hot!.bytes]));
    await blobs().put('uploads', 'stray/leftover.bin', Readable.from([Buffer.from('nobody knows me')]));

    const report = await server.context.integrity.verify();
    expect(report.ok).toBe(false);
    expect(report.counts).toMatchObject({ mismatched: 1, missing: 1, orphans: 2 });
    expect(report.mismatched).toEqual([
      {
        contentHash: cold!.hash,
        bucket: 'photos-cold',
        expectedSize: cold!.bytes.length,
        actualSize: cold!.bytes.length,
        actualSha256: expect.not.stringMatching(cold!.hash),
      },
    ]);
    expect(report.missing).toEqual([{ contentHash: warm!.hash, bucket: 'photos-warm' }]);
    expect(report.orphans).toEqual(
      expect.arrayContaining([
        { bucket: 'photos-cold', key: objectKey(hot!.hash), size: hot!.bytes.length },
        { bucket: 'uploads', key: 'stray/leftover.bin', size: 15 },
      ]),
    );
    expect(report.checked.objects).toBe(stored.length - 1);
  });

  it('reports a truncated object as a mismatch of size', async () => {
    const [, , , hot] = stored;
    await damage('uploads', objectKey(hot!.hash), (bytes) => bytes.subarray(0, 1000));
    const report = await server.context.integrity.verify();
    expect(report.mismatched).toEqual([expect.objectContaining({ contentHash: hot!.hash, expectedSize: 70_000, actualSize: 1000 })]);
  });

  it('lists derived files of content no longer stored without failing for them', async () => {
    const gone = 'ab'.repeat(32);
    await blobs().put('thumbnails', thumbnailKey(gone, 256), Readable.from([Buffer.from('webp')]));
    await blobs().put('thumbnails', thumbnailKey(stored[0]!.hash, 256), Readable.from([Buffer.from('webp')]));
    const report = await server.context.integrity.verify();
    expect(report).toMatchObject({ ok: true, counts: { derivedWithoutContent: 1 } });
    expect(report.derivedWithoutContent).toEqual([{ bucket: 'thumbnails', key: thumbnailKey(gone, 256) }]);
  });

  it('counts both copies of a move a crash interrupted as expected, not as orphans', async () => {
    const [, , , hot] = stored;
    await blobs().put('photos-warm', objectKey(hot!.hash), Readable.from([hot!.bytes]));
    await server.context.db.updateTable('objects').set({ extra_copy_bucket: 'photos-warm' }).where('hash', '=', hot!.hash).execute();
    const report = await server.context.integrity.verify();
    expect(report).toMatchObject({ ok: true, counts: { orphans: 0, unfinishedMoves: 1 } });
    // The next tiering run finishes it: the unrecorded copy goes.
    expect((await server.context.tiering.run()).recovered).toBe(1);
    expect(await blobs().head('photos-warm', objectKey(hot!.hash))).toBeNull();
    expect((await server.context.integrity.verify()).counts.unfinishedMoves).toBe(0);
  });
});
