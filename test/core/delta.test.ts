import { describe, expect, it } from 'vitest';
import { applyDelta, computeSignature, decodeSignature, encodeDelta, encodeSignature, signatureBlockSize } from '../../src/core/delta.js';
import { pseudoRandomBytes } from '../support/random.js';

const base = pseudoRandomBytes(64 * 1024, 7);
const insert = (bytes: Buffer, at: number, inserted: Buffer) => Buffer.concat([bytes.subarray(0, at), inserted, bytes.subarray(at)]);

/** Signature over the wire and back, delta, rebuild: what the two sides of an upload do. */
function roundTrip(from: Buffer, to: Buffer, blockSize = signatureBlockSize(from.length)) {
  const signature = decodeSignature(encodeSignature(computeSignature(from, blockSize)));
  const delta = encodeDelta(to, signature);
  return { delta, rebuilt: applyDelta(from, delta, to.length), signatureBytes: encodeSignature(computeSignature(from, blockSize)).length };
}

describe('binary delta', () => {
  it.each([
    ['identical', base],
    ['1 KiB inserted in the middle', insert(base, 30_000, pseudoRandomBytes(1024, 8))],
    ['bytes overwritten', Buffer.concat([base.subarray(0, 100), Buffer.alloc(50, 1), base.subarray(150)])],
    ['a prefix removed', base.subarray(5_000)],
    ['the halves swapped', Buffer.concat([base.subarray(32_768), base.subarray(0, 32_768)])],
    ['entirely different', pseudoRandomBytes(70_000, 9)],
    ['shorter than a block', pseudoRandomBytes(100, 10)],
    ['empty', Buffer.alloc(0)],
  ])('rebuilds the target exactly when %s', (_name, target) => {
    expect(roundTrip(base, target).rebuilt.equals(target)).toBe(true);
  });

  it('sends a 1 KiB insert into a 64 KiB chunk in about 2 KiB, signature included', () => {
    const inserted = pseudoRandomBytes(1024, 11);
    const { delta, signatureBytes } = roundTrip(base, insert(base, 30_000, inserted));
    expect(delta.length).toBeGreaterThanOrEqual(1024);
    expect(delta.length + signatureBytes).toBeLessThan(3 * 1024);
  });

  it('copies the short last block of the base too, so an edit near the end costs no extra block', async () => {
    const odd = base.subarray(0, 64 * 1024 - 300);
    const target = Buffer.concat([odd.subarray(0, 1000), Buffer.from('inserted'), odd.subarray(1000)]);
    const { delta, rebuilt } = roundTrip(odd, target, 1024);
    expect(rebuilt.equals(target)).toBe(true);
    // The literal is the inserted bytes plus the rest of the block they broke, never the tail.
    expect(delta.length).toBeLessThan(1024 + 64);
    expect(encodeDelta(odd, decodeSignature(encodeSignature(computeSignature(odd, 1024)))).length).toBeLessThan(16);
  });

  it('finds an edit to within a small block when the signature need not travel', () => {
    const target = insert(base, 30_000, pseudoRandomBytes(1024, 12));
    expect(roundTrip(base, target, 64).delta.length).toBeLessThan(1024 + 3 * 64);
  });

  it.each([
    ['an unknown format', Buffer.from([9])],
    ['an unknown operation', Buffer.from([1, 9])],
    ['a copy outside the base', Buffer.from([1, 1, 0x80, 0x80, 0x04, 10])],
    ['a truncated literal', Buffer.from([1, 2, 10, 1, 2])],
  ])('rejects %s', (_name, delta) => {
    expect(() => applyDelta(base, delta, 1000)).toThrowError(expect.objectContaining({ code: 'PV_DELTA_INVALID' }));
  });

  it('refuses a delta that makes more bytes than expected', () => {
    const delta = encodeDelta(base, computeSignature(base, 1024));
    expect(() => applyDelta(base, delta, base.length - 1)).toThrowError(expect.objectContaining({ code: 'PV_DELTA_INVALID' }));
  });

  it.each([
    ['a block size out of bounds', Buffer.from([1, 8, 1])],
    ['more blocks than bytes', Buffer.from([1, 0x80, 0x08, 5, 1, 2, 3])],
    ['a signature past 4 MiB', Buffer.from([1, 0x80, 0x08, 0x80, 0x80, 0x01])],
  ])('rejects a signature with %s', (_name, bytes) => {
    expect(() => decodeSignature(bytes)).toThrowError(expect.objectContaining({ code: 'PV_DELTA_INVALID' }));
  });
});
