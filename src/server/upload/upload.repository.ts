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

export interface NewObject {
  hash: string;
  size: number;
  bucket: string;
  chunks: { offset: number; hash: string; length: number }[];
}

/** Upload sessions, the chunk index, and the objects it describes. */
export class UploadRepository {
  constructor(private readonly db: Db) {}

  /** Records a new upload and the chunks it needs; false if one for the same content and path exists. */
  async insertUpload(upload: UploadRow, chunks: { hash: string; length: number }[]): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      const inserted = await trx
        .insertInto('uploads')
        .values(upload)
        .onConflict((oc) => oc.columns(['owner_id', 'content_hash', 'path']).doNothing())
        .executeTakeFirst();
      if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 0) return false;
      for (let i = 0; i < chunks.length; i += BATCH) {
        const rows = chunks.slice(i, i + BATCH).map((c) => ({ upload_id: upload.id, hash: c.hash, length: c.length, received_at: null }));
        await trx.insertInto('upload_chunks').values(rows).execute();
      }
      return true;
    });
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

  async extendExpiry(uploadId: string, expiresAt: number): Promise<void> {
    await this.db.updateTable('uploads').set({ expires_at: expiresAt }).where('id', '=', uploadId).execute();
  }

  /**
   * The user's upload and, if the upload expects it, the chunk with this hash, in one read
   * (this runs once per chunk PUT). undefined when the user has no such upload.
   */
  findUploadChunk(ownerId: string, uploadId: string, hash: string) {
    return this.db
      .selectFrom('uploads')
      .leftJoin('upload_chunks', (join) => join.onRef('upload_chunks.upload_id', '=', 'uploads.id').on('upload_chunks.hash', '=', hash))
      .select(['uploads.expires_at', 'upload_chunks.length', 'upload_chunks.received_at'])
      .where('uploads.owner_id', '=', ownerId)
      .where('uploads.id', '=', uploadId)
      .executeTakeFirst();
  }

  async markReceived(uploadId: string, hash: string, at: number): Promise<void> {
    await this.db.updateTable('upload_chunks').set({ received_at: at }).where('upload_id', '=', uploadId).where('hash', '=', hash).execute();
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

  /** Adds chunks the upload must now receive after all (their earlier source went away). */
  async addExpectedChunks(uploadId: string, chunks: { hash: string; length: number }[]): Promise<void> {
    for (let i = 0; i < chunks.length; i += BATCH) {
      const rows = chunks.slice(i, i + BATCH).map((c) => ({ upload_id: uploadId, hash: c.hash, length: c.length, received_at: null }));
      await this.db.insertInto('upload_chunks').values(rows).onConflict((oc) => oc.columns(['upload_id', 'hash']).doNothing()).execute();
    }
  }

  /** Chunks the upload still needs, with their lengths. */
  missingChunks(uploadId: string): Promise<{ hash: string; length: number }[]> {
    return this.db.selectFrom('upload_chunks').select(['hash', 'length']).where('upload_id', '=', uploadId).where('received_at', 'is', null).execute();
  }

  async stagedChunks(uploadId: string): Promise<Set<string>> {
    const rows = await this.db.selectFrom('upload_chunks').select('hash').where('upload_id', '=', uploadId).where('received_at', 'is not', null).execute();
    return new Set(rows.map((r) => r.hash));
  }

  /**
   * Where each of these chunks can be read from among the objects this user holds. Only the
   * user's own versions count: that is what keeps dedup from revealing other users' files.
   */
  async locateOwnedChunks(ownerId: string, hashes: string[]): Promise<Map<string, ChunkLocation>> {
    const found = new Map<string, ChunkLocation>();
    for (let i = 0; i < hashes.length; i += BATCH) {
      const rows = await this.db
        .selectFrom('object_chunks')
        .innerJoin('objects', 'objects.hash', 'object_chunks.object_hash')
        .select(['object_chunks.chunk_hash', 'object_chunks.object_hash', 'objects.bucket', 'object_chunks.offset', 'object_chunks.length'])
        .where('object_chunks.chunk_hash', 'in', hashes.slice(i, i + BATCH))
        .where((eb) =>
          eb.exists(
            eb
              .selectFrom('file_versions')
              .select('file_versions.id')
              .where('file_versions.owner_id', '=', ownerId)
              .whereRef('file_versions.content_hash', '=', 'object_chunks.object_hash'),
          ),
        )
        .execute();
      for (const row of rows) {
        if (!found.has(row.chunk_hash)) {
          found.set(row.chunk_hash, { objectHash: row.object_hash, bucket: row.bucket, offset: row.offset, length: row.length });
        }
      }
    }
    return found;
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
      const rows = object.chunks.slice(i, i + BATCH).map((c) => ({ object_hash: object.hash, offset: c.offset, chunk_hash: c.hash, length: c.length }));
      await trx.insertInto('object_chunks').values(rows).execute();
    }
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
