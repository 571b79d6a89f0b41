/**
 * bench:sync — two-way sync figures of photovault (issue 3): initial sync of 2,000 files /
 * ~500 MiB from one device through the server to another, propagation latency of a new 200 KiB
 * file between two running daemons, bytes moved for a 1 KiB insert into 100 MiB, and a rescan of
 * 100,000 unchanged files with the memory it takes. Prints figures; asserts nothing.
 *
 * The Syncthing side of the comparison is not run yet; the figures the issue quotes for it are
 * printed beside ours as reference. PV_BENCH_SCALE (default 1) shrinks the data sets for a quick run.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadIgnoreRules } from '../src/daemon/ignore-rules.js';
import { LocalIndex } from '../src/daemon/local-index.js';
import { scanFolder } from '../src/daemon/scanner.js';
import { atExit, Cli, MiB, removeAtExit } from './support.js';

const SCALE = Number(process.env.PV_BENCH_SCALE ?? 1);
const REPO = resolve(fileURLToPath(import.meta.url), '../../..');
const PASSWORD = 'benchmark password';

interface Summary {
  uploaded: number;
  downloaded: number;
  bytesSent: number;
  bytesReceived: number;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'pv-bench-sync-'));
  removeAtExit(work);
  const cli = new Cli(join(REPO, 'bin', 'photovault'), { ...process.env, XDG_RUNTIME_DIR: join(work, 'run') });
  const dataDir = join(work, 'server');
  const server = await cli.startServer(dataDir);
  atExit(() => void server.stop());
  await cli.runOk(['user', 'add', 'alice', '--password-stdin', '--data', dataDir], { input: PASSWORD });
  const device = async (name: string) => {
    const config = join(work, `${name}-config`);
    const folder = join(work, name);
    await mkdir(folder, { recursive: true });
    const as = cli.with({ PHOTOVAULT_CONFIG_DIR: config });
    await as.runOk(['login', '--server', server.url, '--user', 'alice', '--password-stdin', '--device', name], { input: PASSWORD });
    return { folder, config, once: async () => JSON.parse((await as.runOk(['sync', folder, '--once', '--json'])).stdout) as Summary };
  };
  const a = await device('a');
  const b = await device('b');
  const rows: [string, string, string][] = [];

  // 1. Initial sync: 2,000 files, ~500 MiB, sizes spread around 256 KiB.
  const files = Math.round(2000 * SCALE);
  let total = 0;
  for (let i = 0; i < files; i++) {
    const size = 64 * 1024 + ((i * 7919) % (384 * 1024));
    total += size;
    await mkdir(join(a.folder, `d${i % 20}`), { recursive: true });
    await writeFile(join(a.folder, `d${i % 20}`, `f${i}.bin`), randomBytes(size));
  }
  let started = performance.now();
  await a.once();
  const upSeconds = (performance.now() - started) / 1000;
  started = performance.now();
  await b.once();
  const downSeconds = (performance.now() - started) / 1000;
  rows.push([
    `initial sync, ${files} files / ${(total / MiB).toFixed(0)} MiB, a -> server -> b`,
    `${(upSeconds + downSeconds).toFixed(1)} s (up ${upSeconds.toFixed(1)} s, down ${downSeconds.toFixed(1)} s)`,
    'Syncthing ~7 s (goal: half of it, ~3.5 s)',
  ]);

  // 2. Propagation latency between two running daemons, 10 new 200 KiB files.
  const daemons = [a, b].map((d) =>
    spawn(process.execPath, [cli.bin, 'sync', d.folder], {
      env: { ...process.env, PHOTOVAULT_CONFIG_DIR: d.config, XDG_RUNTIME_DIR: join(work, 'run') },
      stdio: 'ignore',
    }),
  );
  atExit(() => daemons.forEach((child) => child.kill('SIGKILL')));
  await new Promise((done) => setTimeout(done, 2000));
  const latencies: number[] = [];
  for (let i = 0; i < 10; i++) {
    const content = randomBytes(200 * 1024);
    const t0 = performance.now();
    await writeFile(join(a.folder, `new-${i}.bin`), content);
    const target = join(b.folder, `new-${i}.bin`);
    while (!(existsSync(target) && (await stat(target)).size === content.length && (await readFile(target)).equals(content))) {
      await new Promise((done) => setTimeout(done, 5));
      if (performance.now() - t0 > 60_000) throw new Error('a new file did not arrive within 60 s');
    }
    latencies.push(performance.now() - t0);
  }
  rows.push([
    'propagation of a new 200 KiB file, p50 / p90',
    `${percentile(latencies, 50).toFixed(0)} ms / ${percentile(latencies, 90).toFixed(0)} ms`,
    'Syncthing ~10 s (default watcher delay), ~1.1 s (1 s delay); goal p50 <= 300 ms, p90 <= 600 ms',
  ]);
  for (const child of daemons) child.kill('SIGTERM');
  await new Promise((done) => setTimeout(done, 1000));

  // 3. 1 KiB inserted in the middle of 100 MiB.
  const big = randomBytes(Math.round(100 * MiB * SCALE));
  await writeFile(join(a.folder, 'big.bin'), big);
  await a.once();
  await b.once();
  const middle = Math.floor(big.length / 2);
  await writeFile(join(a.folder, 'big.bin'), Buffer.concat([big.subarray(0, middle), randomBytes(1024), big.subarray(middle)]));
  const up = await a.once();
  const down = await b.once();
  rows.push([
    '1 KiB insert into 100 MiB, chunk bytes up + down',
    `${((up.bytesSent + down.bytesReceived) / 1024).toFixed(0)} KiB (+ manifests and HTTP)`,
    'rsync ~124 KB, Syncthing ~50 MiB; goal <= 16 KiB with protocol',
  ]);

  // 4. Rescan of 100,000 unchanged files, in this process: time and memory.
  const many = join(work, 'many');
  const count = Math.round(100_000 * SCALE);
  for (let d = 0; d < 100; d++) await mkdir(join(many, `d${d}`), { recursive: true });
  for (let i = 0; i < count; i++) await writeFile(join(many, `d${i % 100}`, `f${i}`), `${i}`);
  const index = await LocalIndex.open(join(many, '.photovault', 'index.db'));
  const ignored = await loadIgnoreRules(many);
  await scanFolder(many, index, { ignored });
  const before = process.memoryUsage().rss;
  started = performance.now();
  const rescan = await scanFolder(many, index, { ignored });
  const rescanSeconds = (performance.now() - started) / 1000;
  const rss = Math.max(before, process.memoryUsage().rss);
  await index.close();
  rows.push([
    `rescan of ${count} unchanged files (${rescan.unchanged} unchanged)`,
    `${rescanSeconds.toFixed(1)} s, process RSS ${(rss / MiB).toFixed(0)} MiB`,
    'Syncthing holds 2,000 files in ~80 MiB; goal RSS < 200 MiB',
  ]);

  const width = Math.max(...rows.map((r) => r[0].length));
  console.log(`\nphotovault sync benchmark (node ${process.version}, scale ${SCALE})\n`);
  for (const [what, ours, peer] of rows) console.log(`${what.padEnd(width)}  ${ours.padEnd(44)}  ${peer}`);
  await server.stop();
}

await main();
