import { afterAll, beforeAll, expect, it } from 'vitest';
import { explain, fillHotTables, hotQueries, planNodes, planProblems } from '../../bench/hot-queries.js';
import { type Db, openDatabase } from '../../src/infra/db/database.js';
import { createPostgresDatabase, describePostgres } from '../support/databases.js';

/**
 * The hot queries' plans on PostgreSQL, on 50,000 rows per table, ANALYZEd, sequential scans
 * allowed: each must use its index, so a migration that loses one fails here. The full-size
 * figures come from `npm run bench:explain` (a million rows).
 */
const ROWS = 50_000;

describePostgres('hot query plans on PostgreSQL', () => {
  let db: Db;
  let drop: () => Promise<void>;

  beforeAll(async () => {
    const database = await createPostgresDatabase();
    drop = database.drop;
    db = await openDatabase({ postgresUrl: database.url, poolSize: 2 });
    await fillHotTables(db, ROWS);
  }, 120_000);

  afterAll(async () => {
    await db?.destroy();
    await drop?.();
  });

  it('fills tables in which each sample query finds its rows', async () => {
    for (const hot of hotQueries(ROWS)) {
      expect((await db.executeQuery(hot.query(db).compile())).rows, hot.name).toHaveLength(hot.rows);
    }
  });

  // Queries whose plan is only right on large tables (the 500-hash chunk lookup: PostgreSQL
  // rightly reads 50,000 rows whole for it) are checked by bench:explain on a million rows.
  for (const hot of hotQueries(ROWS).filter((query) => (query.minRows ?? 0) <= ROWS)) {
    const order = hot.inIndexOrder ? ' in index order' : '';
    it(`plans the ${hot.name} on ${hot.indexes.join(', ')}${order}, reading no table whole`, async () => {
      const { plan } = await explain(hot.query(db), { analyze: false });
      const shape = planNodes(plan).map(({ node, depth }) => `${'  '.repeat(depth)}${node['Node Type']} ${node['Index Name'] ?? ''}`);
      expect(planProblems(plan, hot), shape.join('\n')).toEqual([]);
    });
  }
});
