import { randomUUID } from 'node:crypto';
import { closeSync, createReadStream, type Dirent, fstatSync, fsync, mkdirSync, openSync, readSync, renameSync, writeSync } from 'node:fs';
import { mkdir, opendir, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { PvError } from '../../core/errors.js';
import { ownScratchFolder, removeAbandonedScratch } from '../process/scratch-folders.js';
import {
  assertBlobKey,
  assertBucket,
  assertByteRange,
  blobNotFound,
  isBlobKey,
  isKeySegment,
  isReservedSegment,
  PutCheck,
  rangePastEnd,
  TMP_DIR,
} from './blob-checks.js';
import { BUCKETS, type BlobInfo, type BlobStore, type Bucket, type ByteRange, type PutOptions, type PutResult } from './blob-store.js';

/** The default bucket directories: `<dataDir>/blobs/<bucket>`. */
export function fsBucketRoots(dataDir: string): Record<Bucket, string> {
  return Object.fromEntries(BUCKETS.map((bucket) => [bucket, join(dataDir, 'blobs', bucket)])) as Record<Bucket, string>;
}

function errorCode(error: unknown): unknown {
  return (error as NodeJS.ErrnoException | null)?.code;
}

/** ENOENT, or ENOTDIR when a parent of the path is a file: either way there is no object. */
function isAbsent(error: unknown): boolean {
  const code = errorCode(error);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * Bytes per read of an object: a photo-sized one in a read or two, where Node's default of
 * 64 KiB took five, each a trip through the thread pool and the stream machinery.
 */
const READ_PIECE_BYTES = 256 * 1024;

/**
 * Objects (and ranges) up to this size are read whole, in one synchronous call: a stream's trips
 * through the thread pool cost more CPU than the read, and the event loop waits for one read
 * at most (1 MiB from the page cache into a new buffer: ~3 ms on the development machine).
 */
const SMALL_OBJECT_BYTES = 1024 * 1024;

/**
 * The store's file calls are synchronous but for fsync, which waits for the disk and so goes
 * through the thread pool: the others take a few µs on the page cache, where each trip through
 * the pool costs ~35 µs of CPU and a thread wakeup (docs/architecture.md, "File system calls").
 */
const flush = promisify(fsync);

async function fsyncDir(dir: string): Promise<void> {
  const fd = openSync(dir, 'r');
  try {
    await flush(fd);
  } finally {
    closeSync(fd);
  }
}

/** Opens a file for writing that must not exist yet, making its folder when that is missing. */
function openNew(path: string): number {
  try {
    return openSync(path, 'wx');
  } catch (error) {
    if (!isAbsent(error)) throw error;
    mkdirSync(dirname(path), { recursive: true });
    return openSync(path, 'wx');
  }
}

/** Bytes [start, end) of an open file, read synchronously (SMALL_OBJECT_BYTES at most). */
function readWhole(fd: number, start: number, end: number): Buffer {
  const bytes = Buffer.allocUnsafe(end - start);
  for (let filled = 0; filled < bytes.length;) {
    const read = readSync(fd, bytes, filled, bytes.length - filled, start + filled);
    if (read === 0) return bytes.subarray(0, filled); // truncated under us: the reader's checks catch it
    filled += read;
  }
  return bytes;
}

/**
 * BlobStore over local directories, one per bucket (each may sit on its own disk). Puts in progress
 * live in `<root>/.tmp/<pid>`: inside the bucket root, so on the same filesystem and rename is
 * atomic, and never visible to get, head or list (keys under `.tmp` are rejected).
 */
export class FsBlobStore implements BlobStore {
  private readonly roots: Record<Bucket, string>;

  constructor(options: { roots: Record<Bucket, string> }) {
    const roots = {} as Record<Bucket, string>;
    for (const bucket of BUCKETS) {
      const root = options.roots[bucket];
      if (typeof root !== 'string' || root === '') {
        throw new PvError('PV_CONFIG_INVALID', `No directory for blob bucket ${bucket}`, { bucket });
      }
      roots[bucket] = resolve(root);
    }
    // Buckets sharing or nesting directories would see each other's objects in list.
    for (const a of BUCKETS) {
      for (const b of BUCKETS) {
        const rel = relative(roots[a], roots[b]);
        if (a !== b && (rel === '' || rel.split(sep)[0] !== '..')) {
          throw new PvError('PV_CONFIG_INVALID', `Blob bucket ${b} lies inside bucket ${a}`, {
            roots,
            fix: 'Give each bucket its own directory, none inside another',
          });
        }
      }
    }
    this.roots = roots;
  }

  /**
   * Creates the bucket directories and removes temp files left by puts that a crash interrupted.
   * Each process puts through a temp folder of its own (a server and its worker processes share
   * the data dir), so only folders of processes that are gone are removed.
   */
  static async open(roots: Record<Bucket, string>): Promise<FsBlobStore> {
    const store = new FsBlobStore({ roots });
    for (const bucket of BUCKETS) {
      const tmp = join(store.roots[bucket], TMP_DIR);
      await removeAbandonedScratch(tmp);
      await mkdir(ownScratchFolder(tmp), { recursive: true });
    }
    return store;
  }

  /**
   * Crash-safety ordering: (1) stream into `.tmp/<pid>/<uuid>`, hashing as we go; (2) fsync the temp file,
   * so its bytes are on disk before any name points at them; (3) verify sha256/size; (4) rename
   * into place, atomically replacing any previous object; (5) fsync the parent directory (and any
   * directory mkdir just created) so the rename itself survives power loss. A crash before (4)
   * leaves only a temp file, removed by the next `open`; after (4) readers see the whole new object.
   * A non-durable put skips (2) and (5): still atomic for readers, not flushed.
   */
  async put(bucket: Bucket, key: string, body: Readable | AsyncIterable<Uint8Array>, options: PutOptions = {}): Promise<PutResult> {
    const target = this.pathOf(bucket, key);
    const durable = options.durable ?? true;
    const tmpDir = ownScratchFolder(join(this.roots[bucket], TMP_DIR));
    const tmp = join(tmpDir, randomUUID());
    const check = new PutCheck(bucket, key, options);
    try {
      // The common case pays no mkdir: the temp folder exists once open() or a first put made it.
      const fd = openNew(tmp);
      try {
        for await (const chunk of body) {
          check.update(chunk);
          for (let offset = 0; offset < chunk.length;) offset += writeSync(fd, chunk, offset);
        }
        if (durable) await flush(fd);
      } finally {
        closeSync(fd);
      }
      const result = check.finish();
      await this.#install(tmp, target, durable);
      return result;
    } catch (error) {
      await rm(tmp, { force: true });
      throw error;
    }
  }

  /**
   * Makes a finished, flushed file on the same filesystem the object at bucket/key, by rename:
   * how a staged upload becomes its object without copying (see FsStagingArea).
   */
  async installFile(bucket: Bucket, key: string, file: string): Promise<void> {
    await this.#install(file, this.pathOf(bucket, key), true);
  }

  async #install(file: string, target: string, durable: boolean): Promise<void> {
    const dir = dirname(target);
    let firstCreated: string | undefined;
    try {
      renameSync(file, target);
    } catch (error) {
      if (!isAbsent(error)) throw error;
      firstCreated = mkdirSync(dir, { recursive: true });
      renameSync(file, target);
    }
    if (durable) {
      const lastToSync = firstCreated === undefined ? dir : dirname(firstCreated);
      for (let d = dir; ; d = dirname(d)) {
        await fsyncDir(d);
        if (d === lastToSync || d === dirname(d)) break;
      }
    }
  }

  async get(bucket: Bucket, key: string, range?: ByteRange): Promise<Readable> {
    const path = this.pathOf(bucket, key);
    if (range !== undefined) assertByteRange(range);
    // Open first and stat the descriptor: the caller gets not-found from this call, and the
    // stream reads the very file we checked even if the key is replaced or deleted meanwhile.
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (error) {
      throw isAbsent(error) || errorCode(error) === 'EISDIR' ? blobNotFound(bucket, key) : error;
    }
    let streaming = false;
    try {
      const info = fstatSync(fd);
      if (!info.isFile()) throw blobNotFound(bucket, key);
      const start = range?.start ?? 0;
      if (range !== undefined && start >= info.size) throw rangePastEnd(bucket, key, range, info.size);
      const end = Math.min(range?.end ?? Infinity, info.size - 1);
      if (end - start + 1 <= SMALL_OBJECT_BYTES) return Readable.from([readWhole(fd, start, end + 1)], { objectMode: false });
      // Bounded by the size: no read past the end just to find it, and each read sized to what is left.
      const stream = createReadStream('', { fd, start, end, highWaterMark: READ_PIECE_BYTES });
      streaming = true; // the stream closes the descriptor from here on
      return stream;
    } finally {
      if (!streaming) closeSync(fd);
    }
  }

  async head(bucket: Bucket, key: string): Promise<BlobInfo | null> {
    const path = this.pathOf(bucket, key);
    try {
      const info = await stat(path);
      return info.isFile() ? { key, size: info.size } : null;
    } catch (error) {
      if (isAbsent(error)) return null;
      throw error;
    }
  }

  // Empty parent directories are left in place: removing them would race a concurrent put that
  // has created the directory but not yet renamed its file into it.
  async delete(bucket: Bucket, key: string): Promise<void> {
    const path = this.pathOf(bucket, key);
    try {
      await unlink(path);
    } catch (error) {
      if (isAbsent(error)) return;
      // unlink of a directory fails with EISDIR (Linux) or EPERM (macOS): the key names a
      // directory of other keys, not an object.
      const code = errorCode(error);
      if ((code === 'EISDIR' || code === 'EPERM') && (await stat(path)).isDirectory()) return;
      throw error;
    }
  }

  async *list(bucket: Bucket, prefix = ''): AsyncIterable<BlobInfo> {
    const root = this.rootOf(bucket);
    // Walk only the directory the prefix fully names; the rest of it filters that directory's
    // entries. A directory part that is no valid key can match nothing (and never escapes root).
    const slash = prefix.lastIndexOf('/');
    const dirKey = slash < 0 ? '' : prefix.slice(0, slash);
    const namePrefix = prefix.slice(slash + 1);
    if (slash >= 0 && !isBlobKey(dirKey)) return;
    const start = dirKey === '' ? root : join(root, ...dirKey.split('/'));
    yield* this.walk(start, dirKey, (entry) => entry.name.startsWith(namePrefix) && !(dirKey === '' && isReservedSegment(entry.name)));
  }

  async close(): Promise<void> {}

  private async *walk(dir: string, dirKey: string, accept: (entry: Dirent) => boolean = () => true): AsyncGenerator<BlobInfo> {
    let entries: AsyncIterable<Dirent>;
    try {
      entries = await opendir(dir);
    } catch (error) {
      if (isAbsent(error)) return;
      throw error;
    }
    for await (const entry of entries) {
      if (!isKeySegment(entry.name) || !accept(entry)) continue;
      const key = dirKey === '' ? entry.name : `${dirKey}/${entry.name}`;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        yield* this.walk(path, key);
      } else if (entry.isFile()) {
        const info = await stat(path).catch((error: unknown) => {
          if (isAbsent(error)) return null; // deleted while we walked
          throw error;
        });
        if (info !== null) yield { key, size: info.size };
      }
    }
  }

  /** The root folder of a bucket. */
  rootOf(bucket: Bucket): string {
    assertBucket(bucket);
    return this.roots[bucket];
  }

  /** The file of a key; validates bucket and key before anything touches the disk. */
  private pathOf(bucket: Bucket, key: string): string {
    const root = this.rootOf(bucket);
    assertBlobKey(key);
    return join(root, ...key.split('/'));
  }
}
