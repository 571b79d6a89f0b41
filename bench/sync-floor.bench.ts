/**
 * The floor of bench:sync's initial sync (bench/sync-floor.ts), alone: each step timed on the
 * initial set (2,000 files of 64-448 KiB at scale 1), and what each design must add up to.
 * bench:sync prints the same floor beside its figures, measured in the same run.
 *
 *   npm run bench:sync-floor
 *
 * Environment: PV_BENCH_SCALE (default 1), PV_BENCH_DATA (a folder to keep the data set in across
 * runs, as initial-sync.bench).
 */
import { readdirSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { makeInitialSet, MiB, removeAtExit, table } from './support.js';
import { measureSyncFloor } from './sync-floor.js';

const SCALE = Number(process.env.PV_BENCH_SCALE ?? 1);

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'pv-bench-floor-'));
  removeAtExit(work);
  const dataDir = process.env.PV_BENCH_DATA ? resolve(process.env.PV_BENCH_DATA, `scale-${SCALE}`) : join(work, 'initial');
  try {
    readdirSync(join(dataDir, 'd0'));
  } catch {
    await makeInitialSet(dataDir, SCALE);
  }
  const floor = await measureSyncFloor(dataDir, join(work, 'written'));
  const s = (seconds: number) => `${seconds.toFixed(2)} s`;
  console.log(`initial-sync floor: ${floor.files} files / ${(floor.bytes / MiB).toFixed(0)} MiB, ${floor.cores} cores\n`);
  console.log(
    table(
      'step, alone',
      ['CPU'],
      floor.steps.map(([name, seconds]) => [name, s(seconds)]),
    ),
  );
  console.log();
  console.log(
    table(
      'floor of the initial sync',
      ['CPU', `wall on ${floor.cores} cores at best`],
      [
        ['photovault: 2 reads, cut, 5 hashes, 2 writes, 2 transfers', s(floor.photovault), s(floor.photovault / floor.cores)],
        ['Syncthing: read, 2 hashes, write, transfer', s(floor.syncthing), s(floor.syncthing / floor.cores)],
        ['photovault / Syncthing', `${(floor.photovault / floor.syncthing).toFixed(2)}x`, ''],
      ],
    ),
  );
}

await main();
