import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PvError, type PvErrorCode } from '../../src/core/errors.js';
import type { BlobInfo, BlobStore } from '../../src/infra/blobs/blob-store.js';
import { CORPUS_DIR } from '../support/corpus.js';

const CORPUS_VIDEO = join(CORPUS_DIR, 'video/bbb-480p-30s.mp4');

/** 1000 bytes whose value at offset i is i % 256, so any range is easy to predict. */
const BYTES = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 256));

export const HOSTILE_KEYS = [
  '../x',
  '/abs',
  'a//b',
  'a/./b',
  'a\u0000b',
  'a\\b',
  '',
  '.',
  '..',
  'a/',
  'a/../../x',
  'é',
  'a b',
  'x'.repeat(1025),
];

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function body(bytes: Uint8Array): Readable {
  return Readable.from([Buffer.from(bytes)]);
}

export async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

async function listAll(iterable: AsyncIterable<BlobInfo>): Promise<BlobInfo[]> {
  const infos: BlobInfo[] = [];
  for await (const info of iterable) infos.push(info);
  return infos.sort((a, b) => a.key.localeCompare(b.key));
}

/** Awaits the promise, expects a PvError with the code, and returns it for further checks. */
export async function expectPvError(promise: Promise<unknown>, code: PvErrorCode): Promise<PvError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(PvError);
  expect((error as PvError).code).toBe(code);
  return error as PvError;
}

/** The cases every BlobStore adapter must pass; create gives a fresh, empty store. */
export function blobStoreContract(name: string, create: () => Promise<{ store: BlobStore; cleanup: () => Promise<void> }>): void {
  describe(`BlobStore contract: ${name}`, () => {
    let store: BlobStore;
    let cleanup: () => Promise<void>;

    beforeEach(async () => {
      ({ store, cleanup } = await create());
    });

    afterEach(async () => {
      await store.close();
      await cleanup();
    });

    it('round-trips a real video file byte for byte and returns its sha256 and size', async () => {
      const original = await readFile(CORPUS_VIDEO);
      const result = await store.put('uploads', 'videos/bbb.mp4', createReadStream(CORPUS_VIDEO));
      expect(result).toEqual({ size: original.length, sha256: sha256(original) });
      expect((await readAll(await store.get('uploads', 'videos/bbb.mp4'))).equals(original)).toBe(true);
      expect(await store.head('uploads', 'videos/bbb.mp4')).toEqual({ key: 'videos/bbb.mp4', size: original.length });
    });

    it('accepts an async iterable body and an empty object', async () => {
      async function* parts(): AsyncIterable<Uint8Array> {
        yield BYTES.subarray(0, 300);
        yield BYTES.subarray(300);
      }
      expect(await store.put('uploads', 'parts', parts())).toEqual({ size: BYTES.length, sha256: sha256(BYTES) });
      expect((await readAll(await store.get('uploads', 'parts'))).equals(BYTES)).toBe(true);

      expect(await store.put('uploads', 'empty', Readable.from([]))).toEqual({ size: 0, sha256: sha256(new Uint8Array()) });
      expect((await readAll(await store.get('uploads', 'empty'))).length).toBe(0);
      expect(await store.head('uploads', 'empty')).toEqual({ key: 'empty', size: 0 });
    });

    it('accepts a put whose sha256 and size match', async () => {
      const result = await store.put('uploads', 'k', body(BYTES), { sha256: sha256(BYTES), size: BYTES.length });
      expect(result).toEqual({ size: BYTES.length, sha256: sha256(BYTES) });
      expect(await store.head('uploads', 'k')).toEqual({ key: 'k', size: BYTES.length });
    });

    it('trusts a sha256 the caller checked but still holds the bytes to the size', async () => {
      const checked = { sha256: sha256(BYTES), sha256Checked: true };
      expect(await store.put('uploads', 'checked', body(BYTES), { ...checked, size: BYTES.length })).toEqual({
        size: BYTES.length,
        sha256: sha256(BYTES),
      });
      expect(await readAll(await store.get('uploads', 'checked'))).toEqual(BYTES);
      await expectPvError(store.put('uploads', 'short', body(BYTES), { ...checked, size: BYTES.length + 1 }), 'PV_INTEGRITY');
      expect(await store.head('uploads', 'short')).toBeNull();
    });

    it('makes a non-durable put just as atomic and readable', async () => {
      await store.put('uploads', 'scratch/one', body(BYTES), { sha256: sha256(BYTES), size: BYTES.length, durable: false });
      expect(await readAll(await store.get('uploads', 'scratch/one'))).toEqual(BYTES);
      await expectPvError(
        store.put('uploads', 'scratch/two', body(BYTES), { sha256: sha256(Buffer.from('x')), durable: false }),
        'PV_INTEGRITY',
      );
      expect(await store.head('uploads', 'scratch/two')).toBeNull();
    });

    it('replaces an existing object on a second put', async () => {
      await store.put('uploads', 'k', body(Buffer.from('old')));
      await store.put('uploads', 'k', body(BYTES));
      expect((await readAll(await store.get('uploads', 'k'))).equals(BYTES)).toBe(true);
    });

    const mismatches = [
      { what: 'a wrong sha256', options: { sha256: sha256(Buffer.from('other')) } },
      { what: 'a size too small', options: { size: BYTES.length - 1 } },
      { what: 'a size too large', options: { size: BYTES.length + 1 } },
      { what: 'a right size but wrong sha256', options: { size: BYTES.length, sha256: '0'.repeat(64) } },
    ];
    for (const { what, options } of mismatches) {
      it(`rejects a put with ${what} with PV_INTEGRITY and leaves no object`, async () => {
        const error = await expectPvError(store.put('uploads', 'new', body(BYTES), options), 'PV_INTEGRITY');
        expect(error.details).toMatchObject({ expected: options });
        expect(await store.head('uploads', 'new')).toBeNull();
        expect(await listAll(store.list('uploads'))).toEqual([]);
      });

      it(`keeps the old object intact when a put over it has ${what}`, async () => {
        await store.put('uploads', 'old', body(Buffer.from('old bytes')));
        await expectPvError(store.put('uploads', 'old', body(BYTES), options), 'PV_INTEGRITY');
        expect((await readAll(await store.get('uploads', 'old'))).toString()).toBe('old bytes');
      });
    }

    it('reports expected and actual sha256 and size on a mismatch', async () => {
      const wrong = '0'.repeat(64);
      const error = await expectPvError(store.put('uploads', 'k', body(BYTES), { sha256: wrong }), 'PV_INTEGRITY');
      expect(error.details).toMatchObject({ expected: { sha256: wrong }, actual: { sha256: sha256(BYTES), size: BYTES.length } });
    });

    it('leaves no object, and the old one intact, when the body errors mid-way', async () => {
      async function* failing(): AsyncIterable<Uint8Array> {
        yield BYTES;
        throw new Error('connection reset');
      }
      await expect(store.put('uploads', 'new', failing())).rejects.toThrow('connection reset');
      expect(await store.head('uploads', 'new')).toBeNull();

      await store.put('uploads', 'old', body(Buffer.from('old bytes')));
      await expect(store.put('uploads', 'old', failing())).rejects.toThrow('connection reset');
      expect((await readAll(await store.get('uploads', 'old'))).toString()).toBe('old bytes');
      expect(await listAll(store.list('uploads'))).toEqual([{ key: 'old', size: 9 }]);
    });

    const ranges = [
      { what: 'the start', range: { start: 0, end: 9 }, expected: BYTES.subarray(0, 10) },
      { what: 'the middle', range: { start: 100, end: 199 }, expected: BYTES.subarray(100, 200) },
      { what: 'the end', range: { start: 990, end: 999 }, expected: BYTES.subarray(990) },
      { what: 'a single byte', range: { start: 500, end: 500 }, expected: BYTES.subarray(500, 501) },
      { what: 'a range past the end, clamped', range: { start: 995, end: 5000 }, expected: BYTES.subarray(995) },
    ];
    for (const { what, range, expected } of ranges) {
      it(`reads ${what} of an object as an inclusive byte range`, async () => {
        await store.put('uploads', 'r', body(BYTES));
        expect((await readAll(await store.get('uploads', 'r', range))).equals(expected)).toBe(true);
      });
    }

    it('rejects a range that starts past the end or is malformed with PV_INVALID_INPUT', async () => {
      await store.put('uploads', 'r', body(BYTES));
      for (const range of [
        { start: 1000, end: 1001 },
        { start: 10, end: 9 },
        { start: -1, end: 5 },
        { start: 0.5, end: 5 },
      ]) {
        await expectPvError(store.get('uploads', 'r', range), 'PV_INVALID_INPUT');
      }
    });

    it('throws PV_BLOB_NOT_FOUND from get, and head returns null, for a missing key', async () => {
      await expectPvError(store.get('uploads', 'missing'), 'PV_BLOB_NOT_FOUND');
      await expectPvError(store.get('uploads', 'missing', { start: 0, end: 0 }), 'PV_BLOB_NOT_FOUND');
      expect(await store.head('uploads', 'missing')).toBeNull();
    });

    it('treats a key that is only a prefix of other keys as missing', async () => {
      await store.put('uploads', 'dir/file', body(BYTES));
      expect(await store.head('uploads', 'dir')).toBeNull();
      await expectPvError(store.get('uploads', 'dir'), 'PV_BLOB_NOT_FOUND');
      await store.delete('uploads', 'dir');
      expect(await store.head('uploads', 'dir/file')).toEqual({ key: 'dir/file', size: BYTES.length });
    });

    it('deletes an object, and deleting it again or deleting a never-put key is not an error', async () => {
      await store.put('uploads', 'a/b', body(BYTES));
      await store.delete('uploads', 'a/b');
      expect(await store.head('uploads', 'a/b')).toBeNull();
      await store.delete('uploads', 'a/b');
      await store.delete('uploads', 'never/put');
      await expectPvError(store.get('uploads', 'a/b'), 'PV_BLOB_NOT_FOUND');
    });

    it('lists every object, or those whose key starts with a prefix', async () => {
      const keys = ['a/b1', 'a/bc/d', 'a/x', 'ab', 'z/y/x/w'];
      for (const key of keys) await store.put('uploads', key, body(Buffer.from(key)));
      const infos = (...ks: string[]) => ks.map((key) => ({ key, size: key.length }));

      expect(await listAll(store.list('uploads'))).toEqual(infos(...keys));
      expect(await listAll(store.list('uploads', ''))).toEqual(infos(...keys));
      expect(await listAll(store.list('uploads', 'a/'))).toEqual(infos('a/b1', 'a/bc/d', 'a/x'));
      expect(await listAll(store.list('uploads', 'a/b'))).toEqual(infos('a/b1', 'a/bc/d'));
      expect(await listAll(store.list('uploads', 'a'))).toEqual(infos('a/b1', 'a/bc/d', 'a/x', 'ab'));
      expect(await listAll(store.list('uploads', 'z/y/x/w'))).toEqual(infos('z/y/x/w'));
      expect(await listAll(store.list('uploads', 'nothing'))).toEqual([]);
      expect(await listAll(store.list('uploads', '../'))).toEqual([]);
      expect(await listAll(store.list('uploads', '/a'))).toEqual([]);
    });

    it('rejects hostile keys with PV_INVALID_INPUT in every operation', async () => {
      for (const key of HOSTILE_KEYS) {
        await expectPvError(store.put('uploads', key, body(BYTES)), 'PV_INVALID_INPUT');
        await expectPvError(store.get('uploads', key), 'PV_INVALID_INPUT');
        await expectPvError(store.head('uploads', key), 'PV_INVALID_INPUT');
        await expectPvError(store.delete('uploads', key), 'PV_INVALID_INPUT');
      }
      expect(await listAll(store.list('uploads'))).toEqual([]);
    });

    it('keeps buckets separate: the same key in two buckets is two objects', async () => {
      await store.put('uploads', 'same/key', body(Buffer.from('in uploads')));
      await store.put('thumbnails', 'same/key', body(Buffer.from('in thumbnails!')));
      expect((await readAll(await store.get('uploads', 'same/key'))).toString()).toBe('in uploads');
      expect((await readAll(await store.get('thumbnails', 'same/key'))).toString()).toBe('in thumbnails!');

      await store.delete('uploads', 'same/key');
      expect(await store.head('uploads', 'same/key')).toBeNull();
      expect(await listAll(store.list('thumbnails'))).toEqual([{ key: 'same/key', size: 14 }]);
      expect(await listAll(store.list('photos-warm'))).toEqual([]);
    });
  });
}
