import { describe, expect, it } from 'vitest';
import { isPvError } from '../../src/core/errors.js';
import { sha256Hex } from '../../src/core/hash.js';
import { decodeManifest, encodeManifest, type Manifest, manifestSize } from '../../src/core/manifest.js';

const entry = (seed: number, length: number) => ({ hash: sha256Hex(String(seed)), length });

describe('manifest encoding', () => {
  it.each([
    ['empty', [] as Manifest],
    ['one small chunk', [entry(1, 1)]],
    ['varint boundaries', [entry(1, 127), entry(2, 128), entry(3, 16_383), entry(4, 16_384), entry(5, 262_144)]],
    ['repeated chunk', [entry(7, 65_536), entry(7, 65_536)]],
  ])('round-trips %s', (_name, manifest) => {
    const encoded = encodeManifest(manifest);
    expect(decodeManifest(encoded, 10)).toEqual(manifest);
    expect(manifestSize(manifest)).toBe(manifest.reduce((s, c) => s + c.length, 0));
  });

  it('takes about 35 bytes a chunk', () => {
    const manifest = Array.from({ length: 1000 }, (_, i) => entry(i, 65_536));
    expect(encodeManifest(manifest).length).toBe(1 + 1000 * 35);
  });

  it.each([
    ['no format byte', Buffer.alloc(0), 'PV_MANIFEST_INVALID'],
    ['unknown format', Buffer.from([9]), 'PV_MANIFEST_INVALID'],
    ['truncated hash', Buffer.concat([Buffer.from([1]), Buffer.alloc(20)]), 'PV_MANIFEST_INVALID'],
    ['truncated length', Buffer.concat([Buffer.from([1]), Buffer.alloc(32), Buffer.from([0x80])]), 'PV_MANIFEST_INVALID'],
    ['runaway length', Buffer.concat([Buffer.from([1]), Buffer.alloc(32), Buffer.alloc(8, 0xff), Buffer.from([1])]), 'PV_MANIFEST_INVALID'],
  ])('rejects %s', (_name, bytes, code) => {
    expect(() => decodeManifest(bytes, 10)).toThrowError(expect.objectContaining({ code }));
  });

  it('rejects a manifest with more chunks than allowed', () => {
    const manifest = Array.from({ length: 11 }, (_, i) => entry(i, 100));
    let caught: unknown;
    try {
      decodeManifest(encodeManifest(manifest), 10);
    } catch (error) {
      caught = error;
    }
    expect(isPvError(caught, 'PV_MANIFEST_TOO_LARGE')).toBe(true);
  });
});
