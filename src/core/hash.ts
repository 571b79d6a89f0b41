import { createHash } from 'node:crypto';
import { PvError } from './errors.js';
import { LazyThread } from './lazy-thread.js';

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

/** Where some bytes lie in a larger buffer. */
export interface Span {
  offset: number;
  length: number;
}

/** Runs in the span-hashing thread. Plain JavaScript: it is evaluated as is, not compiled. */
const SPANS_THREAD_SOURCE = `
'use strict';
const { parentPort } = require('node:worker_threads');
const { hash } = require('node:crypto');
parentPort.on('message', ({ job, buffer, byteOffset, spans }) => {
  const bytes = new Uint8Array(buffer, byteOffset);
  const digests = [];
  for (let at = 0; at < spans.length; at += 2) digests.push(hash('sha256', bytes.subarray(spans[at], spans[at] + spans[at + 1])));
  parentPort.postMessage({ job, digests });
});
`;

const spansThread = new LazyThread<
  { job: number; buffer: SharedArrayBuffer; byteOffset: number; spans: number[] },
  { job: number; digests: ContentHash[] }
>(SPANS_THREAD_SOURCE);

/**
 * SHA-256 of each span of bytes, computed on a worker thread that reads them in place: the
 * calling thread stays free for other requests meanwhile. The bytes must lie in a
 * SharedArrayBuffer and stay as they are until this resolves.
 */
export async function sha256OfSpans(bytes: Buffer, spans: Span[]): Promise<ContentHash[]> {
  if (!(bytes.buffer instanceof SharedArrayBuffer)) throw new TypeError('sha256OfSpans reads bytes in a SharedArrayBuffer only.');
  for (const { offset, length } of spans) {
    if (offset < 0 || length < 0 || offset + length > bytes.length)
      throw new RangeError(`The span ${offset}+${length} lies outside the bytes.`);
  }
  if (spans.length === 0) return [];
  const { digests } = await spansThread.ask({
    buffer: bytes.buffer,
    byteOffset: bytes.byteOffset,
    spans: spans.flatMap(({ offset, length }) => [offset, length]),
  });
  return digests;
}
