import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { afterEach, expect, it } from 'vitest';
import { isPvError } from '../../src/core/errors.js';
import { type Db, openDatabase, type PostgresLocation } from '../../src/infra/db/database.js';
import { collectOutput, exited, ProcessTracker, REPO_ROOT } from '../support/cli.js';
import { createPostgresDatabase, describePostgres, POSTGRES_ADMIN_URL } from '../support/databases.js';
import { expectUnreachable, freePort, startSilentServer } from '../support/unreachable.js';

const MIGRATION_NAMES = readdirSync(join(REPO_ROOT, 'src', 'infra', 'db', 'migrations'))
  .map((file) => file.replace(/\.ts$/, ''))
  .sort();
const BUILT_DATABASE = join(REPO_ROOT, 'dist', 'src', 'infra', 'db', 'database.js');

/**
 * A process that opens the database when told to on stdin (so all start at the same moment),
 * then prints `ok` or the error's code and message.
 */
const OPENING_PROCESS = `
const { openDatabase } = await import(${JSON.stringify(BUILT_DATABASE)});
process.stdin.once('data', async () => {
  process.stdin.destroy();
  try {
    const db = await openDatabase({ postgresUrl: process.env.DATABASE_URL, poolSize: 2 });
    await db.destroy();
    console.log('ok');
  } catch (error) {
    console.log('failed', error.code, error.message);
    process.exitCode = 1;
  }
});
console.log('ready');
`;

describePostgres('openDatabase on PostgreSQL', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  const tracker = new ProcessTracker();
  afterEach(async () => {
    await tracker.killAll();
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  const freshDatabase = async () => {
    const database = await createPostgresDatabase();
    cleanups.push(database.drop);
    return database.url;
  };
  const open = async (url: string, options: Omit<PostgresLocation, 'postgresUrl'> = {}) => {
    const db = await openDatabase({ postgresUrl: url, ...options });
    cleanups.push(() => db.destroy());
    return db;
  };

  it('migrates a fresh database exactly once when four processes open it at the same moment', async () => {
    if (!existsSync(BUILT_DATABASE))
      throw new Error(`This test runs the built code: run \`npm run build\` first (${BUILT_DATABASE} is missing).`);
    const url = await freshDatabase();
    const processes = Array.from({ length: 4 }, () => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', OPENING_PROCESS], {
        env: { ...process.env, DATABASE_URL: url },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      tracker.add(child);
      return { child, output: collectOutput(child) };
    });
    await Promise.all(processes.map(({ child, output }) => waitFor(() => output.stdout().includes('ready'), child)));
    for (const { child } of processes) child.stdin!.end('go\n');
    await Promise.all(processes.map(({ child }) => exited(child)));

    const outcomes = processes.map(({ output }) => `${output.stdout().replace('ready\n', '').trim()}${output.stderr()}`);
    expect(outcomes).toEqual(['ok', 'ok', 'ok', 'ok']);
    const db = await open(url);
    const applied = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(db);
    // Each migration once: one applied twice would have failed its process (its tables exist).
    expect(applied.rows.map((row) => row.name)).toEqual(MIGRATION_NAMES);
    expect(await db.selectFrom('users').select('id').execute()).toEqual([]);
  });

  it('fails at once with an error naming the host when nothing listens at the URL', async () => {
    const url = `postgres://postgres@127.0.0.1:${await freePort()}/photovault`;
    const error = await expectUnreachable(() => openDatabase({ postgresUrl: url }), { names: url, withinMs: 2_000 });
    expect(error.message).toMatch(/ECONNREFUSED/);
  });

  it('fails within its connect timeout when the server accepts but never answers, hiding the password', async () => {
    const silent = await startSilentServer();
    cleanups.push(async () => silent.close());
    const url = `postgres://postgres:s3cret@127.0.0.1:${silent.port}/photovault`;
    const error = await expectUnreachable(() => openDatabase({ postgresUrl: url, connectTimeoutMs: 300 }), {
      names: `postgres://postgres:***@127.0.0.1:${silent.port}/photovault`,
      withinMs: 3_000,
    });
    expect(error.message).not.toContain('s3cret');
  });

  it('fails a query that waits too long for a free connection, saying the pool is exhausted', async () => {
    const db = await open(await freshDatabase(), { poolSize: 1, connectTimeoutMs: 300 });
    await db.transaction().execute(async () => {
      // The transaction holds the pool's only connection.
      const error = await db
        .selectFrom('users')
        .select('id')
        .execute()
        .catch((e: unknown) => e);
      expect(isPvError(error, 'PV_BACKEND_UNREACHABLE')).toBe(true);
      expect((error as Error).message).toMatch(/all 1 of this process's connections stayed busy/);
    });
  });

  it('carries on after the database drops its idle connections, reconnecting on the next query', async () => {
    const url = await freshDatabase();
    const broken: Error[] = [];
    const db: Db = await open(url, { poolSize: 2, onConnectionError: (error) => broken.push(error) });
    await Promise.all([sql`select pg_sleep(0.05)`.execute(db), sql`select pg_sleep(0.05)`.execute(db)]);

    const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
    await admin.connect();
    try {
      const { rowCount } = await admin.query(
        "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and application_name = 'photovault'",
        [new URL(url).pathname.slice(1)],
      );
      expect(rowCount).toBe(2);
    } finally {
      await admin.end();
    }
    await waitFor(() => broken.length === 2);
    expect(await db.selectFrom('users').select('id').execute()).toEqual([]);
  });
});

/** Resolves once the condition holds; fails after 20 s, or when the process it waits on exits first. */
async function waitFor(condition: () => boolean, child?: { exitCode: number | null }): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!condition()) {
    if (child && child.exitCode !== null) throw new Error(`the process exited with ${child.exitCode} first`);
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
