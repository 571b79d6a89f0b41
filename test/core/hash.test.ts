import { describe, expect, it } from 'vitest';
import { sha256Hex, sha256OfSpans } from '../../src/core/hash.js';
import { pseudoRandomBytes } from '../support/uploads.js';

function shared(bytes: Buffer): Buffer {
  const copy = Buffer.from(new SharedArrayBuffer(bytes.length));
  bytes.copy(copy);
  return copy;
}

describe('sha256OfSpans', () => {
  it('hashes each span, empty and overlapping ones included, as sha256Hex would', async () => {
    const bytes = shared(pseudoRandomBytes(3_000_000, 5));
    const spans = [
      { offset: 0, length: bytes.length },
      { offset: 17, length: 65_536 },
      { offset: 1_000, length: 0 },
      { offset: 2_999_999, length: 1 },
      { offset: 10, length: 100_000 },
    ];
    expect(await sha256OfSpans(bytes, spans)).toEqual(
      spans.map(({ offset, length }) => sha256Hex(bytes.subarray(offset, offset + length))),
    );
  });

  it('reads spans relative to a view that starts inside its buffer', async () => {
    const bytes = shared(pseudoRandomBytes(10_000, 6));
    const view = bytes.subarray(1_234, 9_000);
    expect(await sha256OfSpans(view, [{ offset: 0, length: 100 }])).toEqual([sha256Hex(bytes.subarray(1_234, 1_334))]);
  });

  it('answers many callers at once, each with its own digests', async () => {
    const buffers = Array.from({ length: 20 }, (_, i) => shared(pseudoRandomBytes(50_000 + i, 100 + i)));
    const answers = await Promise.all(buffers.map((bytes) => sha256OfSpans(bytes, [{ offset: 0, length: bytes.length }])));
    expect(answers).toEqual(buffers.map((bytes) => [sha256Hex(bytes)]));
  });

  it('refuses bytes outside a SharedArrayBuffer and spans outside the bytes', async () => {
    await expect(sha256OfSpans(Buffer.from('plain'), [{ offset: 0, length: 5 }])).rejects.toThrow(/SharedArrayBuffer/);
    const bytes = shared(Buffer.from('twelve bytes'));
    await expect(sha256OfSpans(bytes.subarray(0, 6), [{ offset: 2, length: 5 }])).rejects.toThrow(/outside the bytes/);
    await expect(sha256OfSpans(bytes, [{ offset: -1, length: 2 }])).rejects.toThrow(/outside the bytes/);
  });
});
