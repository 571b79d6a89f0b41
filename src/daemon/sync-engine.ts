import { renameSync, statSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { isPvError, notFoundAsNull, PvError } from '../core/errors.js';
import { decodeManifest, type Manifest, MAX_MANIFEST_CHUNKS } from '../core/manifest.js';
import { joinPath } from '../core/paths.js';
import { Feed, runPool } from '../core/pool.js';
import type { Change, VersionManifest } from '../core/protocol.js';
import { MANIFESTS_PER_REQUEST_MAX, WHOLE_FILE_MAX_BYTES } from '../core/protocol-limits.js';
import type { ApiClient } from './api-client.js';
import { type DeltaDownloadResult, downloadReusingChunks } from './delta-download.js';
import { loadIgnoreRules } from './ignore-rules.js';
import { addLocalChunks, type LocalChunk, localChunksOf } from './local-chunks.js';
import { type IndexedFile, type IndexedFileHead, type LocalIndex, syncedManifestOf } from './local-index.js';
import { detectRenames } from './renames.js';
import { scanFolder } from './scanner.js';
import { Uploader } from './uploader.js';
import { type FetchedWholeFile, WholeFetch, type WholeFileWanted } from './whole-download.js';

/** What one pass did: the summary `photovault sync --once --json` prints. */
export interface SyncSummary {
  uploaded: number;
  downloaded: number;
  deleted: number;
  /** Local renames and moves carried out on the server as moves. */
  moved: number;
  conflicts: number;
  bytesSent: number;
  bytesReceived: number;
  /** Files left for a later pass because they were still being written. */
  deferred: number;
  failed: { path: string; code: string; message: string }[];
}

export interface SyncEngineOptions {
  /**
   * A file modified less than this long ago is taken as still being written and left for a later
   * pass, whatever triggered this one: a half-written file never goes up.
   */
  settleMs?: number;
  now?: () => number;
}

/** How long a file must be left alone before it is synced, unless configured otherwise. */
export const DEFAULT_SETTLE_MS = 150;

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
  /**
   * The chunks of the local files, for downloads to take from: read from the index at the first
   * download after a pass over the whole folder, then kept up to date with what is downloaded.
   * Passes the watcher or the socket start (a daemon's first sync is hundreds of them) reuse it:
   * reading every manifest each time made their cost grow with the square of the files. A chunk
   * whose file changed since is caught by the hash check of every chunk taken from disk.
   */
  private chunksOnDisk: Promise<Map<string, LocalChunk>> | undefined;
  /** The page of changes being applied, with the manifests it brings (readPage); null between pages. */
  private page: FeedPage | null = null;
  /** Cleared when the server turns out not to know POST /files/manifests. */
  private manifestsInBatches = true;
  /** The new files of the page of changes being applied, fetched whole (startWholeFetch) while it is. */
  private wholeFetch: WholeFetch | null = null;
  /** Told of each file a pull is about to write (its absolute path); see onOwnWrite. */
  private ownWrite: ((absolutePath: string) => void) | undefined;
  /** Cleared when the server turns out not to know POST /files/contents. */
  private contentsInBatches = true;

  constructor(
    private readonly api: ApiClient,
    private readonly root: string,
    private readonly remoteDir: string,
    private readonly index: LocalIndex,
    private readonly stateFile: string,
    options: SyncEngineOptions = {},
  ) {
    this.uploader = new Uploader(api, { fileConcurrency: TRANSFERS });
    this.settleMs = options.settleMs ?? DEFAULT_SETTLE_MS;
    this.now = options.now ?? Date.now;
  }

  /** See SyncEngineOptions.settleMs. */
  readonly settleMs: number;
  private readonly now: () => number;

  /** Tells listener of each file a pull is about to write, so that a watcher can tell those writes from the user's. */
  onOwnWrite(listener: (absolutePath: string) => void): void {
    this.ownWrite = listener;
  }

  /** One pass: scan (the whole folder, or only the paths given), push, pull. */
  async syncOnce(options: { paths?: string[] } = {}): Promise<SyncSummary> {
    const summary = emptySummary();
    if (!options.paths) this.chunksOnDisk = undefined;
    await this.push(summary, { deletes: true, paths: options.paths });
    await this.pull(summary);
    return summary;
  }

  /** One-way backup: uploads what changed locally; never deletes or downloads anything. */
  async backupOnce(): Promise<SyncSummary> {
    const summary = emptySummary();
    await this.push(summary, { deletes: false });
    return summary;
  }

  /** Passes (of syncOnce or backupOnce) until no file is left waiting to settle; their summaries added up. */
  async converge(pass: () => Promise<SyncSummary>): Promise<SyncSummary> {
    const total = emptySummary();
    for (;;) {
      const summary = await pass();
      for (const key of ['uploaded', 'downloaded', 'deleted', 'moved', 'conflicts', 'bytesSent', 'bytesReceived'] as const)
        total[key] += summary[key];
      total.failed.push(...summary.failed);
      if (summary.deferred === 0) return total;
      await new Promise((resolve) => setTimeout(resolve, this.settleMs));
    }
  }

  private remotePath(localPath: string): string {
    return joinPath(this.remoteDir, localPath);
  }

  /** The local path of a remote path inside the synced remote folder, or null outside it. */
  private localPath(remotePath: string): string | null {
    if (this.remoteDir === '') return remotePath;
    return remotePath.startsWith(`${this.remoteDir}/`) ? remotePath.slice(this.remoteDir.length + 1) : null;
  }

  /** Scans (the whole folder, or only the paths a watcher reported) and uploads what is unsynced. */
  private async push(summary: SyncSummary, options: { deletes: boolean; paths?: string[] }): Promise<void> {
    // Changed files go up while the scan reads the rest (on a first pass, every file), so the
    // server works meanwhile, except a new file whose content a vanished one may have held: it
    // may be that file renamed, which only the end of the scan tells.
    const ignored = await loadIgnoreRules(this.root);
    const early = new Feed<IndexedFileHead>();
    const uploadedEarly = new Set<string>();
    const uploadingEarly = this.upload(early, summary);
    const scanning = scanFolder(this.root, this.index, {
      ignored,
      paths: options.paths,
      onChanged: async (file) => {
        if (this.settling(file)) return;
        if (options.deletes && file.syncedVersionId === null && (await this.index.holdsSyncedContent(file.contentHash, file.path))) return;
        uploadedEarly.add(file.path);
        early.push(file);
      },
    }).finally(() => early.end());
    // Both end before the pass goes on or fails: a scan must never outlive its pass.
    const [scanned, uploaded] = await Promise.allSettled([scanning, uploadingEarly]);
    if (scanned.status === 'rejected') throw scanned.reason;
    if (uploaded.status === 'rejected') throw uploaded.reason;
    const scan = scanned.value;
    // Passes of one folder never overlap, so a temp file of a download is a dead one's.
    for (const part of scan.staleParts) await rm(part, { force: true });
    const unsynced = scan.unsynced.filter((file) => !uploadedEarly.has(file.path));
    let uploads = unsynced.filter((file) => {
      const settling = this.settling(file);
      if (settling) summary.deferred++;
      return !settling;
    });
    let deleted = scan.deleted;
    const moved: IndexedFile[] = [];
    // A move takes the old path off the server, so a backup (which never deletes) uploads instead.
    // A renamed file counts even while settling: mv keeps the content, and pairing it now keeps
    // the old path's delete from going out on its own.
    if (options.deletes) {
      const paired = new Set<IndexedFileHead>();
      for (const { from, to } of detectRenames(scan.deleted, unsynced)) {
        await this.attempt(summary, to.path, async () => {
          if (!(await this.moveRemote(from, to))) return;
          await this.index.remove(from.path);
          paired.add(from).add(to);
          moved.push(from);
          summary.moved++;
        });
      }
      uploads = uploads.filter((file) => !paired.has(file));
      deleted = deleted.filter((file) => !paired.has(file));
    }
    await this.upload(uploads, summary);
    // A vanished file leaves the index only once dealt with: a pass cut short retries the delete.
    const deletes = options.deletes ? deleted.filter((file) => file.syncedVersionId !== null) : [];
    for (const file of deleted) if (!options.deletes || file.syncedVersionId === null) await this.index.remove(file.path);
    await runPool(deletes, TRANSFERS, (file) =>
      this.attempt(summary, file.path, async () => {
        const remote = await this.api.stat(this.remotePath(file.path)).catch(notFoundAsNull);
        // A remote file that moved on since this device saw it was modified elsewhere: the
        // modification wins over this delete, and the pull brings it back.
        if (remote && remote.versionId === file.syncedVersionId) {
          await this.api.remove(this.remotePath(file.path));
          summary.deleted++;
        }
        await this.index.remove(file.path);
      }),
    );
    if (options.deletes)
      await this.removeVanishedFolders(
        summary,
        [...moved, ...deletes].map((file) => file.path),
      );
  }

  /**
   * Uploads these files (distinct paths, so in no order among themselves), as they come. Their
   * manifests are read from the index only when a file's group is negotiated: a first pass may
   * upload 100,000 files.
   */
  private async upload(files: Iterable<IndexedFileHead> | AsyncIterable<IndexedFileHead>, summary: SyncSummary): Promise<void> {
    const loaded = new Map<IndexedFileHead, IndexedFile>();
    await this.uploader.uploadInGroups(
      files,
      async (head) => {
        const file = await this.index.get(head.path);
        if (!file) return null;
        loaded.set(head, file);
        return {
          localPath: join(this.root, file.path),
          remotePath: this.remotePath(file.path),
          base: file.syncedVersionId === null ? null : { versionId: file.syncedVersionId, manifest: decodedOrNull(syncedManifestOf(file)) },
          fingerprint: fingerprintOf(file),
        };
      },
      async (head, outcome) => {
        const file = loaded.get(head)!;
        loaded.delete(head);
        await this.attempt(summary, file.path, async () => {
          if ('error' in outcome) throw outcome.error;
          summary.uploaded++;
          summary.bytesSent += outcome.sent;
          if (outcome.status.conflictPath) summary.conflicts++;
          // After a conflict this content lives on at the conflict path; the path itself is taken
          // over by the remote head in the pull, as the local file holds nothing unsynced any more.
          await this.index.put({
            ...file,
            syncedVersionId: outcome.status.version!.id,
            syncedHash: file.contentHash,
            syncedManifest: null,
          });
        });
      },
    );
  }

  /** Whether a file was written too recently to be whole. A future mtime (a skewed camera clock) tells nothing about writing. */
  private settling(file: IndexedFileHead): boolean {
    const age = this.now() - file.mtimeMs;
    return age >= 0 && age < this.settleMs;
  }

  /**
   * Removes on the server the folders that held these paths and are gone here, if nothing is
   * left in them there: a renamed or deleted folder does not linger empty on the other devices.
   */
  private async removeVanishedFolders(summary: SyncSummary, paths: string[]): Promise<void> {
    const folders = new Set<string>();
    for (const path of paths) for (let dir = posix.dirname(path); dir !== '.'; dir = posix.dirname(dir)) folders.add(dir);
    // Deepest first, so a parent is empty once its children are gone.
    for (const folder of [...folders].sort((a, b) => b.length - a.length)) {
      if (exists(join(this.root, folder))) continue;
      await this.attempt(summary, folder, async () => {
        if (await this.holdsNoFiles(this.remotePath(folder))) await this.api.remove(this.remotePath(folder));
      });
    }
  }

  /** Whether a remote folder exists and has no file in it, at any depth (empty subfolders are nothing to keep). */
  private async holdsNoFiles(folder: string): Promise<boolean> {
    let cursor: string | undefined;
    do {
      const listing = await this.api.list(folder, cursor).catch(notFoundAsNull);
      if (!listing) return false;
      for (const entry of listing.entries) {
        if (entry.kind === 'file' || !(await this.holdsNoFiles(entry.path))) return false;
      }
      cursor = listing.nextCursor ?? undefined;
    } while (cursor !== undefined);
    return true;
  }

  /**
   * Moves the remote file of a local rename, if the server still has it as this device saw it and
   * the new path is free; false when it cannot (then the rename goes as an upload and a delete).
   */
  private async moveRemote(from: IndexedFile, to: IndexedFileHead): Promise<boolean> {
    const remote = await this.api.stat(this.remotePath(from.path)).catch(notFoundAsNull);
    if (remote?.versionId !== from.syncedVersionId) return false;
    try {
      await this.api.move(this.remotePath(from.path), this.remotePath(to.path));
    } catch (error) {
      if (isPvError(error, 'PV_CONFLICT')) return false;
      throw error;
    }
    const moved = await this.index.get(to.path);
    if (moved) await this.index.put({ ...moved, syncedVersionId: from.syncedVersionId, syncedHash: to.contentHash, syncedManifest: null });
    return true;
  }

  private async pull(summary: SyncSummary): Promise<void> {
    const state = await this.readState();
    let cursor = state.cursor;
    for (let reading: Promise<FeedPage> | null = this.readPage(cursor); reading;) {
      const page: FeedPage = await reading;
      // The next page is read while this one is applied, so that its round trips (the feed, the
      // manifests) overlap this page's transfers. Only read: its files are fetched in its turn.
      reading = page.hasMore ? this.readPage(page.next) : null;
      // Awaited in the next turn; until then a failure is only recorded (this page's comes first).
      reading?.catch(() => {});
      this.page = page;
      try {
        this.wholeFetch = await this.startWholeFetch(page);
        await this.applyInOrder(page.changes, summary);
        const stopped = await this.wholeFetch?.finished;
        if (stopped) {
          // A server from before POST /files/contents: each download fetched its own, and will.
          if (!isPvError(stopped.error, 'PV_NOT_FOUND')) throw stopped.error;
          this.contentsInBatches = false;
        }
      } finally {
        this.page = null;
        // Fetched for a change that did not take it (its path was taken locally meanwhile, say).
        await this.wholeFetch?.discard();
        this.wholeFetch = null;
      }
      cursor = page.next;
      await this.writeState({ cursor });
    }
    if (cursor > 0) await this.api.acknowledge(cursor);
  }

  /** A page of the change feed from cursor on, with the manifests it brings (prefetchManifests). */
  private async readPage(cursor: number): Promise<FeedPage> {
    const page = await this.api.changes(cursor, 500, { excludeProcessed: true });
    // A processing result changes derived files on the server only: nothing to do on disk
    // (the server leaves them out when asked; one from before does not).
    const changes = page.changes.filter((change) => change.kind !== 'processed');
    return { changes, manifests: await this.prefetchManifests(changes), next: page.next, hasMore: page.hasMore };
  }

  /**
   * Fetches, many to a request, the manifests of the files these changes bring that this device
   * has no entry for: each such download then takes one request (its bytes) instead of two.
   * Edits of files held go as patches of the local copy and fetch their own plan.
   */
  private async prefetchManifests(changes: Change[]): Promise<Map<string, VersionManifest>> {
    const prefetched = new Map<string, VersionManifest>();
    const candidates = new Set<string>();
    for (const change of changes) {
      if (change.kind === 'upsert' && change.entryKind === 'file' && change.size <= PREFETCH_MAX_BYTES) {
        if (this.localPath(change.path) !== null) candidates.add(change.path);
      }
    }
    if (candidates.size === 0 || !this.manifestsInBatches) return prefetched;
    const held = await this.index.existing([...candidates].map((path) => this.localPath(path)!));
    const wanted = [...candidates].filter((path) => !held.has(this.localPath(path)!));
    for (let at = 0; at < wanted.length; at += MANIFESTS_PER_REQUEST_MAX) {
      const fetched = await this.api.manifests(wanted.slice(at, at + MANIFESTS_PER_REQUEST_MAX)).catch((error: unknown) => {
        // A server from before POST /files/manifests: each download asks for its own.
        if (!isPvError(error, 'PV_NOT_FOUND')) throw error;
        this.manifestsInBatches = false;
        return new Map<string, VersionManifest | PvError>();
      });
      for (const [path, manifest] of fetched) {
        // A file gone since is skipped when its change is applied, as without the prefetch.
        if (!(manifest instanceof PvError)) prefetched.set(path, manifest);
      }
    }
    return prefetched;
  }

  /**
   * Starts fetching whole, many to a request, the new files of the page that nothing local can
   * help build: those with a prefetched manifest (so nothing at their path in the index) of at
   * most WHOLE_FILE_MAX_BYTES, none of whose chunks is on disk, and whose path is free. Each such
   * download is then a share of one request instead of a request of its own. They wait in temp
   * files for their changes to be applied, in order, like any other download; the first are
   * applied while the last are still coming.
   */
  private async startWholeFetch(page: FeedPage): Promise<WholeFetch | null> {
    if (!this.contentsInBatches || page.manifests.size === 0) return null;
    const wanted = await this.wholeFilesWanted(page);
    return wanted.length === 0 ? null : new WholeFetch(this.api, wanted);
  }

  private async wholeFilesWanted({ changes, manifests }: FeedPage): Promise<WholeFileWanted[]> {
    const chunks = await (this.chunksOnDisk ??= localChunksOf(this.root, this.index));
    // A temp file makes its folder ahead of the page's changes, and a move checks what exists:
    // a file a move of the page comes near is left to the download made in its turn.
    const moved = changes.flatMap((change) => (change.kind === 'move' ? [change.path, change.fromPath ?? change.path] : []));
    const wanted: WholeFileWanted[] = [];
    const contents = new Set<string>();
    for (const [remotePath, fetched] of manifests) {
      const { size, contentHash } = fetched.version;
      // An empty file costs no request anyway. Content another file of the page brings is
      // taken from that file once it is in place.
      if (size === 0 || size > WHOLE_FILE_MAX_BYTES || contents.has(contentHash)) continue;
      if (moved.some((path) => overlaps(path, remotePath))) continue;
      if (decodeManifest(Buffer.from(fetched.manifest, 'base64'), MAX_MANIFEST_CHUNKS).some(({ hash }) => chunks.has(hash))) continue;
      const target = join(this.root, this.localPath(remotePath)!);
      if (exists(target)) continue;
      contents.add(contentHash);
      wanted.push({ remotePath, target, fetched });
    }
    return wanted;
  }

  /**
   * Applies changes as if one after the other: upserts of unrelated paths run a few at a time, an
   * upsert first waits for those in flight at its path, inside it or above it (a folder comes
   * before its contents), and a delete or a move runs alone, after everything before it and
   * before everything after it. Every change is done when this returns.
   */
  private async applyInOrder(changes: Change[], summary: SyncSummary): Promise<void> {
    const running = new Map<Promise<void>, string>();
    let failure: unknown = null;
    for (const change of changes) {
      const apply = () => this.attempt(summary, change.path, () => this.apply(change, summary));
      if (change.kind === 'upsert') {
        await Promise.all([...running].filter(([, path]) => overlaps(path, change.path)).map(([task]) => task));
        while (running.size >= TRANSFERS) await Promise.race(running.keys());
      } else {
        await Promise.all(running.keys());
      }
      if (failure !== null) break;
      if (change.kind !== 'upsert') {
        await apply();
        continue;
      }
      const task: Promise<void> = apply()
        .catch((error: unknown) => {
          failure ??= error;
        })
        .finally(() => running.delete(task));
      running.set(task, change.path);
    }
    await Promise.all(running.keys());
    if (failure !== null) throw failure;
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
    const local = await this.index.get(path);
    // This device's own upload, or a version it already has: nothing to fetch, nothing to ask.
    if (local && local.syncedVersionId === change.versionId && local.contentHash === local.syncedHash) return;
    const manifest = this.page?.manifests.get(change.path);
    this.page?.manifests.delete(change.path);
    let fetched: FetchedWholeFile | null = null;
    if (local) {
      // The feed may be behind: ask what the path holds now (a later change may have replaced or
      // removed it), unless the feed as read ends with this change for it. A catch-up over
      // several edits of a file this way fetches it once, not once per edit.
      const remote = this.lastInFeed(change)
        ? { kind: 'file', versionId: change.versionId, contentHash: change.contentHash }
        : await this.api.stat(change.path).catch(notFoundAsNull);
      if (!remote || remote.kind !== 'file') return;
      if (local.contentHash === remote.contentHash) {
        await this.index.put({ ...local, syncedVersionId: remote.versionId, syncedHash: remote.contentHash, syncedManifest: null });
        return;
      }
      // A local edit not yet pushed is never overwritten: the next pass uploads it against the
      // version it was based on, and the server keeps both.
      if (local.contentHash !== local.syncedHash) return;
    } else {
      // Its file fetched whole may still be on its way: taken first, then the path checked, so
      // that it is renamed into place only where nothing is.
      if (manifest) fetched = (await this.wholeFetch?.take(change.path, manifest.version.id)) ?? null;
      if (exists(absolute)) {
        if (fetched) await rm(fetched.temp, { force: true });
        return;
      }
    }
    const chunks = await (this.chunksOnDisk ??= localChunksOf(this.root, this.index));
    this.ownWrite?.(absolute);
    // A file fetched whole waits in its folder already: no folder to make.
    let result = fetched && placeFetchedWhole(fetched, absolute);
    if (!result) {
      const created = await mkdir(dirname(absolute), { recursive: true });
      // The local copy is the synced version unchanged: the download is a patch of it.
      const base = local?.syncedVersionId ? { versionId: local.syncedVersionId, manifest: decodedOrNull(local.manifest)! } : undefined;
      result = await downloadReusingChunks(this.api, change.path, absolute, chunks, { base, manifest }).catch(notFoundAsNull);
      if (!result) {
        // Removed (or made a folder) since: nothing to fetch, and no folder left behind for it.
        if (created) await removeEmptyFolders(created);
        return;
      }
    }
    addLocalChunks(chunks, absolute, result.manifest);
    const info = statSync(absolute);
    await this.index.put({
      path,
      size: result.size,
      mtimeMs: Math.floor(info.mtimeMs),
      inode: info.ino,
      contentHash: result.contentHash,
      manifest: result.manifest,
      syncedVersionId: result.versionId,
      syncedHash: result.contentHash,
      syncedManifest: null,
    });
    summary.downloaded++;
    summary.bytesReceived += result.bytesReceived;
  }

  /** Whether the feed, as read, ends with this change for its path: the last page, nothing later at, in or above it. */
  private lastInFeed(change: Change): boolean {
    const page = this.page;
    if (!page || page.hasMore) return false;
    return !page.changes.some(
      (later) =>
        later.seq > change.seq && (overlaps(later.path, change.path) || (later.fromPath !== null && overlaps(later.fromPath, change.path))),
    );
  }

  /** Removes local files at or under path that hold nothing unsynced; edited ones survive. */
  private async applyDelete(path: string, summary: SyncSummary): Promise<void> {
    for (const file of (await this.index.all()).values()) {
      if (file.path !== path && !file.path.startsWith(`${path}/`)) continue;
      if (file.contentHash !== file.syncedHash) continue;
      // The feed may be behind: a file recreated at the path since (by this device's own upload
      // of an edit, say) is not deleted.
      if (await this.api.stat(this.remotePath(file.path)).catch(notFoundAsNull)) continue;
      await rm(join(this.root, file.path), { force: true });
      await this.index.remove(file.path);
      summary.deleted++;
    }
    await removeEmptyFolders(join(this.root, path));
  }

  private async applyMove(from: string, to: string): Promise<void> {
    const source = join(this.root, from);
    const target = join(this.root, to);
    if (!exists(source) || exists(target)) return;
    await mkdir(dirname(target), { recursive: true });
    await rename(source, target);
    await this.index.move(from, to);
  }

  /** Runs one item's work; a domain error is recorded and the pass goes on with the others. */
  private async attempt(summary: SyncSummary, path: string, work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (error) {
      // The file vanished while it was being worked on: the next scan sees what became of it.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
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

/** A page of the change feed, read ahead of its turn (SyncEngine.readPage). */
interface FeedPage {
  changes: Change[];
  /** Manifests of the files it brings that this device had no entry for when it was read, by remote path. */
  manifests: Map<string, VersionManifest>;
  next: number;
  hasMore: boolean;
}

/**
 * Files transferred at once, each way. A photo-sized file's transfer is mostly round trips and a
 * flush on either side: with several in flight, client, server and disk all keep busy.
 */
const TRANSFERS = 8;

/** Files up to this size have their manifests fetched ahead, many to a request (a manifest of 64 MiB is ~60 KB). */
const PREFETCH_MAX_BYTES = 64 * 1024 * 1024;

/** Whether one path is the other or lies inside it. */
function overlaps(a: string, b: string): boolean {
  return a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
}

function emptySummary(): SyncSummary {
  return { uploaded: 0, downloaded: 0, deleted: 0, moved: 0, conflicts: 0, bytesSent: 0, bytesReceived: 0, deferred: 0, failed: [] };
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

function decodedOrNull(manifest: string | null): Manifest | null {
  return manifest === null ? null : decodeManifest(Buffer.from(manifest, 'base64'), MAX_MANIFEST_CHUNKS);
}

/** Synchronous, like the other per-file calls of a download (docs/architecture.md, "File system calls"). */
function exists(path: string): boolean {
  return statSync(path, { throwIfNoEntry: false }) !== undefined;
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

/**
 * Renames a file fetched whole into place: what downloadReusingChunks would have answered, or
 * null when a move applied earlier in the page took the folder it waited in, and it with it.
 */
function placeFetchedWhole(fetched: FetchedWholeFile, target: string): DeltaDownloadResult | null {
  try {
    renameSync(fetched.temp, target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  const { id, contentHash, size } = fetched.version;
  return { contentHash, versionId: id, size, bytesReceived: size, bytesReused: 0, manifest: fetched.manifest };
}
