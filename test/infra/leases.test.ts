import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { Leases } from '../../src/infra/db/leases.js';
import { createTestDatabase, describeEachDatabase, type TestDatabase } from '../support/databases.js';
import { TestClock } from '../support/server.js';

describeEachDatabase('Leases', (kind) => {
  let database: TestDatabase;
  let clock: TestClock;
  beforeEach(async () => {
    database = await createTestDatabase(kind);
    clock = new TestClock();
  });
  afterEach(async () => {
    await database.drop();
  });

  /** Holds the lease until released; resolves once work has started (or null when it was not run). */
  function holdUntilReleased(leases: Leases, ttlMs: number) {
    let release!: () => void;
    let signal: AbortSignal | undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    const held = leases.hold('job', ttlMs, async (s) => {
      signal = s;
      started();
      await released;
      return 'done';
    });
    return { held, running: Promise.race([running, held.then(() => {})]), release, signal: () => signal };
  }

  it('lets one holder at a time run, and the next once it is released', async () => {
    const a = new Leases(database.db, clock.now);
    const b = new Leases(database.db, clock.now);
    const first = holdUntilReleased(a, 60_000);
    await first.running;
    expect(await b.hold('job', 60_000, async () => 'second')).toBeNull();
    expect(await b.hold('other-job', 60_000, async () => 'independent')).toBe('independent');
    first.release();
    expect(await first.held).toBe('done');
    expect(await b.hold('job', 60_000, async () => 'second')).toBe('second');
    expect(await database.db.selectFrom('leases').selectAll().execute()).toEqual([]);
  });

  it('renews a lease while its work runs, so a long run keeps it', async () => {
    const leases = new Leases(database.db);
    const long = holdUntilReleased(leases, 300);
    await long.running;
    await sleep(900);
    expect(await leases.hold('job', 300, async () => 'intruder')).toBeNull();
    expect(long.signal()!.aborted).toBe(false);
    long.release();
    expect(await long.held).toBe('done');
  });

  it('hands a lease that ran out to the next taker, and tells the old holder to stop', async () => {
    // The stalled holder's renewals set its expiry on a clock that stays put, so a second later by
    // the taker's clock the lease has run out whenever the renewals come.
    const stalled = holdUntilReleased(new Leases(database.db, new TestClock().now), 300);
    await stalled.running;
    clock.advance(1000);
    const taker = new Leases(database.db, clock.now);
    let finished = false;
    const next = taker.hold('job', 60_000, async () => {
      // The stalled holder's next renewal fails and aborts its work.
      for (let i = 0; i < 100 && !stalled.signal()!.aborted; i++) await sleep(20);
      finished = true;
      return 'taken over';
    });
    expect(await next).toBe('taken over');
    expect(finished).toBe(true);
    expect(stalled.signal()!.aborted).toBe(true);
    stalled.release();
    await stalled.held;
  });
});
