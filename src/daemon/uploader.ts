import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { type Fingerprint, fingerprintFile } from '../core/chunker.js';
import { isPvError, PvError } from '../core/errors.js';
import { decodeSignature, encodeDelta, type Signature } from '../core/delta.js';
import { recordHeader } from '../core/file-records.js';
import { encodeManifest, type Manifest } from '../core/manifest.js';
import { diffManifests, encodeManifestDiff } from '../core/manifest-diff.js';
import { joinPath } from '../core/paths.js';
import { inGroups, inSizedGroups, runPool } from '../core/pool.js';
import type { UploadRequest, UploadStatus } from '../core/protocol.js';
import { CHUNKS_PER_REQUEST_MAX, WHOLE_FILES_PER_REQUEST_MAX } from '../core/protocol-limits.js';
import type { ApiClient } from './api-client.js';

/** The summary `photovault upload --json` prints. */
export interface UploadSummary {
  files: number;
  bytesTotal: number;
  /** Chunk bytes actually sent in this run. */
  bytesSent: number;
  /** Bytes the server did not need: content this user already held, or chunks an earlier interrupted run sent. */
  bytesDeduplicated: number;
  failed: { path: string; code: string; message: string }[];
}

export interface UploadProgress {
  bytesDone: number;
  bytesTotal: number;
  filesDone: number;
  filesTotal: number;
}

export interface UploaderOptions {
  /** Chunk PUTs in flight per file. */
  chunkConcurrency?: number;
  /** Files uploaded at once. */
  fileConcurrency?: number;
  onProgress?: (progress: UploadProgress) => void;
}

interface LocalFile {
  localPath: string;
  remotePath: string;
  size: number;
}

/** A file to upload: where it is, where it goes, and what the caller knows of it already. */
export interface UploadJob {
  localPath: string;
  remotePath: string;
  base?: UploadBase | null;
  /** Saves reading the file once more when the caller has it (the daemon's index). */
  fingerprint?: Fingerprint;
  onBytes?: (bytes: number) => void;
}

/** A file uploaded: its committed status, the chunk bytes sent, and those the server did not need. */
export interface UploadResult {
  status: UploadStatus;
  sent: number;
  deduplicated: number;
  size: number;
}

export type UploadOutcome = UploadResult | { error: unknown };

/** A file read and its negotiation built. */
interface PreparedUpload {
  fingerprint: Fingerprint;
  request: UploadRequest;
  /** Whether request carries a manifest diff; whole() is the same request with the whole manifest. */
  diffed: boolean;
  whole: () => UploadRequest;
}

/** Files negotiated in one request. */
const UPLOAD_GROUP = 32;

/**
 * Uploads local files and folders through the protocol of docs/protocol.md. Keeps no state of
 * its own: an interrupted run resumes because the server finds the unfinished upload of the same
 * content to the same path and answers with only the chunks it still lacks.
 */
export class Uploader {
  private readonly chunkConcurrency: number;
  private readonly fileConcurrency: number;
  /** Cleared when the server turns out not to know POST /uploads/batch. */
  private batchNegotiation = true;

  constructor(
    private readonly api: ApiClient,
    private readonly options: UploaderOptions = {},
  ) {
    this.chunkConcurrency = options.chunkConcurrency ?? 4;
    this.fileConcurrency = options.fileConcurrency ?? 3;
  }

  /** Uploads each local path (a file, or a folder recursively) into the remote folder. */
  async upload(localPaths: string[], remoteDir: string): Promise<UploadSummary> {
    const files: LocalFile[] = [];
    for (const localPath of localPaths) await collect(localPath, remoteDir, files);
    const summary: UploadSummary = { files: 0, bytesTotal: 0, bytesSent: 0, bytesDeduplicated: 0, failed: [] };
    const progress: UploadProgress = {
      bytesDone: 0,
      bytesTotal: files.reduce((sum, f) => sum + f.size, 0),
      filesDone: 0,
      filesTotal: files.length,
    };
    this.options.onProgress?.(progress);
    const onBytes = (bytes: number) => {
      progress.bytesDone += bytes;
      this.options.onProgress?.(progress);
    };

    await this.uploadInGroups(
      files,
      async (file) => ({ localPath: file.localPath, remotePath: file.remotePath, onBytes }),
      async (file, outcome) => {
        if ('error' in outcome) {
          const { error } = outcome;
          if (!isPvError(error) || isFatal(error)) throw error;
          summary.failed.push({ path: file.localPath, code: error.code, message: error.message });
        } else {
          summary.files += 1;
          summary.bytesTotal += outcome.size;
          summary.bytesSent += outcome.sent;
          summary.bytesDeduplicated += outcome.deduplicated;
        }
        progress.filesDone += 1;
        this.options.onProgress?.(progress);
      },
    );
    return summary;
  }

  /**
   * Uploads many files: negotiated UPLOAD_GROUP at a time in one request each, the chunks and
   * commits of fileConcurrency files in flight, the next group negotiated meanwhile. Items may
   * still be coming (a Feed a scan fills): a group starts once full, or once they end. load makes
   * an item a job when its group starts (null: nothing to upload), so a long list holds no
   * fingerprints; onDone gets each item's outcome as it is known. What onDone throws stops the
   * rest, as does an error that is no file's own (the server unreachable, the login refused).
   */
  async uploadInGroups<T>(
    items: Iterable<T> | AsyncIterable<T>,
    load: (item: T) => Promise<UploadJob | null>,
    onDone: (item: T, outcome: UploadOutcome) => Promise<void>,
  ): Promise<void> {
    // Two groups in flight: one's files transfer while the next is read and negotiated.
    await runPool(inGroups(items, UPLOAD_GROUP), 2, async (group) => {
      const jobs = new Map<UploadJob, T>();
      for (const item of group) {
        const job = await load(item);
        if (job) jobs.set(job, item);
      }
      await this.uploadFiles([...jobs.keys()], Math.max(1, Math.ceil(this.fileConcurrency / 2)), (job, outcome) =>
        onDone(jobs.get(job)!, outcome),
      );
    });
  }

  /**
   * Uploads several files, negotiated in one request (POST /uploads/batch), then the chunks and
   * commit of each pending one, concurrency at a time. onDone gets each file's outcome.
   */
  async uploadFiles(
    jobs: UploadJob[],
    concurrency: number,
    onDone: (job: UploadJob, outcome: UploadOutcome) => Promise<void>,
  ): Promise<void> {
    const prepared = new Map<UploadJob, PreparedUpload>();
    const ready: UploadJob[] = [];
    for (const job of jobs) {
      try {
        prepared.set(job, await prepare(job));
        ready.push(job);
      } catch (error) {
        if (!isFileError(error)) throw error;
        await onDone(job, { error });
      }
    }
    const answers = await this.negotiate(ready.map((job) => prepared.get(job)!));
    const answerOf = new Map(ready.map((job, at) => [job, answers[at]!]));
    const sentWhole = (job: UploadJob) => (answerOf.get(job) as UploadStatus).state === 'send';
    await Promise.all([
      this.sendWhole(ready.filter(sentWhole), prepared, concurrency, onDone),
      runPool(
        ready.filter((job) => !sentWhole(job)),
        concurrency,
        async (job) => {
          let outcome: UploadOutcome;
          try {
            outcome = await this.finish(job, prepared.get(job)!, answerOf.get(job)!);
          } catch (error) {
            if (!isFileError(error)) throw error;
            outcome = { error };
          }
          await onDone(job, outcome);
        },
      ),
    ]);
  }

  /**
   * Sends files the server asked for whole, many to a request (POST /uploads/files), concurrency
   * requests at a time: a small new file then costs a share of one request, not one of its own.
   */
  private async sendWhole(
    jobs: UploadJob[],
    prepared: Map<UploadJob, PreparedUpload>,
    concurrency: number,
    onDone: (job: UploadJob, outcome: UploadOutcome) => Promise<void>,
  ): Promise<void> {
    await runPool(
      inSizedGroups(jobs, (job) => prepared.get(job)!.fingerprint.size, {
        maxItems: WHOLE_FILES_PER_REQUEST_MAX,
        maxBytes: WHOLE_REQUEST_BYTES,
      }),
      concurrency,
      async (group) => {
        const headers = group.map((job) => recordHeader(prepared.get(job)!.request));
        const length = group.reduce((sum, job, at) => sum + headers[at]!.length + prepared.get(job)!.fingerprint.size, 0);
        const body = takeBodyBuffer(length);
        try {
          // The files are read straight into the body, one after the other.
          const sent: UploadJob[] = [];
          let filled = 0;
          for (const [at, job] of group.entries()) {
            const size = prepared.get(job)!.fingerprint.size;
            try {
              headers[at]!.copy(body, filled);
              readInto(job.localPath, body.subarray(filled + headers[at]!.length, filled + headers[at]!.length + size));
              filled += headers[at]!.length + size;
              sent.push(job);
            } catch (error) {
              if (!isFileError(error)) throw error;
              await onDone(job, { error });
            }
          }
          if (sent.length === 0) return;
          const answers = await this.api.putWholeFiles(body.subarray(0, filled));
          // All at once: the index entries their outcomes write then share one transaction.
          await Promise.all(
            sent.map(async (job, at) => {
              const answer = answers[at]!;
              const size = prepared.get(job)!.fingerprint.size;
              if (answer instanceof PvError) return onDone(job, { error: asFileError(answer) });
              job.onBytes?.(size);
              return onDone(job, { status: answer, sent: size, deduplicated: 0, size });
            }),
          );
        } finally {
          giveBodyBuffer(body);
        }
      },
    );
  }

  /** One status (or its error) per prepared upload, in order: negotiated together, or one by one with a server that cannot. */
  private async negotiate(uploads: PreparedUpload[]): Promise<(UploadStatus | PvError)[]> {
    if (uploads.length === 0) return [];
    if (uploads.length === 1 || !this.batchNegotiation)
      return Promise.all(uploads.map((upload) => this.negotiateOne(upload).catch(asFileError)));
    let answers: (UploadStatus | PvError)[];
    try {
      answers = await this.api.beginUploads(
        uploads.map((upload) => upload.request),
        { sendWhole: true },
      );
    } catch (error) {
      // A server from before POST /uploads/batch: the route is unknown there.
      if (!isPvError(error, 'PV_NOT_FOUND')) throw error;
      this.batchNegotiation = false;
      return this.negotiate(uploads);
    }
    // An edit whose base the server no longer holds (purged from the trash, say) goes again with its manifest whole.
    return Promise.all(
      answers.map((answer, at) =>
        isPvError(answer, 'PV_MANIFEST_INVALID') && uploads[at]!.diffed
          ? this.api.beginUpload(uploads[at]!.whole()).catch(asFileError)
          : answer,
      ),
    );
  }

  private async negotiateOne(upload: PreparedUpload): Promise<UploadStatus> {
    return this.api.beginUpload(upload.request).catch((error: unknown) => {
      if (upload.diffed && isPvError(error, 'PV_MANIFEST_INVALID')) return this.api.beginUpload(upload.whole());
      throw error;
    });
  }

  /**
   * Uploads one file to a remote path and returns the committed status. base names the version
   * the local content derives from (the server keeps a conflict copy if the file moved on); with
   * its manifest known, the manifest travels as a diff and changed chunks as deltas. A
   * fingerprint the caller already has saves reading the file twice.
   */
  async uploadFile(
    localPath: string,
    remotePath: string,
    options: { base?: UploadBase | null; fingerprint?: Fingerprint; onBytes?: (bytes: number) => void } = {},
  ): Promise<UploadResult> {
    const job: UploadJob = { localPath, remotePath, ...options };
    const upload = await prepare(job);
    return this.finish(job, upload, await this.negotiateOne(upload));
  }

  /** Sends what a negotiated file still needs and commits it. */
  private async finish(job: UploadJob, upload: PreparedUpload, negotiated: UploadStatus | PvError): Promise<UploadResult> {
    if (negotiated instanceof PvError) throw negotiated;
    const onBytes = job.onBytes ?? (() => undefined);
    const { fingerprint } = upload;
    let status = negotiated;
    const deduplicated = fingerprint.size - status.missingBytes;
    onBytes(deduplicated);
    let sent = 0;
    // A commit can find chunks missing again (their source file was deleted meanwhile): send
    // those and commit once more.
    for (let attempt = 0; status.state === 'pending'; attempt++) {
      const { spent, last } = await this.sendChunks(job.localPath, status, fingerprint.chunks, onBytes);
      sent += spent;
      try {
        status = await this.api.commitUpload(status.uploadId!, last);
      } catch (error) {
        if (!isPvError(error, 'PV_UPLOAD_INCOMPLETE') || attempt >= 2) throw error;
        status = await this.api.uploadStatus(status.uploadId!);
      } finally {
        // Chunks that travel with the commit are stored before it is tried.
        sent += last?.bytes.length ?? 0;
        onBytes(last?.bytes.length ?? 0);
      }
    }
    return { status, sent, deduplicated, size: fingerprint.size };
  }

  /**
   * PUTs the missing chunks, read from the file at their offsets, a few at a time; a chunk the
   * status offers a delta base for goes as a delta when that is smaller, the others go several to
   * a request. Returns the body bytes sent, and the last chunks when they are all that is left to
   * send (then the commit carries them: a small new file takes two requests in all).
   */
  private async sendChunks(
    localPath: string,
    status: UploadStatus,
    chunks: { hash: string; offset: number; length: number }[],
    onBytes: (bytes: number) => void,
  ) {
    const missing = new Set(status.missing);
    const todo = chunks.filter((chunk) => missing.delete(chunk.hash));
    const deltaBases = new Map<string, DeltaOffer>();
    for (const offer of status.deltaBases ?? []) {
      const signature = readableSignature(offer.signature);
      if (!signature) continue; // its chunks go whole
      const base = { base: offer.base, signature };
      for (const hash of offer.chunks) deltaBases.set(hash, base);
    }
    const batches = inSizedGroups(
      todo.filter((chunk) => !deltaBases.has(chunk.hash)),
      (chunk) => chunk.length,
      { maxItems: CHUNKS_PER_REQUEST_MAX, maxBytes: BATCH_BYTES },
    );
    const runs = deltaRuns(todo, deltaBases);
    const handle = await open(localPath, 'r');
    let sent = 0;
    try {
      if (runs.length === 0 && batches.length <= 1) {
        const last = batches[0] && {
          hashes: batches[0].map((chunk) => chunk.hash),
          bytes: await readChunks(handle, localPath, batches[0]),
        };
        return { spent: 0, last };
      }
      await runPool(batches, this.chunkConcurrency, async (batch) => {
        const bytes = await readChunks(handle, localPath, batch);
        await this.api.putChunks(
          status.uploadId!,
          batch.map((chunk) => chunk.hash),
          bytes,
        );
        sent += bytes.length;
        onBytes(bytes.length);
      });
      await runPool(runs, this.chunkConcurrency, async (run) => {
        const bytes = await readChunks(handle, localPath, run.chunks);
        sent += await this.putRun(status.uploadId!, run, bytes);
        onBytes(bytes.length);
      });
    } finally {
      await handle.close();
    }
    return { spent: sent, last: undefined };
  }

  /** Sends a run of chunks, as one delta when that pays; returns the body bytes sent. */
  private async putRun(uploadId: string, { chunks, offer }: DeltaRun, bytes: Buffer): Promise<number> {
    const hashes = chunks.map((chunk) => chunk.hash);
    let spent = 0;
    const delta = encodeDelta(bytes, offer.signature);
    if (delta.length < bytes.length * DELTA_WORTH) {
      try {
        await this.api.putChunksDelta(uploadId, hashes, offer.base, delta);
        return delta.length;
      } catch (error) {
        // Rebuilt bytes that fail their hash (a strong-hash collision) or a base gone meanwhile: send them whole.
        if (!isPvError(error, 'PV_UPLOAD_CHUNK_HASH_MISMATCH') && !isPvError(error, 'PV_DELTA_INVALID')) throw error;
        spent = delta.length;
      }
    }
    await this.api.putChunks(uploadId, hashes, bytes);
    return spent + bytes.length;
  }
}

/** An offered signature, or null when this client cannot read it (a server speaking a newer format). */
function readableSignature(base64: string): Signature | null {
  try {
    return decodeSignature(Buffer.from(base64, 'base64'));
  } catch (error) {
    if (isPvError(error, 'PV_DELTA_INVALID')) return null;
    throw error;
  }
}

/** The base of a changed region, as an upload status offers it: its chunks' hashes and their signature. */
interface DeltaOffer {
  base: string[];
  signature: Signature;
}

/** Chunks that follow each other in the file and replaced the same region: sent as one delta. */
interface DeltaRun {
  chunks: ChunkAt[];
  offer: DeltaOffer;
}

/**
 * The chunks offered a delta base, in runs of neighbours under the same offer. One delta per run,
 * not per chunk: an rsync delta pays up to a block of literal bytes at each edge of its target
 * that falls between the base's blocks, and when an edit moves several chunk boundaries (about
 * 1 edit in 20), deltas per chunk cost 2-5 times the bytes of one over the run.
 */
function deltaRuns(todo: ChunkAt[], offers: Map<string, DeltaOffer>): DeltaRun[] {
  const runs: DeltaRun[] = [];
  for (const chunk of todo) {
    const offer = offers.get(chunk.hash);
    if (!offer) continue;
    const run = runs.at(-1);
    const previous = run?.chunks.at(-1);
    if (run?.offer === offer && previous!.offset + previous!.length === chunk.offset && run.chunks.length < CHUNKS_PER_REQUEST_MAX) {
      run.chunks.push(chunk);
    } else {
      runs.push({ chunks: [chunk], offer });
    }
  }
  return runs;
}

/** Reads a file's fingerprint (unless the job has it) and builds its negotiation. */
async function prepare(job: UploadJob): Promise<PreparedUpload> {
  const info = statSync(job.localPath);
  const fingerprint = job.fingerprint ?? (await fingerprintFile(job.localPath));
  const manifest = fingerprint.chunks.map(({ hash, length }) => ({ hash, length }));
  const request: UploadRequest = {
    path: job.remotePath,
    size: fingerprint.size,
    mtime: Math.floor(info.mtimeMs),
    contentHash: fingerprint.contentHash,
    baseVersionId: job.base?.versionId ?? null,
  };
  const whole = () => ({ ...request, manifest: encodeManifest(manifest).toString('base64') });
  const diff = job.base?.manifest ? encodeManifestDiff(diffManifests(job.base.manifest, manifest)) : null;
  return { fingerprint, request: diff ? { ...request, manifestDiff: diff.toString('base64') } : whole(), diffed: diff !== null, whole };
}

/** Errors that stop every upload, not one file's: the server is unreachable, or the login is refused. */
function isFatal(error: PvError): boolean {
  return error.code === 'PV_SERVER_UNREACHABLE' || error.code.startsWith('PV_AUTH');
}

/** An error of one file's own (the server refused it, or it vanished or cannot be read), not of the whole run. */
function isFileError(error: unknown): boolean {
  if (isPvError(error)) return !isFatal(error);
  return typeof (error as NodeJS.ErrnoException | null)?.code === 'string' && !(error instanceof PvError);
}

/** For .catch() of a negotiation: the file's own error as its answer; others are thrown. */
function asFileError(error: unknown): PvError {
  if (isPvError(error) && !isFatal(error)) return error;
  throw error;
}

/** The version a local file derives from, and its manifest when known. */
export interface UploadBase {
  versionId: string;
  manifest: Manifest | null;
}

/** Chunk bytes sent in one request at most (and never more than CHUNKS_PER_REQUEST_MAX chunks). */
const BATCH_BYTES = 1024 * 1024;

type ChunkAt = { hash: string; offset: number; length: number };

/** The chunks' bytes back to back, read from the file with one read per run of adjacent chunks. */
async function readChunks(handle: Awaited<ReturnType<typeof open>>, localPath: string, chunks: ChunkAt[]): Promise<Buffer> {
  const bytes = Buffer.allocUnsafe(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let at = 0;
  for (let i = 0; i < chunks.length;) {
    let end = i + 1;
    let length = chunks[i]!.length;
    while (end < chunks.length && chunks[end]!.offset === chunks[end - 1]!.offset + chunks[end - 1]!.length)
      length += chunks[end++]!.length;
    const { bytesRead } = await handle.read(bytes, at, length, chunks[i]!.offset);
    if (bytesRead !== length) {
      throw new PvError('PV_UPLOAD_CHUNK_TRUNCATED', `${localPath} shrank while it was being uploaded.`, {
        fix: 'Upload it again once it is complete.',
      });
    }
    at += length;
    i = end;
  }
  return bytes;
}

/** Bytes of files sent whole in one request, about: big enough that a request's own cost is small, small enough to pipeline. */
const WHOLE_REQUEST_BYTES = 4 * 1024 * 1024;

/**
 * Reads a file into target, which is as long as the file was when fingerprinted: a file that
 * shrank since fails (it waits for the next pass); one that grew is caught by the server's hash
 * check. Synchronously: a small file is in the page cache, and a trip through the thread pool for
 * each of open, read and close cost more than the read (docs/architecture.md, "File system calls").
 */
function readInto(localPath: string, target: Buffer): void {
  const fd = openSync(localPath, 'r');
  try {
    for (let filled = 0; filled < target.length;) {
      const bytesRead = readSync(fd, target, filled, target.length - filled, filled);
      if (bytesRead === 0) {
        throw new PvError('PV_UPLOAD_CHUNK_TRUNCATED', `${localPath} shrank while it was being uploaded.`, {
          fix: 'It is sent again once it is left alone.',
        });
      }
      filled += bytesRead;
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Bodies of POST /uploads/files, kept for the next requests: a fresh 4 MiB one per request is
 * external memory that V8 answers with full collections. Two groups of requests are in flight.
 */
const spareBodies: Buffer[] = [];
const SPARE_BODIES_KEPT = 4;
const BODY_KEPT_BYTES = WHOLE_REQUEST_BYTES + 256 * 1024;

function takeBodyBuffer(length: number): Buffer {
  const at = spareBodies.findIndex((buffer) => buffer.length >= length);
  if (at >= 0) return spareBodies.splice(at, 1)[0]!;
  return Buffer.allocUnsafe(Math.max(length, BODY_KEPT_BYTES));
}

function giveBodyBuffer(buffer: Buffer): void {
  if (buffer.length === BODY_KEPT_BYTES && spareBodies.length < SPARE_BODIES_KEPT) spareBodies.push(buffer);
}

/** A delta is sent when it is at most this share of the chunk: below that the chunk goes whole. */
const DELTA_WORTH = 0.75;

/** Lists the regular files under a local path with their remote paths; symlinks and specials are skipped. */
async function collect(localPath: string, remoteDir: string, into: LocalFile[]): Promise<void> {
  const info = await stat(localPath).catch((error: NodeJS.ErrnoException) => {
    throw new PvError('PV_NOT_FOUND', `Cannot read ${localPath}: ${error.code ?? error.message}.`, { fix: 'Check the path.' });
  });
  const remotePath = joinPath(remoteDir, basename(localPath));
  if (info.isFile()) {
    into.push({ localPath, remotePath, size: info.size });
  } else if (info.isDirectory()) {
    for (const entry of (await readdir(localPath, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      if (entry.isFile() || entry.isDirectory()) await collect(join(localPath, entry.name), remotePath, into);
    }
  }
}
