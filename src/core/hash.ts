import { createHash } from 'node:crypto';
import { PvError } from './errors.js';

/** A SHA-256 digest as 64 lowercase hex characters: the identity of a chunk or a file version. */
export type ContentHash = string;

const HEX_SHA256 = /^[0-9a-f]{64}$/;

/** True when the value is a well-formed ContentHash. */
export function isContentHash(value: unknown): value is ContentHash {
  return typeof value === 'string' && HEX_SHA256.test(value);
}

/** Returns the value as a ContentHash, or throws PV_INVALID_INPUT naming the field. */
export function parseContentHash(value: unknown, field: string): ContentHash {
  if (!isContentHash(value)) {
    throw new PvError('PV_INVALID_INPUT', `${field} must be a SHA-256 digest in lowercase hex (64 characters).`, { field });
  }
  return value;
}

/** SHA-256 of bytes in memory, as a ContentHash. */
export function sha256Hex(bytes: Uint8Array | string): ContentHash {
  return createHash('sha256').update(bytes).digest('hex');
}
