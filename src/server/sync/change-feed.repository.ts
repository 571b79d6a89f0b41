import type { Kysely } from 'kysely';
import type { Db } from '../../infra/db/database.js';
import type { ChangeRow, Database } from '../../infra/db/schema.js';

export type NewChange = Omit<ChangeRow, 'seq'>;

/** Rows per multi-row insert of changes: well under the bound-parameter limits. */
const CHANGES_PER_INSERT = 200;

/** The per-user change feed and the devices' cursors in it. */
export class ChangeFeedRepository {
  constructor(private readonly db: Db) {}

  /**
   * Appends a change inside the caller's transaction and returns its sequence number. Taking the
   * number by incrementing the user's counter locks the user's row until the transaction ends,
   * so a reader never sees seq N+1 before N.
   */
  async append(trx: Kysely<Database>, change: NewChange): Promise<number> {
    const { change_seq: seq } = await trx
      .updateTable('users')
      .set((eb) => ({ change_seq: eb('change_seq', '+', 1) }))
      .where('id', '=', change.owner_id)
      .returning('change_seq')
      .executeTakeFirstOrThrow();
    await trx
      .insertInto('changes')
      .values({ ...change, seq })
      .execute();
    return seq;
  }

  /** Appends changes, in order, inside the caller's transaction: append() for many, in a few statements. */
  async appendMany(trx: Kysely<Database>, changes: NewChange[]): Promise<void> {
    if (changes.length === 0) return;
    const ownerId = changes[0]!.owner_id;
    if (changes.some((change) => change.owner_id !== ownerId)) throw new Error('appendMany takes the changes of one owner');
    const { change_seq: last } = await trx
      .updateTable('users')
      .set((eb) => ({ change_seq: eb('change_seq', '+', changes.length) }))
      .where('id', '=', ownerId)
      .returning('change_seq')
      .executeTakeFirstOrThrow();
    const first = last - changes.length + 1;
    for (let i = 0; i < changes.length; i += CHANGES_PER_INSERT) {
      await trx
        .insertInto('changes')
        .values(changes.slice(i, i + CHANGES_PER_INSERT).map((change, at) => ({ ...change, seq: first + i + at })))
        .execute();
    }
  }

  /**
   * Makes the caller's transaction wait for, and then hold off, every other change to the user's
   * namespace until it ends: on PostgreSQL, changes read what they change first (is the folder
   * there, is the head still the base version), and two at once would both act on the same
   * reading. SQLite runs one write transaction at a time anyway.
   */
  async lock(trx: Kysely<Database>, ownerId: string): Promise<void> {
    await trx
      .updateTable('users')
      .set((eb) => ({ change_seq: eb.ref('change_seq') }))
      .where('id', '=', ownerId)
      .execute();
  }

  /** Changes after a sequence number, oldest first; without processing results if asked. */
  since(ownerId: string, after: number, limit: number, options: { excludeProcessed?: boolean } = {}): Promise<ChangeRow[]> {
    return this.sinceQuery(ownerId, after, limit, options).execute();
  }

  /** The query of since(), which bench/explain.bench.ts and the plan test run EXPLAIN on. */
  sinceQuery(ownerId: string, after: number, limit: number, options: { excludeProcessed?: boolean } = {}) {
    let query = this.db.selectFrom('changes').selectAll().where('owner_id', '=', ownerId).where('seq', '>', after);
    if (options.excludeProcessed) query = query.where('kind', '!=', 'processed');
    return query.orderBy('seq').limit(limit);
  }

  async latest(ownerId: string): Promise<number> {
    const row = await this.db.selectFrom('users').select('change_seq').where('id', '=', ownerId).executeTakeFirst();
    return row?.change_seq ?? 0;
  }

  /** Records how far a device has applied the feed; a cursor never moves back. */
  async acknowledge(userId: string, deviceId: string, seq: number, at: number): Promise<number> {
    return this.db.transaction().execute(async (trx) => {
      const current = await trx.selectFrom('device_cursors').select('seq').where('device_id', '=', deviceId).executeTakeFirst();
      const next = Math.max(current?.seq ?? 0, seq);
      await trx
        .insertInto('device_cursors')
        .values({ device_id: deviceId, user_id: userId, seq: next, updated_at: at })
        .onConflict((oc) => oc.column('device_id').doUpdateSet({ seq: next, updated_at: at }))
        .execute();
      return next;
    });
  }

  cursors(userId: string): Promise<{ device_id: string; seq: number; updated_at: number }[]> {
    return this.db.selectFrom('device_cursors').select(['device_id', 'seq', 'updated_at']).where('user_id', '=', userId).execute();
  }
}
