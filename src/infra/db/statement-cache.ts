import type SQLite from 'better-sqlite3';
import type { SqliteDatabase } from 'kysely';

const STATEMENT_CACHE_SIZE = 256;

/**
 * Kysely prepares every query anew; preparing costs more than running the small indexed queries
 * that dominate (one per request for auth, a few per uploaded chunk, the bus's claims and acks),
 * so reuse prepared statements by SQL text, least recently used out first. A cached statement is
 * never busy when reused: Kysely's SQLite driver runs one query at a time on its one connection,
 * and holds it while a query streams.
 */
export function withStatementCache(sqlite: SQLite.Database): SqliteDatabase {
  const cache = new Map<string, SQLite.Statement>();
  return {
    close: () => sqlite.close(),
    prepare(sql: string) {
      let statement = cache.get(sql);
      if (statement) {
        cache.delete(sql);
      } else {
        statement = sqlite.prepare(sql);
        if (cache.size >= STATEMENT_CACHE_SIZE) cache.delete(cache.keys().next().value!);
      }
      cache.set(sql, statement);
      return statement;
    },
  };
}
