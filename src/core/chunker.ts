/**
 * Content-defined chunking for the transfer protocol (DESIGN.md §3): FastCDC with normalised
 * chunking (Xia et al., USENIX ATC 2016; IEEE TPDS 2020). Cut points depend only on nearby content,
 * so an insertion in the middle of a file changes only the chunks around it, and client and server
 * derive the same chunks from the same bytes.
 *
 * Everything that decides a cut point (sizes, masks, gear table, hash reset at MIN) is part of the
 * protocol: changing any of it changes every manifest, so it needs a new CHUNKER_VERSION.
 */
import { hash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { PvError } from './errors.js';
import { LazyThread, newJob } from './lazy-thread.js';

// Chunk sizes of protocol v1. 64 KiB on average keeps a 10 GiB video's manifest near 160k entries
// while an edit still re-sends little; MAX bounds the memory a server holds for one chunk PUT.
export const CHUNK_MIN_SIZE = 16 * 1024;
export const CHUNK_AVG_SIZE = 64 * 1024;
export const CHUNK_MAX_SIZE = 256 * 1024;
/** Names the cut-point rules below; a peer with another version cannot share chunks with us. */
export const CHUNKER_VERSION = 'fastcdc-v1-16k-64k-256k';

export interface ChunkRef {
  /** SHA-256 of the chunk bytes, lowercase hex. */
  hash: string;
  offset: number;
  length: number;
}

/** Content as a stream (file, request body) or, when already in memory, a plain array of pieces. */
export type ByteSource = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

export interface Fingerprint {
  /** SHA-256 of the whole content, lowercase hex. */
  contentHash: string;
  size: number;
  chunks: ChunkRef[];
}

// Normalised chunking, level 2: before the average size a cut needs 18 zero bits (two more than
// log2 of the average), after it 14 (two fewer), so sizes cluster around the average. The masks
// take the top bits because bit k of a gear hash depends on the last k + 1 bytes only: the top
// bits see the full 32-byte window.
const MASK_S = 0xffff_c000 | 0;
const MASK_L = 0xfffc_0000 | 0;

/**
 * The gear table, fixed forever: 256 words of xorshift32 (Marsaglia 2003, shifts 13/17/5) from
 * seed 0x5eedcdc1, regenerated identically at every load. Changing the seed, the generator or the
 * order is a protocol change. Int32Array because the hash arithmetic is int32 (`| 0`).
 */
const GEAR = gearTable(0x5eed_cdc1);

function gearTable(seed: number): Int32Array {
  const table = new Int32Array(256);
  let x = seed >>> 0;
  for (let i = 0; i < table.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    table[i] = x | 0;
  }
  return table;
}

/** Streaming cut-point finder: feed bytes in any split, get chunk lengths out. */
export class ChunkBoundaries {
  /** Bytes of the unfinished chunk seen so far. */
  #filled = 0;
  /** Gear hash of the unfinished chunk; it starts from 0 at offset MIN of every chunk. */
  #gear = 0;

  /** Lengths of the chunks that these bytes complete. */
  push(bytes: Uint8Array): number[] {
    // The scan loops live here rather than in a helper on purpose. Measured on Node 24: V8's
    // first optimising tier (Maglev) inlines a small helper into its caller and runs the loop 8x
    // slower there, for up to a gigabyte before TurboFan takes over; a loop in this function is
    // promoted to TurboFan (on-stack replacement) within a few megabytes.
    const lengths: number[] = [];
    const n = bytes.length;
    let filled = this.#filled;
    let gear = this.#gear;
    let i = 0;
    while (i < n) {
      if (filled < CHUNK_MIN_SIZE) {
        // No cut can fall in the first MIN bytes, so they are not even hashed.
        const skip = Math.min(CHUNK_MIN_SIZE - filled, n - i);
        i += skip;
        filled += skip;
        if (i === n) break;
      }
      const chunkStart = i - filled;
      let cut = -1;
      let end = Math.min(n, chunkStart + CHUNK_AVG_SIZE);
      for (; i < end; i++) {
        gear = ((gear << 1) + GEAR[bytes[i]!]!) | 0;
        if ((gear & MASK_S) === 0) {
          cut = i + 1;
          break;
        }
      }
      if (cut < 0) {
        end = Math.min(n, chunkStart + CHUNK_MAX_SIZE);
        for (; i < end; i++) {
          gear = ((gear << 1) + GEAR[bytes[i]!]!) | 0;
          if ((gear & MASK_L) === 0) {
            cut = i + 1;
            break;
          }
        }
        if (cut < 0 && i - chunkStart === CHUNK_MAX_SIZE) cut = i;
      }
      if (cut < 0) {
        filled = n - chunkStart;
        break;
      }
      lengths.push(cut - chunkStart);
      filled = 0;
      gear = 0;
      i = cut;
    }
    this.#filled = filled;
    this.#gear = gear;
    return lengths;
  }

  /** Length of the tail chunk, if any bytes are left over; resets for a new stream. */
  end(): number[] {
    const tail = this.#filled;
    this.#filled = 0;
    this.#gear = 0;
    return tail > 0 ? [tail] : [];
  }
}

/** Lengths of the chunks of one in-memory buffer. */
export function chunkLengths(bytes: Uint8Array): number[] {
  const boundaries = new ChunkBoundaries();
  return [...boundaries.push(bytes), ...boundaries.end()];
}

/** Cuts a byte stream into chunks and hashes each chunk and the whole content. */
export async function fingerprint(source: ByteSource): Promise<Fingerprint> {
  return fingerprintStream(source, true);
}

/** fingerprint() without the whole-content hash (contentHash is ''), for the chunking benchmark. */
export async function fingerprintChunks(source: ByteSource): Promise<Fingerprint> {
  return fingerprintStream(source, false);
}

async function fingerprintStream(source: ByteSource, withContentHash: boolean): Promise<Fingerprint> {
  const builder = new FingerprintBuilder(withContentHash);
  try {
    for await (const piece of source) {
      let done = 0;
      while (done < piece.length) {
        const space = await builder.space();
        const n = Math.min(space.length, piece.length - done);
        space.set(piece.subarray(done, done + n));
        builder.commit(n);
        done += n;
      }
    }
    return await builder.finish();
  } finally {
    builder.dispose();
  }
}

/**
 * fingerprint() of a file on disk. One smaller than the first dispatch (most photos) is read,
 * cut and hashed whole on the small-file thread, leaving the caller's event loop free for the
 * transfers that run beside a scan; a larger one is read here in large blocks and hashed by the
 * hash threads.
 */
export async function fingerprintFile(path: string): Promise<Fingerprint> {
  const small = await fingerprintSmallFile(path);
  if (small !== undefined) return small;
  const file = await open(path, 'r');
  const builder = new FingerprintBuilder(true);
  try {
    for (;;) {
      // Read straight into the shared block the hashing threads will see: no copy.
      const space = await builder.space();
      const { bytesRead } = await file.read(space, 0, space.length, null);
      if (bytesRead === 0) break;
      builder.commit(bytesRead);
    }
    return await builder.finish();
  } finally {
    builder.dispose();
    await file.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Hashing in parallel with the scan.
//
// The main thread copies the content into shared blocks and finds the cut points; one worker
// thread hashes the chunks of each block and another the whole content, so the three run on
// separate cores. Streamed content that fits in the first block is hashed on the main thread:
// for it a thread round trip costs more than it saves. (A small file on disk goes whole to the
// small-file thread, below.)

const BLOCK_SIZE = 4 * 1024 * 1024;
/**
 * How much of the first block is filled before it goes to the hash threads; each later block
 * takes twice as much, up to BLOCK_SIZE. Small first blocks let the threads start early on
 * photo-sized files (a 4 MiB file fingerprints ~1.5x faster than with 4 MiB blocks throughout);
 * large later blocks keep the per-message cost low on big files.
 */
const FIRST_DISPATCH_SIZE = 1024 * 1024;
/**
 * Blocks one fingerprint may have in flight. Three busy threads share two cores here; slack of a
 * few blocks keeps one descheduled thread from stalling the others (measured: 6 beat 4 by ~5%).
 */
const BLOCKS_PER_JOB = 6;
/**
 * Idle blocks kept for the next fingerprint (16 MiB): enough for a photo-sized file, so a run of
 * them allocates nothing. Fresh memory is not free: first-touch page faults cost more than the
 * hashing on some VMs.
 */
const SPARE_BLOCKS_KEPT = 4;
const spareBlocks: SharedArrayBuffer[] = [];

interface Block {
  readonly slot: number;
  readonly buffer: SharedArrayBuffer;
  readonly bytes: Uint8Array;
  /** Hash threads that have not yet finished with this block. */
  readers: number;
}

interface HashRequest {
  kind: 'chunks' | 'content' | 'abort';
  job: number;
  slot: number;
  buffer?: SharedArrayBuffer;
  length: number;
  /** kind 'chunks': offsets in the block where chunks end; bytes after the last carry over. */
  ends?: number[];
  last: boolean;
}

interface HashReply {
  job: number;
  slot: number;
  hashes?: string[];
  digest?: string;
}

/** Runs in each hash thread. Plain JavaScript: it is evaluated as is, not compiled. */
const HASH_THREAD_SOURCE = `
'use strict';
const { parentPort } = require('node:worker_threads');
const { createHash, hash } = require('node:crypto');
// job -> running hash: of a chunk that continues into the next block, or of the content so far.
const running = new Map();
parentPort.on('message', ({ kind, job, slot, buffer, length, ends, last }) => {
  if (kind === 'abort') return void running.delete(job);
  const bytes = buffer === undefined ? new Uint8Array(0) : new Uint8Array(buffer, 0, length);
  let open = running.get(job);
  running.delete(job);
  if (kind === 'content') {
    open ??= createHash('sha256');
    open.update(bytes);
    if (last) return void parentPort.postMessage({ job, slot, digest: open.digest('hex') });
    running.set(job, open);
    return void parentPort.postMessage({ job, slot });
  }
  const hashes = [];
  let start = 0;
  for (const end of ends) {
    const chunk = bytes.subarray(start, end);
    hashes.push(open === undefined ? hash('sha256', chunk) : open.update(chunk).digest('hex'));
    open = undefined;
    start = end;
  }
  if (start < bytes.length) running.set(job, (open ?? createHash('sha256')).update(bytes.subarray(start)));
  parentPort.postMessage({ job, slot, hashes });
});
`;

const chunkHashThread = new LazyThread<HashRequest, HashReply>(HASH_THREAD_SOURCE);
const contentHashThread = new LazyThread<HashRequest, HashReply>(HASH_THREAD_SOURCE);

// ---------------------------------------------------------------------------------------------
// Small files, on a thread of their own.
//
// A file smaller than the first dispatch would be hashed on the main thread anyway: the
// small-file thread reads it whole, cuts and hashes it, and answers with its fingerprint. It runs
// the very ChunkBoundaries class of this module (its source goes into the thread's), so the cut
// points cannot drift apart. Measured on the initial-sync bench (2,000 files of 64-448 KiB): this
// was 1.2 s of the uploading daemon's main thread, which its uploads then waited for.

interface SmallFileReply {
  job: number;
  /** Absent when the file is not small (any more): the caller reads it the general way. */
  fingerprint?: Fingerprint;
  /** The file system's error, as plain data (errors do not cross threads whole). */
  error?: { message: string; code?: string; syscall?: string; path?: string; errno?: number };
}

const SMALL_FILE_THREAD_SOURCE = `
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const { hash } = require('node:crypto');
const { closeSync, fstatSync, openSync, readSync } = require('node:fs');
const { CHUNK_MIN_SIZE, CHUNK_AVG_SIZE, CHUNK_MAX_SIZE, MASK_S, MASK_L, GEAR, limit } = workerData;
${ChunkBoundaries.toString()}
// One byte more than the limit tells a file that grew past it from one that just fits.
const bytes = Buffer.allocUnsafe(limit + 1);
function fingerprint(fd) {
  if (fstatSync(fd).size >= limit) return undefined;
  let filled = 0;
  for (;;) {
    const read = readSync(fd, bytes, filled, bytes.length - filled, filled);
    if (read === 0) break;
    filled += read;
    if (filled === bytes.length) return undefined;
  }
  const content = bytes.subarray(0, filled);
  const boundaries = new ChunkBoundaries();
  const chunks = [];
  let offset = 0;
  for (const length of [...boundaries.push(content), ...boundaries.end()]) {
    chunks.push({ hash: hash('sha256', content.subarray(offset, offset + length)), offset, length });
    offset += length;
  }
  return { contentHash: hash('sha256', content), size: filled, chunks };
}
parentPort.on('message', ({ job, path }) => {
  let fd;
  try {
    fd = openSync(path, 'r');
    parentPort.postMessage({ job, fingerprint: fingerprint(fd) });
  } catch (error) {
    const { message, code, syscall, errno } = error;
    parentPort.postMessage({ job, error: { message, code, syscall, path: error.path, errno } });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
});
`;

const smallFileThread = new LazyThread<{ job: number; path: string }, SmallFileReply>(SMALL_FILE_THREAD_SOURCE, {
  CHUNK_MIN_SIZE,
  CHUNK_AVG_SIZE,
  CHUNK_MAX_SIZE,
  MASK_S,
  MASK_L,
  GEAR,
  limit: FIRST_DISPATCH_SIZE,
});

/** The fingerprint of a small file, from the small-file thread; undefined for a larger one. */
async function fingerprintSmallFile(path: string): Promise<Fingerprint | undefined> {
  const { fingerprint, error } = await smallFileThread.ask({ path });
  if (error) throw Object.assign(new Error(error.message), error);
  return fingerprint;
}

/** Collects content into blocks, cuts it and gets the cuts hashed, inline or by the hash threads. */
class FingerprintBuilder {
  readonly #job = newJob();
  readonly #withContentHash: boolean;
  readonly #boundaries = new ChunkBoundaries();
  readonly #chunks: ChunkRef[] = [];
  #size = 0;
  /** Content offset where the last chunk cut so far ends. */
  #cutUpTo = 0;
  #contentHash = '';

  readonly #blocks: Block[] = [];
  readonly #free: Block[] = [];
  #current: Block | undefined;
  #filled = 0;
  /** Fill level at which the current block is handed to the hash threads. */
  #dispatchAt = FIRST_DISPATCH_SIZE;
  /** Content offset of the current block's first byte. */
  #blockOffset = 0;
  /** Where chunks end in the current block. */
  #ends: number[] = [];

  #threaded = false;
  /** Requests posted to the hash threads and not yet answered. */
  #awaitedReplies = 0;
  /** Chunks whose hashes came back from the chunk hash thread. */
  #hashed = 0;
  #failure: Error | undefined;
  #wake: (() => void) | undefined;

  constructor(withContentHash: boolean) {
    this.#withContentHash = withContentHash;
  }

  /** Free space in the current block; write into it, then commit(). */
  async space(): Promise<Uint8Array> {
    this.#current ??= await this.#acquire();
    return this.#current.bytes.subarray(this.#filled, this.#dispatchAt);
  }

  /** Takes the next n bytes written into space(). */
  commit(n: number): void {
    const block = this.#current!;
    this.#cut(this.#boundaries.push(block.bytes.subarray(this.#filled, this.#filled + n)));
    this.#filled += n;
    this.#size += n;
    if (this.#filled === this.#dispatchAt) this.#dispatch(false);
  }

  async finish(): Promise<Fingerprint> {
    this.#cut(this.#boundaries.end());
    if (this.#threaded) {
      this.#dispatch(true);
      while (this.#awaitedReplies > 0) await this.#nextReply();
    } else {
      this.#hashInline();
    }
    return { contentHash: this.#contentHash, size: this.#size, chunks: this.#chunks };
  }

  /** Frees the threads' state for this job and keeps the idle blocks for later fingerprints. */
  dispose(): void {
    if (this.#threaded) {
      const abort: HashRequest = { kind: 'abort', job: this.#job, slot: -1, length: 0, last: true };
      chunkHashThread.detach(this.#job, abort);
      contentHashThread.detach(this.#job, abort);
    }
    // A block a thread may still be reading is left to the garbage collector, never reused.
    for (const block of this.#blocks) {
      if (block.readers === 0 && spareBlocks.length < SPARE_BLOCKS_KEPT) spareBlocks.push(block.buffer);
    }
    this.#blocks.length = 0;
    this.#free.length = 0;
    this.#current = undefined;
  }

  receive(reply: HashReply): void {
    for (const chunkHash of reply.hashes ?? []) this.#chunks[this.#hashed++]!.hash = chunkHash;
    if (reply.digest !== undefined) this.#contentHash = reply.digest;
    this.#awaitedReplies--;
    const block = this.#blocks[reply.slot];
    if (block !== undefined && --block.readers === 0) this.#free.push(block);
    this.#wakeUp();
  }

  fail(error: Error): void {
    this.#failure ??= error;
    this.#wakeUp();
  }

  #cut(lengths: number[]): void {
    for (const length of lengths) {
      this.#chunks.push({ hash: '', offset: this.#cutUpTo, length });
      this.#cutUpTo += length;
      this.#ends.push(this.#cutUpTo - this.#blockOffset);
    }
  }

  #hashInline(): void {
    const bytes = this.#current?.bytes.subarray(0, this.#filled) ?? new Uint8Array(0);
    for (const chunk of this.#chunks) {
      chunk.hash = hash('sha256', bytes.subarray(chunk.offset, chunk.offset + chunk.length));
    }
    if (this.#withContentHash) this.#contentHash = hash('sha256', bytes);
  }

  #dispatch(last: boolean): void {
    if (!this.#threaded) {
      this.#threaded = true;
      chunkHashThread.attach(this.#job, this);
      if (this.#withContentHash) contentHashThread.attach(this.#job, this);
    }
    const block = this.#current;
    const request = {
      job: this.#job,
      slot: block?.slot ?? -1,
      buffer: block?.buffer,
      length: this.#filled,
      last,
    };
    const readers = this.#withContentHash ? 2 : 1;
    if (block !== undefined) block.readers = readers;
    this.#awaitedReplies += readers;
    chunkHashThread.post({ ...request, kind: 'chunks', ends: this.#ends });
    if (this.#withContentHash) contentHashThread.post({ ...request, kind: 'content' });
    this.#current = undefined;
    this.#blockOffset += this.#filled;
    this.#filled = 0;
    this.#dispatchAt = Math.min(BLOCK_SIZE, 2 * this.#dispatchAt);
    this.#ends = [];
  }

  async #acquire(): Promise<Block> {
    for (;;) {
      if (this.#failure !== undefined) throw this.#failure;
      const free = this.#free.pop();
      if (free !== undefined) return free;
      if (this.#blocks.length < BLOCKS_PER_JOB) {
        const buffer = spareBlocks.pop() ?? new SharedArrayBuffer(BLOCK_SIZE);
        const block = { slot: this.#blocks.length, buffer, bytes: new Uint8Array(buffer), readers: 0 };
        this.#blocks.push(block);
        return block;
      }
      await this.#nextReply();
    }
  }

  async #nextReply(): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure;
    await new Promise<void>((resolve) => (this.#wake = resolve));
    if (this.#failure !== undefined) throw this.#failure;
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}
