import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Scratch folders per process, `<root>/<pid>`, for data dirs that several processes share (a
 * server and its `worker start` processes): each process writes only below its own, and removes
 * those of processes that are gone, never those of live ones.
 */

/** This process's scratch folder below root. */
export function ownScratchFolder(root: string): string {
  return join(root, String(process.pid));
}

/**
 * Removes the scratch folders below root whose process is gone, and anything else there that is
 * not a live process's folder (left by older releases). `beforeRemove` sees each folder first.
 */
export async function removeAbandonedScratch(root: string, beforeRemove?: (folder: string) => Promise<void>): Promise<void> {
  const names = await readdir(root).catch(() => [] as string[]);
  for (const name of names) {
    const pid = /^\d+$/.test(name) ? Number(name) : 0;
    if (pid === process.pid || isAlive(pid)) continue;
    const folder = join(root, name);
    await beforeRemove?.(folder);
    await rm(folder, { recursive: true, force: true });
  }
}

function isAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
