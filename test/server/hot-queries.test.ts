import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

/**
 * The same queries on SQLite, the embedded default. Its planner has no statistics (nothing runs
 * ANALYZE), so it plans a database of a million files as it plans an empty one: the plans are
 * checked on an empty database, and must use the same indexes (a primary key is SQLite's
 * sqlite_autoindex_<table>_1) without reading a table whole or sorting a page.
 */
describe('hot query plans on SQLite', () => {
  let db: Db;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pv-plans-'));
    db = await openDatabase({ sqliteFile: join(dir, 'photovault.db') });
  });

  afterAll(async () => {
    await db?.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  const sqliteIndex = (name: string) => name.replace(/^(\w+?)_(pkey|pk)$/, 'sqlite_autoindex_$1_1');

  for (const hot of hotQueries(ROWS)) {
    it(`plans the ${hot.name} on ${hot.indexes.map(sqliteIndex).join(', ')}`, async () => {
      const compiled = hot.query(db).compile();
      const { rows } = await db.executeQuery<{ detail: string }>({ ...compiled, sql: `explain query plan ${compiled.sql}` });
      const plan = rows.map((row) => row.detail);
      const shown = plan.join('\n');
      const unused = hot.indexes.map(sqliteIndex).filter((index) => !plan.some((step) => step.includes(`INDEX ${index} `)));
      expect(unused, shown).toEqual([]);
      expect(
        plan.filter((step) => /^SCAN (?!\d+ CONSTANT ROWS)/.test(step)),
        shown,
      ).toEqual([]);
      if (hot.inIndexOrder)
        expect(
          plan.filter((step) => step.includes('TEMP B-TREE')),
          shown,
        ).toEqual([]);
    });
  }
});
