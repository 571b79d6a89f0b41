import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { Batcher } from '../core/batcher.js';

/** What the daemon knows about one local file (DESIGN section 4). */
export interface IndexedFile {
  /** Normalised relative path inside the synced folder. */
  path: string;
  size: number;
  mtimeMs: number;
  inode: number;
  contentHash: string;
  /** The compact manifest, base64. */
  manifest: string;
  /** The server version this path was last in sync with, and that version's content hash. */
  syncedVersionId: string | null;
  syncedHash: string | null;
  /**
   * The synced version's manifest while the local content differs from it (an edit not yet
   * pushed): the base the edit is sent as a diff and deltas against. null when the content is the
   * synced version's (then it is `manifest`) or when it is not known.
   */
  syncedManifest: string | null;
}

/** An entry without its manifests: what a pass needs to decide about a file before it reads it. */
export type IndexedFileHead = Omit<IndexedFile, 'manifest' | 'syncedManifest'>;

/** What tells a rescan whether a file changed without reading it. */
export type FileStamp = Pick<IndexedFile, 'size' | 'mtimeMs' | 'inode'>;

/** The manifest of the version a file was last in sync with, when known. */
export function syncedManifestOf(file: IndexedFile): string | null {
  return file.contentHash === file.syncedHash ? file.manifest : file.syncedManifest;
}

/** A row of the files table, as stored. */
interface FileRow {
  path: string;
  size: number;
  mtime_ms: number;
  inode: number;
  content_hash: string;
  manifest: string;
  synced_version_id: string | null;
  synced_hash: string | null;
  synced_manifest: string | null;
}

const SCHEMA = `
  create table if not exists files (
    path text primary key,
    size integer not null,
    mtime_ms integer not null,
    inode integer not null,
    content_hash text not null,
    manifest text not null,
    synced_version_id text,
    synced_hash text,
    synced_manifest text
  )`;

/**
 * The daemon's local index of a synced folder, in a SQLite file of its own. A rescan compares
 * size, mtime and inode with it and reads no content of a file that did not change.
 *
 * Its statements are better-sqlite3's, prepared once, not Kysely's: a first sync makes a few per
 * file, and building each through Kysely cost more than running it (the uploading daemon of a
 * 2,000-file first sync spent about a quarter of its event loop in the index). Its methods
 * return promises all the same: a write waits for its batch's commit.
 */
export class LocalIndex {
  private readonly statements: ReturnType<typeof prepareStatements>;
  /**
   * Entries written at about the same time (a pass uploads and downloads 8 files at once) go in
   * one transaction: one WAL append for all, where each took its own.
   */
  private readonly writes = new Batcher<IndexedFile, void>(async (files) => {
    this.sqlite.transaction(() => {
      for (const file of files) this.statements.upsert.run(toRow(file));
    })();
    return files.map(() => ({ value: undefined }));
  });

  private constructor(private readonly sqlite: SQLite.Database) {
    this.statements = prepareStatements(sqlite);
  }

  static async open(file: string): Promise<LocalIndex> {
    mkdirSync(dirname(file), { recursive: true });
    const sqlite = new SQLite(file);
    try {
      sqlite.pragma('journal_mode = WAL');
      // Commits are not flushed one by one (a sync writes an entry per file): a crash of the process
      // loses nothing, a power cut at most the last entries, and a lost entry costs only a re-read
      // of the file at the next scan and an upload the server answers as content it already holds.
      sqlite.pragma('synchronous = NORMAL');
      sqlite.exec(SCHEMA);
      // Indexes written before synced_manifest existed gain it, empty: their next edit is sent whole.
      const columns = sqlite.pragma('table_info(files)') as { name: string }[];
      if (!columns.some((column) => column.name === 'synced_manifest')) sqlite.exec('alter table files add column synced_manifest text');
      // For holdsSyncedContent(), asked of every new file while a scan goes on. Partial: a first
      // pass indexes 100,000 files nothing is synced of yet, and those need no entry.
      sqlite.exec('create index if not exists files_synced_hash on files (synced_hash) where synced_version_id is not null');
      return new LocalIndex(sqlite);
    } catch (error) {
      sqlite.close();
      throw error;
    }
  }

  /** Every indexed file by path. */
  async all(): Promise<Map<string, IndexedFile>> {
    const rows = this.statements.all.all() as FileRow[];
    return new Map(rows.map((row) => [row.path, fromRow(row)]));
  }

  /**
   * What a rescan compares, by path: size, mtime and inode of every entry, or of those at path
   * and under it (path as a folder). Only these, so a folder of 100,000 files is cheap to hold.
   */
  async stamps(path?: string): Promise<Map<string, FileStamp>> {
    const rows = (
      path === undefined ? this.statements.stamps.iterate() : this.statements.stampsUnder.iterate(path, `${path}/`, `${path}0`)
    ) as IterableIterator<Pick<FileRow, 'path' | 'size' | 'mtime_ms' | 'inode'>>;
    const stamps = new Map<string, FileStamp>();
    // Row by row: 100,000 rows held at once would double what the map itself takes.
    for (const row of rows) stamps.set(row.path, { size: row.size, mtimeMs: row.mtime_ms, inode: row.inode });
    return stamps;
  }

  /** Entries whose content is not the version they were last in sync with (never synced, or edited since). */
  async unsynced(): Promise<IndexedFileHead[]> {
    const rows = this.statements.unsynced.all() as Omit<FileRow, 'manifest' | 'synced_manifest'>[];
    return rows.map((row) => ({
      path: row.path,
      size: row.size,
      mtimeMs: row.mtime_ms,
      inode: row.inode,
      contentHash: row.content_hash,
      syncedVersionId: row.synced_version_id,
      syncedHash: row.synced_hash,
    }));
  }

  /**
   * Whether an entry other than at exceptPath holds, in sync, the content with this hash: a new
   * file with that content may be it moved or renamed, which only the end of a scan can tell.
   */
  async holdsSyncedContent(contentHash: string, exceptPath: string): Promise<boolean> {
    return this.statements.holdsSyncedContent.get({ hash: contentHash, except: exceptPath }) !== undefined;
  }

  /** Which of these paths have an entry. */
  async existing(paths: string[]): Promise<Set<string>> {
    return new Set(paths.filter((path) => this.statements.exists.get(path) !== undefined));
  }

  async get(path: string): Promise<IndexedFile | undefined> {
    const row = this.statements.get.get(path) as FileRow | undefined;
    return row && fromRow(row);
  }

  /** Adds or replaces the entry at file.path; resolves once it is written. */
  async put(file: IndexedFile): Promise<void> {
    await this.writes.add(file);
  }

  /** Moves the entry at from, and every entry under it, to the same place under to. */
  async move(from: string, to: string): Promise<void> {
    for (const file of (await this.all()).values()) {
      if (file.path !== from && !file.path.startsWith(`${from}/`)) continue;
      await this.remove(file.path);
      await this.put({ ...file, path: to + file.path.slice(from.length) });
    }
  }

  async remove(path: string): Promise<void> {
    this.statements.remove.run(path);
  }

  async close(): Promise<void> {
    this.sqlite.close();
  }
}

function prepareStatements(sqlite: SQLite.Database) {
  return {
    all: sqlite.prepare('select * from files'),
    stamps: sqlite.prepare('select path, size, mtime_ms, inode from files'),
    stampsUnder: sqlite.prepare('select path, size, mtime_ms, inode from files where path = ? or (path > ? and path < ?)'),
    unsynced: sqlite.prepare(
      `select path, size, mtime_ms, inode, content_hash, synced_version_id, synced_hash from files
       where synced_hash is null or synced_hash != content_hash`,
    ),
    holdsSyncedContent: sqlite.prepare(
      `select path from files
       where synced_hash = @hash and content_hash = @hash and synced_version_id is not null and path != @except limit 1`,
    ),
    exists: sqlite.prepare('select 1 from files where path = ?'),
    get: sqlite.prepare('select * from files where path = ?'),
    upsert: sqlite.prepare(
      `insert into files (path, size, mtime_ms, inode, content_hash, manifest, synced_version_id, synced_hash, synced_manifest)
       values (@path, @size, @mtime_ms, @inode, @content_hash, @manifest, @synced_version_id, @synced_hash, @synced_manifest)
       on conflict (path) do update set size = excluded.size, mtime_ms = excluded.mtime_ms, inode = excluded.inode,
         content_hash = excluded.content_hash, manifest = excluded.manifest, synced_version_id = excluded.synced_version_id,
         synced_hash = excluded.synced_hash, synced_manifest = excluded.synced_manifest`,
    ),
    remove: sqlite.prepare('delete from files where path = ?'),
  };
}

function toRow(file: IndexedFile): FileRow {
  return {
    path: file.path,
    size: file.size,
    mtime_ms: file.mtimeMs,
    inode: file.inode,
    content_hash: file.contentHash,
    manifest: file.manifest,
    synced_version_id: file.syncedVersionId,
    synced_hash: file.syncedHash,
    synced_manifest: file.syncedManifest,
  };
}

function fromRow(row: FileRow): IndexedFile {
  return {
    path: row.path,
    size: row.size,
    mtimeMs: row.mtime_ms,
    inode: row.inode,
    contentHash: row.content_hash,
    manifest: row.manifest,
    syncedVersionId: row.synced_version_id,
    syncedHash: row.synced_hash,
    syncedManifest: row.synced_manifest,
  };
}
