import { createHash } from 'node:crypto';
import { PvError } from '../../core/errors.js';
import { BUCKETS, type Bucket, type ByteRange, type PutOptions, type PutResult } from './blob-store.js';

/**
 * What every BlobStore adapter checks the same way: bucket names, keys, byte ranges and a put's
 * bytes, and the errors they answer with.
 */

/** Where the fs store keeps puts in progress, at the top of each bucket. */
export const TMP_DIR = '.tmp';
/** Where the staging areas keep unfinished uploads, at the top of the `uploads` bucket. */
export const STAGING_DIR = '.staging';
/** First key segments the adapters keep for themselves: never a key, never listed. */
const RESERVED = new Set([TMP_DIR, STAGING_DIR]);
export const MAX_KEY_LENGTH = 1024;
const SEGMENT = /^[A-Za-z0-9._-]+$/;

/** True when name may be one '/'-separated segment of a key (it may still be '.' or '..'). */
export function isKeySegment(name: string): boolean {
  return SEGMENT.test(name);
}

/** True when the key is valid and not in a reserved folder. */
export function isBlobKey(key: unknown): key is string {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) return false;
  const segments = key.split('/');
  return !RESERVED.has(segments[0]!) && segments.every((s) => SEGMENT.test(s) && s !== '.' && s !== '..');
}

/** True for a first key segment an adapter keeps for itself. */
export function isReservedSegment(name: string): boolean {
  return RESERVED.has(name);
}

/** Throws PV_INVALID_INPUT unless key is '/'-separated [A-Za-z0-9._-] segments, none '.' or '..'. */
export function assertBlobKey(key: unknown): asserts key is string {
  if (!isBlobKey(key)) {
    throw new PvError('PV_INVALID_INPUT', 'Invalid blob key', {
      key,
      fix: `Use '/'-separated segments of letters, digits, '.', '_' and '-' (not '.' or '..'), at most ${MAX_KEY_LENGTH} characters`,
    });
  }
}

/** Throws PV_INVALID_INPUT unless bucket is one of BUCKETS. */
export function assertBucket(bucket: unknown): asserts bucket is Bucket {
  if (!(BUCKETS as readonly unknown[]).includes(bucket)) {
    throw new PvError('PV_INVALID_INPUT', `Unknown blob bucket ${String(bucket)}`, { bucket });
  }
}

/** Throws PV_INVALID_INPUT unless the range is whole, non-negative numbers with start <= end. */
export function assertByteRange(range: ByteRange): void {
  if (!(Number.isSafeInteger(range.start) && Number.isSafeInteger(range.end) && range.start >= 0 && range.start <= range.end)) {
    throw new PvError('PV_INVALID_INPUT', 'Invalid byte range', { range });
  }
}

export function blobNotFound(bucket: Bucket, key: string): PvError {
  return new PvError('PV_BLOB_NOT_FOUND', `No blob ${key} in bucket ${bucket}`, { bucket, key });
}

export function rangePastEnd(bucket: Bucket, key: string, range: ByteRange, size?: number): PvError {
  return new PvError('PV_INVALID_INPUT', 'Byte range starts past the end of the object', { bucket, key, range, size });
}

/**
 * Hashes and counts a put's bytes as they stream by, and holds them to the put's expected sha256
 * and size: too many bytes fail at once, the rest when the body ends.
 */
export class PutCheck {
  private readonly hash = createHash('sha256');
  size = 0;
  /** The expected sha256, when the caller checked it already (PutOptions.sha256Checked). */
  private readonly trusted: string | undefined;

  constructor(
    private readonly bucket: Bucket,
    private readonly key: string,
    private readonly expected: PutOptions,
  ) {
    if (expected.sha256Checked) this.trusted = expected.sha256?.toLowerCase();
  }

  /** Takes the next bytes; throws PV_INTEGRITY as soon as they pass the expected size. */
  update(bytes: Uint8Array): void {
    this.size += bytes.length;
    if (this.expected.size !== undefined && this.size > this.expected.size) {
      throw integrityError(this.bucket, this.key, this.expected, { size: this.size });
    }
    if (this.trusted === undefined) this.hash.update(bytes);
  }

  /** Size and sha256 of all the bytes; throws PV_INTEGRITY unless they are the expected ones. */
  finish(): PutResult {
    const { size, expected } = this;
    const sha256 = this.trusted ?? this.hash.digest('hex');
    if (
      (expected.size !== undefined && size !== expected.size) ||
      (expected.sha256 !== undefined && sha256 !== expected.sha256.toLowerCase())
    ) {
      throw integrityError(this.bucket, this.key, expected, { size, sha256 });
    }
    return { size, sha256 };
  }
}

function integrityError(bucket: Bucket, key: string, expected: PutOptions, actual: { size: number; sha256?: string }): PvError {
  const message =
    actual.sha256 === undefined
      ? `Blob ${key} is larger than the expected ${expected.size} bytes`
      : `Blob ${key} does not match the expected ${expected.size !== undefined && actual.size !== expected.size ? 'size' : 'sha256'}`;
  return new PvError('PV_INTEGRITY', message, {
    bucket,
    key,
    expected: { sha256: expected.sha256, size: expected.size },
    actual,
  });
}
