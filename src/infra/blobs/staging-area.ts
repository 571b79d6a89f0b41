import { PvError } from '../../core/errors.js';
import type { Bucket } from './blob-store.js';

const UPLOAD_ID = /^[A-Za-z0-9-]{1,64}$/;

/** True for an id a staging area takes: safe as a file name or a key segment. */
export function isUploadId(id: unknown): id is string {
  return typeof id === 'string' && UPLOAD_ID.test(id);
}

/** Throws PV_INVALID_INPUT unless isUploadId(id). */
export function assertUploadId(id: unknown): asserts id is string {
  if (!isUploadId(id)) throw new PvError('PV_INVALID_INPUT', `Invalid upload id ${JSON.stringify(id)}.`);
}

/**
 * Where an upload's verified chunks wait for its commit, laid out at their offsets in the file
 * being uploaded, so that committing makes the object without copying them again.
 *
 * Staged bytes are scratch: writes are not flushed, so a crash may lose or tear them. Content
 * never written (holes, or all of it) reads as zeros, up to the furthest byte written. Callers verify what they read
 * back; promote() checks the whole content before it makes anything visible.
 */
export interface StagingArea {
  /**
   * Writes the bytes at each of these offsets of the upload's content. A write at an offset where
   * an earlier one started replaces it (a chunk sent again because a crash tore its first copy).
   * Writes that overlap otherwise must agree where they overlap, and the upload flow's always do:
   * each place only ever gets its manifest chunk, verified. Which of two disagreeing writes reads
   * back is the adapter's: the later on disk, the lower offset on S3.
   */
  write(uploadId: string, bytes: Uint8Array, offsets: number[]): Promise<void>;
  /** Reads a range of the staged content; what was never written reads as zeros. */
  read(uploadId: string, offset: number, length: number): Promise<Buffer>;
  /** SHA-256 and size of the staged content. */
  digest(uploadId: string): Promise<{ sha256: string; size: number }>;
  /**
   * Makes the staged content the object bucket/key, atomically and durably, if it has this hash
   * and size; otherwise throws PV_INTEGRITY and keeps the staging. Consumes the staging.
   */
  promote(uploadId: string, bucket: Bucket, key: string, expected: { sha256: string; size: number }): Promise<void>;
  /** Removes an upload's staged content; removing none is not an error. */
  discard(uploadId: string): Promise<void>;
  /** The uploads that have staged content, to sweep those whose upload is gone. */
  uploads(): AsyncIterable<string>;
  close(): Promise<void>;
}
