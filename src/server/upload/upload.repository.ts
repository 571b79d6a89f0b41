import type { Kysely } from 'kysely';
import type { Db } from '../../infra/db/database.js';
import type { Database, UploadRow } from '../../infra/db/schema.js';

// Stay well under SQLite's and PostgreSQL's bound-parameter limits in IN lists and bulk inserts.
const BATCH = 500;

export interface ChunkLocation {
  objectHash: string;
  bucket: string;
  offset: number;
  length: number;
}

/** A place in the file being uploaded that a chunk fills. */
export interface ChunkPlace {
  offset: number;
  hash: string;
  length: number;
}

export interface NewObject {
  hash: string;
  size: number;
  bucket: string;
  chunks: { offset: number; hash: string; length: number }[];
}

/** Upload sessions, the chunk index, and the objects it describes. */
export class UploadRepository {
  constructor(private readonly db: Db) {}

  /**
   * Records a new upload and the places it needs chunks for, inside the caller's transaction;
   * false if one for the same content and path exists.
   */
  async insertUpload(trx: Kysely<Database>, upload: UploadRow, places: ChunkPlace[]): Promise<boolean> {
    const inserted = await trx
      .insertInto('uploads')
      .values(upload)
      .onConflict((oc) => oc.columns(['owner_id', 'content_hash', 'path']).doNothing())
      .executeTakeFirst();
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 0) return false;
    await insertPlaces(trx, upload.id, places);
    return true;
  }

  findUpload(ownerId: string, uploadId: string): Promise<UploadRow | undefined> {
    return this.db.selectFrom('uploads').selectAll().where('owner_id', '=', ownerId).where('id', '=', uploadId).executeTakeFirst();
  }

  /** An unfinished upload of the same content to the same path, to resume instead of starting over. */
  findResumable(ownerId: string, path: string, contentHash: string): Promise<UploadRow | undefined> {
    return this.db
      .selectFrom('uploads')
      .selectAll()
      .where('owner_id', '=', ownerId)
      .where('content_hash', '=', contentHash)
      .where('path', '=', path)
      .executeTakeFirst();
  }

  /**
   * The unfinished uploads of these (path, content) pairs, by `${contentHash}/${path}`: the
   * batch form of findResumable.
   */
  async findResumables(ownerId: string, keys: { path: string; contentHash: string }[]): Promise<Map<string, UploadRow>> {
    const found = new Map<string, UploadRow>();
    const wanted = new Set(keys.map((key) => `${key.contentHash}/${key.path}`));
    const hashes = [...new Set(keys.map((key) => key.contentHash))];
    for (let i = 0; i < hashes.length; i += BATCH) {
      const rows = await this.db
        .selectFrom('uploads')
        .selectAll()
        .where('owner_id', '=', ownerId)
        .where('content_hash', 'in', hashes.slice(i, i + BATCH))
        .execute();
      for (const row of rows) {
        const key = `${row.content_hash}/${row.path}`;
        if (wanted.has(key)) found.set(key, row);
      }
    }
    return found;
  }

  /** Which of these contents the user holds in any of their versions (live, trashed or old). */
  async heldContents(ownerId: string, hashes: string[]): Promise<Set<string>> {
    const held = new Set<string>();
    for (let i = 0; i < hashes.length; i += BATCH) {
      const rows = await this.db
        .selectFrom('file_versions')
        .select('content_hash')
        .distinct()
        .where('owner_id', '=', ownerId)
        .where('content_hash', 'in', hashes.slice(i, i + BATCH))
        .execute();
      for (const row of rows) held.add(row.content_hash);
    }
    return held;
  }

  async extendExpiry(uploadId: string, expiresAt: number): Promise<void> {
    await this.db.updateTable('uploads').set({ expires_at: expiresAt }).where('id', '=', uploadId).execute();
  }

  /**
   * The user's upload and the places in the file the chunk with this hash must fill (none when
   * the upload does not expect it), in one read: this runs once per chunk PUT. undefined when the
   * user has no such upload.
   */
  async findUploadChunk(ownerId: string, uploadId: string, hash: string) {
    const rows = await this.db
      .selectFrom('uploads')
      .leftJoin('upload_chunks', (join) => join.onRef('upload_chunks.upload_id', '=', 'uploads.id').on('upload_chunks.hash', '=', hash))
      .select(['uploads.expires_at', 'upload_chunks.offset', 'upload_chunks.length', 'upload_chunks.received_at'])
      .where('uploads.owner_id', '=', ownerId)
      .where('uploads.id', '=', uploadId)
      .execute();
    if (rows.length === 0) return undefined;
    const places = rows.filter((row) => row.offset !== null);
    return {
      expiresAt: rows[0]!.expires_at,
      offsets: places.map((row) => row.offset!),
      length: places[0]?.length ?? null,
      received: places.length > 0 && places.every((row) => row.received_at !== null),
    };
  }

  /**
   * The user's upload and, for each of these distinct chunk hashes the upload expects, its length,
   * the places it must fill and whether it has it, in one read. undefined when the user has no
   * such upload.
   */
  async findUploadChunks(ownerId: string, uploadId: string, hashes: string[]) {
    const rows = await this.db
      .selectFrom('uploads')
      .leftJoin('upload_chunks', (join) =>
        join.onRef('upload_chunks.upload_id', '=', 'uploads.id').on('upload_chunks.hash', 'in', hashes.length > 0 ? hashes : ['']),
      )
      .select(['uploads.expires_at', 'upload_chunks.hash', 'upload_chunks.offset', 'upload_chunks.length', 'upload_chunks.received_at'])
      .where('uploads.owner_id', '=', ownerId)
      .where('uploads.id', '=', uploadId)
      .execute();
    if (rows.length === 0) return undefined;
    const chunks = new Map<string, { length: number; offsets: number[]; received: boolean }>();
    for (const row of rows) {
      if (row.hash === null) continue;
      const chunk = chunks.get(row.hash) ?? { length: row.length!, offsets: [], received: true };
      chunk.offsets.push(row.offset!);
      chunk.received &&= row.received_at !== null;
      chunks.set(row.hash, chunk);
    }
    return { expiresAt: rows[0]!.expires_at, chunks };
  }

  /** Marks every place of the chunk (or chunks) as received. */
  async markReceived(uploadId: string, hash: string | string[], at: number): Promise<void> {
    const hashes = typeof hash === 'string' ? [hash] : hash;
    for (let i = 0; i < hashes.length; i += BATCH) {
      await this.db
        .updateTable('upload_chunks')
        .set({ received_at: at })
        .where('upload_id', '=', uploadId)
        .where('hash', 'in', hashes.slice(i, i + BATCH))
        .execute();
    }
  }

  /** Marks staged chunks as not received (they were lost or damaged in staging). */
  async markMissing(uploadId: string, hashes: string[]): Promise<void> {
    for (let i = 0; i < hashes.length; i += BATCH) {
      await this.db
        .updateTable('upload_chunks')
        .set({ received_at: null })
        .where('upload_id', '=', uploadId)
        .where('hash', 'in', hashes.slice(i, i + BATCH))
        .execute();
    }
  }

  /** Adds places the upload must now receive chunks for after all (their earlier source went away). */
  async addExpectedChunks(uploadId: string, places: ChunkPlace[]): Promise<void> {
    await insertPlaces(this.db, uploadId, places);
  }

  /** Chunks the upload still needs, each once, with their lengths. */
  missingChunks(uploadId: string): Promise<{ hash: string; length: number }[]> {
    return this.db
      .selectFrom('upload_chunks')
      .select(['hash', 'length'])
      .distinct()
      .where('upload_id', '=', uploadId)
      .where('received_at', 'is', null)
      .execute();
  }

  /** Every place the upload receives chunks for, and whether it has. */
  async places(uploadId: string): Promise<(ChunkPlace & { received: boolean })[]> {
    const rows = await this.db
      .selectFrom('upload_chunks')
      .select(['offset', 'hash', 'length', 'received_at'])
      .where('upload_id', '=', uploadId)
      .execute();
    return rows.map((row) => ({ offset: row.offset, hash: row.hash, length: row.length, received: row.received_at !== null }));
  }

  /**
   * Where each of these chunks can be read from among the objects this user holds. Only the
   * user's own versions count: that is what keeps dedup from revealing other users' files.
   */
  async locateOwnedChunks(ownerId: string, hashes: string[]): Promise<Map<string, ChunkLocation>> {
    const found = new Map<string, ChunkLocation>();
    for (let i = 0; i < hashes.length; i += BATCH) {
      const rows = await this.ownedChunksQuery(ownerId, hashes.slice(i, i + BATCH)).execute();
      for (const row of rows) {
        if (!found.has(row.chunk_hash)) {
          found.set(row.chunk_hash, { objectHash: row.object_hash, bucket: row.bucket, offset: row.offset, length: row.length });
        }
      }
    }
    return found;
  }

  /**
   * The query of locateOwnedChunks() for one batch of at most 500 hashes, which
   * bench/explain.bench.ts and the plan test run EXPLAIN on.
   */
  ownedChunksQuery(ownerId: string, hashes: string[]) {
    return this.db
      .selectFrom('object_chunks')
      .innerJoin('objects', 'objects.hash', 'object_chunks.object_hash')
      .select(['object_chunks.chunk_hash', 'object_chunks.object_hash', 'objects.bucket', 'object_chunks.offset', 'object_chunks.length'])
      .where('object_chunks.chunk_hash', 'in', hashes)
      .where((eb) =>
        eb.exists(
          eb
            .selectFrom('file_versions')
            .select('file_versions.id')
            .where('file_versions.owner_id', '=', ownerId)
            .whereRef('file_versions.content_hash', '=', 'object_chunks.object_hash'),
        ),
      );
  }

  /** Which of these contents are stored (by anyone). */
  async storedObjects(hashes: string[]): Promise<Set<string>> {
    const stored = new Set<string>();
    for (let i = 0; i < hashes.length; i += BATCH) {
      const rows = await this.db
        .selectFrom('objects')
        .select('hash')
        .where('hash', 'in', hashes.slice(i, i + BATCH))
        .execute();
      for (const row of rows) stored.add(row.hash);
    }
    return stored;
  }

  findObject(hash: string, db: Kysely<Database> = this.db) {
    return db.selectFrom('objects').selectAll().where('hash', '=', hash).executeTakeFirst();
  }

  /** Records an object and its chunk index unless already known (several uploads may race to it). */
  async insertObject(trx: Kysely<Database>, object: NewObject, at: number): Promise<void> {
    const inserted = await trx
      .insertInto('objects')
      .values({ hash: object.hash, size: object.size, bucket: object.bucket, created_at: at })
      .onConflict((oc) => oc.column('hash').doNothing())
      .executeTakeFirst();
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 0) return;
    for (let i = 0; i < object.chunks.length; i += BATCH) {
      const rows = object.chunks
        .slice(i, i + BATCH)
        .map((c) => ({ object_hash: object.hash, offset: c.offset, chunk_hash: c.hash, length: c.length }));
      await trx.insertInto('object_chunks').values(rows).execute();
    }
  }

  /** insertObject for many objects, in a few statements. */
  async insertObjects(trx: Kysely<Database>, objects: NewObject[], at: number): Promise<void> {
    const inserted = new Set<string>();
    for (let i = 0; i < objects.length; i += BATCH) {
      const rows = await trx
        .insertInto('objects')
        .values(
          objects.slice(i, i + BATCH).map((object) => ({ hash: object.hash, size: object.size, bucket: object.bucket, created_at: at })),
        )
        .onConflict((oc) => oc.column('hash').doNothing())
        .returning('hash')
        .execute();
      for (const row of rows) inserted.add(row.hash);
    }
    // Only a new object gets its chunk index: one already there (another user's) has it.
    const chunks = objects
      .filter((object) => inserted.delete(object.hash))
      .flatMap((object) =>
        object.chunks.map((c) => ({ object_hash: object.hash, offset: c.offset, chunk_hash: c.hash, length: c.length })),
      );
    for (let i = 0; i < chunks.length; i += BATCH)
      await trx
        .insertInto('object_chunks')
        .values(chunks.slice(i, i + BATCH))
        .execute();
  }

  async deleteUpload(db: Kysely<Database>, uploadId: string): Promise<void> {
    await db.deleteFrom('upload_chunks').where('upload_id', '=', uploadId).execute();
    await db.deleteFrom('uploads').where('id', '=', uploadId).execute();
  }

  /** Uploads whose last activity is older than their expiry. */
  expiredUploads(at: number): Promise<{ id: string }[]> {
    return this.db.selectFrom('uploads').select('id').where('expires_at', '<=', at).execute();
  }

  async uploadExists(uploadId: string): Promise<boolean> {
    return (await this.db.selectFrom('uploads').select('id').where('id', '=', uploadId).executeTakeFirst()) !== undefined;
  }
}

async function insertPlaces(db: Kysely<Database>, uploadId: string, places: ChunkPlace[]): Promise<void> {
  for (let i = 0; i < places.length; i += BATCH) {
    const rows = places
      .slice(i, i + BATCH)
      .map((p) => ({ upload_id: uploadId, offset: p.offset, hash: p.hash, length: p.length, received_at: null }));
    await db
      .insertInto('upload_chunks')
      .values(rows)
      .onConflict((oc) => oc.columns(['upload_id', 'offset']).doNothing())
      .execute();
  }
}
