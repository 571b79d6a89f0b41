import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkpointInBackground } from '../../src/infra/db/wal-checkpointer.js';

describe('checkpointInBackground', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pv-wal-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('copies committed pages into the database file from its own thread while the writer never checkpoints', async () => {
    const file = join(dir, 'x.db');
    const sqlite = new SQLite(file);
    sqlite.pragma('journal_mode = WAL');
    sqlite.exec('create table t (n integer, filler text)');
    const stop = checkpointInBackground(sqlite, file);
    try {
      // ~2 MiB in 200 transactions: far below the writer's own checkpoint threshold.
      const insert = sqlite.prepare('insert into t values (?, ?)');
      for (let i = 0; i < 200; i++) sqlite.transaction(() => insert.run(i, 'x'.repeat(10_000)))();
      const before = (await stat(file)).size;
      expect(before).toBeLessThan(100_000);
      const deadline = Date.now() + 10_000;
      while ((await stat(file)).size < 2_000_000 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      expect((await stat(file)).size).toBeGreaterThanOrEqual(2_000_000);
      expect(sqlite.prepare('select count(*) as n from t').get()).toEqual({ n: 200 });
    } finally {
      stop();
      sqlite.close();
    }
    // Whatever the thread left, the database reopens whole.
    const reopened = new SQLite(file);
    expect(reopened.prepare('select count(*) as n from t').get()).toEqual({ n: 200 });
    reopened.close();
  });
});
