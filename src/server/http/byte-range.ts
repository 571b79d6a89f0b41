import type { ByteRange } from '../../infra/blobs/blob-store.js';

/**
 * Parses an HTTP Range header against a representation size (RFC 9110 section 14). Returns null
 * when the header is absent or asks for several ranges (then the whole body is sent, which the
 * RFC allows), 'unsatisfiable' for a range outside the body, or the single inclusive range.
 */
export function parseByteRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | null {
  if (!header) return null;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return null;
  const [, first, last] = match;
  if (first === '' && last === '') return null;
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}
