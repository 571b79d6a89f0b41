import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { describe } from 'vitest';
import { createScratchDatabase } from '../../bench/scratch-database.js';
import { type Db, openDatabase } from '../../src/infra/db/database.js';

/**
 * The metadata databases every database-backed suite runs against: SQLite always, and the
 * machine's PostgreSQL (PHOTOVAULT_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres).
 * Outside CI a missing PostgreSQL skips its half with a message; in CI (CI=true) it fails.
 */
export const POSTGRES_ADMIN_URL = process.env.PHOTOVAULT_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  db: Db;
  /** Set for PostgreSQL: the URL of this test's own database, for code that opens its own connections. */
  postgresUrl?: string;
  drop(): Promise<void>;
}

export type DatabaseKind = 'sqlite' | 'postgres';

async function postgresReachable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.end();
    return true;
  } catch {
    return false;
  }
}

const postgresAvailable = await postgresReachable();
if (!postgresAvailable && process.env.CI) {
  throw new Error(
    `PostgreSQL is not reachable at ${POSTGRES_ADMIN_URL}; CI must run the PostgreSQL suites (scripts/services.sh starts it).`,
  );
}

/** Creates a fresh, migrated database of the given kind; drop() removes every trace. */
export async function createTestDatabase(kind: DatabaseKind): Promise<TestDatabase> {
  if (kind === 'sqlite') {
    const dir = await mkdtemp(join(tmpdir(), 'pv-db-'));
    const db = await openDatabase({ sqliteFile: join(dir, 'photovault.db') });
    return {
      db,
      drop: async () => {
        await db.destroy();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  const postgres = await createPostgresDatabase();
  const db = await openDatabase({ postgresUrl: postgres.url, poolSize: 4 });
  return {
    db,
    postgresUrl: postgres.url,
    drop: async () => {
      await db.destroy();
      await postgres.drop();
    },
  };
}

/** A new, empty PostgreSQL database of its own, and how to drop it. */
export function createPostgresDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  return createScratchDatabase(POSTGRES_ADMIN_URL, 'pv_test');
}

/** Defines the suite once per database kind; the PostgreSQL one is skipped (and says so) only outside CI. */
export function describeEachDatabase(name: string, suite: (kind: DatabaseKind) => void): void {
  describe(`${name} [sqlite]`, () => suite('sqlite'));
  describePostgres(`${name} [postgres]`, () => suite('postgres'));
}

/** Defines a suite that needs PostgreSQL; skipped (and saying so) only outside CI when it is not reachable. */
export function describePostgres(name: string, suite: () => void): void {
  if (postgresAvailable) describe(name, suite);
  else describe.skip(`${name} (skipped: PostgreSQL not reachable at ${POSTGRES_ADMIN_URL}, and not in CI)`, suite);
}
