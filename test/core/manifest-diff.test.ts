import { describe, expect, it } from 'vitest';
import { sha256Hex } from '../../src/core/hash.js';
import type { Manifest } from '../../src/core/manifest.js';
import { applyManifestDiff, changedRegions, decodeManifestDiff, diffManifests, encodeManifestDiff } from '../../src/core/manifest-diff.js';

const entry = (seed: string) => ({ hash: sha256Hex(seed), length: 1000 + seed.charCodeAt(0) });
/** A manifest of one chunk per letter: 'abc' is three chunks. */
const manifest = (letters: string): Manifest => [...letters].map(entry);

describe('manifest diff', () => {
  it.each([
    ['unchanged', 'abcdefgh', 'abcdefgh', []],
    ['one chunk replaced in the middle', 'abcdefgh', 'abcXefgh', [{ start: 3, count: 1, baseStart: 3, baseCount: 1 }]],
    ['a chunk split in two', 'abcdefgh', 'abcXYefgh', [{ start: 3, count: 2, baseStart: 3, baseCount: 1 }]],
    ['two chunks merged', 'abcdefgh', 'abcXfgh', [{ start: 3, count: 1, baseStart: 3, baseCount: 2 }]],
    ['appended', 'abc', 'abcX', [{ start: 3, count: 1, baseStart: 3, baseCount: 0 }]],
    ['last chunk changed and one appended', 'abc', 'abXY', [{ start: 2, count: 2, baseStart: 2, baseCount: 1 }]],
    ['first chunk changed', 'abc', 'Xbc', [{ start: 0, count: 1, baseStart: 0, baseCount: 1 }]],
    ['truncated', 'abcdef', 'abc', []],
    ['a run moved', 'abcdef', 'defabc', []],
    ['a repeated chunk', 'abab', 'ababab', []],
    ['from empty', '', 'ab', [{ start: 0, count: 2, baseStart: 0, baseCount: 0 }]],
    ['to empty', 'ab', '', []],
  ])('%s: round-trips and finds the changed regions', (_name, from, to, regions) => {
    const base = manifest(from);
    const target = manifest(to);
    const diff = decodeManifestDiff(encodeManifestDiff(diffManifests(base, target)), 100);
    expect(applyManifestDiff(base, diff, 100)).toEqual(target);
    expect(changedRegions(diff, base.length)).toEqual(regions);
  });

  it('tells a 1-chunk edit of a 1,600-chunk file in under 100 bytes', () => {
    const base = Array.from({ length: 1600 }, (_, i) => ({ hash: sha256Hex(String(i)), length: 65_536 }));
    const target = [...base.slice(0, 800), { hash: sha256Hex('edited'), length: 66_560 }, ...base.slice(801)];
    const encoded = encodeManifestDiff(diffManifests(base, target));
    expect(encoded.length).toBeLessThan(100);
    expect(applyManifestDiff(base, decodeManifestDiff(encoded, 2000), 2000)).toEqual(target);
  });

  it.each([
    ['an unknown format', Buffer.from([9]), 'PV_MANIFEST_INVALID'],
    ['an unknown edit', Buffer.from([1, 7]), 'PV_MANIFEST_INVALID'],
    ['an empty run', Buffer.from([1, 1, 0, 0]), 'PV_MANIFEST_INVALID'],
    ['an entry count past the end', Buffer.from([1, 2, 100, 0, 0]), 'PV_MANIFEST_INVALID'],
    ['a truncated entry', Buffer.concat([Buffer.from([1, 2, 1]), Buffer.alloc(32)]), 'PV_MANIFEST_INVALID'],
    ['more entries than allowed', Buffer.from([1, 1, 0, 0x80, 0x80, 0x04]), 'PV_MANIFEST_TOO_LARGE'],
  ])('rejects %s', (_name, bytes, code) => {
    expect(() => decodeManifestDiff(bytes, 1000)).toThrowError(expect.objectContaining({ code }));
  });

  it('rejects a diff that copies past the end of its base', () => {
    const diff = diffManifests(manifest('abcdef'), manifest('abcdef'));
    expect(() => applyManifestDiff(manifest('abc'), diff, 100)).toThrowError(expect.objectContaining({ code: 'PV_MANIFEST_INVALID' }));
  });
});
