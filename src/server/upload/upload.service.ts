import { createHash, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { CHUNK_MAX_SIZE } from '../../core/chunker.js';
import { isPvError, PvError } from '../../core/errors.js';
import { parseContentHash } from '../../core/hash.js';
import { decodeManifest, type Manifest, MAX_MANIFEST_CHUNKS } from '../../core/manifest.js';
import { normalizePath } from '../../core/paths.js';
import type { ChunkReceipt, UploadRequest, UploadStatus } from '../../core/protocol.js';
import type { BlobStore, Bucket } from '../../infra/blobs/blob-store.js';
import type { StagingArea } from '../../infra/blobs/staging-area.js';
import type { EventBus } from '../../infra/bus/event-bus.js';
import type { Db } from '../../infra/db/database.js';
import type { UploadRow } from '../../infra/db/schema.js';
import { toFileEntry, toVersionView } from '../files/file-views.js';
import type { FilesRepository, RecordedVersion } from '../files/files.repository.js';
import { objectKey } from '../objects.js';
import type { ChangeNotifier } from '../sync/change-notifier.js';
import type { Principal } from '../user/user.service.js';
import type { ChunkLocation, ChunkPlace, UploadRepository } from './upload.repository.js';

export interface UploadPolicy {
  expiryHours: number;
  maxFileBytes: number;
}

/** What the upload service counts, for /metrics. */
export interface UploadMetrics {
  chunkReceived(bytes: number): void;
  committed(kind: 'whole-file-dedup' | 'assembled', bytes: number): void;
}

const NEW_OBJECT_BUCKET: Bucket = 'uploads';

const uploadNotFound = (uploadId: string) =>
  new PvError('PV_UPLOAD_NOT_FOUND', `No upload ${uploadId}; it may have been committed or have expired.`, {
    fix: 'Start the upload again with POST /api/v1/uploads; chunks already stored are not sent twice.',
  });

/**
 * The transfer protocol of DESIGN section 3: negotiate, receive verified chunks, commit by
 * assembling one object from new chunks and ranges of objects the user already holds.
 */
export class UploadService {
  constructor(
    private readonly db: Db,
    private readonly uploads: UploadRepository,
    private readonly files: FilesRepository,
    private readonly blobs: BlobStore,
    private readonly staging: StagingArea,
    private readonly bus: EventBus,
    private readonly notifier: ChangeNotifier,
    private readonly policy: UploadPolicy,
    private readonly metrics: UploadMetrics,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Starts (or resumes) an upload. Content the user already holds is committed at once; else
   * the answer lists the chunks to send: all but those in the user's own stored versions.
   */
  async begin(principal: Principal, request: UploadRequest): Promise<UploadStatus> {
    const path = normalizePath(request.path);
    const contentHash = parseContentHash(request.contentHash, 'contentHash');
    if (request.size > this.policy.maxFileBytes) {
      throw new PvError('PV_UPLOAD_TOO_LARGE', `The file is larger than this server accepts (${this.policy.maxFileBytes} bytes).`, {
        fix: 'Ask the administrator to raise uploads.maxFileBytes.',
      });
    }
    const manifest = decodeManifest(Buffer.from(request.manifest, 'base64'), MAX_MANIFEST_CHUNKS);
    checkManifest(manifest, request.size);

    const held = await this.files.findVersionByContent(principal.userId, contentHash);
    if (held) {
      const recorded = await this.db.transaction().execute((trx) =>
        this.recordVersion(trx, principal, {
          path,
          contentHash,
          size: request.size,
          mtime: request.mtime,
          baseVersionId: request.baseVersionId ?? null,
        }),
      );
      this.metrics.committed('whole-file-dedup', request.size);
      await this.announce(principal, recorded);
      return committedStatus(recorded);
    }

    const resumable = await this.uploads.findResumable(principal.userId, path, contentHash);
    if (resumable) {
      await this.uploads.extendExpiry(resumable.id, this.expiry());
      return this.pendingStatus(resumable.id);
    }

    const owned = await this.uploads.locateOwnedChunks(principal.userId, [...new Set(manifest.map((c) => c.hash))]);
    const needed = placesOf(manifest).filter((place) => !owned.has(place.hash));
    const at = this.now();
    const upload: UploadRow = {
      id: randomUUID(),
      owner_id: principal.userId,
      device_id: principal.deviceId,
      path,
      size: request.size,
      mtime: request.mtime,
      content_hash: contentHash,
      manifest: request.manifest,
      base_version_id: request.baseVersionId ?? null,
      created_at: at,
      expires_at: this.expiry(),
    };
    if (!(await this.uploads.insertUpload(upload, needed))) {
      // An identical negotiation got there first: resume that one.
      return this.pendingStatus((await this.uploads.findResumable(principal.userId, path, contentHash))!.id);
    }
    return pendingStatus(upload.id, needed);
  }

  /** What an upload still needs. */
  async status(principal: Principal, uploadId: string): Promise<UploadStatus> {
    await this.requireUpload(principal, uploadId);
    return this.pendingStatus(uploadId);
  }

  /**
   * Stores one chunk after checking its bytes against its hash and length; nothing of a chunk
   * that fails the check is kept. Sending a chunk already stored is harmless.
   */
  async putChunk(principal: Principal, uploadId: string, hash: string, body: Readable): Promise<ChunkReceipt> {
    parseContentHash(hash, 'chunk hash');
    const found = await this.uploads.findUploadChunk(principal.userId, uploadId, hash);
    if (!found || found.length === null) {
      body.resume();
      if (!found) throw uploadNotFound(uploadId);
      throw new PvError('PV_UPLOAD_CHUNK_NOT_EXPECTED', `Chunk ${hash} is not one this upload is waiting for.`, {
        fix: 'Send only the chunks listed in the upload status (GET /api/v1/uploads/{id}).',
      });
    }
    if (found.received) {
      body.resume();
      return { hash, stored: false };
    }
    // A chunk is at most 256 KiB: hold it whole, check it, and only then write a byte of it.
    const bytes = await readAtMost(body, found.length + 1);
    if (bytes.length < found.length) {
      throw new PvError(
        'PV_UPLOAD_CHUNK_TRUNCATED',
        `Chunk ${hash} arrived with ${bytes.length} of its ${found.length} bytes; nothing was kept.`,
        {
          fix: 'Send the chunk again.',
        },
      );
    }
    if (bytes.length > found.length || createHash('sha256').update(bytes).digest('hex') !== hash) {
      throw new PvError('PV_UPLOAD_CHUNK_HASH_MISMATCH', `The bytes sent for chunk ${hash} do not have that hash; nothing was kept.`, {
        fix: 'Re-read the file and send the chunk again; if it changed meanwhile, start a new upload.',
      });
    }
    await this.staging.write(uploadId, bytes, found.offsets);
    await this.uploads.markReceived(uploadId, hash, this.now());
    // Extending the expiry on every chunk would double the writes; once a minute is plenty.
    if (found.expiresAt < this.expiry() - 60_000) await this.uploads.extendExpiry(uploadId, this.expiry());
    this.metrics.chunkReceived(found.length);
    return { hash, stored: true };
  }

  /**
   * Completes the staged file with the ranges that come from the user's objects, checks the
   * whole-content hash and makes it the object; only a fully written, verified object is then
   * recorded, in one transaction with the version.
   */
  async commit(principal: Principal, uploadId: string): Promise<UploadStatus> {
    const upload = await this.requireUpload(principal, uploadId);
    const missing = await this.uploads.missingChunks(uploadId);
    if (missing.length > 0) throw incomplete(missing.map((c) => c.hash));

    const manifest = decodeManifest(Buffer.from(upload.manifest, 'base64'), MAX_MANIFEST_CHUNKS);
    const received = await this.uploads.places(uploadId);
    const staged = new Set(received.map((place) => place.offset));
    // The rest of the file comes from objects the user already holds.
    const fromObjects = placesOf(manifest).filter((place) => !staged.has(place.offset));
    const owned = await this.uploads.locateOwnedChunks(principal.userId, [...new Set(fromObjects.map((place) => place.hash))]);
    const lost = fromObjects.filter((place) => !owned.has(place.hash));
    if (lost.length > 0) {
      // The user deleted the file those chunks came from since the upload began: ask for them.
      await this.uploads.addExpectedChunks(uploadId, lost);
      throw incomplete([...new Set(lost.map((place) => place.hash))]);
    }
    for (const run of copyPlan(fromObjects, owned)) {
      // Streamed piece by piece: a run can be most of a file of many gigabytes.
      let at = run.fileOffset;
      for await (const piece of await this.blobs.get(run.bucket, objectKey(run.objectHash), { start: run.start, end: run.end })) {
        await this.staging.write(uploadId, piece as Uint8Array, [at]);
        at += (piece as Uint8Array).length;
      }
    }

    const expected = { sha256: upload.content_hash, size: upload.size };
    const existing = await this.uploads.findObject(upload.content_hash);
    try {
      if (existing) {
        // Stored already (another user's upload): only prove these bytes are that content.
        const actual = await this.staging.digest(uploadId);
        if (actual.sha256 !== expected.sha256 || actual.size !== expected.size)
          throw new PvError('PV_INTEGRITY', 'Staged content does not match.');
      } else {
        await this.staging.promote(uploadId, NEW_OBJECT_BUCKET, objectKey(upload.content_hash), expected);
      }
    } catch (error) {
      if (!isPvError(error, 'PV_INTEGRITY')) throw error;
      // Staged bytes are not flushed, so a crash can lose or tear some: find those chunks and
      // ask the client for them again rather than blaming it.
      const damaged = await this.damagedChunks(uploadId, received);
      if (damaged.length > 0) {
        await this.uploads.markMissing(uploadId, damaged);
        throw incomplete(damaged);
      }
      // Every chunk matched its hash, so the manifest and the content hash disagree: this
      // upload can never succeed. Drop it rather than keep bytes nobody can commit.
      await this.discard(uploadId);
      throw new PvError(
        'PV_UPLOAD_HASH_MISMATCH',
        'The assembled file does not have the content hash the upload declared; nothing was stored.',
        {
          fix: 'Re-read the file (it may have changed while uploading) and start a new upload.',
        },
      );
    }

    const at = this.now();
    const recorded = await this.db.transaction().execute(async (trx) => {
      if (existing) {
        if (!(await this.uploads.findObject(upload.content_hash, trx))) {
          throw new PvError('PV_CONFLICT', 'The stored copy of this content was deleted while committing.', { fix: 'Commit again.' });
        }
      } else {
        const chunks = placesOf(manifest);
        await this.uploads.insertObject(trx, { hash: upload.content_hash, size: upload.size, bucket: NEW_OBJECT_BUCKET, chunks }, at);
      }
      const result = await this.recordVersion(trx, principal, {
        path: upload.path,
        contentHash: upload.content_hash,
        size: upload.size,
        mtime: upload.mtime,
        baseVersionId: upload.base_version_id,
      });
      await this.uploads.deleteUpload(trx, uploadId);
      return result;
    });
    await this.staging.discard(uploadId);
    this.metrics.committed('assembled', upload.size);
    await this.announce(principal, recorded);
    return committedStatus(recorded);
  }

  /** Abandons an upload and what it staged. */
  async cancel(principal: Principal, uploadId: string): Promise<void> {
    await this.requireUpload(principal, uploadId);
    await this.discard(uploadId);
  }

  /**
   * Removes uploads idle past their expiry, and staging whose upload no longer exists (left by a
   * crash between a commit's transaction and its clean-up). Returns how many uploads expired.
   */
  async sweep(): Promise<number> {
    const expired = await this.uploads.expiredUploads(this.now());
    for (const { id } of expired) await this.discard(id);
    for await (const uploadId of this.staging.uploads()) {
      if (!(await this.uploads.uploadExists(uploadId))) await this.staging.discard(uploadId);
    }
    return expired.length;
  }

  private async recordVersion(
    trx: Db,
    principal: Principal,
    version: { path: string; contentHash: string; size: number; mtime: number; baseVersionId: string | null },
  ): Promise<RecordedVersion> {
    return this.files.recordVersion(trx, {
      ownerId: principal.userId,
      deviceId: principal.deviceId,
      deviceName: principal.deviceName ?? 'api',
      at: this.now(),
      ...version,
    });
  }

  /** Chunks whose staged bytes are gone or torn; their places read back with another hash. */
  private async damagedChunks(uploadId: string, places: ChunkPlace[]): Promise<string[]> {
    const damaged = new Set<string>();
    for (const place of places) {
      if (damaged.has(place.hash)) continue;
      const bytes = await this.staging.read(uploadId, place.offset, place.length);
      if (createHash('sha256').update(bytes).digest('hex') !== place.hash) damaged.add(place.hash);
    }
    return [...damaged];
  }

  private async pendingStatus(uploadId: string): Promise<UploadStatus> {
    return pendingStatus(uploadId, await this.uploads.missingChunks(uploadId));
  }

  private async requireUpload(principal: Principal, uploadId: string): Promise<UploadRow> {
    // Another user's upload id answers exactly like an unknown one.
    const upload = await this.uploads.findUpload(principal.userId, uploadId);
    if (!upload) throw uploadNotFound(uploadId);
    return upload;
  }

  private async discard(uploadId: string): Promise<void> {
    await this.uploads.deleteUpload(this.db, uploadId);
    await this.staging.discard(uploadId);
  }

  /** Tells the user's devices and the workers about a committed version. */
  private async announce(principal: Principal, recorded: RecordedVersion): Promise<void> {
    this.notifier.changed(principal.userId);
    await this.bus.publish('file.uploaded', {
      ownerId: principal.userId,
      fileId: recorded.file.id,
      versionId: recorded.version.id,
      path: toFileEntry(recorded.file).path,
      contentHash: recorded.version.content_hash,
      size: recorded.version.size,
    });
  }

  private expiry(): number {
    return this.now() + this.policy.expiryHours * 3_600_000;
  }
}

/** Chunk lengths must be 1..max and add up to the declared size. */
function checkManifest(manifest: Manifest, size: number): void {
  let total = 0;
  for (const entry of manifest) {
    parseContentHash(entry.hash, 'manifest chunk hash');
    if (entry.length < 1 || entry.length > CHUNK_MAX_SIZE) {
      throw new PvError('PV_MANIFEST_INVALID', `A manifest chunk has length ${entry.length}; chunks hold 1 to ${CHUNK_MAX_SIZE} bytes.`, {
        fix: 'Chunk files with the protocol chunker (docs/protocol.md).',
      });
    }
    total += entry.length;
  }
  if (total !== size) {
    throw new PvError('PV_MANIFEST_INVALID', `The manifest describes ${total} bytes but the file has ${size}.`, {
      fix: 'Build the manifest and the size from the same read of the file.',
    });
  }
}

/** Each chunk of the manifest with the offset it takes in the file. */
function placesOf(manifest: Manifest): ChunkPlace[] {
  let offset = 0;
  return manifest.map(({ hash, length }) => ({ hash, length, offset: (offset += length) - length }));
}

type CopyRun = { bucket: Bucket; objectHash: string; start: number; end: number; fileOffset: number };

/**
 * Reads that fill places from stored objects, runs of places that lie back to back both in the
 * file and in one object merged into one range (an edited file is mostly such runs).
 */
function copyPlan(places: ChunkPlace[], owned: Map<string, ChunkLocation>): CopyRun[] {
  const runs: CopyRun[] = [];
  for (const place of places) {
    const at = owned.get(place.hash)!;
    const last = runs.at(-1);
    if (
      last &&
      last.objectHash === at.objectHash &&
      last.end + 1 === at.offset &&
      last.fileOffset + (last.end - last.start + 1) === place.offset
    ) {
      last.end += at.length;
    } else {
      runs.push({
        bucket: at.bucket as Bucket,
        objectHash: at.objectHash,
        start: at.offset,
        end: at.offset + at.length - 1,
        fileOffset: place.offset,
      });
    }
  }
  return runs;
}

function pendingStatus(uploadId: string, missing: { hash: string; length: number }[]): UploadStatus {
  const distinct = new Map(missing.map((c) => [c.hash, c.length]));
  return { uploadId, state: 'pending', missing: [...distinct.keys()], missingBytes: [...distinct.values()].reduce((sum, n) => sum + n, 0) };
}

/** Reads a stream into memory, stopping once more than limit bytes arrived (the rest is drained). */
async function readAtMost(body: Readable, limit: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let length = 0;
  for await (const part of body as AsyncIterable<Buffer>) {
    if (length >= limit) continue;
    parts.push(part);
    length += part.length;
  }
  return Buffer.concat(parts, Math.min(length, limit));
}

function incomplete(missing: string[]): PvError {
  return new PvError('PV_UPLOAD_INCOMPLETE', `${missing.length} chunk(s) are still missing; nothing was committed.`, {
    missing,
    fix: 'PUT the missing chunks (GET /api/v1/uploads/{id} lists them), then commit again.',
  });
}

function committedStatus(recorded: RecordedVersion): UploadStatus {
  return {
    uploadId: null,
    state: 'committed',
    missing: [],
    missingBytes: 0,
    file: toFileEntry(recorded.file),
    version: toVersionView(recorded.version),
    conflictPath: recorded.conflictPath,
  };
}
