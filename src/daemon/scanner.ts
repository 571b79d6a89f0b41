import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type Fingerprint, fingerprintFile } from '../core/chunker.js';
import { isPvError } from '../core/errors.js';
import { encodeManifest } from '../core/manifest.js';
import { normalizePath } from '../core/paths.js';
import { PART_SUFFIX } from './downloader.js';
import type { IgnoreTest } from './ignore-rules.js';
import type { IndexedFile, LocalIndex } from './local-index.js';

export interface ScanResult {
  /** Files new or changed since the last scan, already fingerprinted and indexed. */
  changed: IndexedFile[];
  /** Index entries of files no longer present (already removed from the index). */
  deleted: IndexedFile[];
  unchanged: number;
  /** Names the path rules refuse (control characters, ...), left alone and reported. */
  skipped: string[];
  /** Temp files of downloads a killed process left behind (absolute paths). */
  staleParts: string[];
}

export interface ScanOptions {
  ignored: IgnoreTest;
  /** How content is read; tests count the calls. */
  fingerprint?: (absolutePath: string) => Promise<Fingerprint>;
}

/**
 * Walks a synced folder and brings the local index up to date. A file whose size, mtime and inode
 * match its index entry is taken as unchanged without reading a byte; others are fingerprinted.
 * Symbolic links and special files are not followed or synced.
 */
export async function scanFolder(root: string, index: LocalIndex, options: ScanOptions): Promise<ScanResult> {
  const fingerprint = options.fingerprint ?? fingerprintFile;
  const known = await index.all();
  const result: ScanResult = { changed: [], deleted: [], unchanged: 0, skipped: [], staleParts: [] };
  const seen = new Set<string>();

  const walk = async (dir: string, relativeDir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const relative = relativeDir === '' ? entry.name : `${relativeDir}/${entry.name}`;
      if (!entry.isFile() && !entry.isDirectory()) continue;
      if (entry.isFile() && entry.name.endsWith(PART_SUFFIX)) {
        result.staleParts.push(join(dir, entry.name));
        continue;
      }
      if (options.ignored(entry.isDirectory() ? `${relative}/` : relative)) continue;
      let path: string;
      try {
        path = normalizePath(relative);
      } catch (error) {
        if (!isPvError(error, 'PV_PATH_INVALID')) throw error;
        result.skipped.push(relative);
        continue;
      }
      const absolute = join(dir, entry.name);
      if (entry.isDirectory()) {
        await walk(absolute, relative);
        continue;
      }
      // A file can vanish between listing and reading (a watched folder is live): then it is gone.
      const info = await lstat(absolute).catch(absentAsNull);
      if (!info) continue;
      seen.add(path);
      const previous = known.get(path);
      if (previous && previous.size === info.size && previous.mtimeMs === Math.floor(info.mtimeMs) && previous.inode === info.ino) {
        result.unchanged++;
        continue;
      }
      const print = await fingerprint(absolute).catch(absentAsNull);
      if (!print) {
        seen.delete(path);
        continue;
      }
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
      };
      await index.put(indexed);
      result.changed.push(indexed);
    }
  };

  await walk(root, '');
  for (const [path, file] of known) {
    if (!seen.has(path)) {
      result.deleted.push(file);
      await index.remove(path);
    }
  }
  return result;
}

function absentAsNull(error: NodeJS.ErrnoException): null {
  if (error.code === 'ENOENT') return null;
  throw error;
}
