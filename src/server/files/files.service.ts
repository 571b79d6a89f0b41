import { Readable } from 'node:stream';
import { isPvError, PvError, type PvErrorCode } from '../../core/errors.js';
import { recordHeader } from '../../core/file-records.js';
import { encodeManifest } from '../../core/manifest.js';
import { normalizePath } from '../../core/paths.js';
import {
  type ContentRecordHeader,
  type FileEntry,
  type FileList,
  type FileVersionView,
  type ManifestsResult,
  type TrashEntry,
  type VersionPatch,
  WHOLE_FILE_MAX_BYTES,
} from '../../core/protocol.js';
import type { BlobStore, Bucket, ByteRange } from '../../infra/blobs/blob-store.js';
import type { FileVersionRow } from '../../infra/db/schema.js';
import { objectKey } from '../../infra/blobs/object-keys.js';
import { openObject } from '../../infra/blobs/object-reader.js';
import type { ChangeNotifier } from '../sync/change-notifier.js';
import type { Principal } from '../user/user.service.js';
import { toFileEntry, toTrashEntry, toVersionView } from './file-views.js';
import { fileNotFound, type FilesRepository } from './files.repository.js';
import type { VersionDeltas } from './version-deltas.js';

export interface FilesPolicy {
  trashDays: number;
}

const MAX_PAGE = 1000;

/** Browsing, downloading, and deleting to and restoring from the trash. */
export class FilesService {
  constructor(
    private readonly files: FilesRepository,
    private readonly blobs: BlobStore,
    private readonly notifier: ChangeNotifier,
    private readonly deltas: VersionDeltas,
    private readonly policy: FilesPolicy,
    private readonly now: () => number = Date.now,
  ) {}

  /** One page of a folder's live entries in name order; nextCursor continues it. */
  async list(principal: Principal, dir: string, cursor: string | null, limit: number): Promise<FileList> {
    const folder = normalizePath(dir, { allowRoot: true });
    if (folder !== '') {
      const entry = await this.files.findLive(principal.userId, folder);
      if (entry?.kind !== 'folder') throw fileNotFound(folder);
    }
    const pageSize = Math.min(Math.max(limit, 1), MAX_PAGE);
    const after = cursor === null ? null : Buffer.from(cursor, 'base64url').toString('utf8');
    const rows = await this.files.list(principal.userId, folder, after, pageSize + 1);
    const page = rows.slice(0, pageSize);
    const nextCursor = rows.length > pageSize ? Buffer.from(page.at(-1)!.name, 'utf8').toString('base64url') : null;
    return { entries: page.map(toFileEntry), nextCursor };
  }

  async stat(principal: Principal, path: string): Promise<FileEntry> {
    const normalized = normalizePath(path);
    const entry = await this.files.findLive(principal.userId, normalized);
    if (!entry) throw fileNotFound(normalized);
    return toFileEntry(entry);
  }

  /** Every version of a live file, newest first. */
  async versions(principal: Principal, path: string): Promise<FileVersionView[]> {
    const normalized = normalizePath(path);
    const entry = await this.files.findLive(principal.userId, normalized);
    if (entry?.kind !== 'file') throw fileNotFound(normalized);
    return (await this.files.versions(principal.userId, entry.id)).map(toVersionView);
  }

  /** The version to download: the head of the live file at path, or the named version of it. */
  async resolveVersion(principal: Principal, path: string, versionId: string | null): Promise<FileVersionView> {
    const normalized = normalizePath(path);
    const entry = await this.files.findLive(principal.userId, normalized);
    if (entry?.kind !== 'file') throw fileNotFound(normalized);
    const version = await this.files.findVersion(principal.userId, versionId ?? entry.head_version_id!);
    if (!version || version.file_id !== entry.id) {
      throw new PvError('PV_NOT_FOUND', `No version ${versionId} of ${normalized}.`, { fix: `See \`photovault versions ${normalized}\`.` });
    }
    return toVersionView(version);
  }

  /**
   * The manifest of a version (compact, base64), so a client can rebuild the file from chunks it
   * already has and fetch only the rest with range reads.
   */
  async manifest(principal: Principal, version: FileVersionView): Promise<string> {
    if (!(await this.files.findVersion(principal.userId, version.id))) throw new PvError('PV_NOT_FOUND', 'No such version.');
    return encodeManifest(await this.files.manifestOf(version.contentHash)).toString('base64');
  }

  /**
   * The manifests of the heads of several files in one go, for a client about to download them:
   * per path what manifest() of its resolved head gives, or the error resolving it threw.
   */
  async manifests(principal: Principal, paths: string[]): Promise<ManifestsResult['manifests']> {
    const normalized = paths.map((path) => {
      try {
        return normalizePath(path);
      } catch (error) {
        if (!isPvError(error)) throw error;
        return error;
      }
    });
    const wanted = normalized.filter((path): path is string => typeof path === 'string');
    const entries = await this.files.findLiveMany(principal.userId, wanted);
    const heads = [...entries.values()].filter((entry) => entry.kind === 'file').map((entry) => entry.head_version_id!);
    const versions = await this.files.findVersions(principal.userId, heads);
    const manifests = await this.files.manifestsOf([...new Set([...versions.values()].map((version) => version.content_hash))]);
    return paths.map((path, at) => {
      const resolved = normalized[at]!;
      if (typeof resolved !== 'string') return { path, code: resolved.code, detail: resolved.message };
      const entry = entries.get(resolved);
      const version = entry?.kind === 'file' ? versions.get(entry.head_version_id!) : undefined;
      if (!version) {
        const error = fileNotFound(resolved);
        return { path, code: error.code, detail: error.message };
      }
      return { path, version: toVersionView(version), manifest: encodeManifest(manifests.get(version.content_hash)!).toString('base64') };
    });
  }

  /**
   * A version as a patch of an older version the client holds (any of the user's, since its copy
   * may have moved): the manifest as a diff and the changed regions as binary deltas.
   */
  async patch(principal: Principal, version: FileVersionView, baseVersionId: string): Promise<VersionPatch> {
    return this.deltas.patch(await this.deltas.baseOf(principal.userId, baseVersionId), version);
  }

  /** Streams a version's bytes (a range of them when given), from whichever bucket holds them. */
  async read(principal: Principal, version: FileVersionView, range?: ByteRange): Promise<Readable> {
    // Ownership is checked again here so no caller can read a version by id alone.
    if (!(await this.files.findVersion(principal.userId, version.id))) throw new PvError('PV_NOT_FOUND', 'No such version.');
    return openObject(this.blobs, this.files, version.contentHash, { range });
  }

  /**
   * The contents of several versions in one body (docs/protocol.md, "Whole files"): per id, in
   * order, a record of its bytes, or an empty one saying why not (unknown or another user's
   * version alike PV_NOT_FOUND; one too large to travel with others PV_PAYLOAD_TOO_LARGE).
   */
  async contents(principal: Principal, versionIds: string[]): Promise<Readable> {
    const versions = await this.files.findVersions(principal.userId, versionIds);
    // Where each object lies, looked up once for all; openObject still looks again for one the
    // tiering job moved meanwhile.
    const buckets = await this.files.bucketsOf([...new Set([...versions.values()].map((version) => version.content_hash))]);
    return Readable.from(this.contentRecords(versionIds, versions, buckets), { objectMode: false });
  }

  private async *contentRecords(
    versionIds: string[],
    versions: Map<string, FileVersionRow>,
    buckets: Map<string, Bucket>,
  ): AsyncGenerator<Buffer> {
    for (const versionId of versionIds) {
      const version = versions.get(versionId);
      if (!version) {
        yield failedRecord(versionId, 'PV_NOT_FOUND', `No version ${versionId}.`);
        continue;
      }
      if (version.size > WHOLE_FILE_MAX_BYTES) {
        const detail = `Version ${versionId} has ${version.size} bytes; only files of at most ${WHOLE_FILE_MAX_BYTES} travel with others.`;
        yield failedRecord(versionId, 'PV_PAYLOAD_TOO_LARGE', detail);
        continue;
      }
      // Opened before its header goes out: a missing object is then a record of its own, where
      // failing after the header could only break the whole body.
      const object = await openObject(this.blobs, this.files, version.content_hash, { bucket: buckets.get(version.content_hash) }).catch(
        blobMissingAsNull,
      );
      if (!object) {
        yield failedRecord(versionId, 'PV_NOT_FOUND', `The content of version ${versionId} is not stored.`);
        continue;
      }
      const header: ContentRecordHeader = { versionId, contentHash: version.content_hash, size: version.size };
      try {
        yield recordHeader(header);
        yield* objectBytes(object, version.size);
      } finally {
        // A client gone midway ends this generator at a yield: the object must not stay open.
        object.destroy();
      }
    }
  }

  async remove(principal: Principal, path: string): Promise<TrashEntry> {
    const entry = await this.files.moveToTrash(principal.userId, normalizePath(path), principal.deviceId, this.now());
    this.notifier.changed(principal.userId);
    return toTrashEntry(entry);
  }

  /** Moves (renames) a file or folder to a free path. */
  async move(principal: Principal, from: string, to: string): Promise<FileEntry> {
    const row = await this.files.move(principal.userId, normalizePath(from), normalizePath(to), principal.deviceId, this.now());
    this.notifier.changed(principal.userId);
    return toFileEntry(row);
  }

  async trash(principal: Principal): Promise<TrashEntry[]> {
    return (await this.files.listTrash(principal.userId)).map(toTrashEntry);
  }

  async restore(principal: Principal, trashId: string): Promise<TrashEntry> {
    const entry = await this.files.restore(principal.userId, trashId, principal.deviceId, this.now());
    this.notifier.changed(principal.userId);
    return toTrashEntry(entry);
  }

  /**
   * Deletes the user's trash for good, and the stored objects nothing refers to any more.
   * Returns only the entry count: how many objects went would tell whether others hold them.
   */
  async emptyTrash(principal: Principal): Promise<number> {
    return (await this.purge(principal.userId, null)).entries;
  }

  /** Deletes every user's trash entries older than the retention period. */
  async purgeExpiredTrash(): Promise<{ entries: number; objectsDeleted: number }> {
    return this.purge(null, this.now() - this.policy.trashDays * 86_400_000);
  }

  private async purge(ownerId: string | null, deletedBefore: number | null) {
    const { entries, orphans } = await this.files.purgeTrash(ownerId, deletedBefore);
    // The metadata no longer names these objects, so deleting them can't leave a dangling row;
    // a crash before this point leaves unreferenced blobs, which `server verify` reports.
    for (const orphan of orphans) await this.blobs.delete(orphan.bucket as Bucket, objectKey(orphan.hash));
    return { entries, objectsDeleted: orphans.length };
  }
}

function blobMissingAsNull(error: unknown): null {
  if (isPvError(error, 'PV_BLOB_NOT_FOUND')) return null;
  throw error;
}

/** The framing of a record that carries no content, saying why. */
function failedRecord(versionId: string, code: PvErrorCode, detail: string): Buffer {
  const header: ContentRecordHeader = { versionId, size: 0, code, detail };
  return recordHeader(header);
}

/**
 * The bytes of an object, exactly size of them. One that ends early or runs on would shift every
 * record after it, so it fails the body instead (the client then fetches those files alone).
 */
async function* objectBytes(object: Readable, size: number): AsyncGenerator<Buffer> {
  let sent = 0;
  for await (const piece of object as AsyncIterable<Buffer>) {
    sent += piece.length;
    if (sent > size) break;
    yield piece;
  }
  if (sent !== size) {
    throw new PvError('PV_INTEGRITY', `A stored object holds ${sent > size ? 'more' : 'fewer'} than its ${size} bytes.`, {
      fix: 'Run `photovault server verify`.',
    });
  }
}
