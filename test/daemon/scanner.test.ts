import { mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Fingerprint, fingerprintFile } from '../../src/core/chunker.js';
import { sha256Hex } from '../../src/core/hash.js';
import { loadIgnoreRules } from '../../src/daemon/ignore-rules.js';
import { LocalIndex, syncedManifestOf } from '../../src/daemon/local-index.js';
import { scanFolder } from '../../src/daemon/scanner.js';
import { pseudoRandomBytes } from '../support/random.js';

describe('folder scanner', () => {
  let root: string;
  let state: string;
  let index: LocalIndex;
  let reads: string[];

  const countingFingerprint = (path: string): Promise<Fingerprint> => {
    reads.push(path);
    return fingerprintFile(path);
  };
  const scan = async () => scanFolder(root, index, { ignored: await loadIgnoreRules(root), fingerprint: countingFingerprint });

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'pv-scan-'));
    state = await mkdtemp(join(tmpdir(), 'pv-state-'));
    index = await LocalIndex.open(join(state, 'index.db'));
    reads = [];
    await mkdir(join(root, 'photos/2024'), { recursive: true });
    await writeFile(join(root, 'photos/2024/beach.jpg'), pseudoRandomBytes(300_000, 1));
    await writeFile(join(root, 'notes.txt'), 'hello');
    await writeFile(join(root, 'empty'), '');
  });
  afterEach(async () => {
    await index.close();
    await rm(root, { recursive: true, force: true });
    await rm(state, { recursive: true, force: true });
  });

  it('indexes every file with its content hash and manifest on the first scan', async () => {
    const result = await scan();
    expect(result.changed.map((f) => f.path).sort()).toEqual(['empty', 'notes.txt', 'photos/2024/beach.jpg']);
    const notes = result.changed.find((f) => f.path === 'notes.txt')!;
    expect(notes).toMatchObject({ size: 5, contentHash: sha256Hex('hello'), syncedVersionId: null, syncedHash: null });
    expect((await index.all()).size).toBe(3);
  });

  it('reads no content on a rescan when nothing changed', async () => {
    await scan();
    reads = [];
    const result = await scan();
    expect(result).toMatchObject({ changed: [], deleted: [], unchanged: 3 });
    expect(reads).toEqual([]);
  });

  it('fingerprints only what changed and reports what went away', async () => {
    await scan();
    reads = [];
    await writeFile(join(root, 'notes.txt'), 'hello, world');
    await rm(join(root, 'empty'));
    await writeFile(join(root, 'photos/new.jpg'), 'new');
    const result = await scan();
    expect(result.changed.map((f) => f.path).sort()).toEqual(['notes.txt', 'photos/new.jpg']);
    expect(result.deleted.map((f) => f.path)).toEqual(['empty']);
    expect(reads).toHaveLength(2);
    // Reported again until the caller has dealt with it and removed it from the index.
    expect(await index.get('empty')).toBeDefined();
    expect((await scan()).deleted.map((f) => f.path)).toEqual(['empty']);
    await index.remove('empty');
    expect((await scan()).deleted).toEqual([]);
  });

  it('notices a change that keeps the size when the mtime moves', async () => {
    await scan();
    await writeFile(join(root, 'notes.txt'), 'jello');
    await utimes(join(root, 'notes.txt'), new Date(), new Date(Date.now() + 5000));
    const result = await scan();
    expect(result.changed.map((f) => [f.path, f.contentHash])).toEqual([['notes.txt', sha256Hex('jello')]]);
  });

  it('keeps what a changed file was last in sync with, the base of its next upload', async () => {
    await scan();
    const notes = (await index.get('notes.txt'))!;
    await index.put({ ...notes, syncedVersionId: 'v1', syncedHash: notes.contentHash });
    await writeFile(join(root, 'notes.txt'), 'edited');
    const [edited] = (await scan()).changed;
    expect(edited).toMatchObject({
      path: 'notes.txt',
      contentHash: sha256Hex('edited'),
      syncedVersionId: 'v1',
      syncedHash: sha256Hex('hello'),
      syncedManifest: notes.manifest,
    });
    // A second edit before any upload still derives from the same synced version.
    await writeFile(join(root, 'notes.txt'), 'edited twice');
    const [again] = (await scan()).changed;
    expect(again).toMatchObject({ syncedVersionId: 'v1', syncedManifest: notes.manifest });
    expect(syncedManifestOf(again!)).toBe(notes.manifest);
  });

  it('skips default ignores, .pvignore patterns and symbolic links', async () => {
    await writeFile(join(root, '.DS_Store'), 'x');
    await writeFile(join(root, 'draft.txt~'), 'x');
    await writeFile(join(root, '.beach.jpg.1a2b.pvpart'), 'x');
    await mkdir(join(root, 'cache'));
    await writeFile(join(root, 'cache/big.bin'), 'x');
    await writeFile(join(root, 'raw.cr2'), 'x');
    await writeFile(join(root, '.pvignore'), 'cache/\n*.cr2\n');
    await symlink(join(root, 'notes.txt'), join(root, 'link.txt'));
    const result = await scan();
    expect(result.changed.map((f) => f.path).sort()).toEqual(['empty', 'notes.txt', 'photos/2024/beach.jpg']);
    expect(result.staleParts).toEqual([join(root, '.beach.jpg.1a2b.pvpart')]);
  });

  it('stores names in NFC and leaves names the path rules refuse alone, reporting them', async () => {
    await writeFile(join(root, 'Cafe\u0301.txt'), 'nfd');
    await writeFile(join(root, 'bad\u0007name.txt'), 'x');
    const result = await scan();
    expect(result.changed.map((f) => f.path)).toContain('Caf\u00e9.txt');
    expect(result.skipped).toEqual(['bad\u0007name.txt']);
  });

  it('treats a file that vanishes while it is being scanned as gone', async () => {
    await scan();
    await writeFile(join(root, 'notes.txt'), 'changed, then deleted');
    const vanishing = async (path: string) => {
      await rm(path);
      return fingerprintFile(path);
    };
    const result = await scanFolder(root, index, { ignored: await loadIgnoreRules(root), fingerprint: vanishing });
    expect(result.changed).toEqual([]);
    expect(result.deleted.map((f) => f.path)).toEqual(['notes.txt']);
  });

  describe('of the paths a watcher reported', () => {
    const scanPaths = async (paths: string[]) =>
      scanFolder(root, index, { ignored: await loadIgnoreRules(root), fingerprint: countingFingerprint, paths });

    it('looks only at those paths: new, edited and deleted files, and a deleted folder', async () => {
      await writeFile(join(root, 'photos/2024/sunset.jpg'), 'new');
      await scan();
      reads = [];
      await writeFile(join(root, 'notes.txt'), 'edited');
      await writeFile(join(root, 'photos/2024/new.jpg'), 'new');
      await writeFile(join(root, 'empty'), 'no longer empty, but not reported');
      await rm(join(root, 'photos'), { recursive: true });
      await mkdir(join(root, 'photos'));
      await writeFile(join(root, 'photos/kept.jpg'), 'kept');
      const result = await scanPaths(['notes.txt', 'photos/2024', 'photos/2024/new.jpg']);
      expect(result.changed.map((f) => f.path)).toEqual(['notes.txt']);
      expect(result.deleted.map((f) => f.path).sort()).toEqual(['photos/2024/beach.jpg', 'photos/2024/sunset.jpg']);
      expect(reads).toEqual([join(root, 'notes.txt')]);
      expect((await index.get('empty'))?.size).toBe(0);
    });

    it('walks a folder that appeared, and reports files an earlier scan left unsynced', async () => {
      await scan();
      await mkdir(join(root, 'imported/raw'), { recursive: true });
      await writeFile(join(root, 'imported/raw/a.jpg'), 'a');
      await writeFile(join(root, 'imported/b.jpg'), 'b');
      const result = await scanPaths(['imported']);
      expect(result.changed.map((f) => f.path).sort()).toEqual(['imported/b.jpg', 'imported/raw/a.jpg']);
      // Nothing was ever synced here: every file is unsynced, looked at or not.
      expect(result.unsynced.map((f) => f.path).sort()).toEqual([
        'empty',
        'imported/b.jpg',
        'imported/raw/a.jpg',
        'notes.txt',
        'photos/2024/beach.jpg',
      ]);
    });
  });
});
