/**
 * The initial-sync figure of bench:sync on its own, for work on it: the same data (2,000 files of
 * 64-448 KiB at scale 1), a fresh server, two devices of one user, and the CPU each process used.
 *
 *   npm run build && node dist/bench/initial-sync.bench.js
 *
 * Two ways to time it (bench/initial-sync.ts), each on a fresh server and fresh folders:
 * sequential (`sync --once` on a, then on b) and live (both daemons running, as Syncthing is timed).
 *
 * Environment: PV_BENCH_SCALE (default 0.4: 800 files, 199 MiB), PV_BENCH_MODE (sequential,
 * live or both, the default), PV_BENCH_RUNS (rounds, default 1), PV_BENCH_BIN (the photovault
 * CLI to run, default this checkout's bin/photovault: point it at another build to compare),
 * PV_BENCH_DATA (a folder to keep the data set in across runs), PV_BENCH_PROF (a folder: every
 * process writes a --cpu-prof profile there).
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { liveInitialSync, sequentialInitialSync, treeHashes, visibleTreeSize } from './initial-sync.js';
import { makeInitialSet, MiB, removeAtExit } from './support.js';

const SCALE = Number(process.env.PV_BENCH_SCALE ?? 0.4);
const MODE = process.env.PV_BENCH_MODE ?? 'both';
const RUNS = Number(process.env.PV_BENCH_RUNS ?? 1);
const REPO = resolve(fileURLToPath(import.meta.url), '../../..');
const BIN = resolve(process.env.PV_BENCH_BIN ?? join(REPO, 'bin', 'photovault'));

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'pv-bench-initial-'));
  removeAtExit(work);
  const dataDir = process.env.PV_BENCH_DATA ? resolve(process.env.PV_BENCH_DATA, `scale-${SCALE}`) : join(work, 'initial');
  if (!existsSync(join(dataDir, 'd0'))) await makeInitialSet(dataDir, SCALE);
  const total = await visibleTreeSize(dataDir);
  const expected = await treeHashes(dataDir);
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (process.env.PV_BENCH_PROF) {
    await mkdir(process.env.PV_BENCH_PROF, { recursive: true });
    env.NODE_OPTIONS = `${env.NODE_OPTIONS ?? ''} --cpu-prof --cpu-prof-dir=${resolve(process.env.PV_BENCH_PROF)}`.trim();
  }
  console.log(
    `initial sync: ${total.files} files / ${(total.bytes / MiB).toFixed(0)} MiB, ${BIN}, load average ${loadavg()[0]!.toFixed(2)}`,
  );
  const modes = MODE === 'both' ? ['sequential', 'live'] : [MODE];
  for (let round = 0; round < RUNS; round++) {
    for (const mode of modes) {
      const run = { bin: BIN, work: join(work, `${mode}-${round}`), initial: dataDir, env, expected };
      const result = mode === 'live' ? await liveInitialSync(run) : await sequentialInitialSync(run);
      const sum = result.cpu.a + result.cpu.b + result.cpu.server;
      console.log(
        `${result.mode.padEnd(10)} wall ${result.wall.toFixed(1)} s (${result.detail}); CPU ${sum.toFixed(1)} s = a ${result.cpu.a.toFixed(1)} + b ${result.cpu.b.toFixed(1)} + server ${result.cpu.server.toFixed(1)}; other processes ${Math.max(0, result.others).toFixed(1)} s; load ${loadavg()[0]!.toFixed(2)}`,
      );
    }
  }
}

await main();
