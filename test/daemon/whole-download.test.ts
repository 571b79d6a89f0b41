import { describe, expect, it } from 'vitest';
import { WHOLE_FILE_MAX_BYTES } from '../../src/core/protocol.js';
import { contentsRequests } from '../../src/daemon/whole-download.js';

const MiB = 1024 * 1024;

/** A file to fetch whole of this size, named by its position. */
function file(at: number, size: number) {
  return {
    at,
    fetched: {
      version: { id: `v${at}`, contentHash: '0'.repeat(64), size, mtime: 0, createdAt: '', deviceId: null },
      manifest: '',
    },
  };
}

/** The sizes of the files, request by request. */
function sizesOf(sizes: number[]): number[][] {
  return contentsRequests(sizes.map((size, at) => file(at, size))).map((request) => request.map((f) => f.fetched.version.size));
}

describe('contentsRequests', () => {
  it.each([
    ['no files, no request', [], []],
    ['small files together', [1000, 2000, 3000], [[1000, 2000, 3000]]],
    ['at most 64 files to a request', Array(130).fill(10), [Array(64).fill(10), Array(64).fill(10), [10, 10]]],
    [
      'about 8 MiB to a request',
      [3 * MiB, 3 * MiB, 3 * MiB, 1],
      [
        [3 * MiB, 3 * MiB],
        [3 * MiB, 1],
      ],
    ],
    ['exactly 8 MiB fits', [4 * MiB, 4 * MiB, 1], [[4 * MiB, 4 * MiB], [1]]],
    ['a file of the largest size alone', [1, WHOLE_FILE_MAX_BYTES, 1], [[1], [WHOLE_FILE_MAX_BYTES], [1]]],
  ])('groups %s', (_name, sizes, expected) => {
    expect(sizesOf(sizes)).toEqual(expected);
  });

  it('keeps the order of the files', () => {
    const files = Array.from({ length: 100 }, (_, at) => file(at, (at % 7) * 200_000));
    expect(contentsRequests(files).flat()).toEqual(files);
  });
});
