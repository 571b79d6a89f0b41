import { lstatSync, type Stats } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type Fingerprint, fingerprintFile } from '../core/chunker.js';
import { isPvError } from '../core/errors.js';
import { encodeManifest } from '../core/manifest.js';
import { normalizePath } from '../core/paths.js';
import { runPool } from '../core/pool.js';
import { PART_SUFFIX } from './downloader.js';
import type { IgnoreTest } from './ignore-rules.js';
import { type FileStamp, type IndexedFile, type IndexedFileHead, type LocalIndex, syncedManifestOf } from './local-index.js';

export interface ScanResult {
  /** Files new or changed since the last scan, already fingerprinted and indexed. */
  changed: IndexedFile[];
  /**
   * Files whose content is not the version they were last in sync with: the changed ones, and
   * those an earlier pass indexed but did not get to upload (it failed, was killed, or the file
   * was still being written).
   */
  unsynced: IndexedFileHead[];
  /**
   * Index entries of files no longer present. They stay in the index until the caller has dealt
   * with them (sent the delete to the server), so a pass cut short sends it the next time.
   */
  deleted: IndexedFile[];
  unchanged: number;
  /** Names the path rules refuse (control characters, ...), left alone and reported. */
  skipped: string[];
  /** Temp files of downloads a killed process left behind (absolute paths). */
  staleParts: string[];
}

export interface ScanOptions {
  ignored: IgnoreTest;
  /**
   * Told of each changed file once it is fingerprinted and indexed, while the scan goes on, so
   * that its upload can start before the scan ends. The scan waits for it.
   */
  onChanged?: (file: IndexedFile) => Promise<void>;
  /** How content is read; tests count the calls. */
  fingerprint?: (absolutePath: string) => Promise<Fingerprint>;
  /**
   * Look only at these paths (relative, '/'-separated, as a watcher reports them: files or
   * folders, present or gone) instead of the whole folder.
   */
  paths?: string[];
}

/**
 * Walks a synced folder (or the paths given) and brings the local index up to date. A file whose
 * size, mtime and inode match its index entry is taken as unchanged without reading a byte;
 * others are fingerprinted. Symbolic links and special files are not followed or synced. Files
 * an earlier scan left unsynced are reported whatever was looked at.
 */
export async function scanFolder(root: string, index: LocalIndex, options: ScanOptions): Promise<ScanResult> {
  const fingerprint = options.fingerprint ?? fingerprintFile;
  const result: ScanResult = { changed: [], unsynced: [], deleted: [], unchanged: 0, skipped: [], staleParts: [] };
  // The entries in scope not looked at yet: what is left once the walk is over went away.
  let unseen = new Map<string, FileStamp>();

  /** Looks at one directory entry (or a path the watcher named) and records what it is now. */
  const visit = async (absolute: string, relative: string, kind: 'file' | 'directory'): Promise<void> => {
    if (kind === 'file' && relative.endsWith(PART_SUFFIX)) {
      result.staleParts.push(absolute);
      return;
    }
    if (options.ignored(kind === 'directory' ? `${relative}/` : relative)) return;
    let path: string;
    try {
      path = normalizePath(relative);
    } catch (error) {
      if (!isPvError(error, 'PV_PATH_INVALID')) throw error;
      result.skipped.push(relative);
      return;
    }
    if (kind === 'directory') {
      await visitEntries(absolute, relative);
      return;
    }
    // A file can vanish between listing and reading (a watched folder is live): then it is gone.
    const info = lstatOrNull(absolute);
    if (!info?.isFile()) return;
    const stamp = unseen.get(path);
    if (stamp && stamp.size === info.size && stamp.mtimeMs === Math.floor(info.mtimeMs) && stamp.inode === info.ino) {
      unseen.delete(path);
      result.unchanged++;
      return;
    }
    const print = await fingerprint(absolute).catch(absentAsNull);
    if (!print) return;
    unseen.delete(path);
    const previous = stamp && (await index.get(path));
    const indexed: IndexedFile = {
      path,
      size: print.size,
      mtimeMs: Math.floor(info.mtimeMs),
      inode: info.ino,
      contentHash: print.contentHash,
      manifest: encodeManifest(print.chunks).toString('base64'),
      // What the path was last in sync with stays known: it is the base of the next upload.
      syncedVersionId: previous?.syncedVersionId ?? null,
      syncedHash: previous?.syncedHash ?? null,
      syncedManifest: previous ? syncedManifestOf(previous) : null,
    };
    await index.put(indexed);
    result.changed.push(indexed);
    await options.onChanged?.(indexed);
  };

  /** Visits a folder's files and subfolders, several at a time: one's content is read while the next are looked at. */
  const visitEntries = async (absolute: string, relative: string): Promise<void> => {
    const entries = ((await readdir(absolute, { withFileTypes: true }).catch(absentAsNull)) ?? []).filter(
      (entry) => entry.isFile() || entry.isDirectory(),
    );
    await runPool(entries, SCAN_CONCURRENCY, (entry) =>
      visit(join(absolute, entry.name), relative === '' ? entry.name : `${relative}/${entry.name}`, entry.isFile() ? 'file' : 'directory'),
    );
  };

  for (const scope of outermost(options.paths ?? [''])) {
    unseen = await index.stamps(scope === '' ? undefined : scope);
    if (scope === '') {
      await visitEntries(root, '');
    } else {
      const info = lstatOrNull(join(root, scope));
      if (info?.isFile() || info?.isDirectory()) await visit(join(root, scope), scope, info.isFile() ? 'file' : 'directory');
    }
    for (const path of unseen.keys()) {
      const file = await index.get(path);
      if (file) result.deleted.push(file);
    }
  }
  const gone = new Set(result.deleted.map((file) => file.path));
  result.unsynced = (await index.unsynced()).filter((file) => !gone.has(file.path));
  return result;
}

/**
 * Entries of one folder looked at at once (nested folders multiply it): lstat is synchronous, so
 * this overlaps the reading and fingerprinting of changed files, and the nested folders' listings.
 */
const SCAN_CONCURRENCY = 4;

/** The paths not inside another of them; '' (the whole folder) covers all. */
function outermost(paths: string[]): string[] {
  const sorted = [...new Set(paths)].sort();
  return sorted.filter((path, at) => !sorted.slice(0, at).some((outer) => outer === '' || path.startsWith(`${outer}/`)));
}

function absentAsNull(error: NodeJS.ErrnoException): null {
  if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return null;
  throw error;
}

/**
 * lstat, synchronously: on a local folder a few µs, where a trip through the thread pool costs
 * several times that (docs/architecture.md, "File system calls"); a first scan makes one per file.
 */
function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch (error) {
    return absentAsNull(error as NodeJS.ErrnoException);
  }
}
