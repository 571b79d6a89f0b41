import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import { type Migration, type MigrationProvider, Migrator } from 'kysely/migration';
import pg from 'pg';
import { PvError } from '../../core/errors.js';
import * as initial from './migrations/0001-initial.js';
import * as changeFeed from './migrations/0002-change-feed.js';
import * as processing from './migrations/0003-processing.js';
import type { Database } from './schema.js';
import { withStatementCache } from './statement-cache.js';
import { checkpointInBackground } from './wal-checkpointer.js';

export type Db = Kysely<Database>;

export type DatabaseLocation = { sqliteFile: string } | { postgresUrl: string; poolSize?: number };

/** The migrations in order; add new ones at the end, never edit a released one. */
const MIGRATIONS: Record<string, Migration> = {
  '0001-initial': initial,
  '0002-change-feed': changeFeed,
  '0003-processing': processing,
};

const migrationProvider: MigrationProvider = { getMigrations: async () => MIGRATIONS };

// PostgreSQL returns bigint (int8) as strings to avoid precision loss; our bigints are byte
// sizes and epoch milliseconds, far below 2^53, so numbers are exact.
const INT8_OID = 20;

/** Opens the metadata database (SQLite file or PostgreSQL URL) and brings its schema up to date. */
export async function openDatabase(location: DatabaseLocation): Promise<Db> {
  const db = 'sqliteFile' in location ? openSqlite(location.sqliteFile) : openPostgres(location.postgresUrl, location.poolSize ?? 10);
  try {
    await migrate(db);
  } catch (error) {
    await db.destroy();
    throw error;
  }
  return db;
}

function openSqlite(file: string): Db {
  mkdirSync(dirname(file), { recursive: true });
  const sqlite = new SQLite(file);
  // WAL lets the CLI (user add) write while a running server reads; busy_timeout waits out
  // the other process's short write transactions instead of failing.
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma('busy_timeout = 10000');
  sqlite.pragma('foreign_keys = ON');
  const stopCheckpoints = checkpointInBackground(sqlite, file);
  const database = withStatementCache(sqlite);
  const close = () => {
    stopCheckpoints();
    database.close();
  };
  return new Kysely<Database>({ dialect: new SqliteDialect({ database: { prepare: (sql) => database.prepare(sql), close } }) });
}

function openPostgres(url: string, poolSize: number): Db {
  const pool = new pg.Pool({
    connectionString: url,
    max: poolSize,
    types: { getTypeParser: (oid: number, format?: string) => (oid === INT8_OID ? Number : pg.types.getTypeParser(oid, format as 'text')) },
  } as pg.PoolConfig);
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}

async function migrate(db: Db): Promise<void> {
  // Kysely's migrator takes a lock in the database, so processes starting at once migrate once.
  const { error, results } = await new Migrator({ db, provider: migrationProvider }).migrateToLatest();
  if (error) {
    const failed = results?.find((result) => result.status === 'Error')?.migrationName;
    throw new PvError('PV_INTERNAL', `Database migration ${failed ?? ''} failed: ${(error as Error).message}`, {
      fix: 'Check that the database is reachable and that this photovault version is not older than the one that last ran.',
    });
  }
}
