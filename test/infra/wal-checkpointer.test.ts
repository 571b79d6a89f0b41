import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { execFile } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import SQLite from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkpointInBackground } from '../../src/infra/db/wal-checkpointer.js';

const execFileAsync = promisify(execFile);
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

describe('checkpointInBackground', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pv-wal-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps a process that is done at once alive until the thread has its connection, so it never ends mid-way through loading the driver', async () => {
    // Compiled code in a process of its own, done as soon as it has started the thread.
    const module = pathToFileURL(join(REPO, 'dist', 'src', 'infra', 'db', 'wal-checkpointer.js')).href;
    const driver = pathToFileURL(createRequire(import.meta.url).resolve('better-sqlite3')).href;
    const script = `
      import SQLite from ${JSON.stringify(driver)};
      import { checkpointInBackground } from ${JSON.stringify(module)};
      const file = ${JSON.stringify(join(dir, 'quick.db'))};
      const db = new SQLite(file);
      db.pragma('journal_mode = WAL');
      let ready = false;
      void checkpointInBackground(db, file).ready.then(() => (ready = true));
      process.on('exit', () => process.stdout.write(ready ? 'ready' : 'not ready'));
    `;
    await writeFile(join(dir, 'quick.mjs'), script);
    const { stdout, stderr } = await execFileAsync(process.execPath, [join(dir, 'quick.mjs')]);
    expect(stderr).toBe('');
    expect(stdout).toBe('ready');
  });

  it('copies committed pages into the database file from its own thread while the writer never checkpoints', async () => {
    const file = join(dir, 'x.db');
    const sqlite = new SQLite(file);
    sqlite.pragma('journal_mode = WAL');
    sqlite.exec('create table t (n integer, filler text)');
    const { stop } = checkpointInBackground(sqlite, file);
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
