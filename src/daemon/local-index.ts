import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';

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
  };
}

/**
 * The daemon's local index of a synced folder, in a SQLite file of its own. A rescan compares
 * size, mtime and inode with it and reads no content of a file that did not change.
 */
export class LocalIndex {
  private constructor(private readonly db: Kysely<IndexTables>) {}

  static async open(file: string): Promise<LocalIndex> {
    mkdirSync(dirname(file), { recursive: true });
    const sqlite = new SQLite(file);
    sqlite.pragma('journal_mode = WAL');
    const db = new Kysely<IndexTables>({ dialect: new SqliteDialect({ database: sqlite }) });
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
      .execute();
    return new LocalIndex(db);
  }

  /** Every indexed file by path. */
  async all(): Promise<Map<string, IndexedFile>> {
    const rows = await this.db.selectFrom('files').selectAll().execute();
    return new Map(rows.map((row) => [row.path, fromRow(row)]));
  }

  async get(path: string): Promise<IndexedFile | undefined> {
    const row = await this.db.selectFrom('files').selectAll().where('path', '=', path).executeTakeFirst();
    return row && fromRow(row);
  }

  async put(file: IndexedFile): Promise<void> {
    const row = {
      path: file.path,
      size: file.size,
      mtime_ms: file.mtimeMs,
      inode: file.inode,
      content_hash: file.contentHash,
      manifest: file.manifest,
      synced_version_id: file.syncedVersionId,
      synced_hash: file.syncedHash,
    };
    await this.db
      .insertInto('files')
      .values(row)
      .onConflict((oc) => oc.column('path').doUpdateSet(row))
      .execute();
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
  };
}
