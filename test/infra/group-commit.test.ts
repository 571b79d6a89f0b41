import { afterEach, beforeEach, expect, it } from 'vitest';
import type { Kysely } from 'kysely';
import { GroupCommit } from '../../src/infra/db/group-commit.js';
import { createTestDatabase, describeEachDatabase, type TestDatabase } from '../support/databases.js';

interface Scratch {
  entries: { name: string; n: number };
}

describeEachDatabase('GroupCommit', (kind) => {
  let database: TestDatabase;
  let db: Kysely<Scratch>;

  beforeEach(async () => {
    database = await createTestDatabase(kind);
    db = database.db as unknown as Kysely<Scratch>;
    await db.schema
      .createTable('entries')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('n', 'integer', (c) => c.notNull())
      .execute();
  });
  afterEach(async () => {
    await database.drop();
  });

  const names = async () => (await db.selectFrom('entries').select('name').orderBy('name').execute()).map((row) => row.name);

  it('commits work that arrives together, each with its own result', async () => {
    const group = new GroupCommit(db);
    const results = await Promise.all(
      ['a', 'b', 'c', 'd'].map((name, n) =>
        group.run(async (trx) => {
          await trx.insertInto('entries').values({ name, n }).execute();
          return `${name}${n}`;
        }),
      ),
    );
    expect(results).toEqual(['a0', 'b1', 'c2', 'd3']);
    expect(await names()).toEqual(['a', 'b', 'c', 'd']);
  });

  it('rolls back only the work that failed, even after its statements ran, and fails only it', async () => {
    const group = new GroupCommit(db);
    const insert = (name: string, fail: 'no' | 'throw' | 'constraint') =>
      group.run(async (trx) => {
        await trx.insertInto('entries').values({ name, n: 1 }).execute();
        if (fail === 'throw') throw new Error(`${name} refused`);
        // A statement the database refuses (PostgreSQL then aborts the transaction up to the savepoint).
        if (fail === 'constraint') await trx.insertInto('entries').values({ name, n: 2 }).execute();
        return name;
      });
    const outcomes = await Promise.allSettled([
      insert('first', 'no'),
      insert('second', 'throw'),
      insert('third', 'no'),
      insert('fourth', 'constraint'),
      insert('fifth', 'no'),
    ]);
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'rejected', 'fulfilled']);
    expect((outcomes[1] as PromiseRejectedResult).reason).toMatchObject({ message: 'second refused' });
    expect(await names()).toEqual(['fifth', 'first', 'third']);
  });

  it('lets each grouped work see what the ones before it wrote', async () => {
    const group = new GroupCommit(db);
    const counts = await Promise.all(
      [1, 2, 3].map((n) =>
        group.run(async (trx) => {
          await trx
            .insertInto('entries')
            .values({ name: `e${n}`, n })
            .execute();
          return (await trx.selectFrom('entries').select('name').execute()).length;
        }),
      ),
    );
    expect(counts).toEqual([1, 2, 3]);
  });
});
