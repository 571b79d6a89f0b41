import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import ignore from 'ignore';

/**
 * Names never synced: the daemon's own state, temp files of downloads in progress, and what
 * operating systems and editors leave behind. A `.pvignore` (gitignore syntax) at the folder's
 * root adds more; like Syncthing's .stignore it stays local.
 */
export const DEFAULT_IGNORES = [
  '.photovault/',
  '.pvignore',
  '*.pvpart',
  '.DS_Store',
  '._*',
  'Thumbs.db',
  'desktop.ini',
  '$RECYCLE.BIN/',
  '.Trash-*/',
  '*.swp',
  '*.swx',
  '*~',
  '.~lock.*#',
  '~$*',
  '*.crdownload',
  '*.part',
];

/** A test of relative paths (folders end with '/') against the default and the folder's own rules. */
export type IgnoreTest = (relativePath: string) => boolean;

/** The ignore rules of a synced folder. */
export async function loadIgnoreRules(root: string): Promise<IgnoreTest> {
  const rules = ignore().add(DEFAULT_IGNORES);
  try {
    rules.add(await readFile(join(root, '.pvignore'), 'utf8'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  return (relativePath) => rules.ignores(relativePath);
}
