import { createHash, type Hash } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { PvError } from '../../core/errors.js';
import type { Bucket } from './blob-store.js';
import { STAGING_DIR } from './blob-checks.js';
import type { FsBlobStore } from './fs.blob-store.js';
import { assertUploadId, isUploadId, type StagingArea } from './staging-area.js';

const READ_BLOCK = 4 * 1024 * 1024;
/**
 * An upload's chunks arrive as hundreds of PUTs in a row; keeping its file open spares each two
 * of its three file operations (and their thread-pool round trips). Closed after a short idle.
 */
const IDLE_CLOSE_MS = 5_000;
const MAX_OPEN_FILES = 64;
/**
 * Read blocks kept for the next hash. A fresh 4 MiB buffer per commit counts as external memory
 * to V8, which answers a stream of them with a full mark-compact every few commits.
 */
const SPARE_BLOCKS_KEPT = 4;
const spareBlocks: Buffer[] = [];

type Handle = Awaited<ReturnType<typeof open>>;

/**
 * The SHA-256 of an upload's bytes from offset 0 up to `position`, kept as they are written in
 * order (a file's chunks mostly arrive so), so that promotion reads back only what came out of
 * order, usually nothing. `end` is the furthest byte written. Only for staging this process
 * created: a file left by an earlier run (or one whose hashed bytes were written again) is read
 * back whole, as it may hold bytes this process never saw.
 */
interface RunningHash {
  hash: Hash;
  position: number;
  end: number;
}

/**
 * One sparse file per upload in `<uploads bucket>/.staging`: each chunk is written once at its
 * offsets, and promotion renames the file into the bucket, so the bytes of a new file are written
 * once and never copied. Same filesystem as the bucket, so the rename is atomic.
 */
export class FsStagingArea implements StagingArea {
  private readonly dir: string;
  private readonly openFiles = new Map<string, { handle: Promise<Handle>; users: number; timer?: NodeJS.Timeout }>();
  /** Per upload: its running hash, or null when its bytes must be read back to be hashed. */
  private readonly running = new Map<string, RunningHash | null>();

  constructor(private readonly blobs: FsBlobStore) {
    this.dir = join(blobs.rootOf('uploads'), STAGING_DIR);
  }

  async write(uploadId: string, bytes: Uint8Array, offsets: number[]): Promise<void> {
    await this.withOpenFile(uploadId, async (handle) => {
      // Hashed before the writes start, so concurrent writes of one upload hash in call order.
      this.advance(uploadId, bytes, offsets);
      try {
        for (const offset of offsets) {
          for (let done = 0; done < bytes.length;)
            done += (await handle.write(bytes, done, bytes.length - done, offset + done)).bytesWritten;
        }
      } catch (error) {
        this.running.set(uploadId, null);
        throw error;
      }
    });
  }

  /** Feeds bytes written at these offsets to the upload's running hash, or gives it up. */
  private advance(uploadId: string, bytes: Uint8Array, offsets: number[]): void {
    const running = this.running.get(uploadId);
    if (!running) return;
    for (const offset of [...offsets].sort((a, b) => a - b)) {
      if (offset < running.position) {
        // Bytes already hashed are written again (a chunk resent after a crash damaged it): they may differ.
        this.running.set(uploadId, null);
        return;
      }
      if (offset === running.position) {
        running.hash.update(bytes);
        running.position += bytes.length;
      }
      running.end = Math.max(running.end, offset + bytes.length);
    }
  }

  async read(uploadId: string, offset: number, length: number): Promise<Buffer> {
    const bytes = Buffer.alloc(length);
    const handle = await this.openFile(uploadId);
    try {
      for (let done = 0; done < length;) {
        const { bytesRead } = await handle.read(bytes, done, length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return bytes;
    } finally {
      await handle.close();
    }
  }

  async digest(uploadId: string): Promise<{ sha256: string; size: number }> {
    const handle = await this.openFile(uploadId);
    try {
      return await this.hashOf(uploadId, handle);
    } finally {
      await handle.close();
    }
  }

  /** SHA-256 and size of the staged content: the running hash, completed with what it has not seen. */
  private async hashOf(uploadId: string, handle: Handle): Promise<{ sha256: string; size: number }> {
    const running = this.running.get(uploadId);
    // Copied: a failed promotion keeps the staging, and its running hash stays good.
    const hash = running ? running.hash.copy() : createHash('sha256');
    const start = running?.position ?? 0;
    if (running && running.end === running.position) return { sha256: hash.digest('hex'), size: running.position };
    const size = start + (await hashFrom(handle, hash, start));
    return { sha256: hash.digest('hex'), size };
  }

  async promote(uploadId: string, bucket: Bucket, key: string, expected: { sha256: string; size: number }): Promise<void> {
    // The handle the chunk writes used, if still open, saves an open and a close.
    const handle = (await this.takeCached(uploadId)) ?? (await this.openFile(uploadId));
    try {
      const actual = await this.hashOf(uploadId, handle);
      if (actual.sha256 !== expected.sha256 || actual.size !== expected.size) {
        throw new PvError('PV_INTEGRITY', `Staged content of upload ${uploadId} does not match.`, { expected, actual });
      }
      // Flushed before it gets its name: an object is never visible with bytes not on disk.
      await handle.sync();
    } finally {
      await handle.close();
    }
    this.running.delete(uploadId);
    if (bucket === 'uploads') {
      await this.blobs.installFile(bucket, key, this.fileOf(uploadId));
    } else {
      const source = await this.openFile(uploadId);
      await this.blobs.put(bucket, key, source.createReadStream(), expected);
      await this.discard(uploadId);
    }
  }

  async discard(uploadId: string): Promise<void> {
    this.running.delete(uploadId);
    await this.closeCached(uploadId);
    await rm(this.fileOf(uploadId), { force: true });
  }

  /** Closes every file kept open. */
  async close(): Promise<void> {
    await Promise.all([...this.openFiles.keys()].map((uploadId) => this.closeCached(uploadId)));
  }

  private async withOpenFile<T>(uploadId: string, work: (handle: Handle) => Promise<T>): Promise<T> {
    let entry = this.openFiles.get(uploadId);
    if (!entry) {
      if (this.openFiles.size >= MAX_OPEN_FILES) await this.closeCached(this.openFiles.keys().next().value!);
      entry = { handle: this.openForWriting(uploadId), users: 0 };
      this.openFiles.set(uploadId, entry);
      entry.handle.catch(() => this.openFiles.delete(uploadId));
    }
    clearTimeout(entry.timer);
    entry.users++;
    try {
      return await work(await entry.handle);
    } finally {
      entry.users--;
      if (entry.users === 0) {
        entry.timer = setTimeout(() => void this.closeCached(uploadId), IDLE_CLOSE_MS);
        entry.timer.unref();
      }
    }
  }

  private async closeCached(uploadId: string): Promise<void> {
    await (await this.takeCached(uploadId))?.close();
  }

  /** The upload's cached handle, out of the cache, once no write uses it; undefined if none is open. */
  private async takeCached(uploadId: string): Promise<Handle | undefined> {
    const entry = this.openFiles.get(uploadId);
    if (!entry) return undefined;
    this.openFiles.delete(uploadId);
    clearTimeout(entry.timer);
    // A write in flight holds the handle; it was taken out of the map, so nobody new gets it.
    while (entry.users > 0) await new Promise((resolve) => setImmediate(resolve));
    return entry.handle;
  }

  async *uploads(): AsyncIterable<string> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    yield* names.filter(isUploadId);
  }

  private fileOf(uploadId: string): string {
    assertUploadId(uploadId);
    return join(this.dir, uploadId);
  }

  /**
   * The upload's staging file for the chunk writes. One this process creates starts a running
   * hash; one that exists already (staged by an earlier run, or its handle closed after idling)
   * keeps the running hash it has, if any, and otherwise gets none.
   */
  private async openForWriting(uploadId: string): Promise<Handle> {
    if (this.running.has(uploadId)) return this.openFile(uploadId);
    try {
      const handle = await this.openFile(uploadId, constants.O_EXCL);
      this.running.set(uploadId, { hash: createHash('sha256'), position: 0, end: 0 });
      return handle;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      this.running.set(uploadId, null);
      return this.openFile(uploadId);
    }
  }

  /** The upload's staging file, created empty when nothing was staged yet (or a crash lost it). */
  private async openFile(uploadId: string, extraFlags = 0) {
    const file = this.fileOf(uploadId);
    const flags = constants.O_RDWR | constants.O_CREAT | extraFlags;
    return open(file, flags, 0o600).catch(async (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
      await mkdir(this.dir, { recursive: true });
      return open(file, flags, 0o600);
    });
  }
}

/** Feeds the file's bytes from start to its end to hash; returns how many there were. */
async function hashFrom(handle: Handle, hash: Hash, start: number): Promise<number> {
  const block = spareBlocks.pop() ?? Buffer.allocUnsafe(READ_BLOCK);
  let size = 0;
  try {
    for (;;) {
      const { bytesRead } = await handle.read(block, 0, READ_BLOCK, start + size);
      if (bytesRead === 0) break;
      hash.update(block.subarray(0, bytesRead));
      size += bytesRead;
    }
  } finally {
    if (spareBlocks.length < SPARE_BLOCKS_KEPT) spareBlocks.push(block);
  }
  return size;
}
