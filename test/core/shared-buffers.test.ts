import { describe, expect, it } from 'vitest';
import { SharedBuffers } from '../../src/core/shared-buffers.js';

describe('SharedBuffers', () => {
  const sizes = { minBytes: 1024, keptBytes: 4096, kept: 2 };

  it('makes buffers of at least the minimum size, each a whole SharedArrayBuffer', () => {
    const buffers = new SharedBuffers(sizes);
    for (const [length, made] of [
      [10, 1024],
      [3000, 3000],
      [10_000, 10_000],
    ]) {
      const buffer = buffers.take(length!);
      expect(buffer.buffer).toBeInstanceOf(SharedArrayBuffer);
      expect([buffer.length, buffer.byteOffset, buffer.buffer.byteLength]).toEqual([made, 0, made]);
    }
  });

  it('hands a given-back buffer out again when it is long enough, and keeps only small ones, only so many', () => {
    const buffers = new SharedBuffers(sizes);
    const small = buffers.take(100);
    const large = buffers.take(8000);
    buffers.give(small);
    buffers.give(large);
    expect(buffers.take(500)).toBe(small);
    expect(buffers.take(8000)).not.toBe(large);
    const three = [buffers.take(10), buffers.take(10), buffers.take(10)];
    for (const buffer of three) buffers.give(buffer);
    const again = [buffers.take(10), buffers.take(10), buffers.take(10)];
    expect(again.filter((buffer) => three.includes(buffer))).toHaveLength(2);
  });
});
