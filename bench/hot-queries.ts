/**
 * The metadata's hot queries on PostgreSQL (the change feed since N, the chunk index, a folder
 * listing) and tables to run them on at any size: bench/explain.bench.ts fills a million rows per
 * table, the plan test (test/server/hot-queries.test.ts) fifty thousand. The queries are the
 * repositories' own builders, so what is examined is what the server runs.
 */
import { createHash } from 'node:crypto';
import { type Compilable, type Explainable, sql } from 'kysely';
import type { Db } from '../src/infra/db/database.js';
import { FilesRepository } from '../src/server/files/files.repository.js';
import { ChangeFeedRepository } from '../src/server/sync/change-feed.repository.js';
import { UploadRepository } from '../src/server/upload/upload.repository.js';

/**
 * Rows of each table per user. Plans depend mostly on how much the one user a request is about
 * holds, so every size has users of this size, only more or fewer of them (5 at 50,000 rows, 100
 * at a million): the small tables of the plan test get the plans of the large ones.
 */
const ROWS_PER_USER = 10_000;
const CHUNK_LENGTH = 64 * 1024;

/** The filled tables' shape for a requested number of rows (rounded to whole users, at least 5). */
function shapeOf(rows: number) {
  const users = Math.max(5, Math.round(rows / ROWS_PER_USER));
  const n = users * ROWS_PER_USER;
  return { users, n, objects: n / 2 };
}

/** A query as the server issues it, and the indexes its plan must use. */
export interface HotQuery {
  name: string;
  /** What the query does and on which data, for the reader of the bench's output. */
  scenario: string;
  indexes: string[];
  /** The rows come in the index's order, so a page stops after its last row: no Sort in the plan. */
  inIndexOrder: boolean;
  /**
   * The smallest tables (rows each) the plan is known to be right on; on small tables reading
   * one whole can be cheaper than many index lookups, and PostgreSQL then rightly does so.
   */
  minRows?: number;
  /** Rows it returns from the filled tables. */
  rows: number;
  /** The query, built by its repository over this database. */
  query(db: Db): Compilable & Explainable;
}

/** One node of a PostgreSQL plan (EXPLAIN (FORMAT JSON)), the fields read here. */
export interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Actual Total Time'?: number;
  'Shared Hit Blocks'?: number;
  'Shared Read Blocks'?: number;
  Plans?: PlanNode[];
}

export interface Explained {
  plan: PlanNode;
  planningMs?: number;
  executionMs?: number;
}

/** Content hash of the k-th object of the filled tables: the same in SQL and here. */
export function objectHash(k: number): string {
  return sha256(`object-${k}`);
}

/** Hash of the k-th chunk: object k holds chunks 2k and 2k + 1. */
function chunkHash(k: number): string {
  return sha256(`chunk-${k}`);
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The same hash in SQL, over an integer expression. */
const sqlHash = (prefix: string, expression: string) => `encode(sha256(convert_to('${prefix}-' || (${expression}), 'UTF8')), 'hex')`;

/**
 * Fills a freshly migrated PostgreSQL database with about `rows` rows in each hot table (files,
 * file_versions, object_chunks, changes; objects gets half as many, of two chunks each), 10,000
 * per user, one INSERT ... SELECT over generate_series per table, then ANALYZE. user-0 keeps all
 * its entries in one folder, `big`; the others have folders of 100 entries; one entry in 20 is in
 * the trash. Each object is held by two versions of one user.
 */
export async function fillHotTables(db: Db, rows: number): Promise<void> {
  const { users, n, objects } = shapeOf(rows);
  // Generated SQL, PostgreSQL only (generate_series, sha256): no values from outside, all integers.
  const statements = [
    `insert into users (id, name, password_hash, is_admin, created_at, change_seq)
       select 'user-' || u, 'user ' || u, 'x', 0, 0, ${n / users} from generate_series(0, ${users - 1}) u`,
    `insert into objects (hash, size, bucket, created_at)
       select ${sqlHash('object', 'k')}, ${2 * CHUNK_LENGTH}, 'uploads', 0 from generate_series(0, ${objects - 1}) k`,
    `insert into object_chunks (object_hash, "offset", chunk_hash, length)
       select ${sqlHash('object', 'k')}, o * ${CHUNK_LENGTH}, ${sqlHash('chunk', '2 * k + o')}, ${CHUNK_LENGTH}
       from generate_series(0, ${objects - 1}) k, generate_series(0, 1) o`,
    `insert into files (id, owner_id, dir, name, kind, head_version_id, content_hash, size, mtime, created_at, updated_at, deleted_at, trash_id)
       select 'file-' || i, 'user-' || (i % ${users}),
         case when i % ${users} = 0 then 'big' else 'd' || (i / ${users} / 100) end,
         'f' || lpad((i / ${users})::text, 7, '0'), 'file', 'version-' || i, ${sqlHash('object', `i % ${objects}`)},
         ${2 * CHUNK_LENGTH}, 0, 0, 0,
         case when i / ${users} % 20 = 19 then 1 end, case when i / ${users} % 20 = 19 then 'trash-' || i end
       from generate_series(0, ${n - 1}) i`,
    `insert into file_versions (id, file_id, owner_id, content_hash, size, mtime, created_at)
       select 'version-' || i, 'file-' || i, 'user-' || (i % ${users}), ${sqlHash('object', `i % ${objects}`)}, ${2 * CHUNK_LENGTH}, 0, 0
       from generate_series(0, ${n - 1}) i`,
    `insert into changes (owner_id, seq, kind, path, entry_kind, file_id, version_id, content_hash, size, mtime, at)
       select 'user-' || (i % ${users}), i / ${users} + 1, 'upsert', 'd/f' || i, 'file', 'file-' || i, 'version-' || i,
         ${sqlHash('object', `i % ${objects}`)}, ${2 * CHUNK_LENGTH}, 0, 0
       from generate_series(0, ${n - 1}) i`,
  ];
  for (const statement of statements) await sql.raw(statement).execute(db);
  await sql`analyze`.execute(db);
}

/**
 * The hot queries against tables filled with `rows` rows, with the arguments a request would
 * bring: a device half its user's changes behind, a page in the middle of a 10,000-entry folder, the
 * chunk hashes of a new upload (40% in the user's objects, 20% only in another user's, the rest
 * new) for a 4 MiB photo (64 chunks of 64 KiB) and for a full batch of 500, the versions a
 * request for file contents names, and the chunk list of one object.
 */
export function hotQueries(rows: number): HotQuery[] {
  const { users } = shapeOf(rows);
  const files = (db: Db) => new FilesRepository(db, new ChangeFeedRepository(db));
  // Object k is held by user k % users (its versions k and k + n/2 have the same owner), and
  // has chunks 2k and 2k + 1.
  const chunksOfObjectsOf = (user: number, chunks: number) =>
    Array.from({ length: chunks }, (_, c) => chunkHash(2 * (user + users * Math.floor(c / 2)) + (c % 2)));
  const chunkLookup = (hashes: number): HotQuery => {
    const owned = Math.round(hashes * 0.4);
    const others = Math.round(hashes * 0.2);
    const sample = [
      ...chunksOfObjectsOf(3, owned),
      ...chunksOfObjectsOf(4, others),
      ...Array.from({ length: hashes - owned - others }, (_, j) => sha256(`new-chunk-${j}`)),
    ];
    return {
      name: `chunk lookup, ${hashes} hashes`,
      scenario: `${hashes} chunk hashes of a new upload: ${owned} in user-3's objects, ${others} in another user's, the rest new`,
      indexes: ['object_chunks_chunk', 'objects_pkey', 'file_versions_owner_content'],
      inIndexOrder: false,
      rows: owned,
      query: (db) => new UploadRepository(db).ownedChunksQuery('user-3', sample),
    };
  };
  return [
    {
      name: 'change feed since N',
      scenario: `user-1's changes after seq ${ROWS_PER_USER / 2} of ${ROWS_PER_USER}: a page of 500 (+1)`,
      indexes: ['changes_pk'],
      inIndexOrder: true,
      rows: 501,
      query: (db) => new ChangeFeedRepository(db).sinceQuery('user-1', ROWS_PER_USER / 2, 501),
    },
    {
      name: 'folder listing',
      scenario: `a page of 200 (+1) from the middle of user-0's folder of ${ROWS_PER_USER} entries`,
      indexes: ['files_live_path'],
      inIndexOrder: true,
      rows: 201,
      query: (db) => files(db).listQuery('user-0', 'big', `f${String(ROWS_PER_USER / 2).padStart(7, '0')}`, 201),
    },
    chunkLookup(64),
    // The batch locateOwnedChunks() sends at most; on 50,000-row tables reading objects whole
    // is cheaper than 500 lookups.
    { ...chunkLookup(500), minRows: 1_000_000 },
    {
      name: 'versions by id',
      scenario: `the versions a request for 32 files' contents names: 32 of user-3's and 4 of user-4's, which it must not get`,
      indexes: ['file_versions_pkey'],
      inIndexOrder: false,
      rows: 32,
      query: (db) => {
        const versionsOf = (user: number, count: number) => Array.from({ length: count }, (_, j) => `version-${user + users * (j * 7)}`);
        return files(db).versionsQuery('user-3', [...versionsOf(3, 32), ...versionsOf(4, 4)]);
      },
    },
    {
      name: 'chunk list of an object',
      scenario: 'the chunk index of one object, in offset order',
      indexes: ['object_chunks_pk'],
      inIndexOrder: false,
      rows: 2,
      query: (db) => files(db).manifestQuery(objectHash(3)),
    },
  ];
}

/** EXPLAIN of the query, with ANALYZE and BUFFERS (it then runs) or the plan alone. */
export async function explain(query: Explainable, options: { analyze: boolean }): Promise<Explained> {
  const [row] = await query.explain('json', options.analyze ? sql`analyze, buffers` : undefined);
  const [result] = row!['QUERY PLAN'] as { Plan: PlanNode; 'Planning Time'?: number; 'Execution Time'?: number }[];
  return { plan: result!.Plan, planningMs: result!['Planning Time'], executionMs: result!['Execution Time'] };
}

/** Every node of the plan, depth first, with its depth. */
export function planNodes(plan: PlanNode, depth = 0): { node: PlanNode; depth: number }[] {
  return [{ node: plan, depth }, ...(plan.Plans ?? []).flatMap((child) => planNodes(child, depth + 1))];
}

/** What is wrong with the plan: tables read whole, intended indexes unused, rows sorted. Empty when it is right. */
export function planProblems(plan: PlanNode, hot: Pick<HotQuery, 'indexes' | 'inIndexOrder'>): string[] {
  const nodes = planNodes(plan).map(({ node }) => node);
  const used = new Set(nodes.map((node) => node['Index Name']).filter((name) => name !== undefined));
  return [
    ...nodes.filter((node) => node['Node Type'] === 'Seq Scan').map((node) => `Seq Scan on ${node['Relation Name']}`),
    ...hot.indexes.filter((index) => !used.has(index)).map((index) => `${index} not used`),
    ...(hot.inIndexOrder && nodes.some((node) => node['Node Type'] === 'Sort') ? ['rows sorted instead of read in index order'] : []),
  ];
}
