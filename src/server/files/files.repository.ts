import { randomUUID } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import { PvError } from '../../core/errors.js';
import { ancestorsOf, baseName, conflictCopyPath, parentOf } from '../../core/paths.js';
import type { Db } from '../../infra/db/database.js';
import type { Bucket } from '../../infra/blobs/blob-store.js';
import type { ChangeKind, Database, FileRow, FileVersionRow, TrashRow } from '../../infra/db/schema.js';
import type { ChangeFeedRepository, NewChange } from '../sync/change-feed.repository.js';

export interface NewVersion {
  ownerId: string;
  path: string;
  contentHash: string;
  size: number;
  mtime: number;
  deviceId: string | null;
  /** Used in a conflict copy's name. */
  deviceName: string;
  /** The version the client's content was based on; null means "replace whatever is there". */
  baseVersionId: string | null;
  at: number;
}

export interface RecordedVersion {
  file: FileRow;
  version: FileVersionRow;
  /** Set when the file had moved on since the base version and the content was kept beside it. */
  conflictPath: string | null;
}

// Stay well under SQLite's and PostgreSQL's bound-parameter limits in IN lists.
const BATCH = 500;
/** Rows of a dozen columns per multi-row insert: well under the bound-parameter limits too. */
const ROWS_PER_INSERT = 200;

/** Paths, folders, versions and trash of each user's namespace. Every query is scoped by owner. */
export class FilesRepository {
  constructor(
    private readonly db: Db,
    private readonly changes: ChangeFeedRepository,
  ) {}

  findLive(ownerId: string, path: string, db: Kysely<Database> = this.db): Promise<FileRow | undefined> {
    return db
      .selectFrom('files')
      .selectAll()
      .where('owner_id', '=', ownerId)
      .where('dir', '=', parentOf(path))
      .where('name', '=', baseName(path))
      .where('deleted_at', 'is', null)
      .executeTakeFirst();
  }

  /** Live entries of a folder in name order, after the cursor name. */
  list(ownerId: string, dir: string, after: string | null, limit: number): Promise<FileRow[]> {
    return this.listQuery(ownerId, dir, after, limit).execute();
  }

  /** The query of list(), which bench/explain.bench.ts and the plan test run EXPLAIN on. */
  listQuery(ownerId: string, dir: string, after: string | null, limit: number) {
    let query = this.db
      .selectFrom('files')
      .selectAll()
      .where('owner_id', '=', ownerId)
      .where('dir', '=', dir)
      .where('deleted_at', 'is', null);
    if (after !== null) query = query.where('name', '>', after);
    return query.orderBy('name').limit(limit);
  }

  versions(ownerId: string, fileId: string): Promise<FileVersionRow[]> {
    return this.db
      .selectFrom('file_versions')
      .selectAll()
      .where('owner_id', '=', ownerId)
      .where('file_id', '=', fileId)
      .orderBy('created_at', 'desc')
      .orderBy('id')
      .execute();
  }

  findVersion(ownerId: string, versionId: string): Promise<FileVersionRow | undefined> {
    return this.db.selectFrom('file_versions').selectAll().where('owner_id', '=', ownerId).where('id', '=', versionId).executeTakeFirst();
  }

  /** The tier bucket holding the object with this content, or null when none is stored (an ObjectLocator). */
  async bucketOf(contentHash: string): Promise<Bucket | null> {
    const row = await this.db.selectFrom('objects').select('bucket').where('hash', '=', contentHash).executeTakeFirst();
    return (row?.bucket as Bucket | undefined) ?? null;
  }

  /** bucketOf() for many contents in a query per BATCH: the stored ones, by content hash. */
  async bucketsOf(contentHashes: string[]): Promise<Map<string, Bucket>> {
    const found = new Map<string, Bucket>();
    for (let i = 0; i < contentHashes.length; i += BATCH) {
      const rows = await this.db
        .selectFrom('objects')
        .select(['hash', 'bucket'])
        .where('hash', 'in', contentHashes.slice(i, i + BATCH))
        .execute();
      for (const row of rows) found.set(row.hash, row.bucket as Bucket);
    }
    return found;
  }

  /** The chunks of stored content, in file order. */
  manifestOf(contentHash: string): Promise<{ hash: string; length: number }[]> {
    return this.manifestQuery(contentHash).execute();
  }

  /** The query of manifestOf(), which bench/explain.bench.ts and the plan test run EXPLAIN on. */
  manifestQuery(contentHash: string) {
    return this.db
      .selectFrom('object_chunks')
      .select(['chunk_hash as hash', 'length'])
      .where('object_hash', '=', contentHash)
      .orderBy('offset');
  }

  /** The live entries at these paths (those that exist), by path. */
  async findLiveMany(ownerId: string, paths: string[], db: Kysely<Database> = this.db): Promise<Map<string, FileRow>> {
    const found = new Map<string, FileRow>();
    const wanted = new Set(paths);
    for (let i = 0; i < paths.length; i += BATCH) {
      const slice = paths.slice(i, i + BATCH);
      const rows = await db
        .selectFrom('files')
        .selectAll()
        .where('owner_id', '=', ownerId)
        .where('deleted_at', 'is', null)
        .where('name', 'in', [...new Set(slice.map(baseName))])
        .where('dir', 'in', [...new Set(slice.map(parentOf))])
        .execute();
      // dir IN and name IN match a few more than asked for: keep those asked for.
      for (const row of rows) {
        const path = row.dir === '' ? row.name : `${row.dir}/${row.name}`;
        if (wanted.has(path)) found.set(path, row);
      }
    }
    return found;
  }

  /** These versions of the user's (those that exist), by id. */
  async findVersions(ownerId: string, versionIds: string[]): Promise<Map<string, FileVersionRow>> {
    const found = new Map<string, FileVersionRow>();
    for (let i = 0; i < versionIds.length; i += BATCH) {
      for (const row of await this.versionsQuery(ownerId, versionIds.slice(i, i + BATCH)).execute()) found.set(row.id, row);
    }
    return found;
  }

  /** The query of findVersions() for one batch, which the plan tests run EXPLAIN on. */
  versionsQuery(ownerId: string, versionIds: string[]) {
    // By primary key. SQLite, which has no statistics, takes owner_id = ? for the more selective
    // term once more than a few ids are asked for, and read every version the owner has through
    // file_versions_owner_content for each request (a first sync of 100,000 files makes some
    // 3,000). An expression on owner_id keeps that index out of its choice; PostgreSQL drops the
    // no-op cast and plans by its statistics.
    return this.db
      .selectFrom('file_versions')
      .selectAll()
      .where(sql<string>`cast(owner_id as text)`, '=', ownerId)
      .where('id', 'in', versionIds);
  }

  /** The chunks of several stored contents, each in file order, by content hash. */
  async manifestsOf(contentHashes: string[]): Promise<Map<string, { hash: string; length: number }[]>> {
    const found = new Map<string, { hash: string; length: number }[]>(contentHashes.map((hash) => [hash, []]));
    for (let i = 0; i < contentHashes.length; i += BATCH) {
      const rows = await this.db
        .selectFrom('object_chunks')
        .select(['object_hash', 'chunk_hash', 'length'])
        .where('object_hash', 'in', contentHashes.slice(i, i + BATCH))
        .orderBy('object_hash')
        .orderBy('offset')
        .execute();
      for (const row of rows) found.get(row.object_hash)!.push({ hash: row.chunk_hash, length: row.length });
    }
    return found;
  }

  /** The latest version of this user with this content, if the user holds it. */
  findVersionByContent(ownerId: string, contentHash: string): Promise<FileVersionRow | undefined> {
    return this.db
      .selectFrom('file_versions')
      .selectAll()
      .where('owner_id', '=', ownerId)
      .where('content_hash', '=', contentHash)
      .limit(1)
      .executeTakeFirst();
  }

  /**
   * Records a committed version at its path inside the caller's transaction: creates missing
   * folders, adds a version to the live file, or, when the file moved on since the client's
   * base version, keeps the content as a conflict copy beside it. Re-committing the content the
   * file already has adds nothing.
   */
  async recordVersion(trx: Kysely<Database>, input: NewVersion): Promise<RecordedVersion> {
    await this.changes.lock(trx, input.ownerId);
    await this.ensureFolders(trx, input.ownerId, parentOf(input.path), input.deviceId, input.at);
    let path = input.path;
    let conflictPath: string | null = null;
    let file = await this.findLive(input.ownerId, path, trx);
    if (file?.kind === 'folder') {
      throw new PvError('PV_CONFLICT', `${path} is a folder.`, { path, fix: 'Upload under another name, or move the folder away.' });
    }
    if (file && file.content_hash === input.contentHash) {
      const head = await trx.selectFrom('file_versions').selectAll().where('id', '=', file.head_version_id!).executeTakeFirstOrThrow();
      return { file, version: head, conflictPath: null };
    }
    if (file && input.baseVersionId !== null && file.head_version_id !== input.baseVersionId) {
      path = conflictPath = conflictCopyPath(input.path, input.deviceName, new Date(input.at));
      file = undefined;
    }
    const head = headRows(input, path, file);
    if (file) {
      const { head_version_id, content_hash, size, mtime, updated_at } = head.file;
      await trx.updateTable('files').set({ head_version_id, content_hash, size, mtime, updated_at }).where('id', '=', file.id).execute();
    } else {
      // The version references the file, but the file's head references the version: insert
      // the file first with its head set, which is fine as head_version_id has no constraint.
      await trx.insertInto('files').values(head.file).execute();
    }
    await trx.insertInto('file_versions').values(head.version).execute();
    await this.changes.append(trx, changeOf(head.file, 'upsert', input.deviceId, input.at));
    return { ...head, conflictPath };
  }

  /**
   * Which of these versions recordNewFiles may record, inside the caller's transaction: those at
   * a path with no live entry, named once among them, whose folders exist (made here if missing).
   * The others (a path taken, a file in the way of a folder) go through recordVersion one by one.
   * All must be of one owner; the owner's namespace stays locked until the transaction ends.
   */
  async newFiles(trx: Kysely<Database>, inputs: NewVersion[]): Promise<boolean[]> {
    if (inputs.length === 0) return [];
    const { ownerId, deviceId, at } = inputs[0]!;
    await this.changes.lock(trx, ownerId);
    const live = await this.findLiveMany(
      ownerId,
      inputs.map((input) => input.path),
      trx,
    );
    const named = new Set<string>();
    const folders = new Map<string, boolean>();
    const fresh: boolean[] = [];
    for (const input of inputs) {
      if (input.ownerId !== ownerId) throw new Error('newFiles takes the versions of one owner');
      const dir = parentOf(input.path);
      if (!folders.has(dir)) {
        try {
          await this.ensureFolders(trx, ownerId, dir, deviceId, at);
          folders.set(dir, true);
        } catch (error) {
          if (!(error instanceof PvError)) throw error;
          folders.set(dir, false);
        }
      }
      fresh.push(!live.has(input.path) && !named.has(input.path) && folders.get(dir)!);
      named.add(input.path);
    }
    return fresh;
  }

  /**
   * Records new files, each at a path newFiles found free, inside the caller's transaction (after
   * newFiles, in the same one): what recordVersion does for each, in a few statements for all.
   */
  async recordNewFiles(trx: Kysely<Database>, inputs: NewVersion[]): Promise<RecordedVersion[]> {
    if (inputs.length === 0) return [];
    const recorded = inputs.map((input): RecordedVersion => ({ ...headRows(input, input.path, undefined), conflictPath: null }));
    for (let i = 0; i < recorded.length; i += ROWS_PER_INSERT) {
      const slice = recorded.slice(i, i + ROWS_PER_INSERT);
      // As in recordVersion: the file first, its head pointing at the version inserted next.
      await trx
        .insertInto('files')
        .values(slice.map(({ file }) => file))
        .execute();
      await trx
        .insertInto('file_versions')
        .values(slice.map(({ version }) => version))
        .execute();
    }
    await this.changes.appendMany(
      trx,
      recorded.map(({ file }, at) => changeOf(file, 'upsert', inputs[at]!.deviceId, inputs[at]!.at)),
    );
    return recorded;
  }

  /** Creates every missing folder of dir; a file in the way is a conflict. */
  private async ensureFolders(trx: Kysely<Database>, ownerId: string, dir: string, deviceId: string | null, at: number): Promise<void> {
    if (dir === '') return;
    // A live folder's ancestors are live folders (deleting or moving a folder takes its contents
    // along), so the common case, the folder already there, takes one look.
    const chain = [...ancestorsOf(dir), dir];
    const missing: string[] = [];
    for (const folder of chain.reverse()) {
      const existing = await this.findLive(ownerId, folder, trx);
      if (existing?.kind === 'folder') break;
      if (existing) {
        throw new PvError('PV_CONFLICT', `${folder} is a file, so it cannot hold other files.`, {
          path: folder,
          fix: 'Upload under another folder name.',
        });
      }
      missing.unshift(folder);
    }
    for (const folder of missing) {
      const created: FileRow = {
        id: randomUUID(),
        owner_id: ownerId,
        dir: parentOf(folder),
        name: baseName(folder),
        kind: 'folder',
        head_version_id: null,
        content_hash: null,
        size: 0,
        mtime: at,
        created_at: at,
        updated_at: at,
        deleted_at: null,
        trash_id: null,
      };
      await trx.insertInto('files').values(created).execute();
      await this.changes.append(trx, changeOf(created, 'upsert', deviceId, at));
    }
  }

  /** Moves the entry at path, and everything under it if a folder, to the trash as one entry. */
  async moveToTrash(ownerId: string, path: string, deviceId: string | null, at: number): Promise<TrashRow> {
    return this.db.transaction().execute(async (trx) => {
      await this.changes.lock(trx, ownerId);
      const entry = await this.findLive(ownerId, path, trx);
      if (!entry) throw fileNotFound(path);
      const trashId = randomUUID();
      let size = entry.size;
      await trx.updateTable('files').set({ deleted_at: at, trash_id: trashId }).where('id', '=', entry.id).execute();
      if (entry.kind === 'folder') {
        const inside = await trx
          .updateTable('files')
          .set({ deleted_at: at, trash_id: trashId })
          .where('owner_id', '=', ownerId)
          .where('deleted_at', 'is', null)
          .where((eb) =>
            eb.or([eb('dir', '=', path), eb(sql<string>`substr(${sql.ref('dir')}, 1, ${[...path].length + 1})`, '=', `${path}/`)]),
          )
          .returning('size')
          .execute();
        size = inside.reduce((sum, row) => sum + row.size, 0);
      }
      const trash: TrashRow = { id: trashId, owner_id: ownerId, path, kind: entry.kind, size, deleted_at: at };
      await trx.insertInto('trash').values(trash).execute();
      // One tombstone for a folder covers everything in it.
      await this.changes.append(trx, changeOf(entry, 'delete', deviceId, at));
      return trash;
    });
  }

  /**
   * Moves (renames) the entry at from to the free path to, a folder with everything in it, in
   * one transaction, and records one 'move' change. Versions and content stay as they are.
   */
  async move(ownerId: string, from: string, to: string, deviceId: string | null, at: number): Promise<FileRow> {
    return this.db.transaction().execute(async (trx) => {
      await this.changes.lock(trx, ownerId);
      const entry = await this.findLive(ownerId, from, trx);
      if (!entry) throw fileNotFound(from);
      if (to === from || to.startsWith(`${from}/`)) {
        throw new PvError('PV_INVALID_INPUT', `Cannot move ${from} into itself.`, { fix: 'Choose a destination outside it.' });
      }
      if (await this.findLive(ownerId, to, trx)) {
        throw new PvError('PV_CONFLICT', `${to} already exists.`, { path: to, fix: 'Move or delete it first, or choose another name.' });
      }
      await this.ensureFolders(trx, ownerId, parentOf(to), deviceId, at);
      const moved = { dir: parentOf(to), name: baseName(to), updated_at: at };
      await trx.updateTable('files').set(moved).where('id', '=', entry.id).execute();
      if (entry.kind === 'folder') {
        // Everything inside keeps its place relative to the folder: replace the from prefix of its dir.
        const fromLength = [...from].length;
        await trx
          .updateTable('files')
          .set({ dir: sql<string>`cast(${to} as text) || substr(${sql.ref('dir')}, ${fromLength + 1})` })
          .where('owner_id', '=', ownerId)
          .where('deleted_at', 'is', null)
          .where((eb) => eb.or([eb('dir', '=', from), eb(sql<string>`substr(${sql.ref('dir')}, 1, ${fromLength + 1})`, '=', `${from}/`)]))
          .execute();
      }
      const row = { ...entry, ...moved };
      await this.changes.append(trx, { ...changeOf(row, 'move', deviceId, at), from_path: from });
      return row;
    });
  }

  listTrash(ownerId: string): Promise<TrashRow[]> {
    return this.db.selectFrom('trash').selectAll().where('owner_id', '=', ownerId).orderBy('deleted_at', 'desc').execute();
  }

  /**
   * Brings a trash entry back to its path. A folder merges into a live folder of the same name;
   * anything else already at a restored path is a conflict, and nothing is restored.
   */
  async restore(ownerId: string, trashId: string, deviceId: string | null, at: number): Promise<TrashRow> {
    return this.db.transaction().execute(async (trx) => {
      await this.changes.lock(trx, ownerId);
      const trash = await trx.selectFrom('trash').selectAll().where('owner_id', '=', ownerId).where('id', '=', trashId).executeTakeFirst();
      if (!trash) throw new PvError('PV_NOT_FOUND', `No trash entry ${trashId}.`, { fix: 'See `photovault trash ls`.' });
      const rows = await trx.selectFrom('files').selectAll().where('owner_id', '=', ownerId).where('trash_id', '=', trashId).execute();
      await this.ensureFolders(trx, ownerId, parentOf(trash.path), deviceId, at);
      const restored: FileRow[] = [];
      for (const row of rows) {
        const path = row.dir === '' ? row.name : `${row.dir}/${row.name}`;
        const live = await this.findLive(ownerId, path, trx);
        if (live && live.kind === 'folder' && row.kind === 'folder') {
          await trx.deleteFrom('files').where('id', '=', row.id).execute();
        } else if (live) {
          throw new PvError('PV_CONFLICT', `${path} exists again, so the trash entry cannot be restored.`, {
            path,
            fix: `Move or delete the current ${path} first.`,
          });
        } else {
          restored.push(row);
        }
      }
      await trx
        .updateTable('files')
        .set({ deleted_at: null, trash_id: null })
        .where('owner_id', '=', ownerId)
        .where('trash_id', '=', trashId)
        .execute();
      await trx.deleteFrom('trash').where('id', '=', trashId).execute();
      // Outer entries first, so a client applying the feed in order creates folders before their contents.
      restored.sort((a, b) => a.dir.split('/').length - b.dir.split('/').length || a.dir.length - b.dir.length);
      for (const row of restored) await this.changes.append(trx, changeOf(row, 'upsert', deviceId, at));
      return trash;
    });
  }

  /**
   * Deletes trash entries for good (all of the user's, or those deleted before a time) and
   * returns the objects no version references any more, already removed from the metadata:
   * the caller deletes their blobs. Metadata goes first so it never points at a missing object.
   * Objects under a tiering move stay; the tiering job removes them when it ends the move.
   */
  async purgeTrash(
    ownerId: string | null,
    deletedBefore: number | null,
  ): Promise<{ entries: number; orphans: { hash: string; bucket: string }[] }> {
    return this.db.transaction().execute(async (trx) => {
      let trashQuery = trx.selectFrom('trash').select(['id', 'owner_id']);
      if (ownerId !== null) trashQuery = trashQuery.where('owner_id', '=', ownerId);
      if (deletedBefore !== null) trashQuery = trashQuery.where('deleted_at', '<', deletedBefore);
      const entries = await trashQuery.execute();
      const candidates = new Set<string>();
      for (const entry of entries) {
        const files = await trx
          .selectFrom('files')
          .select('id')
          .where('owner_id', '=', entry.owner_id)
          .where('trash_id', '=', entry.id)
          .execute();
        const fileIds = files.map((f) => f.id);
        for (let i = 0; i < fileIds.length; i += 500) {
          const batch = fileIds.slice(i, i + 500);
          const versions = await trx.selectFrom('file_versions').select('content_hash').where('file_id', 'in', batch).execute();
          for (const v of versions) candidates.add(v.content_hash);
          await trx.deleteFrom('file_versions').where('file_id', 'in', batch).execute();
          await trx.deleteFrom('files').where('id', 'in', batch).execute();
        }
        await trx.deleteFrom('trash').where('id', '=', entry.id).execute();
      }
      const orphans: { hash: string; bucket: string }[] = [];
      for (const hash of candidates) {
        // An object under a tiering move is left to the mover, which deletes it once the move ends
        // (a purge now could let a new upload write the key the mover is about to delete).
        const deleted = await trx
          .deleteFrom('objects')
          .where('hash', '=', hash)
          .where('extra_copy_bucket', 'is', null)
          .where((eb) => eb.not(eb.exists(eb.selectFrom('file_versions').select('id').where('content_hash', '=', hash))))
          .returning(['hash', 'bucket'])
          .executeTakeFirst();
        if (deleted) orphans.push(deleted);
      }
      return { entries: entries.length, orphans };
    });
  }
}

/** The rows that record a version as the head of a file (a new one at path when file is undefined): the version, and the file as it then is. */
function headRows(input: NewVersion, path: string, file: FileRow | undefined): { version: FileVersionRow; file: FileRow } {
  const version: FileVersionRow = {
    id: randomUUID(),
    file_id: file?.id ?? randomUUID(),
    owner_id: input.ownerId,
    content_hash: input.contentHash,
    size: input.size,
    mtime: input.mtime,
    created_at: input.at,
    device_id: input.deviceId,
    base_version_id: file?.head_version_id ?? null,
  };
  const fields = {
    head_version_id: version.id,
    content_hash: input.contentHash,
    size: input.size,
    mtime: input.mtime,
    updated_at: input.at,
  };
  const head: FileRow = file
    ? { ...file, ...fields }
    : {
        id: version.file_id,
        owner_id: input.ownerId,
        dir: parentOf(path),
        name: baseName(path),
        kind: 'file',
        created_at: input.at,
        deleted_at: null,
        trash_id: null,
        ...fields,
      };
  return { version, file: head };
}

/** The error for a path the user has no live entry at (also when another user has one there). */
export function fileNotFound(path: string): PvError {
  return new PvError('PV_NOT_FOUND', `No such file or folder: ${path}.`, { path });
}

/** The change-feed entry saying what now is (or no longer is) at a row's path. */
export function changeOf(row: FileRow, kind: ChangeKind, deviceId: string | null, at: number): NewChange {
  return {
    owner_id: row.owner_id,
    kind,
    path: row.dir === '' ? row.name : `${row.dir}/${row.name}`,
    from_path: null,
    entry_kind: row.kind,
    file_id: row.id,
    version_id: row.head_version_id,
    content_hash: row.content_hash,
    size: row.size,
    mtime: row.mtime,
    device_id: deviceId,
    at,
  };
}
