import { createHash } from 'node:crypto';
import { PvError } from './errors.js';
import { ByteReader, ByteWriter } from './varint.js';

/**
 * rsync-style binary deltas. The side holding the old bytes (the base) describes them by a
 * signature: per block a weak rolling checksum and a short strong hash. The side holding the new
 * bytes slides a window over them, finds blocks of the base by the weak sum, confirms them by the
 * strong hash, and writes the new bytes as copies of base ranges and literal bytes. The result is
 * only ever trusted after the rebuilt bytes pass their SHA-256 chunk hash, so an 8-byte strong
 * hash that collides costs a retry, never a corrupt file.
 */

/** Blocks of the base: the weak sum and strong hash of each block, in order. */
export interface Signature {
  blockSize: number;
  /** Length of the last block when it is short (the base's length is not a multiple of blockSize), else 0. */
  tailLength: number;
  weak: Uint32Array;
  /** STRONG_BYTES per block, back to back. */
  strong: Buffer;
}

/**
 * Bytes of SHA-256 per block. A false match only follows a weak-sum match and costs a retry (the
 * rebuilt chunks fail their hash), so 32 bits suffice, as rsync's 2-6 bytes do.
 */
const STRONG_BYTES = 4;
/** Signature format 2: 4-byte strong hashes (format 1 had 8). */
const SIGNATURE_FORMAT = 2;
const DELTA_FORMAT = 1;
const COPY = 1;
const LITERAL = 2;
/** Blocks smaller than this make weak sums too alike to be worth looking up. */
const MIN_BLOCK = 64;
const MAX_BLOCK = 16 * 1024;
/** A signature covers at most this many bytes (a changed region of a few chunks). */
export const MAX_SIGNED_BYTES = 4 * 1024 * 1024;

/**
 * The block size that makes signature plus delta smallest for a base of this length when the
 * signature travels: a signature costs about 11 bytes a block in base64, and an edit about one
 * block of literal bytes (the broken block around it, half on each side), so the sum is least
 * near sqrt(11 * length).
 */
export function signatureBlockSize(baseLength: number): number {
  return Math.min(MAX_BLOCK, Math.max(256, Math.round(Math.sqrt(11 * baseLength) / 64) * 64));
}

/** The signature of base in blocks of blockSize, the last one possibly short. */
export function computeSignature(base: Uint8Array, blockSize: number): Signature {
  const blocks = Math.ceil(base.length / blockSize);
  const weak = new Uint32Array(blocks);
  const strong = Buffer.allocUnsafe(blocks * STRONG_BYTES);
  for (let block = 0; block < blocks; block++) {
    const bytes = base.subarray(block * blockSize, (block + 1) * blockSize);
    weak[block] = weakSum(bytes);
    strongHash(bytes).copy(strong, block * STRONG_BYTES);
  }
  return { blockSize, tailLength: base.length % blockSize, weak, strong };
}

/** Encodes a signature: format, block size, block count, tail length, then per block the weak sum (4 bytes) and strong hash. */
export function encodeSignature(signature: Signature): Buffer {
  const out = new ByteWriter(16 + signature.weak.length * (4 + STRONG_BYTES));
  out.byte(SIGNATURE_FORMAT).varint(signature.blockSize).varint(signature.weak.length).varint(signature.tailLength);
  const block = Buffer.allocUnsafe(4 + STRONG_BYTES);
  signature.weak.forEach((weak, at) => {
    block.writeUInt32BE(weak, 0);
    signature.strong.copy(block, 4, at * STRONG_BYTES, (at + 1) * STRONG_BYTES);
    out.bytes(block);
  });
  return out.finish();
}

/** Decodes a signature, refusing one that would describe more than MAX_SIGNED_BYTES. */
export function decodeSignature(bytes: Uint8Array): Signature {
  const reader = new ByteReader(bytes, malformed('signature'));
  if (reader.byte() !== SIGNATURE_FORMAT) throw malformed('signature')('unknown format byte');
  const blockSize = reader.varint();
  const blocks = reader.varint();
  const tailLength = reader.varint();
  if (blockSize < MIN_BLOCK || blockSize > MAX_BLOCK || blocks * blockSize > MAX_SIGNED_BYTES || tailLength >= blockSize) {
    throw malformed('signature')(`${blocks} blocks of ${blockSize} bytes are out of bounds`);
  }
  const weak = new Uint32Array(blocks);
  const strong = Buffer.allocUnsafe(blocks * STRONG_BYTES);
  for (let at = 0; at < blocks; at++) {
    const block = reader.bytes(4 + STRONG_BYTES);
    weak[at] = block.readUInt32BE(0);
    block.copy(strong, at * STRONG_BYTES, 4);
  }
  if (!reader.done) throw malformed('signature')('trailing bytes');
  if (blocks === 0 && tailLength > 0) throw malformed('signature')('a tail without a block');
  return { blockSize, tailLength, weak, strong };
}

/** The delta that rebuilds target from the base the signature describes. */
export function encodeDelta(target: Uint8Array, signature: Signature): Buffer {
  const { blockSize, tailLength, weak } = signature;
  // The short last block can only match at the very end of the target: check it there once, and
  // look up only full blocks while sliding.
  const fullBlocks = tailLength > 0 ? weak.length - 1 : weak.length;
  const blocksByWeak = new Map<number, number[]>();
  for (let block = 0; block < fullBlocks; block++) {
    const list = blocksByWeak.get(weak[block]!);
    if (list) list.push(block);
    else blocksByWeak.set(weak[block]!, [block]);
  }
  const tail = tailLength > 0 && target.length >= tailLength ? target.subarray(target.length - tailLength) : null;
  const endsWithTail = tail !== null && weakSum(tail) === weak[fullBlocks] && matchesBlock(signature, fullBlocks, strongHash(tail));
  const end = endsWithTail ? target.length - tailLength : target.length;
  const out = new ByteWriter(1024);
  out.byte(DELTA_FORMAT);
  let literalFrom = 0;
  // The copy being grown: consecutive matched blocks become one operation.
  let copyStart = 0;
  let copyLength = 0;
  const flushCopy = () => {
    if (copyLength > 0) out.byte(COPY).varint(copyStart).varint(copyLength);
    copyLength = 0;
  };
  const flushLiteral = (to: number) => {
    if (to === literalFrom) return;
    flushCopy();
    out
      .byte(LITERAL)
      .varint(to - literalFrom)
      .bytes(target.subarray(literalFrom, to));
  };

  let position = 0;
  let sums = position + blockSize <= end ? rollingStart(target, 0, blockSize) : null;
  while (sums !== null) {
    const candidates = blocksByWeak.get(((sums.b << 16) | sums.a) >>> 0);
    const following = copyLength > 0 ? (copyStart + copyLength) / blockSize : -1;
    const block = candidates && confirm(signature, candidates, target.subarray(position, position + blockSize), following);
    if (block !== undefined) {
      flushLiteral(position);
      if (copyLength > 0 && block === following) {
        copyLength += blockSize;
      } else {
        flushCopy();
        copyStart = block * blockSize;
        copyLength = blockSize;
      }
      position += blockSize;
      literalFrom = position;
      sums = position + blockSize <= end ? rollingStart(target, position, blockSize) : null;
    } else if (position + blockSize < end) {
      sums = roll(sums, target[position]!, target[position + blockSize]!, blockSize);
      position++;
    } else {
      sums = null;
    }
  }
  flushLiteral(end);
  if (endsWithTail) {
    const start = fullBlocks * blockSize;
    if (copyLength > 0 && copyStart + copyLength === start) copyLength += tailLength;
    else {
      flushCopy();
      copyStart = start;
      copyLength = tailLength;
    }
  }
  flushCopy();
  return out.finish();
}

/**
 * Rebuilds the target from base and a delta, refusing output longer than maxLength and copies
 * outside base; throws PV_DELTA_INVALID.
 */
export function applyDelta(base: Uint8Array, delta: Uint8Array, maxLength: number): Buffer {
  const invalid = malformed('delta');
  const reader = new ByteReader(delta, invalid);
  if (reader.byte() !== DELTA_FORMAT) throw invalid('unknown format byte');
  const parts: Uint8Array[] = [];
  let length = 0;
  while (!reader.done) {
    const tag = reader.byte();
    let part: Uint8Array;
    if (tag === COPY) {
      const start = reader.varint();
      const size = reader.varint();
      if (start + size > base.length) throw invalid(`a copy of ${start}..${start + size} from a base of ${base.length} bytes`);
      part = base.subarray(start, start + size);
    } else if (tag === LITERAL) {
      part = reader.bytes(reader.varint());
    } else {
      throw invalid(`unknown operation ${tag}`);
    }
    length += part.length;
    if (length > maxLength) throw invalid(`it makes more than the ${maxLength} bytes expected`);
    parts.push(part);
  }
  return Buffer.concat(parts, length);
}

interface Sums {
  a: number;
  b: number;
}

/** rsync's weak checksum: a = sum of bytes, b = sum of running a's, each mod 2^16. */
function weakSum(bytes: Uint8Array): number {
  const { a, b } = rollingStart(bytes, 0, bytes.length);
  return ((b << 16) | a) >>> 0;
}

function rollingStart(bytes: Uint8Array, from: number, length: number): Sums {
  let a = 0;
  let b = 0;
  for (let i = 0; i < length; i++) {
    a = (a + bytes[from + i]!) & 0xffff;
    b = (b + a) & 0xffff;
  }
  return { a, b };
}

/** Slides the window one byte: out leaves at the front, into enters at the back. */
function roll(sums: Sums, out: number, into: number, length: number): Sums {
  const a = (sums.a - out + into) & 0xffff;
  const b = (sums.b - length * out + a) & 0xffff;
  return { a, b };
}

function strongHash(bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest().subarray(0, STRONG_BYTES);
}

/** The candidate block whose strong hash matches, preferring the one that extends the current copy. */
function confirm(signature: Signature, candidates: number[], window: Uint8Array, following: number): number | undefined {
  const strong = strongHash(window);
  const matches = (block: number) => matchesBlock(signature, block, strong);
  if (candidates.includes(following) && matches(following)) return following;
  return candidates.find(matches);
}

function matchesBlock(signature: Signature, block: number, strong: Buffer): boolean {
  return signature.strong.compare(strong, 0, STRONG_BYTES, block * STRONG_BYTES, (block + 1) * STRONG_BYTES) === 0;
}

function malformed(what: string): (reason: string) => PvError {
  return (reason) =>
    new PvError('PV_DELTA_INVALID', `Malformed ${what}: ${reason}.`, {
      fix: 'Send the chunk whole (application/octet-stream) instead.',
    });
}
