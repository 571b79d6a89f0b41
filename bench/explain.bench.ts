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
 * whole (Seq Scan) or misses its index is reported, and the exit code is 1.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { type Compilable, sql } from 'kysely';
import pg from 'pg';
import { type Db, openDatabase } from '../src/infra/db/database.js';
import { explain, fillHotTables, hotQueries, planNodes, planProblems, type PlanNode } from './hot-queries.js';
import { numberSetting, table } from './support.js';

const ADMIN_URL = process.env.PV_BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const ROWS = numberSetting('PV_BENCH_ROWS', 1_000_000);
const RUNS = numberSetting('PV_BENCH_RUNS', 200);
const WARM_UP_RUNS = 20;

/** A database of its own on the server, dropped afterwards (^C included). */
async function createScratchDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `pv_bench_${randomBytes(6).toString('hex')}`;
  const admin = async (statement: string) => {
    const client = new pg.Client({ connectionString: ADMIN_URL });
    await client.connect();
    try {
      await client.query(statement);
    } finally {
      await client.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  let dropped: Promise<void> | undefined;
  return { url: url.toString(), drop: () => (dropped ??= admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)) };
}

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
  const scratch = await createScratchDatabase();
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
      failures += problems.length > 0 ? 1 : 0;
      process.stdout.write(`${hot.name}: ${hot.scenario}\n`);
      for (const { node, depth } of planNodes(plan)) process.stdout.write(`  ${'  '.repeat(depth)}${describeNode(node)}\n`);
      process.stdout.write(`  planning ${planningMs!.toFixed(3)} ms, execution ${executionMs!.toFixed(3)} ms\n`);
      process.stdout.write(
        problems.length === 0
          ? `  OK: ${hot.indexes.join(', ')}${hot.inIndexOrder ? ', read in index order' : ''}, no table read whole\n\n`
          : `  PROBLEM: ${problems.join('; ')}: a missing or unused index, see docs/benchmarks.md\n\n`,
      );
      summary.push([
        hot.name,
        `${executionMs!.toFixed(2)} ms`,
        `${percentile(times, 50).toFixed(2)} ms`,
        `${percentile(times, 99).toFixed(2)} ms`,
        problems.length === 0 ? 'index' : 'SEQ SCAN',
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
