/**
 * Chunking throughput against its peer, plain node:crypto SHA-256 over the same bytes: the
 * fingerprint has to hash every byte anyway, so SHA-256 is the speed to match.
 *
 *   npm run build && node dist/bench/chunking.bench.js
 *
 * Each figure is the best of several runs, in MiB/s of input.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { ChunkBoundaries, fingerprint, fingerprintChunks, fingerprintFile, type Fingerprint } from '../src/core/chunker.js';

const MiB = 1024 * 1024;
/** The size of the pieces the in-memory content is fed in, like a file stream's reads. */
const PIECE_SIZE = 1 * MiB;
/** The shared corpus sits next to the project: dist/bench/ -> project root -> ../shared. */
const corpusVideo = new URL('../../../shared/corpus/video/bbb-480p-30s.mp4', import.meta.url).pathname;

/** Seeded xorshift32 bytes: incompressible like photos and video, and the same on every run. */
function pseudoRandomBytes(size: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(size);
  const words = new Uint32Array(bytes.buffer, 0, size >>> 2);
  let x = seed >>> 0;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    words[i] = x;
  }
  return bytes;
}

async function* pieces(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < bytes.length; offset += PIECE_SIZE) {
    yield bytes.subarray(offset, offset + PIECE_SIZE);
  }
}

/** Best throughput of `runs` runs, in MiB/s. */
async function throughput(size: number, runs: number, run: () => unknown): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await run();
    best = Math.min(best, performance.now() - start);
  }
  return size / MiB / (best / 1000);
}

function sameChunks(a: Fingerprint, b: Fingerprint): boolean {
  return a.chunks.length === b.chunks.length && a.chunks.every((c, i) => c.hash === b.chunks[i]!.hash);
}

interface Row {
  content: string;
  sha256: number;
  boundaries: number;
  chunkHashes: number;
  full: number;
  fullFromFile?: number;
}

async function measure(content: string, bytes: Uint8Array, runs: number, file?: string): Promise<Row> {
  // Correctness first: a fast wrong answer is worth nothing.
  const expected = createHash('sha256').update(bytes).digest('hex');
  const full = await fingerprint(pieces(bytes));
  const chunksOnly = await fingerprintChunks(pieces(bytes));
  if (full.contentHash !== expected || !sameChunks(full, chunksOnly)) throw new Error(`${content}: fingerprints disagree`);

  const row: Row = {
    content,
    sha256: await throughput(bytes.length, runs, () => {
      const sha = createHash('sha256');
      for (let offset = 0; offset < bytes.length; offset += PIECE_SIZE) sha.update(bytes.subarray(offset, offset + PIECE_SIZE));
      return sha.digest('hex');
    }),
    boundaries: await throughput(bytes.length, runs, () => {
      const boundaries = new ChunkBoundaries();
      let count = 0;
      for (let offset = 0; offset < bytes.length; offset += PIECE_SIZE) {
        count += boundaries.push(bytes.subarray(offset, offset + PIECE_SIZE)).length;
      }
      return count + boundaries.end().length;
    }),
    chunkHashes: await throughput(bytes.length, runs, () => fingerprintChunks(pieces(bytes))),
    full: await throughput(bytes.length, runs, () => fingerprint(pieces(bytes))),
  };
  if (file !== undefined) row.fullFromFile = await throughput(bytes.length, runs, () => fingerprintFile(file));
  return row;
}

const randomSize = 512 * MiB;
const video = new Uint8Array(await readFile(corpusVideo));
const rows = [
  await measure(`pseudo-random ${randomSize / MiB} MiB`, pseudoRandomBytes(randomSize, 0x2545f491), 3),
  await measure(`bbb-480p-30s.mp4 ${(video.length / MiB).toFixed(1)} MiB`, video, 30, corpusVideo),
];

const lines: [string, (row: Row) => string][] = [
  ['sha-256, node:crypto (the peer)', (row) => mibs(row.sha256)],
  ['chunk boundaries only', (row) => mibs(row.boundaries)],
  ['boundaries + chunk hashes', (row) => mibs(row.chunkHashes)],
  ['full fingerprint (+ content hash)', (row) => mibs(row.full)],
  ['fingerprintFile (page cache)', (row) => mibs(row.fullFromFile)],
  ['boundaries + chunk hashes / sha-256', (row) => ratio(row.chunkHashes / row.sha256)],
  ['full fingerprint / sha-256', (row) => ratio(row.full / row.sha256)],
];
const width = Math.max(...rows.map((row) => row.content.length)) + 2;
console.log(`chunking throughput, MiB/s of input (best of several runs), ${PIECE_SIZE / MiB} MiB pieces`);
console.log(''.padEnd(38) + rows.map((row) => row.content.padStart(width)).join(''));
for (const [label, value] of lines) console.log(label.padEnd(38) + rows.map((row) => value(row).padStart(width)).join(''));

function mibs(value: number | undefined): string {
  return value === undefined ? '-' : value.toFixed(0);
}

function ratio(value: number): string {
  return `${value.toFixed(2)}x`;
}
