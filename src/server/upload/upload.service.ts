import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { Compile } from 'typebox/compile';
import { inBlocks } from '../../core/byte-blocks.js';
import { CHUNK_MAX_SIZE } from '../../core/chunker.js';
import { isPvError, notFoundAsNull, PvError } from '../../core/errors.js';
import { type FileRecord, readFileRecords, recordContent } from '../../core/file-records.js';
import { parseContentHash, sha256OfSpans } from '../../core/hash.js';
import { SharedBuffers } from '../../core/shared-buffers.js';
import { piecesOf } from '../../core/stream-pieces.js';
import { applyDelta, MAX_SIGNED_BYTES } from '../../core/delta.js';
import { decodeManifest, encodeManifest, type Manifest, MAX_MANIFEST_CHUNKS } from '../../core/manifest.js';
import { applyManifestDiff, decodeManifestDiff } from '../../core/manifest-diff.js';
import { normalizePath } from '../../core/paths.js';
import {
  type ChunkReceipt,
  type UploadFailure,
  type UploadRequest,
  UploadRequestSchema,
  type UploadStatus,
  WHOLE_FILE_MAX_BYTES,
  WHOLE_FILES_PER_REQUEST_MAX,
  WHOLE_FILES_REQUEST_MAX_BYTES,
  type WholeFileHeader,
} from '../../core/protocol.js';
import type { BlobStore, Bucket } from '../../infra/blobs/blob-store.js';
import type { StagingArea } from '../../infra/blobs/staging-area.js';
import type { EventBus } from '../../infra/bus/event-bus.js';
import type { Db } from '../../infra/db/database.js';
import { GroupCommit } from '../../infra/db/group-commit.js';
import type { Database, UploadRow } from '../../infra/db/schema.js';
import { toFileEntry, toVersionView } from '../files/file-views.js';
import type { FilesRepository, NewVersion, RecordedVersion } from '../files/files.repository.js';
import { readAll, type VersionDeltas } from '../files/version-deltas.js';
import { objectKey } from '../../infra/blobs/object-keys.js';
import { openObject } from '../../infra/blobs/object-reader.js';
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
/** Checks the header of a file sent whole: it comes inside a binary body, past the routes' schemas. */
const WholeFileHeaderCheck = Compile(UploadRequestSchema);
/** Bytes of stored objects a commit copies into the staging per write. */
const COPY_BLOCK = 4 * 1024 * 1024;

const uploadNotFound = (uploadId: string) =>
  new PvError('PV_UPLOAD_NOT_FOUND', `No upload ${uploadId}; it may have been committed or have expired.`, {
    fix: 'Start the upload again with POST /api/v1/uploads; chunks already stored are not sent twice.',
  });

/**
 * The transfer protocol of DESIGN section 3: negotiate, receive verified chunks, commit by
 * assembling one object from new chunks and ranges of objects the user already holds.
 */
export class UploadService {
  private readonly bodyBuffers = new SharedBuffers(BODY_BUFFER_SIZES);
  /** Commits arrive together (a client sends several files at once): they share transactions. */
  private readonly transactions: GroupCommit<Database>;

  constructor(
    private readonly db: Db,
    private readonly uploads: UploadRepository,
    private readonly files: FilesRepository,
    private readonly blobs: BlobStore,
    private readonly staging: StagingArea,
    private readonly bus: EventBus,
    private readonly notifier: ChangeNotifier,
    private readonly deltas: VersionDeltas,
    private readonly policy: UploadPolicy,
    private readonly metrics: UploadMetrics,
    private readonly now: () => number = Date.now,
  ) {
    this.transactions = new GroupCommit(db);
  }

  /**
   * Starts (or resumes) an upload. Content the user already holds is committed at once; else
   * the answer lists the chunks to send: all but those in the user's own stored versions.
   */
  async begin(principal: Principal, request: UploadRequest): Promise<UploadStatus> {
    const base = request.baseVersionId ? await this.deltas.baseOf(principal.userId, request.baseVersionId).catch(notFoundAsNull) : null;
    const negotiation = this.negotiation(request, base);
    if (await this.files.findVersionByContent(principal.userId, negotiation.contentHash)) return this.commitHeld(principal, negotiation);
    const resumable = await this.uploads.findResumable(principal.userId, negotiation.path, negotiation.contentHash);
    if (resumable) return this.resume(resumable);
    const owned = await this.uploads.locateOwnedChunks(principal.userId, [...new Set(negotiation.manifest.map((c) => c.hash))]);
    const created = await this.create(principal, negotiation, owned);
    return created.fresh ? this.withDeltaBases(created.status, base, negotiation.manifest) : created.status;
  }

  /**
   * Several negotiations in one: the answer for each is what begin() would have given, or the
   * error it would have thrown, as a failure of that one alone. The lookups are made once for
   * all, and the uploads created (or content committed) in one transaction.
   */
  async beginMany(
    principal: Principal,
    requests: UploadRequest[],
    options: { sendWhole?: boolean } = {},
  ): Promise<(UploadStatus | UploadFailure)[]> {
    const outcomes: (UploadStatus | UploadFailure)[] = new Array(requests.length);
    const settle = async (at: number, work: () => Promise<UploadStatus>) => {
      try {
        outcomes[at] = await work();
      } catch (error) {
        outcomes[at] = failureOf(error);
      }
    };
    // Edits of a version the user holds are negotiated as begin() does (manifest diffs, delta bases).
    const based = [...requests.keys()].filter((at) => requests[at]!.baseVersionId || requests[at]!.manifestDiff !== undefined);
    const plain: (Negotiation & { at: number })[] = [];
    for (const [at, request] of requests.entries()) {
      if (based.includes(at)) continue;
      try {
        plain.push({ at, ...this.negotiation(request, null) });
      } catch (error) {
        outcomes[at] = failureOf(error);
      }
    }
    const held = await this.uploads.heldContents(principal.userId, [...new Set(plain.map((n) => n.contentHash))]);
    const toCreate = plain.filter((n) => !held.has(n.contentHash));
    const resumable = await this.uploads.findResumables(principal.userId, toCreate);
    const fresh = toCreate.filter((n) => !resumable.has(resumeKey(n)));
    const owned = await this.uploads.locateOwnedChunks(principal.userId, [
      ...new Set(fresh.flatMap((n) => n.manifest.map((chunk) => chunk.hash))),
    ]);
    // A small file with nothing to take from the user's own objects goes whole, many to a
    // request (POST /uploads/files), with no upload to record now and clean up later.
    const whole = (n: Negotiation) =>
      options.sendWhole === true && n.size <= WHOLE_FILE_MAX_BYTES && !n.manifest.some((c) => owned.has(c.hash));
    for (const n of fresh.filter(whole)) outcomes[n.at] = sendWholeStatus(n.manifest);
    // Started in one turn, so their transactions are grouped into one.
    await Promise.all([
      ...plain.filter((n) => held.has(n.contentHash)).map((n) => settle(n.at, () => this.commitHeld(principal, n))),
      ...toCreate.filter((n) => resumable.has(resumeKey(n))).map((n) => settle(n.at, () => this.resume(resumable.get(resumeKey(n))!))),
      ...fresh.filter((n) => !whole(n)).map((n) => settle(n.at, async () => (await this.create(principal, n, owned)).status)),
      ...based.map((at) => settle(at, () => this.begin(principal, requests[at]!))),
    ]);
    return outcomes;
  }

  /** Checks a negotiation and reads its manifest; throws what the client must fix. */
  private negotiation(request: UploadRequest, base: { manifest: Manifest } | null): Negotiation {
    const path = normalizePath(request.path);
    const contentHash = parseContentHash(request.contentHash, 'contentHash');
    if (request.size > this.policy.maxFileBytes) {
      throw new PvError('PV_UPLOAD_TOO_LARGE', `The file is larger than this server accepts (${this.policy.maxFileBytes} bytes).`, {
        fix: 'Ask the administrator to raise uploads.maxFileBytes.',
      });
    }
    const manifest = this.manifestOf(request, base);
    checkManifest(manifest, request.size);
    return { path, contentHash, size: request.size, mtime: request.mtime, baseVersionId: request.baseVersionId ?? null, manifest };
  }

  /** Records the version of content the user already holds: nothing to send (whole-file dedup). */
  private async commitHeld(principal: Principal, negotiation: Negotiation): Promise<UploadStatus> {
    const { path, contentHash, size, mtime, baseVersionId } = negotiation;
    const recorded = await this.transactions.run((trx) =>
      this.recordVersion(trx, principal, { path, contentHash, size, mtime, baseVersionId }),
    );
    this.metrics.committed('whole-file-dedup', size);
    await this.announce(principal, recorded);
    return committedStatus(recorded);
  }

  /** An unfinished upload of the same content to the same path: what it still needs. */
  private async resume(upload: UploadRow): Promise<UploadStatus> {
    await this.uploads.extendExpiry(upload.id, this.expiry());
    return this.pendingStatus(upload);
  }

  /**
   * Records a new upload needing every chunk the user does not hold (owned: where the user's
   * chunks are). fresh is false when an identical negotiation got there first: then its status.
   */
  private async create(
    principal: Principal,
    negotiation: Negotiation,
    owned: Map<string, ChunkLocation>,
  ): Promise<{ status: UploadStatus; fresh: boolean }> {
    const { path, contentHash, manifest } = negotiation;
    const needed = placesOf(manifest).filter((place) => !owned.has(place.hash));
    const upload: UploadRow = {
      id: randomUUID(),
      owner_id: principal.userId,
      device_id: principal.deviceId,
      path,
      size: negotiation.size,
      mtime: negotiation.mtime,
      content_hash: contentHash,
      manifest: encodeManifest(manifest).toString('base64'),
      base_version_id: negotiation.baseVersionId,
      created_at: this.now(),
      expires_at: this.expiry(),
    };
    if (!(await this.transactions.run((trx) => this.uploads.insertUpload(trx, upload, needed)))) {
      // An identical negotiation got there first: resume that one.
      return { status: await this.pendingStatus((await this.uploads.findResumable(principal.userId, path, contentHash))!), fresh: false };
    }
    return { status: pendingStatus(upload.id, needed), fresh: true };
  }

  /** The upload's manifest: sent whole, or as a diff against the base version's. */
  private manifestOf(request: UploadRequest, base: { manifest: Manifest } | null): Manifest {
    if (request.manifestDiff === undefined) {
      if (request.manifest === undefined) {
        throw new PvError('PV_INVALID_INPUT', 'An upload needs its manifest.', {
          fix: 'Send manifest, or manifestDiff with baseVersionId.',
        });
      }
      return decodeManifest(Buffer.from(request.manifest, 'base64'), MAX_MANIFEST_CHUNKS);
    }
    if (!base) {
      // The base may have been purged since the client last synced: it can always send the whole manifest.
      throw new PvError('PV_MANIFEST_INVALID', 'manifestDiff needs a baseVersionId of a version you hold.', {
        fix: 'Send the whole manifest instead.',
      });
    }
    return applyManifestDiff(
      base.manifest,
      decodeManifestDiff(Buffer.from(request.manifestDiff, 'base64'), MAX_MANIFEST_CHUNKS),
      MAX_MANIFEST_CHUNKS,
    );
  }

  /** Adds, for an upload based on an older version, the replaced bytes its missing chunks may be sent as deltas against. */
  private async withDeltaBases(
    status: UploadStatus,
    base: Awaited<ReturnType<VersionDeltas['baseOf']>> | null,
    manifest: Manifest,
  ): Promise<UploadStatus> {
    if (!base || status.missing.length === 0) return status;
    const deltaBases = await this.deltas.deltaBases(base, manifest, new Set(status.missing));
    return deltaBases.length > 0 ? { ...status, deltaBases } : status;
  }

  /** What an upload still needs. */
  async status(principal: Principal, uploadId: string): Promise<UploadStatus> {
    return this.pendingStatus(await this.requireUpload(principal, uploadId));
  }

  /**
   * Stores one chunk after checking its bytes against its hash and length; nothing of a chunk
   * that fails the check is kept. Sending a chunk already stored is harmless.
   */
  async putChunk(principal: Principal, uploadId: string, hash: string, body: Readable): Promise<ChunkReceipt> {
    const found = await this.expectedChunk(principal, uploadId, hash, body);
    if (found === 'received') return { hash, stored: false };
    // A chunk is at most 256 KiB: hold it whole, check it, and only then write a byte of it.
    return this.storeChunk(uploadId, hash, found, await readAtMost(body, found.length + 1));
  }

  /** Stores one chunk sent as a delta: putChunksDelta for a run of one. */
  async putChunkDelta(principal: Principal, uploadId: string, hash: string, base: string[], body: Readable): Promise<ChunkReceipt> {
    const [receipt] = await this.putChunksDelta(principal, uploadId, [hash], base, body);
    return receipt!;
  }

  /**
   * Stores chunks sent as one delta against base: chunks of the user's own stored versions, back
   * to back (an upload status's deltaBases). The delta rebuilds the named chunks back to back, so
   * a run of new chunks that replaced a region costs literal bytes only where the content
   * changed, not at every chunk's edges. The rebuilt bytes pass putChunks' checks.
   */
  async putChunksDelta(principal: Principal, uploadId: string, hashes: string[], base: string[], body: Readable): Promise<ChunkReceipt[]> {
    // A delta never needs more room than a literal of all its chunks and a few bytes of framing.
    const largest = hashes.length * CHUNK_MAX_SIZE;
    const delta = await readAtMost(body, largest + 64);
    const baseBytes = await this.readOwnedChunks(principal, base);
    return this.putChunks(principal, uploadId, hashes, Readable.from([applyDelta(baseBytes, delta, largest)]));
  }

  /** The places an upload expects this chunk at, 'received' if it has it; throws (draining body) if it expects none. */
  private async expectedChunk(principal: Principal, uploadId: string, hash: string, body: Readable) {
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
      return 'received';
    }
    return { ...found, length: found.length };
  }

  /** The bytes of these chunks, back to back, from the user's own stored objects. */
  private async readOwnedChunks(principal: Principal, hashes: string[]): Promise<Buffer> {
    for (const hash of hashes) parseContentHash(hash, 'delta base chunk hash');
    const owned = await this.uploads.locateOwnedChunks(principal.userId, [...new Set(hashes)]);
    const parts: Buffer[] = [];
    let total = 0;
    for (const hash of hashes) {
      const at = owned.get(hash);
      // Unknown and other users' chunks answer alike: a delta must never reveal what others hold.
      if (!at)
        throw new PvError('PV_DELTA_INVALID', `The delta's base chunk ${hash} is not one of your stored chunks.`, {
          fix: 'Use the base the upload status offers, or send the chunk whole.',
        });
      total += at.length;
      if (total > MAX_SIGNED_BYTES)
        throw new PvError('PV_DELTA_INVALID', `A delta base holds at most ${MAX_SIGNED_BYTES} bytes.`, {
          fix: 'Send the chunk whole.',
        });
      const range = { start: at.offset, end: at.offset + at.length - 1 };
      parts.push(await readAll(await openObject(this.blobs, this.files, at.objectHash, { range, bucket: at.bucket as Bucket }), at.length));
    }
    return Buffer.concat(parts, total);
  }

  /** Checks a chunk's bytes against its hash and length and stages them at every place it takes. */
  private async storeChunk(
    uploadId: string,
    hash: string,
    found: { length: number; offsets: number[]; expiresAt: number },
    bytes: Buffer,
  ): Promise<ChunkReceipt> {
    checkChunk(hash, found.length, bytes);
    await this.staging.write(uploadId, bytes, found.offsets);
    await this.uploads.markReceived(uploadId, hash, this.now());
    // Extending the expiry on every chunk would double the writes; once a minute is plenty.
    if (found.expiresAt < this.expiry() - 60_000) await this.uploads.extendExpiry(uploadId, this.expiry());
    this.metrics.chunkReceived(found.length);
    return { hash, stored: true };
  }

  /**
   * Stores several chunks sent back to back in one body, in the order of hashes, each checked as
   * if it came alone: one request and one index write where each chunk would take its own.
   * Chunks stored before one fails its check stay stored.
   */
  async putChunks(principal: Principal, uploadId: string, hashes: string[], body: Readable): Promise<ChunkReceipt[]> {
    for (const hash of hashes) parseContentHash(hash, 'chunk hash');
    const found = await this.uploads.findUploadChunks(principal.userId, uploadId, [...new Set(hashes)]);
    const unexpected = found && hashes.find((hash) => !found.chunks.has(hash));
    if (!found || unexpected) {
      body.resume();
      if (!found) throw uploadNotFound(uploadId);
      throw new PvError('PV_UPLOAD_CHUNK_NOT_EXPECTED', `Chunk ${unexpected} is not one this upload is waiting for.`, {
        fix: 'Send only the chunks listed in the upload status (GET /api/v1/uploads/{id}).',
      });
    }
    const lengths = hashes.map((hash) => found.chunks.get(hash)!.length);
    const receipts: ChunkReceipt[] = [];
    const stored = new Set<string>();
    // Where the verified bytes go: file offset, and their range in the body buffer.
    const writes: StagedRange[] = [];
    const buffer = this.bodyBuffers.take(lengths.reduce((sum, length) => sum + length, 0));
    let failure: { error: unknown } | null = null;
    try {
      const { delivered, partial, surplus } = await splitBody(body, lengths, buffer, (index, start, end) => {
        const hash = hashes[index]!;
        const chunk = found.chunks.get(hash)!;
        checkChunk(hash, chunk.length, buffer.subarray(start, end));
        const fresh = !chunk.received && !stored.has(hash);
        if (fresh) {
          for (const offset of chunk.offsets) writes.push({ offset, start, end });
          stored.add(hash);
          this.metrics.chunkReceived(chunk.length);
        }
        receipts.push({ hash, stored: fresh });
      });
      if (delivered < hashes.length) {
        throw new PvError(
          'PV_UPLOAD_CHUNK_TRUNCATED',
          `Chunk ${hashes[delivered]} arrived with ${partial} of its ${lengths[delivered]} bytes; it was not kept, the ones before it were.`,
          { fix: 'Send the chunks still missing again.' },
        );
      }
      if (surplus > 0) {
        throw new PvError('PV_INVALID_INPUT', `The body holds ${surplus} bytes more than the chunks it names.`, {
          fix: 'Send exactly the named chunks, back to back, in the order of ?hashes=.',
        });
      }
    } catch (error) {
      failure = { error };
    }
    // The chunks checked before a failure are kept.
    try {
      if (stored.size > 0) {
        for (const run of contiguousRuns(writes)) await this.staging.write(uploadId, buffer.subarray(run.start, run.end), [run.offset]);
        await this.uploads.markReceived(uploadId, [...stored], this.now());
        if (found.expiresAt < this.expiry() - 60_000) await this.uploads.extendExpiry(uploadId, this.expiry());
      }
    } finally {
      this.bodyBuffers.give(buffer);
    }
    if (failure) throw failure.error;
    return receipts;
  }

  /** Stores the last chunks, sent with the commit as putChunks takes them, then commits: one request for both. */
  async commitWith(principal: Principal, uploadId: string, hashes: string[], body: Readable): Promise<UploadStatus> {
    await this.putChunks(principal, uploadId, hashes, body);
    return this.commit(principal, uploadId);
  }

  /**
   * Stores files sent whole, many in one body (POST /uploads/files): each is checked like a
   * negotiation, its chunks and content against their hashes, and committed as if uploaded alone,
   * so one that fails fails alone. The body is small (WHOLE_FILES_REQUEST_MAX_BYTES): it is read
   * whole, so that what the user holds and what is stored is looked up once for all its files,
   * and they are recorded in one transaction.
   */
  async putWholeFiles(principal: Principal, body: Readable): Promise<(UploadStatus | UploadFailure)[]> {
    const records: FileRecord<WholeFileHeader>[] = [];
    let broken: { error: unknown } | null = null;
    try {
      const limits = { records: WHOLE_FILES_PER_REQUEST_MAX, recordBytes: WHOLE_FILE_MAX_BYTES, totalBytes: WHOLE_FILES_REQUEST_MAX_BYTES };
      for await (const record of readFileRecords<WholeFileHeader>(piecesOf(body), limits)) records.push(record);
    } catch (error) {
      broken = { error };
    }
    // The files that arrived whole before a broken body are committed; then the request fails.
    // Each is copied into a shared buffer, reused, where a worker thread hashes it meanwhile.
    const buffer = this.bodyBuffers.take(records.reduce((sum, record) => sum + record.header.size, 0));
    const outcomes: (Negotiation | UploadStatus | UploadFailure)[] = [];
    try {
      let offset = 0;
      const contents = records.map((record) => {
        const content = recordContent(record, buffer.subarray(offset));
        offset += record.header.size;
        return content;
      });
      for (const record of records) {
        try {
          outcomes.push(this.wholeFileNegotiation(record.header));
        } catch (error) {
          outcomes.push(failureOf(error));
        }
      }
      await this.checkWholeFiles(outcomes, buffer, contents);
      const checked = outcomes.filter(isNegotiation);
      const hashes = [...new Set(checked.map((n) => n.contentHash))];
      const held = await this.uploads.heldContents(principal.userId, hashes);
      const stored = await this.uploads.storedObjects(hashes);
      await Promise.all(
        [...outcomes.keys()].map(async (at) => {
          const n = outcomes[at]!;
          if (!isNegotiation(n)) return;
          try {
            // Held already (another device, or this one, got there first): no bytes to keep.
            // Stored already (another user's upload): the bytes are proved to be its content.
            if (held.has(n.contentHash)) outcomes[at] = await this.commitHeld(principal, n);
            else if (!stored.has(n.contentHash)) await this.storeWholeFile(n, contents[at]!);
          } catch (error) {
            outcomes[at] = failureOf(error);
          }
        }),
      );
    } finally {
      this.bodyBuffers.give(buffer);
    }
    const toRecord = [...outcomes.keys()].filter((at) => isNegotiation(outcomes[at]!));
    const recorded = await this.recordWholeFiles(
      principal,
      toRecord.map((at) => outcomes[at] as Negotiation),
    );
    for (const [i, at] of toRecord.entries()) outcomes[at] = recorded[i]!;
    if (broken) throw broken.error;
    return outcomes as (UploadStatus | UploadFailure)[];
  }

  /** The negotiation a file sent whole stands for, its bytes not yet checked (checkWholeFiles). */
  private wholeFileNegotiation(request: WholeFileHeader): Negotiation {
    if (!WholeFileHeaderCheck.Check(request)) {
      throw new PvError('PV_INVALID_INPUT', `The header of ${describePath(request)} is not a negotiation.`, {
        fix: 'Send the fields POST /uploads takes, with the whole manifest.',
      });
    }
    if (request.manifestDiff !== undefined) {
      throw new PvError('PV_INVALID_INPUT', 'A file sent whole carries its whole manifest.', { fix: 'Send manifest, not manifestDiff.' });
    }
    return this.negotiation(request, null);
  }

  /**
   * Holds each file sent whole (its content, lying in buffer) to every chunk hash of its
   * manifest and to its content hash: one that fails becomes its failure. The bytes are hashed
   * all at once, on a worker thread.
   */
  private async checkWholeFiles(
    outcomes: (Negotiation | UploadStatus | UploadFailure)[],
    buffer: Buffer,
    contents: Buffer[],
  ): Promise<void> {
    const checked = [...outcomes.keys()].filter((at) => isNegotiation(outcomes[at]!));
    const spans = checked.flatMap((at) => {
      const n = outcomes[at] as Negotiation;
      const start = contents[at]!.byteOffset - buffer.byteOffset;
      return [...placesOf(n.manifest).map(({ offset, length }) => ({ offset: start + offset, length })), { offset: start, length: n.size }];
    });
    const digests = await sha256OfSpans(buffer, spans);
    let next = 0;
    for (const at of checked) {
      const n = outcomes[at] as Negotiation;
      const chunkDigests = digests.slice(next, next + n.manifest.length);
      const contentDigest = digests[next + n.manifest.length];
      next += n.manifest.length + 1;
      const wrong = n.manifest.find(({ hash }, i) => chunkDigests[i] !== hash);
      if (wrong) outcomes[at] = failureOf(chunkHashMismatch(wrong.hash));
      else if (contentDigest !== n.contentHash) outcomes[at] = failureOf(contentHashMismatch(n.path));
    }
  }

  /** Makes a file's checked bytes its object. */
  private async storeWholeFile(negotiation: Negotiation, bytes: Buffer): Promise<void> {
    await this.blobs.put(NEW_OBJECT_BUCKET, objectKey(negotiation.contentHash), Readable.from([bytes]), {
      sha256: negotiation.contentHash,
      size: negotiation.size,
      sha256Checked: true,
    });
    this.metrics.chunkReceived(negotiation.size);
  }

  /**
   * Records files whose objects are stored: the new files among them in one transaction of a few
   * statements, the others (a path taken, a conflict) one by one as a commit records them.
   */
  private async recordWholeFiles(principal: Principal, negotiations: Negotiation[]): Promise<(UploadStatus | UploadFailure)[]> {
    const at = this.now();
    const inputs = negotiations.map((n) => this.newVersion(principal, n));
    const objectOf = (n: Negotiation) => ({ hash: n.contentHash, size: n.size, bucket: NEW_OBJECT_BUCKET, chunks: placesOf(n.manifest) });
    const { fresh, recorded } = await this.transactions.run(async (trx) => {
      const fresh = await this.files.newFiles(trx, inputs);
      await this.uploads.insertObjects(trx, negotiations.filter((_, i) => fresh[i]).map(objectOf), at);
      return {
        fresh,
        recorded: await this.files.recordNewFiles(
          trx,
          inputs.filter((_, i) => fresh[i]),
        ),
      };
    });
    let next = 0;
    const outcomes = await Promise.all(
      negotiations.map(async (n, i): Promise<UploadStatus | UploadFailure> => {
        try {
          const version = fresh[i]
            ? recorded[next++]!
            : await this.transactions.run(async (trx) => {
                await this.uploads.insertObject(trx, objectOf(n), at);
                return this.files.recordVersion(trx, inputs[i]!);
              });
          this.metrics.committed('assembled', n.size);
          await this.publishUploaded(principal, version);
          return committedStatus(version);
        } catch (error) {
          return failureOf(error);
        }
      }),
    );
    // One signal for all the files: each makes every process with a device of the user's
    // connected read the end of the feed.
    if (outcomes.some((outcome) => outcome.state === 'committed')) this.notifier.changed(principal.userId);
    return outcomes;
  }

  /**
   * Completes the staged file with the ranges that come from the user's objects, checks the
   * whole-content hash and makes it the object; only a fully written, verified object is then
   * recorded, in one transaction with the version.
   */
  async commit(principal: Principal, uploadId: string): Promise<UploadStatus> {
    const upload = await this.requireUpload(principal, uploadId);
    const received = await this.uploads.places(uploadId);
    const missing = received.filter((place) => !place.received);
    if (missing.length > 0) throw incomplete([...new Set(missing.map((place) => place.hash))]);

    const manifest = decodeManifest(Buffer.from(upload.manifest, 'base64'), MAX_MANIFEST_CHUNKS);
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
      // Streamed a block at a time: a run can be most of a file of many gigabytes, and each
      // staged write is a request on S3, so not one per piece the read stream happens to yield.
      let at = run.fileOffset;
      const source = await openObject(this.blobs, this.files, run.objectHash, {
        range: { start: run.start, end: run.end },
        bucket: run.bucket,
      });
      for await (const block of inBlocks(source, COPY_BLOCK)) {
        await this.staging.write(uploadId, block, [at]);
        at += block.length;
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
    const recorded = await this.transactions.run(async (trx) => {
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
    // A promoted staging became the object; only a staging checked against a stored copy is left.
    if (existing) await this.staging.discard(uploadId);
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

  private async recordVersion(trx: Db, principal: Principal, version: VersionContent): Promise<RecordedVersion> {
    return this.files.recordVersion(trx, this.newVersion(principal, version));
  }

  /** A version of this content by this principal, now. */
  private newVersion(principal: Principal, version: VersionContent): NewVersion {
    const { path, contentHash, size, mtime, baseVersionId } = version;
    return {
      ownerId: principal.userId,
      deviceId: principal.deviceId,
      deviceName: principal.deviceName ?? 'api',
      at: this.now(),
      path,
      contentHash,
      size,
      mtime,
      baseVersionId,
    };
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

  private async pendingStatus(upload: UploadRow): Promise<UploadStatus> {
    const status = pendingStatus(upload.id, await this.uploads.missingChunks(upload.id));
    if (!upload.base_version_id) return status;
    const base = await this.deltas.baseOf(upload.owner_id, upload.base_version_id).catch(notFoundAsNull);
    return this.withDeltaBases(status, base, decodeManifest(Buffer.from(upload.manifest, 'base64'), MAX_MANIFEST_CHUNKS));
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
    await this.publishUploaded(principal, recorded);
  }

  /** Tells the workers about a committed version. */
  private async publishUploaded(principal: Principal, recorded: RecordedVersion): Promise<void> {
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

/** What a version records of its content. */
type VersionContent = Pick<Negotiation, 'path' | 'contentHash' | 'size' | 'mtime' | 'baseVersionId'>;

function isNegotiation(outcome: Negotiation | UploadStatus | UploadFailure): outcome is Negotiation {
  return 'manifest' in outcome;
}

/** A checked negotiation. */
interface Negotiation {
  path: string;
  contentHash: string;
  size: number;
  mtime: number;
  baseVersionId: string | null;
  manifest: Manifest;
}

function resumeKey(negotiation: { path: string; contentHash: string }): string {
  return `${negotiation.contentHash}/${negotiation.path}`;
}

/** A negotiation's own error, for the batch's answer; anything but a domain error fails the whole request. */
function failureOf(error: unknown): UploadFailure {
  if (!isPvError(error)) throw error;
  return { state: 'failed', code: error.code, detail: error.message, ...(error.fix ? { fix: error.fix } : {}) };
}

/** The answer for a file to send whole: nothing recorded, every chunk wanted. */
function sendWholeStatus(manifest: Manifest): UploadStatus {
  return { ...pendingStatus('', manifest), uploadId: null, state: 'send' };
}

/** A header's path for an error message, if it has one. */
function describePath(header: unknown): string {
  const path = (header as { path?: unknown } | null)?.path;
  return typeof path === 'string' ? JSON.stringify(path.slice(0, 200)) : 'a file';
}

function pendingStatus(uploadId: string, missing: { hash: string; length: number }[]): UploadStatus {
  const distinct = new Map(missing.map((c) => [c.hash, c.length]));
  return { uploadId, state: 'pending', missing: [...distinct.keys()], missingBytes: [...distinct.values()].reduce((sum, n) => sum + n, 0) };
}

/** Throws unless bytes are the chunk: its length, its hash. */
function checkChunk(hash: string, length: number, bytes: Buffer): void {
  if (bytes.length < length) {
    throw new PvError('PV_UPLOAD_CHUNK_TRUNCATED', `Chunk ${hash} arrived with ${bytes.length} of its ${length} bytes; nothing was kept.`, {
      fix: 'Send the chunk again.',
    });
  }
  if (bytes.length > length || createHash('sha256').update(bytes).digest('hex') !== hash) throw chunkHashMismatch(hash);
}

function chunkHashMismatch(hash: string): PvError {
  return new PvError('PV_UPLOAD_CHUNK_HASH_MISMATCH', `The bytes sent for chunk ${hash} do not have that hash; nothing was kept.`, {
    fix: 'Re-read the file and send the chunk again; if it changed meanwhile, start a new upload.',
  });
}

function contentHashMismatch(path: string): PvError {
  return new PvError('PV_UPLOAD_HASH_MISMATCH', `The bytes sent for ${path} do not have its content hash; nothing was stored.`, {
    fix: 'Re-read the file (it may have changed while uploading) and send it again.',
  });
}

/**
 * Reads a body of chunks of these lengths, back to back, into buffer (at least their total long)
 * and hands each to onChunk as its range in buffer once it is whole. After onChunk throws it
 * still reads the body to its end, so the connection stays usable for the answer, and then
 * throws. Returns how many chunks were handed on, the bytes of the next one that arrived, and
 * the bytes past the last one.
 */
async function splitBody(
  body: Readable,
  lengths: number[],
  buffer: Buffer,
  onChunk: (index: number, start: number, end: number) => void,
): Promise<{ delivered: number; partial: number; surplus: number }> {
  let delivered = 0;
  let start = 0;
  let filled = 0;
  let surplus = 0;
  let failure: { error: unknown } | null = null;
  for await (const piece of body as AsyncIterable<Buffer>) {
    let at = 0;
    while (failure === null && at < piece.length && delivered < lengths.length) {
      const n = Math.min(lengths[delivered]! - filled, piece.length - at);
      piece.copy(buffer, start + filled, at, at + n);
      filled += n;
      at += n;
      if (filled < lengths[delivered]!) continue;
      try {
        onChunk(delivered, start, start + filled);
      } catch (error) {
        failure = { error };
      }
      delivered++;
      start += filled;
      filled = 0;
    }
    if (failure === null) surplus += piece.length - at;
  }
  if (failure !== null) throw failure.error;
  return { delivered, partial: filled, surplus };
}

/** Verified bytes to stage: at offset in the file, from buffer[start, end). */
interface StagedRange {
  offset: number;
  start: number;
  end: number;
}

/** The ranges in file order, those adjacent both in the file and in the buffer merged: one write per run. */
function contiguousRuns(ranges: StagedRange[]): StagedRange[] {
  const runs: StagedRange[] = [];
  for (const range of [...ranges].sort((a, b) => a.offset - b.offset)) {
    const last = runs.at(-1);
    if (last && last.offset + (last.end - last.start) === range.offset && last.end === range.start) last.end = range.end;
    else runs.push({ ...range });
  }
  return runs;
}

/**
 * Request bodies, reused (a worker thread hashes whole files in them): a client sends about
 * 1 MiB of chunks per request, and up to 4 MiB of whole files (src/daemon/uploader.ts); 8
 * requests in flight.
 */
const BODY_BUFFER_SIZES = { minBytes: 1024 * 1024, keptBytes: 4 * 1024 * 1024, kept: 8 };

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
