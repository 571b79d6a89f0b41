/**
 * Child process of bench:sync, run twice on a folder, timing the scanner and the index alone, as
 * a daemon restarted on a folder it synced runs them:
 *
 *   node dist/bench/rescan.child.js index DIR    indexes the folder and marks every entry synced,
 *                                                as a daemon's first pass would
 *   node dist/bench/rescan.child.js rescan DIR   times a rescan with nothing changed
 *
 * Each prints one JSON line.
 */
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { keepYoungGenerationSmall } from '../src/daemon/heap.js';
import { loadIgnoreRules } from '../src/daemon/ignore-rules.js';
import { LocalIndex } from '../src/daemon/local-index.js';
import { scanFolder } from '../src/daemon/scanner.js';

export interface IndexFigures {
  files: number;
  indexSeconds: number;
}

export interface RescanFigures {
  files: number;
  unchanged: number;
  rescanSeconds: number;
}

const [mode, folder] = process.argv.slice(2);
if ((mode !== 'index' && mode !== 'rescan') || !folder) throw new Error('usage: rescan.child.js index|rescan DIR');
// As `photovault sync` and `backup` do.
keepYoungGenerationSmall();
const indexFile = join(folder, '.photovault', 'index.db');
const index = await LocalIndex.open(indexFile);
const ignored = await loadIgnoreRules(folder);
const started = performance.now();
if (mode === 'index') {
  const scan = await scanFolder(folder, index, { ignored });
  const figures: IndexFigures = { files: scan.changed.length + scan.unchanged, indexSeconds: (performance.now() - started) / 1000 };
  await index.close();
  // The server side of a first pass is not what this figure is about: only its outcome, every
  // entry in sync, matters to the rescan.
  const sqlite = new SQLite(indexFile);
  sqlite.prepare("UPDATE files SET synced_hash = content_hash, synced_version_id = 'synced'").run();
  sqlite.close();
  console.log(JSON.stringify(figures));
} else {
  const rescan = await scanFolder(folder, index, { ignored });
  const rescanSeconds = (performance.now() - started) / 1000;
  await index.close();
  const figures: RescanFigures = { files: rescan.unchanged + rescan.changed.length, unchanged: rescan.unchanged, rescanSeconds };
  console.log(JSON.stringify(figures));
}
