import type { Kysely } from 'kysely';
import { type BatchOutcome, Batcher } from '../../core/batcher.js';

type Work<DB> = (trx: Kysely<DB>) => Promise<unknown>;

/**
 * Runs short write transactions that arrive together as one transaction: what each would have
 * written is committed (and, on SQLite, flushed at the next checkpoint) once for all. Each runs
 * in a savepoint of its own, so one that throws is rolled back alone and fails alone, exactly as
 * if it had had its transaction; the others commit. Nothing of any is visible before all commit.
 */
export class GroupCommit<DB> {
  private readonly batcher: Batcher<Work<DB>, unknown>;

  constructor(private readonly db: Kysely<DB>) {
    this.batcher = new Batcher((works) => this.runBatch(works), MAX_GROUP);
  }

  /** Runs work in a transaction shared with whatever other work is waiting; settles once committed. */
  run<T>(work: (trx: Kysely<DB>) => Promise<T>): Promise<T> {
    return this.batcher.add(work) as Promise<T>;
  }

  private async runBatch(works: Work<DB>[]): Promise<BatchOutcome<unknown>[]> {
    if (works.length === 1) {
      // Alone: its own transaction, no savepoint.
      try {
        return [{ value: await this.db.transaction().execute(works[0]!) }];
      } catch (error) {
        return [{ error }];
      }
    }
    const trx = await this.db.startTransaction().execute();
    const outcomes: BatchOutcome<unknown>[] = [];
    try {
      for (const work of works) {
        const item = await trx.savepoint('grouped').execute();
        try {
          outcomes.push({ value: await work(item) });
          await item.releaseSavepoint('grouped').execute();
        } catch (error) {
          await item.rollbackToSavepoint('grouped').execute();
          await item.releaseSavepoint('grouped').execute();
          outcomes.push({ error });
        }
      }
      await trx.commit().execute();
    } catch (error) {
      // The error that broke the batch is the one to report, not a rollback's on a broken connection.
      await trx
        .rollback()
        .execute()
        .catch(() => undefined);
      throw error;
    }
    return outcomes;
  }
}

/** Transactions grouped at most: a bound on how long the first of them waits for the commit. */
const MAX_GROUP = 64;
