import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, SqliteDialect, sql } from 'kysely';
import { Batcher } from '../core/batcher.js';
import { withStatementCache } from '../infra/db/statement-cache.js';

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

interface IndexTables {
  files: {
    path: string;
    size: number;
    mtime_ms: number;
    inode: number;
    content_hash: string;
    manifest: string;
    synced_version_id: string | null;
    synced_hash: string | null;
    synced_manifest: string | null;
  };
}

/**
 * The daemon's local index of a synced folder, in a SQLite file of its own. A rescan compares
 * size, mtime and inode with it and reads no content of a file that did not change.
 */
export class LocalIndex {
  /**
   * Entries written at about the same time (a pass uploads and downloads 8 files at once) go in
   * one transaction: one WAL append for all, where each took its own.
   */
  private readonly writes = new Batcher<IndexedFile, void>(async (files) => {
    await this.db.transaction().execute(async (trx) => {
      for (const file of files) {
        const row = toRow(file);
        await trx
          .insertInto('files')
          .values(row)
          .onConflict((oc) => oc.column('path').doUpdateSet(row))
          .execute();
      }
    });
    return files.map(() => ({ value: undefined }));
  });

  private constructor(private readonly db: Kysely<IndexTables>) {}

  static async open(file: string): Promise<LocalIndex> {
    mkdirSync(dirname(file), { recursive: true });
    const sqlite = new SQLite(file);
    sqlite.pragma('journal_mode = WAL');
    // Commits are not flushed one by one (a sync writes an entry per file): a crash of the process
    // loses nothing, a power cut at most the last entries, and a lost entry costs only a re-read
    // of the file at the next scan and an upload the server answers as content it already holds.
    sqlite.pragma('synchronous = NORMAL');
    const db = new Kysely<IndexTables>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) });
    await db.schema
      .createTable('files')
      .ifNotExists()
      .addColumn('path', 'text', (c) => c.primaryKey())
      .addColumn('size', 'integer', (c) => c.notNull())
      .addColumn('mtime_ms', 'integer', (c) => c.notNull())
      .addColumn('inode', 'integer', (c) => c.notNull())
      .addColumn('content_hash', 'text', (c) => c.notNull())
      .addColumn('manifest', 'text', (c) => c.notNull())
      .addColumn('synced_version_id', 'text')
      .addColumn('synced_hash', 'text')
      .addColumn('synced_manifest', 'text')
      .execute();
    // Indexes written before synced_manifest existed gain it, empty: their next edit is sent whole.
    const columns = sqlite.pragma('table_info(files)') as { name: string }[];
    if (!columns.some((column) => column.name === 'synced_manifest')) sqlite.exec('ALTER TABLE files ADD COLUMN synced_manifest TEXT');
    // For holdsSyncedContent(), asked of every new file while a scan goes on. Partial: a first
    // pass indexes 100,000 files nothing is synced of yet, and those need no entry.
    await db.schema
      .createIndex('files_synced_hash')
      .ifNotExists()
      .on('files')
      .column('synced_hash')
      .where(sql.ref('synced_version_id'), 'is not', null)
      .execute();
    return new LocalIndex(db);
  }

  /** Every indexed file by path. */
  async all(): Promise<Map<string, IndexedFile>> {
    const rows = await this.db.selectFrom('files').selectAll().execute();
    return new Map(rows.map((row) => [row.path, fromRow(row)]));
  }

  /**
   * What a rescan compares, by path: size, mtime and inode of every entry, or of those at path
   * and under it (path as a folder). Only these, so a folder of 100,000 files is cheap to hold.
   */
  async stamps(path?: string): Promise<Map<string, FileStamp>> {
    let query = this.db.selectFrom('files').select(['path', 'size', 'mtime_ms', 'inode']);
    if (path !== undefined) {
      query = query.where((eb) => eb.or([eb('path', '=', path), eb.and([eb('path', '>', `${path}/`), eb('path', '<', `${path}0`)])]));
    }
    const stamps = new Map<string, FileStamp>();
    // Row by row: 100,000 rows held at once would double what the map itself takes.
    for await (const row of query.stream()) stamps.set(row.path, { size: row.size, mtimeMs: row.mtime_ms, inode: row.inode });
    return stamps;
  }

  /** Entries whose content is not the version they were last in sync with (never synced, or edited since). */
  async unsynced(): Promise<IndexedFileHead[]> {
    const rows = await this.db
      .selectFrom('files')
      .select(['path', 'size', 'mtime_ms', 'inode', 'content_hash', 'synced_version_id', 'synced_hash'])
      .where((eb) => eb.or([eb('synced_hash', 'is', null), eb('synced_hash', '!=', eb.ref('content_hash'))]))
      .execute();
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
    const row = await this.db
      .selectFrom('files')
      .select('path')
      .where('synced_hash', '=', contentHash)
      .where('content_hash', '=', contentHash)
      .where('synced_version_id', 'is not', null)
      .where('path', '!=', exceptPath)
      .limit(1)
      .executeTakeFirst();
    return row !== undefined;
  }

  /** Which of these paths have an entry. */
  async existing(paths: string[]): Promise<Set<string>> {
    const found = new Set<string>();
    for (let at = 0; at < paths.length; at += 500) {
      const rows = await this.db
        .selectFrom('files')
        .select('path')
        .where('path', 'in', paths.slice(at, at + 500))
        .execute();
      for (const row of rows) found.add(row.path);
    }
    return found;
  }

  async get(path: string): Promise<IndexedFile | undefined> {
    const row = await this.db.selectFrom('files').selectAll().where('path', '=', path).executeTakeFirst();
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
    await this.db.deleteFrom('files').where('path', '=', path).execute();
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }
}

function toRow(file: IndexedFile): IndexTables['files'] {
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

function fromRow(row: IndexTables['files']): IndexedFile {
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
