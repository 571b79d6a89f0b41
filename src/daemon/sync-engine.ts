import { mkdir, readdir, readFile, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { isPvError } from '../core/errors.js';
import { decodeManifest, MAX_MANIFEST_CHUNKS } from '../core/manifest.js';
import { joinPath } from '../core/paths.js';
import type { Change } from '../core/protocol.js';
import type { ApiClient } from './api-client.js';
import { downloadReusingChunks } from './delta-download.js';
import { loadIgnoreRules } from './ignore-rules.js';
import { localChunksOf } from './local-chunks.js';
import type { IndexedFile, LocalIndex } from './local-index.js';
import { scanFolder } from './scanner.js';
import { Uploader } from './uploader.js';

/** What one pass did: the summary `photovault sync --once --json` prints. */
export interface SyncSummary {
  uploaded: number;
  downloaded: number;
  deleted: number;
  conflicts: number;
  bytesSent: number;
  bytesReceived: number;
  failed: { path: string; code: string; message: string }[];
}

/** The daemon's own state beside the index: where its feed cursor is. */
interface SyncState {
  cursor: number;
}

/**
 * Two-way sync of a local folder with a remote folder (DESIGN section 4), one pass at a time:
 * push local changes (uploads name the version they were based on, so the server keeps a conflict
 * copy when the file moved on; local deletes remove the remote file only if it is still the
 * version this device last saw), then pull the change feed and apply it, never overwriting or
 * deleting a local file that changed since it was last in sync.
 */
export class SyncEngine {
  private readonly uploader: Uploader;

  constructor(
    private readonly api: ApiClient,
    private readonly root: string,
    private readonly remoteDir: string,
    private readonly index: LocalIndex,
    private readonly stateFile: string,
  ) {
    this.uploader = new Uploader(api);
  }

  /** One full pass: scan, push, pull. */
  async syncOnce(): Promise<SyncSummary> {
    const summary = emptySummary();
    await this.push(summary, { deletes: true });
    await this.pull(summary);
    return summary;
  }

  /** One-way backup: uploads what changed locally; never deletes or downloads anything. */
  async backupOnce(): Promise<SyncSummary> {
    const summary = emptySummary();
    await this.push(summary, { deletes: false });
    return summary;
  }

  private remotePath(localPath: string): string {
    return joinPath(this.remoteDir, localPath);
  }

  /** The local path of a remote path inside the synced remote folder, or null outside it. */
  private localPath(remotePath: string): string | null {
    if (this.remoteDir === '') return remotePath;
    return remotePath.startsWith(`${this.remoteDir}/`) ? remotePath.slice(this.remoteDir.length + 1) : null;
  }

  private async push(summary: SyncSummary, options: { deletes: boolean }): Promise<void> {
    const scan = await scanFolder(this.root, this.index, { ignored: await loadIgnoreRules(this.root) });
    // Passes of one folder never overlap, so a temp file of a download is a dead one's.
    for (const part of scan.staleParts) await rm(part, { force: true });
    for (const file of scan.changed) {
      if (file.contentHash === file.syncedHash) continue;
      await this.attempt(summary, file.path, async () => {
        const result = await this.uploader.uploadFile(join(this.root, file.path), this.remotePath(file.path), {
          baseVersionId: file.syncedVersionId,
          fingerprint: fingerprintOf(file),
        });
        summary.uploaded++;
        summary.bytesSent += result.sent;
        if (result.status.conflictPath) summary.conflicts++;
        // After a conflict this content lives on at the conflict path; the path itself is taken
        // over by the remote head in the pull, as the local file holds nothing unsynced any more.
        await this.index.put({ ...file, syncedVersionId: result.status.version!.id, syncedHash: file.contentHash });
      });
    }
    for (const file of scan.deleted) {
      if (!options.deletes || file.syncedVersionId === null) continue;
      await this.attempt(summary, file.path, async () => {
        const remote = await this.api.stat(this.remotePath(file.path)).catch(absentAsNull);
        // A remote file that moved on since this device saw it was modified elsewhere: the
        // modification wins over this delete, and the pull brings it back.
        if (remote && remote.versionId === file.syncedVersionId) {
          await this.api.remove(this.remotePath(file.path));
          summary.deleted++;
        }
      });
    }
  }

  private async pull(summary: SyncSummary): Promise<void> {
    const state = await this.readState();
    let cursor = state.cursor;
    for (let more = true; more;) {
      const page = await this.api.changes(cursor, 500);
      for (const change of page.changes) await this.attempt(summary, change.path, () => this.apply(change, summary));
      cursor = page.next;
      more = page.hasMore;
      await this.writeState({ cursor });
    }
    if (cursor > 0) await this.api.acknowledge(cursor);
  }

  private async apply(change: Change, summary: SyncSummary): Promise<void> {
    const path = this.localPath(change.path);
    if (change.kind === 'move') {
      const from = change.fromPath === null ? null : this.localPath(change.fromPath);
      if (path !== null && from !== null) return this.applyMove(from, path);
      // Moved across the synced folder's edge: it left (a delete) or arrived (an upsert).
      if (path === null && from !== null) return this.applyDelete(from, summary);
      if (path !== null) return this.applyUpsert(path, change, summary);
      return;
    }
    if (path === null) return;
    if (change.kind === 'delete') return this.applyDelete(path, summary);
    return this.applyUpsert(path, change, summary);
  }

  private async applyUpsert(path: string, change: Change, summary: SyncSummary): Promise<void> {
    const absolute = join(this.root, path);
    if (change.entryKind === 'folder') {
      await mkdir(absolute, { recursive: true });
      return;
    }
    // The feed may be behind: always fetch what the path holds now (a later change may have
    // replaced or removed it).
    const remote = await this.api.stat(change.path).catch(absentAsNull);
    if (!remote || remote.kind !== 'file') return;
    const local = await this.index.get(path);
    if (local?.contentHash === remote.contentHash) {
      await this.index.put({ ...local, syncedVersionId: remote.versionId, syncedHash: remote.contentHash });
      return;
    }
    // A local edit not yet pushed is never overwritten: the next pass uploads it against the
    // version it was based on, and the server keeps both.
    if (local && local.contentHash !== local.syncedHash) return;
    if (!local && (await exists(absolute))) return;
    await mkdir(dirname(absolute), { recursive: true });
    const result = await downloadReusingChunks(this.api, change.path, absolute, await localChunksOf(this.root, this.index));
    const info = await stat(absolute);
    await this.index.put({
      path,
      size: result.size,
      mtimeMs: Math.floor(info.mtimeMs),
      inode: info.ino,
      contentHash: result.contentHash,
      manifest: result.manifest,
      syncedVersionId: result.versionId,
      syncedHash: result.contentHash,
    });
    summary.downloaded++;
    summary.bytesReceived += result.bytesReceived;
  }

  /** Removes local files at or under path that hold nothing unsynced; edited ones survive. */
  private async applyDelete(path: string, summary: SyncSummary): Promise<void> {
    for (const file of (await this.index.all()).values()) {
      if (file.path !== path && !file.path.startsWith(`${path}/`)) continue;
      if (file.contentHash !== file.syncedHash) continue;
      // The feed may be behind: a file recreated at the path since (by this device's own upload
      // of an edit, say) is not deleted.
      if (await this.api.stat(this.remotePath(file.path)).catch(absentAsNull)) continue;
      await rm(join(this.root, file.path), { force: true });
      await this.index.remove(file.path);
      summary.deleted++;
    }
    await removeEmptyFolders(join(this.root, path));
  }

  private async applyMove(from: string, to: string): Promise<void> {
    const source = join(this.root, from);
    const target = join(this.root, to);
    if (!(await exists(source)) || (await exists(target))) return;
    await mkdir(dirname(target), { recursive: true });
    await rename(source, target);
    await this.index.move(from, to);
  }

  /** Runs one item's work; a domain error is recorded and the pass goes on with the others. */
  private async attempt(summary: SyncSummary, path: string, work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (error) {
      if (!isPvError(error) || error.code === 'PV_SERVER_UNREACHABLE' || error.code.startsWith('PV_AUTH')) throw error;
      summary.failed.push({ path, code: error.code, message: error.message });
    }
  }

  private async readState(): Promise<SyncState> {
    try {
      return JSON.parse(await readFile(this.stateFile, 'utf8')) as SyncState;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      return { cursor: 0 };
    }
  }

  private async writeState(state: SyncState): Promise<void> {
    const temp = `${this.stateFile}.tmp`;
    await writeFile(temp, JSON.stringify(state));
    await rename(temp, this.stateFile);
  }
}

function emptySummary(): SyncSummary {
  return { uploaded: 0, downloaded: 0, deleted: 0, conflicts: 0, bytesSent: 0, bytesReceived: 0, failed: [] };
}

function fingerprintOf(file: IndexedFile) {
  let offset = 0;
  const chunks = decodeManifest(Buffer.from(file.manifest, 'base64'), MAX_MANIFEST_CHUNKS).map(({ hash, length }) => ({
    hash,
    length,
    offset: (offset += length) - length,
  }));
  return { contentHash: file.contentHash, size: file.size, chunks };
}

function absentAsNull(error: unknown): null {
  if (isPvError(error, 'PV_NOT_FOUND')) return null;
  throw error;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return false;
      throw error;
    },
  );
}

/** Removes path if it is a folder left empty (and its empty subfolders). */
async function removeEmptyFolders(path: string): Promise<void> {
  let entries;
  try {
    entries = await readdir(path, { withFileTypes: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return;
    throw error;
  }
  for (const entry of entries) if (entry.isDirectory()) await removeEmptyFolders(join(path, entry.name));
  if ((await readdir(path)).length === 0) await rmdir(path);
}
