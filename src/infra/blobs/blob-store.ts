import type { Readable } from 'node:stream';
import type { Bucket } from '../../core/buckets.js';

// The bucket names are part of the configuration too, so core defines them.
export { BUCKETS, type Bucket } from '../../core/buckets.js';

/** An inclusive byte range, as in HTTP Range. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface BlobInfo {
  key: string;
  size: number;
}

export interface PutOptions {
  /** SHA-256 (lowercase hex) the bytes must have; on mismatch nothing becomes visible. */
  sha256?: string;
  /** Exact byte count the bytes must have; on mismatch nothing becomes visible. */
  size?: number;
  /**
   * The caller has checked the bytes against sha256 itself, in its own memory, and passes them
   * unchanged: the put counts them but trusts the hash instead of computing it a second time.
   */
  sha256Checked?: boolean;
  /**
   * false: the object may be lost (never seen partial) if the machine loses power soon after.
   * For scratch data the caller can re-verify or re-fetch, such as staged upload chunks; it
   * saves a disk flush per object. Default true.
   */
  durable?: boolean;
}

export interface PutResult {
  size: number;
  sha256: string;
}

/**
 * Object storage port. Keys are '/'-separated relative names of safe characters
 * ([A-Za-z0-9._-] segments, no '.' or '..'); values are immutable once put.
 *
 * put is atomic: readers see either no object or the whole object, never a partial one, even
 * if the process dies mid-write; a failed or mismatching put leaves the previous state.
 */
export interface BlobStore {
  put(bucket: Bucket, key: string, body: Readable | AsyncIterable<Uint8Array>, options?: PutOptions): Promise<PutResult>;
  /** A stream of the object's bytes, or of the inclusive range. Throws PV_BLOB_NOT_FOUND. */
  get(bucket: Bucket, key: string, range?: ByteRange): Promise<Readable>;
  /** Size of the object, or null when absent. */
  head(bucket: Bucket, key: string): Promise<BlobInfo | null>;
  /** Removes the object; removing an absent object is not an error. */
  delete(bucket: Bucket, key: string): Promise<void>;
  /** Every object whose key starts with prefix, in no particular order. */
  list(bucket: Bucket, prefix?: string): AsyncIterable<BlobInfo>;
  close(): Promise<void>;
}
