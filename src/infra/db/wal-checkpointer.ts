import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type SQLite from 'better-sqlite3';

/**
 * How often the thread checkpoints. A checkpoint with nothing new in the WAL only reads its
 * header; one after a burst copies what the burst wrote.
 */
const CHECKPOINT_INTERVAL_MS = 200;
/**
 * The writing connection's own automatic checkpoint stays on, far out (pages of 4 KiB: 40 MiB of
 * WAL), as a bound should the thread fall behind.
 */
const FALLBACK_AUTOCHECKPOINT_PAGES = 10_000;

// CommonJS, run by the worker thread: its own connection, a passive checkpoint on a timer.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { fileMustExist: true });
db.pragma('busy_timeout = 0');
parentPort.postMessage('ready');
const checkpoint = () => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch (error) {
    if (!String(error && error.code).startsWith('SQLITE_BUSY')) throw error;
  }
};
const timer = setInterval(checkpoint, workerData.intervalMs);
parentPort.once('message', () => {
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

/**
 * Moves a SQLite database's WAL checkpoints off the event loop. SQLite checkpoints inside the
 * commit that takes the WAL past wal_autocheckpoint pages: it copies pages into the database file
 * and flushes it, and better-sqlite3 runs that on the calling thread, so the server's event loop
 * stalled for it (about 0.5 ms per transaction on average on the development machine's disk).
 * Here a worker thread with a connection of its own checkpoints every CHECKPOINT_INTERVAL_MS
 * instead (PASSIVE: it never blocks the writer or readers), and the writer's own automatic
 * checkpoint is pushed far out. Crash safety is SQLite's either way: a checkpoint only copies
 * committed pages. stop() ends the thread (it closes its connection); ready settles once the
 * thread has its connection.
 */
export function checkpointInBackground(sqlite: SQLite.Database, file: string): BackgroundCheckpoints {
  sqlite.pragma(`wal_autocheckpoint = ${FALLBACK_AUTOCHECKPOINT_PAGES}`);
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { driver: createRequire(import.meta.url).resolve('better-sqlite3'), file, intervalMs: CHECKPOINT_INTERVAL_MS },
  });
  // It never keeps a process alive once it has its connection; until then it must: a process that
  // ends while the thread is still loading the driver's addon aborts ("FATAL ERROR: Error::New
  // napi_get_last_error_info"), which a short command (`user add`) met now and then at exit.
  const ready = new Promise<void>((resolve) => {
    worker.once('message', () => resolve());
    worker.once('exit', () => resolve());
  });
  void ready.then(() => worker.unref());
  // A failure of it costs only the background checkpoints: the writer's fallback checkpoint still bounds the WAL.
  worker.on('error', (error) => {
    if (!sqlite.open) return;
    sqlite.pragma('wal_autocheckpoint = 1000');
    process.emitWarning(`photovault: background WAL checkpoints of ${file} stopped: ${error.message}`);
  });
  return { stop: () => worker.postMessage('close'), ready };
}

/** The thread checkpointing a database in the background. */
export interface BackgroundCheckpoints {
  /** Ends the thread; it closes its connection first. */
  stop(): void;
  /** Settles once the thread has its connection (or has ended). */
  ready: Promise<void>;
}
