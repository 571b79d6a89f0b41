import type { Bucket, TierBucket } from '../../core/buckets.js';
import type { Db } from '../../infra/db/database.js';

/** A stored object as the tiering job and the verifier see it. */
export interface StoredObject {
  hash: string;
  size: number;
  bucket: Bucket;
  createdAt: number;
}

/** Where an object's copies are: the recorded one, and the other of a move under way. */
export interface ObjectPlaces {
  bucket: Bucket;
  extraCopyBucket: Bucket | null;
}

/**
 * The stored objects for storage maintenance: the tiering job's moves and the verifier's scans.
 * A move marks the row (extra_copy_bucket) before it writes the copy and clears it after it removes
 * the old one, so every step leaves a row that says where both copies may be.
 */
export class ObjectsRepository {
  constructor(private readonly db: Db) {}

  /** Objects of a bucket stored at or before createdBefore and not under a move, oldest first, after the cursor. */
  async due(
    bucket: TierBucket,
    createdBefore: number,
    after: { createdAt: number; hash: string } | null,
    limit: number,
  ): Promise<StoredObject[]> {
    let query = this.db
      .selectFrom('objects')
      .select(['hash', 'size', 'bucket', 'created_at'])
      .where('bucket', '=', bucket)
      .where('created_at', '<=', createdBefore)
      .where('extra_copy_bucket', 'is', null);
    if (after !== null) {
      query = query.where((eb) =>
        eb.or([eb('created_at', '>', after.createdAt), eb.and([eb('created_at', '=', after.createdAt), eb('hash', '>', after.hash)])]),
      );
    }
    const rows = await query.orderBy('created_at').orderBy('hash').limit(limit).execute();
    return rows.map((row) => ({ hash: row.hash, size: row.size, bucket: row.bucket as Bucket, createdAt: row.created_at }));
  }

  /** Marks the start of a move, if the object is still recorded in from and under no other move. */
  async beginMove(hash: string, from: Bucket, to: Bucket): Promise<boolean> {
    const result = await this.db
      .updateTable('objects')
      .set({ extra_copy_bucket: to })
      .where('hash', '=', hash)
      .where('bucket', '=', from)
      .where('extra_copy_bucket', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Makes the copy in to the recorded one, in one conditional update; the old copy becomes the extra one. */
  async switchMove(hash: string, from: Bucket, to: Bucket): Promise<boolean> {
    const result = await this.db
      .updateTable('objects')
      .set({ bucket: to, extra_copy_bucket: from })
      .where('hash', '=', hash)
      .where('bucket', '=', from)
      .where('extra_copy_bucket', '=', to)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /**
   * Ends a move whose extra copy is gone: clears the mark, or, when no version refers to the
   * object any more (a purge left it to the mover), deletes the row and returns the bucket whose
   * copy the caller must then delete.
   */
  async endMove(hash: string): Promise<Bucket | null> {
    return this.db.transaction().execute(async (trx) => {
      const purged = await trx
        .deleteFrom('objects')
        .where('hash', '=', hash)
        .where('extra_copy_bucket', 'is not', null)
        .where((eb) => eb.not(eb.exists(eb.selectFrom('file_versions').select('id').where('content_hash', '=', hash))))
        .returning('bucket')
        .executeTakeFirst();
      if (purged) return purged.bucket as Bucket;
      await trx.updateTable('objects').set({ extra_copy_bucket: null }).where('hash', '=', hash).execute();
      return null;
    });
  }

  /** Where the copies of an object are, or null when it is not stored. */
  async placesOf(hash: string): Promise<ObjectPlaces | null> {
    return (await this.placesOfMany([hash])).get(hash) ?? null;
  }

  /** placesOf for several objects at once (at most a few hundred). */
  async placesOfMany(hashes: string[]): Promise<Map<string, ObjectPlaces>> {
    if (hashes.length === 0) return new Map();
    const rows = await this.db.selectFrom('objects').select(['hash', 'bucket', 'extra_copy_bucket']).where('hash', 'in', hashes).execute();
    return new Map(
      rows.map((row) => [row.hash, { bucket: row.bucket as Bucket, extraCopyBucket: row.extra_copy_bucket as Bucket | null }]),
    );
  }

  /** Objects under a move (left by a crash, when no run holds the lease), by hash after the cursor. */
  async unfinishedMoves(afterHash: string, limit: number): Promise<string[]> {
    const rows = await this.db
      .selectFrom('objects')
      .select('hash')
      .where('extra_copy_bucket', 'is not', null)
      .where('hash', '>', afterHash)
      .orderBy('hash')
      .limit(limit)
      .execute();
    return rows.map((row) => row.hash);
  }

  /** Every object, by hash after the cursor: the verifier's walk over the metadata. */
  async page(afterHash: string, limit: number): Promise<StoredObject[]> {
    const rows = await this.db
      .selectFrom('objects')
      .select(['hash', 'size', 'bucket', 'created_at'])
      .where('hash', '>', afterHash)
      .orderBy('hash')
      .limit(limit)
      .execute();
    return rows.map((row) => ({ hash: row.hash, size: row.size, bucket: row.bucket as Bucket, createdAt: row.created_at }));
  }
}
