import { createHash } from 'node:crypto';
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
 * One sparse file per upload in `<uploads bucket>/.staging`: each chunk is written once at its
 * offsets, and promotion renames the file into the bucket, so the bytes of a new file are written
 * once and never copied. Same filesystem as the bucket, so the rename is atomic.
 */
export class FsStagingArea implements StagingArea {
  private readonly dir: string;
  private readonly openFiles = new Map<string, { handle: Promise<Handle>; users: number; timer?: NodeJS.Timeout }>();

  constructor(private readonly blobs: FsBlobStore) {
    this.dir = join(blobs.rootOf('uploads'), STAGING_DIR);
  }

  async write(uploadId: string, bytes: Uint8Array, offsets: number[]): Promise<void> {
    await this.withOpenFile(uploadId, async (handle) => {
      for (const offset of offsets) {
        for (let done = 0; done < bytes.length;) done += (await handle.write(bytes, done, bytes.length - done, offset + done)).bytesWritten;
      }
    });
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
      return await hashOf(handle);
    } finally {
      await handle.close();
    }
  }

  async promote(uploadId: string, bucket: Bucket, key: string, expected: { sha256: string; size: number }): Promise<void> {
    // The handle the chunk writes used, if still open, saves an open and a close.
    const handle = (await this.takeCached(uploadId)) ?? (await this.openFile(uploadId));
    try {
      const actual = await hashOf(handle);
      if (actual.sha256 !== expected.sha256 || actual.size !== expected.size) {
        throw new PvError('PV_INTEGRITY', `Staged content of upload ${uploadId} does not match.`, { expected, actual });
      }
      // Flushed before it gets its name: an object is never visible with bytes not on disk.
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (bucket === 'uploads') {
      await this.blobs.installFile(bucket, key, this.fileOf(uploadId));
    } else {
      const source = await this.openFile(uploadId);
      await this.blobs.put(bucket, key, source.createReadStream(), expected);
      await this.discard(uploadId);
    }
  }

  async discard(uploadId: string): Promise<void> {
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
      entry = { handle: this.openFile(uploadId), users: 0 };
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

  /** The upload's staging file, created empty when nothing was staged yet (or a crash lost it). */
  private async openFile(uploadId: string) {
    const file = this.fileOf(uploadId);
    const flags = constants.O_RDWR | constants.O_CREAT;
    return open(file, flags, 0o600).catch(async (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
      await mkdir(this.dir, { recursive: true });
      return open(file, flags, 0o600);
    });
  }
}

async function hashOf(handle: Awaited<ReturnType<typeof open>>): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  const block = spareBlocks.pop() ?? Buffer.allocUnsafe(READ_BLOCK);
  let size = 0;
  try {
    for (;;) {
      const { bytesRead } = await handle.read(block, 0, READ_BLOCK, size);
      if (bytesRead === 0) break;
      hash.update(block.subarray(0, bytesRead));
      size += bytesRead;
    }
  } finally {
    if (spareBlocks.length < SPARE_BLOCKS_KEPT) spareBlocks.push(block);
  }
  return { sha256: hash.digest('hex'), size };
}
