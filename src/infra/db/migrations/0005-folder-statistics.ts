import { type Kysely, PostgresAdapter, sql } from 'kysely';

// A folder listing reads its page from files_live_path in name order and stops after it, but
// PostgreSQL only takes that plan when it knows the folder is big. It estimated owner and folder
// apart (1% of the rows are this user's, 1% are in folders so named: 0.01% of the table) while a
// folder belongs to one owner, so at a million rows a 10,000-entry folder looked like 100 rows and
// every page read and sorted the whole folder (docs/benchmarks.md). Statistics on the pair give
// the biggest folders (the most common pairs) their true size. SQLite's planner reads the index
// in order anyway, and has no such statistics: this migration does nothing there.
export async function up(db: Kysely<any>): Promise<void> {
  if (!(db.getExecutor().adapter instanceof PostgresAdapter)) return;
  await sql`create statistics files_owner_dir (mcv) on owner_id, dir from files`.execute(db);
  // Gather them now rather than at the next autovacuum: a few seconds on a million files.
  await sql`analyze files`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  if (!(db.getExecutor().adapter instanceof PostgresAdapter)) return;
  await sql`drop statistics files_owner_dir`.execute(db);
}
