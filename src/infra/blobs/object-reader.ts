import type { Readable } from 'node:stream';
import { isPvError, PvError } from '../../core/errors.js';
import type { BlobStore, Bucket, ByteRange } from './blob-store.js';
import { objectKey } from './object-keys.js';

/** Where the metadata records the object of a content now. */
export interface ObjectLocator {
  /** The tier bucket holding the object, or null when none is stored (purged). */
  bucketOf(contentHash: string): Promise<Bucket | null>;
}

/**
 * Opens the object of a content, or an inclusive range of it, in the tier bucket the metadata
 * records. Every reader of originals opens them here (not with blobs.get), because the tiering job
 * deletes an object's old copy right after switching the metadata to the new one: a reader that
 * looked the bucket up just before the switch finds nothing there, so it looks up once more and
 * reads the new copy. Once this resolves, the stream holds the copy it opened (an open file; on S3
 * a response already under way).
 *
 * `bucket` is where the caller already found the object (in a join, say); without it the locator
 * is asked first. Throws PV_BLOB_NOT_FOUND when the object is not stored, or missing where recorded.
 */
export async function openObject(
  blobs: BlobStore,
  locator: ObjectLocator,
  contentHash: string,
  options: { range?: ByteRange; bucket?: Bucket } = {},
): Promise<Readable> {
  const key = objectKey(contentHash);
  const bucket = options.bucket ?? (await locator.bucketOf(contentHash));
  if (bucket === null) throw notStored(contentHash);
  try {
    return await blobs.get(bucket, key, options.range);
  } catch (error) {
    if (!isPvError(error, 'PV_BLOB_NOT_FOUND')) throw error;
    // One retry suffices: a run moves an object once, and runs are hours apart.
    const now = await locator.bucketOf(contentHash);
    if (now === null) throw notStored(contentHash);
    if (now === bucket) throw error;
    return blobs.get(now, key, options.range);
  }
}

function notStored(contentHash: string): PvError {
  return new PvError('PV_BLOB_NOT_FOUND', `No stored object with content ${contentHash}.`, { contentHash });
}
