import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, PostgresDialect, type PostgresPool, SqliteDialect } from 'kysely';
import { type Migration, type MigrationProvider, Migrator } from 'kysely/migration';
import pg from 'pg';
import { backendUnreachable, isPvError, PvError } from '../../core/errors.js';
import * as initial from './migrations/0001-initial.js';
import * as changeFeed from './migrations/0002-change-feed.js';
import * as processing from './migrations/0003-processing.js';
import * as tiering from './migrations/0004-tiering.js';
import * as folderStatistics from './migrations/0005-folder-statistics.js';
import type { Database } from './schema.js';
import { withStatementCache } from './statement-cache.js';
import { checkpointInBackground } from './wal-checkpointer.js';

export type Db = Kysely<Database>;

export type DatabaseLocation = { sqliteFile: string } | PostgresLocation;

export interface PostgresLocation {
  postgresUrl: string;
  /** Connections this process may hold (default 10): max_connections must cover every process's pool. */
  poolSize?: number;
  /** How long a query waits for a connection, a new one or a free one of the pool, before failing. Default 10 s. */
  connectTimeoutMs?: number;
  /**
   * Told when an idle connection breaks (the database restarted, the network was cut), for the
   * log. The pool has dropped it and opens a new one when needed; queries report their own errors.
   */
  onConnectionError?: (error: Error) => void;
}

/** The migrations in order; add new ones at the end, never edit a released one. */
const MIGRATIONS: Record<string, Migration> = {
  '0001-initial': initial,
  '0002-change-feed': changeFeed,
  '0003-processing': processing,
  '0004-tiering': tiering,
  '0005-folder-statistics': folderStatistics,
};

const migrationProvider: MigrationProvider = { getMigrations: async () => MIGRATIONS };

// PostgreSQL returns bigint (int8) as strings to avoid precision loss; our bigints are byte
// sizes and epoch milliseconds, far below 2^53, so numbers are exact.
const INT8_OID = 20;

/** Opens the metadata database (SQLite file or PostgreSQL URL) and brings its schema up to date. */
export async function openDatabase(location: DatabaseLocation): Promise<Db> {
  const db = 'sqliteFile' in location ? openSqlite(location.sqliteFile) : openPostgres(location);
  try {
    // The lock is for the processes of the cluster form; embedded SQLite serves one machine.
    await ('sqliteFile' in location ? migrate(db) : withMigrationLock(location, () => migrate(db)));
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
  const checkpoints = checkpointInBackground(sqlite, file);
  const database = withStatementCache(sqlite);
  const close = () => {
    checkpoints.stop();
    database.close();
  };
  return new Kysely<Database>({ dialect: new SqliteDialect({ database: { prepare: (sql) => database.prepare(sql), close } }) });
}

// Long enough for a database under load, short enough that a dead one fails requests instead
// of queueing them.
const CONNECT_TIMEOUT_MS = 10_000;
// Idle connections go back to PostgreSQL after this; connections are cheap to reopen between bursts.
const IDLE_TIMEOUT_MS = 30_000;

function openPostgres(location: PostgresLocation): Db {
  const poolSize = location.poolSize ?? 10;
  const connectTimeoutMs = location.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
  const pool = new pg.Pool({
    connectionString: location.postgresUrl,
    max: poolSize,
    connectionTimeoutMillis: connectTimeoutMs,
    idleTimeoutMillis: IDLE_TIMEOUT_MS,
    // TCP keepalive finds a peer that vanished without closing (a crashed host, a cut cable),
    // which would otherwise leave the connection and its query waiting forever.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    application_name: 'photovault',
    types: { getTypeParser: (oid: number, format?: string) => (oid === INT8_OID ? Number : pg.types.getTypeParser(oid, format as 'text')) },
  } as pg.PoolConfig);
  // pg-pool re-emits an idle connection's error on the pool, and an 'error' event nobody listens
  // to ends the process: a database restart must not take every server process down with it.
  pool.on('error', (error) => location.onConnectionError?.(error));
  const connections: PostgresPool = {
    Client: pg.Client,
    options: pool.options,
    end: () => pool.end(),
    connect: () =>
      pool.connect().catch((error: Error) => {
        // pg-pool's wording for a query that waited its whole timeout for a free connection.
        if (error.message === 'timeout exceeded when trying to connect') {
          throw new PvError(
            'PV_BACKEND_UNREACHABLE',
            `No free PostgreSQL connection within ${connectTimeoutMs} ms: all ${poolSize} of this process's connections stayed busy.`,
            {
              backend: 'PostgreSQL',
              fix: "Raise database.poolSize (PostgreSQL's max_connections must cover every process's pool), or look for slow queries.",
            },
          );
        }
        throw backendUnreachable('PostgreSQL', location.postgresUrl, error);
      }),
  };
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool: connections }) });
}

// Any fixed number, the same in every photovault process; only our migrations take this lock.
const MIGRATION_LOCK_KEY = 0x70686f746f76; // 'photov'

/**
 * Runs the migrations in one process at a time among all that share the database. Kysely's
 * migrator locks only around the migrations themselves: it first creates its bookkeeping tables
 * and lock row outside that lock, where processes starting together collide (it survives by
 * checking again, but each collision is an ERROR in PostgreSQL's log). This lock covers it all.
 * It belongs to a connection of its own, so a pool of one still has a connection to migrate
 * with, and a process that dies holding it releases it with its connection.
 */
async function withMigrationLock<T>(location: PostgresLocation, run: () => Promise<T>): Promise<T> {
  const client = new pg.Client({
    connectionString: location.postgresUrl,
    connectionTimeoutMillis: location.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
    application_name: 'photovault migrations',
  });
  // While the migrations run this connection only holds the lock; if the database goes away
  // meanwhile, they fail on their own connections with the error to report.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (error) {
    throw backendUnreachable('PostgreSQL', location.postgresUrl, error);
  }
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    return await run();
  } finally {
    // Ending the session releases the lock.
    await client.end();
  }
}

async function migrate(db: Db): Promise<void> {
  const { error, results } = await new Migrator({ db, provider: migrationProvider }).migrateToLatest();
  if (isPvError(error)) throw error;
  if (error) {
    const failed = results?.find((result) => result.status === 'Error')?.migrationName;
    throw new PvError('PV_INTERNAL', `Database migration ${failed ?? ''} failed: ${(error as Error).message}`, {
      fix: 'Check that the database is reachable and that this photovault version is not older than the one that last ran.',
    });
  }
}
