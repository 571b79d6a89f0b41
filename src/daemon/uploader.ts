import { open, readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { type Fingerprint, fingerprintFile } from '../core/chunker.js';
import { isPvError, PvError } from '../core/errors.js';
import { encodeManifest } from '../core/manifest.js';
import { joinPath } from '../core/paths.js';
import type { UploadStatus } from '../core/protocol.js';
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

/**
 * Uploads local files and folders through the protocol of docs/protocol.md. Keeps no state of
 * its own: an interrupted run resumes because the server finds the unfinished upload of the same
 * content to the same path and answers with only the chunks it still lacks.
 */
export class Uploader {
  private readonly chunkConcurrency: number;
  private readonly fileConcurrency: number;

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

    await runPool(files, this.fileConcurrency, async (file) => {
      try {
        const { sent, deduplicated, size } = await this.uploadFile(file.localPath, file.remotePath, {
          onBytes: (bytes) => {
            progress.bytesDone += bytes;
            this.options.onProgress?.(progress);
          },
        });
        summary.files += 1;
        summary.bytesTotal += size;
        summary.bytesSent += sent;
        summary.bytesDeduplicated += deduplicated;
      } catch (error) {
        if (!isPvError(error) || error.code === 'PV_SERVER_UNREACHABLE' || error.code.startsWith('PV_AUTH')) throw error;
        summary.failed.push({ path: file.localPath, code: error.code, message: error.message });
      }
      progress.filesDone += 1;
      this.options.onProgress?.(progress);
    });
    return summary;
  }

  /**
   * Uploads one file to a remote path and returns the committed status. baseVersionId names the
   * version the local content derives from (the server keeps a conflict copy if the file moved
   * on); a fingerprint the caller already has saves reading the file twice.
   */
  async uploadFile(
    localPath: string,
    remotePath: string,
    options: { baseVersionId?: string | null; fingerprint?: Fingerprint; onBytes?: (bytes: number) => void } = {},
  ): Promise<{ status: UploadStatus; sent: number; deduplicated: number; size: number }> {
    const onBytes = options.onBytes ?? (() => undefined);
    const info = await stat(localPath);
    const fingerprint = options.fingerprint ?? (await fingerprintFile(localPath));
    let status = await this.api.beginUpload({
      path: remotePath,
      size: fingerprint.size,
      mtime: Math.floor(info.mtimeMs),
      contentHash: fingerprint.contentHash,
      manifest: encodeManifest(fingerprint.chunks.map(({ hash, length }) => ({ hash, length }))).toString('base64'),
      baseVersionId: options.baseVersionId ?? null,
    });
    const deduplicated = fingerprint.size - status.missingBytes;
    onBytes(deduplicated);
    let sent = 0;
    // A commit can find chunks missing again (their source file was deleted meanwhile): send
    // those and commit once more.
    for (let attempt = 0; status.state === 'pending'; attempt++) {
      sent += await this.sendChunks(localPath, status, fingerprint.chunks, onBytes);
      try {
        status = await this.api.commitUpload(status.uploadId!);
      } catch (error) {
        if (!isPvError(error, 'PV_UPLOAD_INCOMPLETE') || attempt >= 2) throw error;
        status = await this.api.uploadStatus(status.uploadId!);
      }
    }
    return { status, sent, deduplicated, size: fingerprint.size };
  }

  /** PUTs the missing chunks, read from the file at their offsets, a few at a time. */
  private async sendChunks(
    localPath: string,
    status: UploadStatus,
    chunks: { hash: string; offset: number; length: number }[],
    onBytes: (bytes: number) => void,
  ) {
    const missing = new Set(status.missing);
    const todo = chunks.filter((chunk) => missing.delete(chunk.hash));
    const handle = await open(localPath, 'r');
    let sent = 0;
    try {
      await runPool(todo, this.chunkConcurrency, async (chunk) => {
        const bytes = Buffer.allocUnsafe(chunk.length);
        const { bytesRead } = await handle.read(bytes, 0, chunk.length, chunk.offset);
        if (bytesRead !== chunk.length) {
          throw new PvError('PV_UPLOAD_CHUNK_TRUNCATED', `${localPath} shrank while it was being uploaded.`, {
            fix: 'Upload it again once it is complete.',
          });
        }
        await this.api.putChunk(status.uploadId!, chunk.hash, bytes);
        sent += chunk.length;
        onBytes(chunk.length);
      });
    } finally {
      await handle.close();
    }
    return sent;
  }
}

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

/** Runs work over items with at most `limit` in flight; the first failure stops new work and is thrown. */
async function runPool<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: unknown = null;
  const lane = async () => {
    while (failure === null && next < items.length) {
      const item = items[next++]!;
      try {
        await work(item);
      } catch (error) {
        failure ??= error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  if (failure !== null) throw failure;
}
