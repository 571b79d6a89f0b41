import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256Hex } from '../../src/core/hash.js';
import type { BlobStore } from '../../src/infra/blobs/blob-store.js';
import type { StagingArea } from '../../src/infra/blobs/staging-area.js';
import { expectPvError, readAll } from './blob-store.contract.js';

export interface StagingFixture {
  staging: StagingArea;
  /** The store the staging promotes into. */
  blobs: BlobStore;
  cleanup(): Promise<void>;
}

/** The cases every StagingArea adapter must pass; create gives a fresh, empty one. */
export function stagingAreaContract(name: string, create: () => Promise<StagingFixture>): void {
  describe(`StagingArea contract: ${name}`, () => {
    let staging: StagingArea;
    let blobs: BlobStore;
    let cleanup: () => Promise<void>;

    beforeEach(async () => {
      ({ staging, blobs, cleanup } = await create());
    });
    afterEach(async () => {
      await staging.close();
      await cleanup();
    });

    const ids = async () => {
      const found: string[] = [];
      for await (const id of staging.uploads()) found.push(id);
      return found.sort();
    };

    it('lays chunks out at their offsets, a repeated chunk at each, holes reading as zeros', async () => {
      await staging.write('u1', Buffer.from('bbbb'), [4, 12]);
      await staging.write('u1', Buffer.from('aaaa'), [0]);
      expect((await staging.read('u1', 0, 16)).toString('latin1')).toBe('aaaabbbb\0\0\0\0bbbb');
      expect(await staging.digest('u1')).toEqual({ sha256: sha256Hex(Buffer.from('aaaabbbb\0\0\0\0bbbb', 'latin1')), size: 16 });
      expect(await ids()).toEqual(['u1']);
    });

    it('reads any range: within a chunk, across chunks and holes, and past the end as zeros', async () => {
      await staging.write('u1', Buffer.from('0123456789'), [0]);
      await staging.write('u1', Buffer.from('abcdef'), [14]);
      expect((await staging.read('u1', 3, 4)).toString('latin1')).toBe('3456');
      expect((await staging.read('u1', 8, 8)).toString('latin1')).toBe('89\0\0\0\0ab');
      expect((await staging.read('u1', 18, 6)).toString('latin1')).toBe('ef\0\0\0\0');
      expect((await staging.read('u1', 100, 3)).toString('latin1')).toBe('\0\0\0');
      expect((await staging.read('never-staged', 0, 2)).toString('latin1')).toBe('\0\0');
    });

    it('takes a chunk sent twice as once', async () => {
      await staging.write('u1', Buffer.from('same'), [0]);
      await staging.write('u1', Buffer.from('same'), [0]);
      expect(await staging.digest('u1')).toEqual({ sha256: sha256Hex('same'), size: 4 });
    });

    it('replaces what an earlier write at the same offset staged (a chunk sent again because its first copy was torn)', async () => {
      await staging.write('u1', Buffer.from('torn'), [0]);
      await staging.write('u1', Buffer.from('tail'), [4]);
      await staging.write('u1', Buffer.from('good'), [0]);
      expect((await staging.read('u1', 0, 8)).toString('latin1')).toBe('goodtail');
      expect(await staging.digest('u1')).toEqual({ sha256: sha256Hex('goodtail'), size: 8 });
      await staging.promote('u1', 'uploads', 'content/go/od', { sha256: sha256Hex('goodtail'), size: 8 });
      expect((await readAll(await blobs.get('uploads', 'content/go/od'))).toString('latin1')).toBe('goodtail');
    });

    it('counts a hole of megabytes before the furthest chunk as zeros in digest and promote', async () => {
      const hole = 3 * 1024 * 1024 + 5;
      const tail = Buffer.from('tail');
      await staging.write('u1', tail, [hole]);
      const content = Buffer.concat([Buffer.alloc(hole), tail]);
      const expected = { sha256: sha256Hex(content), size: content.length };
      expect(await staging.digest('u1')).toEqual(expected);
      await staging.promote('u1', 'uploads', 'content/ho/le', expected);
      expect((await readAll(await blobs.get('uploads', 'content/ho/le'))).equals(content)).toBe(true);
    });

    it('promotes verified content to an object, consuming the staging', async () => {
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
      expect((await staging.read('u3', 0, 8)).toString()).toBe('not what');
    });

    it('promotes into another bucket', async () => {
      const content = Buffer.from('cold storage');
      await staging.write('u4', content, [0]);
      await staging.promote('u4', 'photos-cold', 'content/ef/cold', { sha256: sha256Hex(content), size: content.length });
      expect(await readAll(await blobs.get('photos-cold', 'content/ef/cold'))).toEqual(content);
      expect(await ids()).toEqual([]);
    });

    it('treats an upload with nothing staged as empty content', async () => {
      expect(await staging.digest('u5')).toEqual({ sha256: sha256Hex(''), size: 0 });
      await staging.discard('u5');
      await staging.discard('never-staged');
      expect(await ids()).toEqual([]);
    });

    it('lists every upload with staged content and discards one without touching the others', async () => {
      for (const id of ['a1', 'b2', 'c3']) await staging.write(id, Buffer.from(id), [0, 10]);
      expect(await ids()).toEqual(['a1', 'b2', 'c3']);
      await staging.discard('b2');
      expect(await ids()).toEqual(['a1', 'c3']);
      expect((await staging.read('a1', 10, 2)).toString()).toBe('a1');
      expect(await staging.digest('b2')).toEqual({ sha256: sha256Hex(''), size: 0 });
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
}
