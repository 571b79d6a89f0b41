/**
 * bench:explain — the metadata's hot queries on PostgreSQL tables of a million rows each: their
 * plans (EXPLAIN (ANALYZE, BUFFERS) of the exact queries the repositories build) and how long
 * they take, and whether each uses its index rather than reading a table whole.
 *
 *   npm run bench:explain
 *
 * Fills a scratch database (created on the PostgreSQL of PV_BENCH_POSTGRES_URL, default
 * postgres://postgres@127.0.0.1:5432/postgres, and dropped at the end) with bench/hot-queries.ts,
 * then for each query prints its plan's nodes, the server's planning and execution time, and the
 * round trip through the pool (median and p99 of PV_BENCH_RUNS, default 200, after 20 warm-up
 * runs). PV_BENCH_ROWS (default 1,000,000) sets the rows per table. A plan that reads a table
 * whole (Seq Scan), misses its index or sorts a page is reported, and the exit code is 1.
 */
import { performance } from 'node:perf_hooks';
import { type Compilable, sql } from 'kysely';
import { type Db, openDatabase } from '../src/infra/db/database.js';
import { createScratchDatabase } from './scratch-database.js';
import { explain, fillHotTables, hotQueries, planNodes, planProblems, type PlanNode } from './hot-queries.js';
import { numberSetting, table } from './support.js';

const ADMIN_URL = process.env.PV_BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const ROWS = numberSetting('PV_BENCH_ROWS', 1_000_000);
const RUNS = numberSetting('PV_BENCH_RUNS', 200);
const WARM_UP_RUNS = 20;

function describeNode(node: PlanNode): string {
  const on = node['Index Name'] ? ` using ${node['Index Name']}` : '';
  const relation = node['Relation Name'] ? ` on ${node['Relation Name']}` : '';
  const rows = node['Actual Rows'] === undefined ? '' : `  rows=${node['Actual Rows']} loops=${node['Actual Loops']}`;
  const time = node['Actual Total Time'] === undefined ? '' : ` time=${node['Actual Total Time'].toFixed(3)} ms`;
  const buffers = `  buffers hit=${node['Shared Hit Blocks'] ?? 0} read=${node['Shared Read Blocks'] ?? 0}`;
  return `${node['Node Type']}${on}${relation}${rows}${time}${buffers}`;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function roundTrips(db: Db, query: Compilable): Promise<number[]> {
  const compiled = query.compile();
  for (let i = 0; i < WARM_UP_RUNS; i++) await db.executeQuery(compiled);
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const started = performance.now();
    await db.executeQuery(compiled);
    times.push(performance.now() - started);
  }
  return times.sort((a, b) => a - b);
}

async function main(): Promise<void> {
  const scratch = await createScratchDatabase(ADMIN_URL, 'pv_bench');
  // Dropped on the way out, ^C included.
  process.once('SIGINT', () => void scratch.drop().finally(() => process.exit(130)));
  let db: Db | undefined;
  try {
    db = await openDatabase({ postgresUrl: scratch.url, poolSize: 2 });
    const { rows: settings } = await sql<{ server_version: string }>`show server_version`.execute(db);
    process.stdout.write(`PostgreSQL ${settings[0]!.server_version}; filling ~${ROWS.toLocaleString('en')} rows per table... `);
    const filling = performance.now();
    await fillHotTables(db, ROWS);
    process.stdout.write(`${((performance.now() - filling) / 1000).toFixed(1)} s\n\n`);

    const summary: [string, ...string[]][] = [];
    let failures = 0;
    for (const hot of hotQueries(ROWS)) {
      const query = hot.query(db);
      const times = await roundTrips(db, query);
      const { plan, planningMs, executionMs } = await explain(query, { analyze: true });
      const problems = planProblems(plan, hot);
      // Below minRows a table read whole may be the cheaper plan: told, not counted.
      const judged = (hot.minRows ?? 0) <= ROWS;
      if (judged && problems.length > 0) failures++;
      process.stdout.write(`${hot.name}: ${hot.scenario}\n`);
      for (const { node, depth } of planNodes(plan)) process.stdout.write(`  ${'  '.repeat(depth)}${describeNode(node)}\n`);
      process.stdout.write(`  planning ${planningMs!.toFixed(3)} ms, execution ${executionMs!.toFixed(3)} ms\n`);
      const expected = `${hot.indexes.join(', ')}${hot.inIndexOrder ? ', read in index order' : ''}, no table read whole`;
      process.stdout.write(
        problems.length === 0
          ? `  OK: ${expected}\n\n`
          : judged
            ? `  PROBLEM: ${problems.join('; ')}: expected ${expected}; an index is missing or unused\n\n`
            : `  (${problems.join('; ')}: fine below ${hot.minRows!.toLocaleString('en')} rows per table)\n\n`,
      );
      summary.push([
        hot.name,
        `${executionMs!.toFixed(2)} ms`,
        `${percentile(times, 50).toFixed(2)} ms`,
        `${percentile(times, 99).toFixed(2)} ms`,
        problems.length === 0 ? 'as intended' : judged ? 'PROBLEM' : 'small tables',
      ]);
    }
    process.stdout.write(
      `${table(`${ROWS.toLocaleString('en')} rows per table`, ['execution', 'round trip p50', 'p99', 'plan'], summary)}\n`,
    );
    if (failures > 0) process.exitCode = 1;
  } finally {
    await db?.destroy();
    await scratch.drop();
  }
}

await main();
