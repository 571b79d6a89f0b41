import { posix } from 'node:path';
import type { IndexedFile, IndexedFileHead } from './local-index.js';

/** A local file that reappeared under another path with the same content: a rename or a move. */
export interface Rename {
  from: IndexedFile;
  to: IndexedFileHead;
}

/**
 * Pairs files that vanished since the last scan with new, never-synced files of the same content,
 * so a rename travels as a move (history follows the file, other devices rename instead of
 * downloading) rather than as a delete and an upload. Where several could pair, the same name
 * (a move to another folder) goes first, then the same folder (a rename), then path order.
 */
export function detectRenames(deleted: IndexedFile[], unsynced: IndexedFileHead[]): Rename[] {
  const gone = new Map<string, IndexedFile[]>();
  for (const file of deleted) {
    // Only a file the server has in the version this device saw can be moved there.
    if (file.syncedVersionId === null || file.contentHash !== file.syncedHash) continue;
    const list = gone.get(file.contentHash) ?? [];
    list.push(file);
    gone.set(file.contentHash, list);
  }
  const renames: Rename[] = [];
  for (const to of [...unsynced].sort((a, b) => a.path.localeCompare(b.path))) {
    if (to.syncedVersionId !== null) continue;
    const candidates = gone.get(to.contentHash);
    if (!candidates || candidates.length === 0) continue;
    const score = (from: IndexedFile) =>
      (posix.basename(from.path) === posix.basename(to.path) ? 2 : 0) + (posix.dirname(from.path) === posix.dirname(to.path) ? 1 : 0);
    const best = candidates.reduce((a, b) => (score(b) > score(a) ? b : a));
    candidates.splice(candidates.indexOf(best), 1);
    renames.push({ from: best, to });
  }
  return renames;
}
