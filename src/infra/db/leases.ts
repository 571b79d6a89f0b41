import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { PvError } from '../../core/errors.js';
import type { Db } from './database.js';

/**
 * Named leases in the metadata database, for work that must run in one process at a time however
 * many share the data dir (SQLite) or the cluster (PostgreSQL). Taking and renewing a lease are
 * single conditional statements, which both dialects apply atomically to the row: no advisory
 * lock (SQLite has none) and no session to keep open. A holder that dies simply stops renewing,
 * and its lease runs out after ttlMs.
 */
export class Leases {
  constructor(
    private readonly db: Db,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Runs work while holding the named lease, renewing it every third of ttlMs; resolves to null
   * without running work when someone else holds it. If a renewal fails, the signal handed to
   * work aborts: work must stop, as another process may take the lease.
   */
  async hold<T>(name: string, ttlMs: number, work: (signal: AbortSignal) => Promise<T>): Promise<T | null> {
    const holder = `${hostname()}/${process.pid}/${randomUUID()}`;
    if (!(await this.acquire(name, holder, ttlMs))) return null;
    const lost = new AbortController();
    const renew = async () => {
      try {
        if (!(await this.renew(name, holder, ttlMs))) throw new PvError('PV_CONFLICT', `The lease ${name} was taken over.`);
      } catch (error) {
        lost.abort(error);
      }
    };
    const timer = setInterval(() => void renew(), Math.max(1, Math.floor(ttlMs / 3)));
    timer.unref();
    try {
      return await work(lost.signal);
    } finally {
      clearInterval(timer);
      await this.db.deleteFrom('leases').where('name', '=', name).where('holder', '=', holder).execute();
    }
  }

  /** Takes the lease if nobody holds it or its holder let it run out. */
  private async acquire(name: string, holder: string, ttlMs: number): Promise<boolean> {
    const at = this.now();
    const inserted = await this.db
      .insertInto('leases')
      .values({ name, holder, expires_at: at + ttlMs })
      .onConflict((oc) => oc.column('name').doNothing())
      .executeTakeFirst();
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 1) return true;
    const taken = await this.db
      .updateTable('leases')
      .set({ holder, expires_at: at + ttlMs })
      .where('name', '=', name)
      .where('expires_at', '<=', at)
      .executeTakeFirst();
    return Number(taken.numUpdatedRows) === 1;
  }

  private async renew(name: string, holder: string, ttlMs: number): Promise<boolean> {
    const renewed = await this.db
      .updateTable('leases')
      .set({ expires_at: this.now() + ttlMs })
      .where('name', '=', name)
      .where('holder', '=', holder)
      .executeTakeFirst();
    return Number(renewed.numUpdatedRows) === 1;
  }
}
