import type { Db } from '../../infra/db/database.js';
import type { ProcessingJobRow } from '../../infra/db/schema.js';
import type { JobKind, MediaKind, ProcessingOutcome } from '../../core/media.js';
import { changeOf } from '../files/files.repository.js';
import type { ChangeFeedRepository } from '../sync/change-feed.repository.js';

/** A content that holds no job yet, with the name of one file holding it (its extension tells the media kind). */
export interface UnprocessedContent {
  versionId: string;
  contentHash: string;
  name: string;
}

/** The processing jobs of each content, and their results as they come in. */
export class ProcessingRepository {
  constructor(
    private readonly db: Db,
    private readonly changes: ChangeFeedRepository,
  ) {}

  jobsOf(contentHash: string): Promise<ProcessingJobRow[]> {
    return this.db.selectFrom('processing_jobs').selectAll().where('content_hash', '=', contentHash).orderBy('job').execute();
  }

  async find(contentHash: string, job: JobKind): Promise<ProcessingJobRow | undefined> {
    return this.db
      .selectFrom('processing_jobs')
      .selectAll()
      .where('content_hash', '=', contentHash)
      .where('job', '=', job)
      .executeTakeFirst();
  }

  /** Records a job as pending unless it is already known (in any state). */
  async ensure(contentHash: string, job: JobKind, mediaKind: MediaKind, at: number): Promise<void> {
    await this.db
      .insertInto('processing_jobs')
      .values({ content_hash: contentHash, job, media_kind: mediaKind, state: 'pending', attempts: 0, created_at: at, updated_at: at })
      .onConflict((oc) => oc.columns(['content_hash', 'job']).doNothing())
      .execute();
  }

  /**
   * Records a worker's outcome and, in the same transaction, a 'processed' change for every
   * live file holding the content. 'done' is final: a late duplicate or an older failure
   * changes nothing, so a job redelivered after a crash completes once in effect. Returns the
   * owners whose feed moved on.
   */
  async record(outcome: ProcessingOutcome, at: number): Promise<string[]> {
    return this.db.transaction().execute(async (trx) => {
      const values = {
        state: outcome.state,
        attempts: outcome.attempts,
        error: outcome.state === 'failed' ? outcome.error : null,
        output: outcome.state === 'done' ? JSON.stringify(outcome.output) : null,
        updated_at: at,
      };
      const inserted = await trx
        .insertInto('processing_jobs')
        .values({ content_hash: outcome.contentHash, job: outcome.job, media_kind: outcome.mediaKind, created_at: at, ...values })
        .onConflict((oc) => oc.columns(['content_hash', 'job']).doNothing())
        .executeTakeFirst();
      if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 0) {
        // The condition is checked under the row's lock: of two outcomes recorded at once on
        // PostgreSQL, the second sees the first's 'done' and changes nothing.
        const updated = await trx
          .updateTable('processing_jobs')
          .set(values)
          .where('content_hash', '=', outcome.contentHash)
          .where('job', '=', outcome.job)
          .where('state', '<>', 'done')
          .executeTakeFirst();
        if (Number(updated.numUpdatedRows) === 0) return [];
      }
      const holders = await trx
        .selectFrom('files')
        .selectAll()
        .where('content_hash', '=', outcome.contentHash)
        .where('kind', '=', 'file')
        .where('deleted_at', 'is', null)
        .orderBy('owner_id')
        .execute();
      for (const file of holders) await this.changes.append(trx, changeOf(file, 'processed', null, at));
      return [...new Set(holders.map((file) => file.owner_id))];
    });
  }

  /**
   * A page of versions whose content has no job at all, oldest first after `afterVersionId`:
   * those whose file.uploaded was lost (a crash between the commit and the publish), or that
   * predate the workers.
   */
  unprocessed(afterVersionId: string | null, limit: number): Promise<UnprocessedContent[]> {
    let query = this.db
      .selectFrom('file_versions')
      .innerJoin('files', 'files.id', 'file_versions.file_id')
      .leftJoin('processing_jobs', 'processing_jobs.content_hash', 'file_versions.content_hash')
      .select(['file_versions.id as versionId', 'file_versions.content_hash as contentHash', 'files.name as name'])
      .where('processing_jobs.content_hash', 'is', null);
    if (afterVersionId !== null) query = query.where('file_versions.id', '>', afterVersionId);
    return query.orderBy('file_versions.id').limit(limit).execute();
  }
}
