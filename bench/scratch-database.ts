import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * A new, empty PostgreSQL database of its own on the server of adminUrl (a URL whose user may
 * create databases), and how to drop it again: for the benches and the tests (test/support/databases.ts).
 */
export async function createScratchDatabase(adminUrl: string, namePrefix: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `${namePrefix}_${randomBytes(6).toString('hex')}`;
  const adminQuery = async (statement: string) => {
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    try {
      await admin.query(statement);
    } finally {
      await admin.end();
    }
  };
  await adminQuery(`CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  let dropped: Promise<void> | undefined;
  return { url: url.toString(), drop: () => (dropped ??= adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)) };
}
