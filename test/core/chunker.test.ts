import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, expect } from 'vitest';
import {
  CHUNK_AVG_SIZE,
  CHUNK_MAX_SIZE,
  CHUNK_MIN_SIZE,
  CHUNKER_VERSION,
  ChunkBoundaries,
  chunkLengths,
  fingerprint,
  fingerprintChunks,
  fingerprintFile,
  type Fingerprint,
} from '../../src/core/chunker.js';
import { CORPUS_DIR } from '../support/corpus.js';
import { pseudoRandomBytes, xorshift } from '../support/random.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/**
 * The chunker hashes content up to 1 MiB inline, and hands the rest to its hash threads in blocks
 * of 1, 2, then 4 MiB: sizes around those edges matter.
 */
const BLOCK = 4 * MiB;
const corpusVideo = join(CORPUS_DIR, 'video/bbb-480p-30s.mp4');

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** Piece sizes from 1 byte to 1 MiB, log-uniform so that tiny and large pieces both occur. */
function randomSplit(size: number, seed: number): number[] {
  const next = xorshift(seed);
  const sizes: number[] = [];
  for (let left = size; left > 0;) {
    const piece = Math.min(left, Math.max(1, Math.round(2 ** ((next() / 2 ** 32) * 20))));
    sizes.push(piece);
    left -= piece;
  }
  return sizes;
}

function evenSplit(size: number, piece: number): number[] {
  return Array.from({ length: Math.ceil(size / piece) }, (_, i) => Math.min(piece, size - i * piece));
}

function split(bytes: Uint8Array, sizes: number[]): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  let offset = 0;
  for (const size of sizes) {
    pieces.push(bytes.subarray(offset, offset + size));
    offset += size;
  }
  return pieces;
}

async function* stream(pieces: Iterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  yield* pieces;
}

function lengthsFedIn(pieces: Uint8Array[]): number[] {
  const boundaries = new ChunkBoundaries();
  return [...pieces.flatMap((piece) => boundaries.push(piece)), ...boundaries.end()];
}

/** Checks every invariant a fingerprint of `bytes` must satisfy. */
function expectValidFingerprint(result: Fingerprint, bytes: Uint8Array): void {
  expect(result.size).toBe(bytes.length);
  expect(result.contentHash).toBe(sha256(bytes));
  let offset = 0;
  result.chunks.forEach((chunk, i) => {
    expect(chunk.offset).toBe(offset);
    if (i < result.chunks.length - 1) expect(chunk.length).toBeGreaterThanOrEqual(CHUNK_MIN_SIZE);
    expect(chunk.length).toBeGreaterThan(0);
    expect(chunk.length).toBeLessThanOrEqual(CHUNK_MAX_SIZE);
    expect(chunk.hash).toBe(sha256(bytes.subarray(chunk.offset, chunk.offset + chunk.length)));
    offset += chunk.length;
  });
  expect(offset).toBe(bytes.length);
}

const random100MiB = pseudoRandomBytes(100 * MiB, 0xc0ffee);

describe('chunking rules (protocol constants)', () => {
  it('exports the protocol sizes and version', () => {
    expect([CHUNK_MIN_SIZE, CHUNK_AVG_SIZE, CHUNK_MAX_SIZE]).toEqual([16 * KiB, 64 * KiB, 256 * KiB]);
    expect(CHUNKER_VERSION).toBe('fastcdc-v1-16k-64k-256k');
  });

  it('cuts known content at the same places as every earlier release (gear table and masks unchanged)', () => {
    expect(chunkLengths(pseudoRandomBytes(MiB, 1))).toEqual([
      76469, 91343, 69616, 84064, 139505, 67017, 19545, 83385, 71888, 73270, 35867, 91714, 95261, 49632,
    ]);
  });

  it('keeps every chunk within [MIN, MAX] except a shorter last one, and the lengths add up', () => {
    const lengths = chunkLengths(random100MiB);
    expect(lengths.reduce((a, b) => a + b, 0)).toBe(random100MiB.length);
    expect(Math.min(...lengths.slice(0, -1))).toBeGreaterThanOrEqual(CHUNK_MIN_SIZE);
    expect(Math.max(...lengths)).toBeLessThanOrEqual(CHUNK_MAX_SIZE);
    expect(lengths.at(-1)).toBeGreaterThan(0);
  });

  it('averages near 64 KiB on random content', () => {
    const lengths = chunkLengths(random100MiB);
    const average = random100MiB.length / lengths.length;
    expect(average).toBeGreaterThan(48 * KiB);
    expect(average).toBeLessThan(96 * KiB);
  });

  it('cuts a run of zeros, which has no content to cut on, at MAX', () => {
    const lengths = chunkLengths(new Uint8Array(MiB + 100));
    expect(lengths).toEqual([CHUNK_MAX_SIZE, CHUNK_MAX_SIZE, CHUNK_MAX_SIZE, CHUNK_MAX_SIZE, 100]);
  });

  it('cuts a run of any single repeated byte value at MAX', () => {
    for (let value = 0; value < 256; value++) {
      const lengths = chunkLengths(new Uint8Array(2 * CHUNK_MAX_SIZE + 1).fill(value));
      expect(lengths, `byte 0x${value.toString(16)}`).toEqual([CHUNK_MAX_SIZE, CHUNK_MAX_SIZE, 1]);
    }
  });

  it.each([
    { size: 0, expected: [] },
    { size: 1, expected: [1] },
    { size: CHUNK_MIN_SIZE, expected: [CHUNK_MIN_SIZE] },
    { size: CHUNK_MIN_SIZE + 1, expected: [CHUNK_MIN_SIZE + 1] },
  ])('never cuts inside the first MIN bytes: $size bytes give $expected', ({ size, expected }) => {
    expect(chunkLengths(pseudoRandomBytes(size, 7))).toEqual(expected);
  });
});

describe('ChunkBoundaries', () => {
  const bytes = pseudoRandomBytes(12 * MiB + 12_345, 42);
  const whole = chunkLengths(bytes);

  it.each([
    { name: 'pieces of 1 byte..1 MiB (seed 1)', sizes: randomSplit(bytes.length, 1) },
    { name: 'pieces of 1 byte..1 MiB (seed 2)', sizes: randomSplit(bytes.length, 2) },
    { name: 'pieces of 1 byte..1 MiB (seed 3)', sizes: randomSplit(bytes.length, 3) },
    { name: 'pieces of 65521 bytes', sizes: evenSplit(bytes.length, 65521) },
    { name: 'pieces of exactly MIN', sizes: evenSplit(bytes.length, CHUNK_MIN_SIZE) },
    { name: 'pieces of exactly MAX', sizes: evenSplit(bytes.length, CHUNK_MAX_SIZE) },
  ])('finds the same cuts whatever the split: $name', ({ sizes }) => {
    expect(lengthsFedIn(split(bytes, sizes))).toEqual(whole);
  });

  it('finds the same cuts when fed one byte at a time', () => {
    const small = bytes.subarray(0, 300 * KiB);
    expect(lengthsFedIn(split(small, evenSplit(small.length, 1)))).toEqual(chunkLengths(small));
  });

  it('starts afresh after end()', () => {
    const boundaries = new ChunkBoundaries();
    boundaries.push(bytes.subarray(0, 100_000));
    boundaries.end();
    expect([...boundaries.push(bytes), ...boundaries.end()]).toEqual(whole);
  });
});

describe('fingerprint', () => {
  it('fingerprints empty content as size 0, no chunks and the hash of nothing', async () => {
    expect(await fingerprint(stream([]))).toEqual({
      contentHash: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      size: 0,
      chunks: [],
    });
  });

  it.each([
    { size: 1 },
    { size: CHUNK_MIN_SIZE - 1 },
    { size: CHUNK_MAX_SIZE + 1 },
    { size: MiB },
    { size: MiB + 1 },
    { size: 3 * MiB },
    { size: 7 * MiB },
    { size: BLOCK - 1 },
    { size: BLOCK },
    { size: BLOCK + 1 },
    { size: 3 * BLOCK },
    { size: 21 * MiB + 777 },
  ])('hashes each chunk and the whole content of $size bytes', async ({ size }) => {
    const bytes = pseudoRandomBytes(size, size);
    const result = await fingerprint(stream(split(bytes, randomSplit(size, 9))));
    expectValidFingerprint(result, bytes);
    expect(result.chunks.map((c) => c.length)).toEqual(chunkLengths(bytes));
  });

  it('gives the same fingerprint whatever the split of the stream', async () => {
    const bytes = pseudoRandomBytes(10 * MiB + 3, 5);
    const expected = await fingerprint(stream([bytes]));
    for (const seed of [1, 2, 3]) {
      expect(await fingerprint(stream(split(bytes, randomSplit(bytes.length, seed))))).toEqual(expected);
    }
    const small = bytes.subarray(0, 300 * KiB);
    expect(await fingerprint(stream(split(small, evenSplit(small.length, 1))))).toEqual(await fingerprint(stream([small])));
  });

  it('changes at most 2 chunks when 1 KiB is inserted in the middle of 100 MiB', async () => {
    const middle = random100MiB.length / 2;
    const edited = new Uint8Array(random100MiB.length + KiB);
    edited.set(random100MiB.subarray(0, middle));
    edited.set(pseudoRandomBytes(KiB, 99), middle);
    edited.set(random100MiB.subarray(middle), middle + KiB);

    const [before, after] = await Promise.all([fingerprint(stream([random100MiB])), fingerprint(stream([edited]))]);
    const known = new Map<string, number>();
    for (const { hash } of before.chunks) known.set(hash, (known.get(hash) ?? 0) + 1);
    let added = 0;
    for (const { hash } of after.chunks) {
      const left = known.get(hash) ?? 0;
      if (left > 0) known.set(hash, left - 1);
      else added++;
    }
    expect(added).toBeGreaterThan(0);
    expect(added).toBeLessThanOrEqual(2);
  });

  it('runs concurrent fingerprints without mixing their results', async () => {
    const contents = [1, 2, 3].map((seed) => pseudoRandomBytes(9 * MiB + seed, seed));
    const results = await Promise.all(contents.map((bytes, i) => fingerprint(stream(split(bytes, randomSplit(bytes.length, i))))));
    results.forEach((result, i) => expectValidFingerprint(result, contents[i]!));
  });

  it('copies what it needs, so a source may refill the same buffer for every piece', async () => {
    const bytes = pseudoRandomBytes(9 * MiB, 11);
    async function* reusingOneBuffer(): AsyncGenerator<Uint8Array> {
      const buffer = new Uint8Array(100_000);
      for (let offset = 0; offset < bytes.length; offset += buffer.length) {
        const piece = bytes.subarray(offset, offset + buffer.length);
        buffer.set(piece);
        yield buffer.subarray(0, piece.length);
      }
    }
    expectValidFingerprint(await fingerprint(reusingOneBuffer()), bytes);
  });

  it('rejects with the source error and keeps working for the next content', async () => {
    const bytes = pseudoRandomBytes(10 * MiB, 12);
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield bytes.subarray(0, 9 * MiB);
      throw new Error('disk on fire');
    }
    await expect(fingerprint(failing())).rejects.toThrow('disk on fire');
    expectValidFingerprint(await fingerprint(stream([bytes])), bytes);
  });

  it('fingerprintChunks gives the same chunks, without the content hash', async () => {
    const bytes = pseudoRandomBytes(9 * MiB, 13);
    const full = await fingerprint(stream([bytes]));
    expect(await fingerprintChunks(stream([bytes]))).toEqual({ ...full, contentHash: '' });
  });
});

describe('fingerprintFile', () => {
  it('fingerprints a corpus video exactly as fingerprint() does its bytes', async () => {
    const bytes = new Uint8Array(await readFile(corpusVideo));
    const fromFile = await fingerprintFile(corpusVideo);
    expect(fromFile).toEqual(await fingerprint(stream([bytes])));
    expectValidFingerprint(fromFile, bytes);
  });

  it('fingerprints files on both sides of the 1 MiB inline limit as fingerprint() does their bytes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pv-chunker-'));
    try {
      for (const size of [0, 1, 16 * KiB, 300 * KiB, MiB - 1, MiB, MiB + 1, 3 * MiB]) {
        const bytes = pseudoRandomBytes(size, size + 7);
        const path = join(dir, `f${size}`);
        await writeFile(path, bytes);
        const fromFile = await fingerprintFile(path);
        expect(fromFile).toEqual(await fingerprint(stream([bytes])));
        expectValidFingerprint(fromFile, bytes);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('fingerprints many small files at once, each its own (they share one thread)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pv-chunker-'));
    try {
      const contents = Array.from({ length: 40 }, (_, i) => pseudoRandomBytes(20 * KiB + i * 7_919, 400 + i));
      await Promise.all(contents.map((bytes, i) => writeFile(join(dir, `f${i}`), bytes)));
      const prints = await Promise.all(contents.map((_, i) => fingerprintFile(join(dir, `f${i}`))));
      for (const [i, bytes] of contents.entries()) expect(prints[i]).toEqual(await fingerprint(stream([bytes])));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("fails with the file system's own error for a missing file or a folder", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pv-chunker-'));
    try {
      await expect(fingerprintFile(join(dir, 'missing'))).rejects.toMatchObject({ code: 'ENOENT', syscall: 'open' });
      await expect(fingerprintFile(dir)).rejects.toMatchObject({ code: 'EISDIR' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
