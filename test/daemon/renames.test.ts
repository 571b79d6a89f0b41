import { describe, expect, it } from 'vitest';
import type { IndexedFile } from '../../src/daemon/local-index.js';
import { detectRenames } from '../../src/daemon/renames.js';

const file = (path: string, content: string, synced: boolean): IndexedFile => ({
  path,
  size: content.length,
  mtimeMs: 0,
  inode: 0,
  contentHash: `hash-${content}`,
  manifest: '',
  syncedVersionId: synced ? `v-${path}` : null,
  syncedHash: synced ? `hash-${content}` : null,
  syncedManifest: null,
});

const pairs = (deleted: IndexedFile[], unsynced: IndexedFile[]) =>
  detectRenames(deleted, unsynced).map(({ from, to }) => [from.path, to.path]);

describe('rename detection', () => {
  it.each([
    ['a rename in place', [file('a.jpg', 'x', true)], [file('b.jpg', 'x', false)], [['a.jpg', 'b.jpg']]],
    ['a move to another folder', [file('in/a.jpg', 'x', true)], [file('out/a.jpg', 'x', false)], [['in/a.jpg', 'out/a.jpg']]],
    ['different content is no rename', [file('a.jpg', 'x', true)], [file('b.jpg', 'y', false)], []],
    ['a file never synced cannot be moved on the server', [file('a.jpg', 'x', false)], [file('b.jpg', 'x', false)], []],
    [
      'an edited file that vanished is not the one the server holds',
      [{ ...file('a.jpg', 'x', true), syncedHash: 'hash-old' }],
      [file('b.jpg', 'x', false)],
      [],
    ],
    ['an edit of a synced file is no rename', [file('a.jpg', 'x', true)], [{ ...file('b.jpg', 'x', true) }], []],
    [
      'copies of one content pair by name, then by folder',
      [file('x/one.jpg', 'same', true), file('y/two.jpg', 'same', true)],
      [file('y/renamed.jpg', 'same', false), file('z/one.jpg', 'same', false)],
      [
        ['y/two.jpg', 'y/renamed.jpg'],
        ['x/one.jpg', 'z/one.jpg'],
      ],
    ],
    [
      'two new copies of one vanished file: one is the rename, the other an upload',
      [file('a.jpg', 'x', true)],
      [file('b.jpg', 'x', false), file('c.jpg', 'x', false)],
      [['a.jpg', 'b.jpg']],
    ],
  ])('%s', (_name, deleted, unsynced, expected) => {
    expect(pairs(deleted, unsynced)).toEqual(expected);
  });
});
