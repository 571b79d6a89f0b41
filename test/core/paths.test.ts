import { describe, expect, it } from 'vitest';
import { isPvError } from '../../src/core/errors.js';
import { ancestorsOf, conflictCopyPath, normalizePath, parentOf } from '../../src/core/paths.js';

describe('normalizePath', () => {
  it.each([
    ['photos/2024/beach.jpg', 'photos/2024/beach.jpg'],
    ['a', 'a'],
    ['Cafe\u0301.jpg', 'Caf\u00e9.jpg'],
    ['dir with spaces/ñandú 🐦.png', 'dir with spaces/ñandú 🐦.png'],
    ['.hidden/..dots../x', '.hidden/..dots../x'],
  ])('accepts %j as %j', (input, expected) => {
    expect(normalizePath(input)).toBe(expected);
  });

  it.each([
    ['', 'empty'],
    ['/etc/passwd', 'absolute'],
    ['C:/Windows', 'absolute'],
    ['../escape', "'..'"],
    ['a/../../b', "'..'"],
    ['a/./b', "'.'"],
    ['a//b', 'empty segment'],
    ['a/', 'empty segment'],
    ['nul\u0000byte', 'control'],
    ['line\nbreak', 'control'],
    ['bell\u0007', 'control'],
    ['c1\u0085', 'control'],
    ['back\\slash', 'backslash'],
    ['x'.repeat(256), 'longer than 255'],
    [`${'abc/'.repeat(1100)}x`, 'longer than 4096'],
  ])('rejects %j (%s) with PV_PATH_INVALID', (input, reason) => {
    let caught: unknown;
    try {
      normalizePath(input);
    } catch (error) {
      caught = error;
    }
    expect(isPvError(caught, 'PV_PATH_INVALID')).toBe(true);
    expect((caught as Error).message).toContain(reason);
  });

  it('allows the root only when asked', () => {
    expect(normalizePath('', { allowRoot: true })).toBe('');
  });
});

describe('path helpers', () => {
  it('finds parents and ancestors', () => {
    expect(parentOf('a/b/c.jpg')).toBe('a/b');
    expect(parentOf('c.jpg')).toBe('');
    expect(ancestorsOf('a/b/c.jpg')).toEqual(['a', 'a/b']);
    expect(ancestorsOf('c.jpg')).toEqual([]);
  });

  it.each([
    ['photos/beach.jpg', 'laptop', 'photos/beach.conflict-laptop-20240305-140709.jpg'],
    ['notes', 'laptop', 'notes.conflict-laptop-20240305-140709'],
    ['archive.tar.gz', 'my phone', 'archive.tar.conflict-my_phone-20240305-140709.gz'],
    ['.bashrc', 'pc/1', '.bashrc.conflict-pc_1-20240305-140709'],
  ])('names the conflict copy of %j from device %j as %j', (path, device, expected) => {
    expect(conflictCopyPath(path, device, new Date('2024-03-05T14:07:09.500Z'))).toBe(expected);
  });
});
