import { createHash } from 'node:crypto';
import { closeSync, fsync, openSync, writevSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import { isPvError } from '../core/errors.js';
import type { FileRecord } from '../core/file-records.js';
import { inSizedGroups, runPool } from '../core/pool.js';
import type { ContentRecordHeader, FileVersionView, VersionManifest } from '../core/protocol.js';
import { WHOLE_FILES_PER_REQUEST_MAX } from '../core/protocol-limits.js';
import type { ApiClient } from './api-client.js';
import { tempPathBeside } from './downloader.js';

/** A file to fetch whole: the version its prefetched manifest names, and the local path it goes to. */
export interface WholeFileWanted {
  remotePath: string;
  /** Absolute local path. */
  target: string;
  fetched: VersionManifest;
}

/** A file fetched whole into a temp file beside its target, to be renamed into place when its change is applied. */
export interface FetchedWholeFile {
  temp: string;
  version: FileVersionView;
  /** The version's compact manifest, base64, for the local index. */
  manifest: string;
}

/**
 * Requests of POST /files/contents in flight at once: while one body is being written to disk,
 * the next is on its way, and the server reads objects for a third.
 */
const CONTENTS_REQUESTS_IN_FLIGHT = 3;

/** Content bytes one request asks for, about: a request is then a few hundred milliseconds even on a slow link. */
const CONTENTS_REQUEST_BYTES = 8 * 1024 * 1024;

/**
 * Files being fetched whole, many per request (POST /files/contents), each into a temp file beside
 * its target, checked against its content hash and flushed. Each can be taken as soon as it is
 * written, so the changes of a page are applied while its later files are still on their way.
 */
export class WholeFetch {
  /** By remote path: the file once written, or null once it is known not to come. */
  readonly #files = new Map<string, PromiseWithResolvers<FetchedWholeFile | null>>();
  /** Written and not taken: removed by discard(). */
  readonly #untaken = new Map<string, FetchedWholeFile>();
  /**
   * Settles once every request has ended: with the error that stopped them all, if one did
   * (PV_NOT_FOUND: the server has no such route; an expired session), else null. Never rejects.
   */
  readonly finished: Promise<{ error: unknown } | null>;

  constructor(api: ApiClient, files: WholeFileWanted[]) {
    for (const file of files) this.#files.set(file.remotePath, Promise.withResolvers());
    const folders = new FolderMaker();
    const written = (file: WholeFileWanted, fetched: FetchedWholeFile | null) => {
      if (fetched) this.#untaken.set(file.remotePath, fetched);
      this.#files.get(file.remotePath)!.resolve(fetched);
    };
    this.finished = runPool(contentsRequests(files), CONTENTS_REQUESTS_IN_FLIGHT, (request) =>
      fetchRequest(api, request, written, folders),
    ).then(
      () => null,
      (error: unknown) => ({ error }),
    );
    // A file no body brought (a failed request, a record without content) is downloaded alone.
    void this.finished.then(() => {
      for (const file of this.#files.values()) file.resolve(null);
    });
  }

  /**
   * The file fetched for this path, once written, if it holds this version; it is then the
   * caller's. null, at once, for a path not asked for.
   */
  async take(remotePath: string, versionId: string): Promise<FetchedWholeFile | null> {
    const fetched = await this.#files.get(remotePath)?.promise;
    if (fetched?.version.id !== versionId) return null;
    this.#untaken.delete(remotePath);
    return fetched;
  }

  /** Waits for the requests to end, then removes the temp files of the files nobody took. */
  async discard(): Promise<void> {
    await this.finished;
    for (const file of this.#untaken.values()) await rm(file.temp, { force: true });
    this.#untaken.clear();
  }
}

/** The files in requests of at most 64 files and about 8 MiB, in the order given. */
export function contentsRequests<T extends { fetched: VersionManifest }>(files: T[]): T[][] {
  return inSizedGroups(files, (file) => file.fetched.version.size, {
    maxItems: WHOLE_FILES_PER_REQUEST_MAX,
    maxBytes: CONTENTS_REQUEST_BYTES,
  });
}

async function fetchRequest(
  api: ApiClient,
  files: WholeFileWanted[],
  written: (file: WholeFileWanted, fetched: FetchedWholeFile | null) => void,
  folders: FolderMaker,
): Promise<void> {
  const wanted = new Map(files.map((file) => [file.fetched.version.id, file]));
  // Files are written while the next ones arrive, a few at a time: each waits for its flush,
  // which one at a time would leave the disk idle between them.
  const writing = new Set<Promise<void>>();
  let failure: { error: unknown } | null = null;
  const write = (file: WholeFileWanted, record: FileRecord<ContentRecordHeader>) => {
    const task: Promise<void> = writeWholeFile(file.target, file.fetched.version.contentHash, record, folders)
      .then((temp) => written(file, temp ? { temp, version: file.fetched.version, manifest: file.fetched.manifest } : null))
      .catch((error: unknown) => {
        failure ??= { error };
      })
      .finally(() => writing.delete(task));
    writing.add(task);
  };
  try {
    for await (const record of api.contents([...wanted.keys()])) {
      const file = wanted.get(record.header.versionId);
      // Sent without content (too large, gone since): the per-file download deals with it.
      if (!file || 'code' in record.header) continue;
      wanted.delete(record.header.versionId);
      write(file, record);
      while (writing.size >= WRITES_IN_FLIGHT) await Promise.race(writing);
    }
  } catch (error) {
    // A body broken off midway (the server failed to read an object, the connection dropped) or
    // malformed, or a request refused (busy, failing): the files it did not bring are downloaded
    // one by one, which meets, and reports, any lasting cause. An old server, or a session
    // that ended, stops the whole step instead.
    if (!isPvError(error) || error.code === 'PV_NOT_FOUND' || error.code.startsWith('PV_AUTH')) failure ??= { error };
  }
  await Promise.all(writing);
  if (failure) throw failure.error;
}

/** Files of one request written at once. */
const WRITES_IN_FLIGHT = 4;

/** Makes the folders files go to, each once: a page of new files is mostly a few folders. */
class FolderMaker {
  private readonly made = new Map<string, Promise<unknown>>();

  make(folder: string): Promise<unknown> {
    let making = this.made.get(folder);
    if (!making) {
      making = mkdir(folder, { recursive: true });
      // A failure is met again by the next file of the folder, not remembered.
      making.catch(() => this.made.delete(folder));
      this.made.set(folder, making);
    }
    return making;
  }
}

/**
 * Writes a record's content to a fresh temp file beside target, flushed: its path, or null (and
 * no file) when the bytes do not have the expected hash or the file cannot be written (the
 * per-file download then meets the same cause and reports it).
 */
async function writeWholeFile(
  target: string,
  contentHash: string,
  record: FileRecord<ContentRecordHeader>,
  folders: FolderMaker,
): Promise<string | null> {
  const temp = tempPathBeside(target);
  try {
    await folders.make(dirname(target));
    if (await writeVerified(temp, contentHash, record)) return temp;
  } catch (error) {
    if (!isFileSystemError(error)) {
      await rm(temp, { force: true });
      throw error;
    }
  }
  await rm(temp, { force: true });
  return null;
}

/**
 * Writes the pieces as they arrived (no copy) and hashes them; flushes them if the hash is right.
 * Only the flush, which waits on the disk, goes through the thread pool (docs/architecture.md,
 * "File system calls").
 */
async function writeVerified(temp: string, contentHash: string, record: FileRecord<ContentRecordHeader>): Promise<boolean> {
  const fd = openSync(temp, 'w', 0o644);
  try {
    const bytesWritten = writevSync(fd, record.pieces, 0);
    const hash = createHash('sha256');
    for (const piece of record.pieces) hash.update(piece);
    if (bytesWritten !== record.header.size || hash.digest('hex') !== contentHash) return false;
    await flush(fd);
    return true;
  } finally {
    closeSync(fd);
  }
}

const flush = promisify(fsync);

function isFileSystemError(error: unknown): boolean {
  return error instanceof Error && typeof (error as NodeJS.ErrnoException).syscall === 'string';
}
