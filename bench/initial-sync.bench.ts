/**
 * The initial-sync figure of bench:sync on its own, for work on it: the same data (2,000 files of
 * 64-448 KiB at scale 1), a fresh server, two devices of one user, and the CPU each process used.
 *
 *   npm run build && node dist/bench/initial-sync.bench.js
 *
 * Two ways to time it, each on a fresh server and fresh folders:
 * - sequential: `sync --once` on a (up), then on b (down), as bench:sync has always reported;
 * - live: both `photovault sync` daemons started at once, a holding the files and b empty, timed
 *   until b holds every file byte-identical: how bench:sync times Syncthing.
 *
 * Environment: PV_BENCH_SCALE (default 0.4: 800 files, 199 MiB), PV_BENCH_MODE (sequential,
 * live or both, the default), PV_BENCH_RUNS (rounds, default 1), PV_BENCH_BIN (the photovault
 * CLI to run, default this checkout's bin/photovault: point it at another build to compare),
 * PV_BENCH_DATA (a folder to keep the data set in across runs), PV_BENCH_PROF (a folder: every
 * process writes a --cpu-prof profile there).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, stat } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  atExit,
  flushDirtyPages,
  Cli,
  makeInitialSet,
  machineBusyCpuSeconds,
  MiB,
  ownCpuSeconds,
  processCpuSeconds,
  reapedChildrenCpuSeconds,
  removeAtExit,
  threadCpuDelta,
} from './support.js';

const SCALE = Number(process.env.PV_BENCH_SCALE ?? 0.4);
const MODE = process.env.PV_BENCH_MODE ?? 'both';
const RUNS = Number(process.env.PV_BENCH_RUNS ?? 1);
const REPO = resolve(fileURLToPath(import.meta.url), '../../..');
const BIN = resolve(process.env.PV_BENCH_BIN ?? join(REPO, 'bin', 'photovault'));
const PASSWORD = 'benchmark password';

/** Files and bytes under dir, leaving out dot-files and dot-folders (the daemon's state, temp files of downloads). */
export async function visibleTreeSize(dir: string): Promise<{ files: number; bytes: number }> {
  const total = { files: 0, bytes: 0 };
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (entry.name.startsWith('.')) continue;
    if (entry.isDirectory()) {
      const inner = await visibleTreeSize(join(dir, entry.name));
      total.files += inner.files;
      total.bytes += inner.bytes;
    } else if (entry.isFile()) {
      total.files++;
      total.bytes += (await stat(join(dir, entry.name)).catch(() => ({ size: 0 }))).size;
    }
  }
  return total;
}

/** SHA-256 of every visible file under dir, by relative path. */
export async function treeHashes(dir: string, prefix = ''): Promise<Map<string, string>> {
  const hashes = new Map<string, string>();
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) for (const [name, hash] of await treeHashes(path, `${prefix}${entry.name}/`)) hashes.set(name, hash);
    else if (entry.isFile())
      hashes.set(
        `${prefix}${entry.name}`,
        createHash('sha256')
          .update(await readFile(path))
          .digest('hex'),
      );
  }
  return hashes;
}

function sameTrees(a: Map<string, string>, b: Map<string, string>): boolean {
  return a.size === b.size && [...a].every(([path, hash]) => b.get(path) === hash);
}

interface Round {
  mode: string;
  wall: number;
  detail: string;
  cpu: { a: number; b: number; server: number };
  others: number;
}

async function setUp(work: string, env: NodeJS.ProcessEnv) {
  const runDir = join(work, 'run');
  const cli = new Cli(BIN, { ...env, XDG_RUNTIME_DIR: runDir });
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
    return { folder, config, as, runDir };
  };
  return { server, a: await device('a'), b: await device('b') };
}

async function sequential(work: string, initial: string, env: NodeJS.ProcessEnv, expected: Map<string, string>): Promise<Round> {
  const { server, a, b } = await setUp(work, env);
  await cp(initial, a.folder, { recursive: true });
  await flushDirtyPages();
  const busy = machineBusyCpuSeconds() - ownCpuSeconds();
  const server0 = server.cpuSeconds();
  const threads0 = server.threadCpuSeconds();
  const reaped0 = reapedChildrenCpuSeconds();
  let started = performance.now();
  await a.as.runOk(['sync', a.folder, '--once', '--json'], { timeoutSeconds: 1800 });
  const up = (performance.now() - started) / 1000;
  const reaped1 = reapedChildrenCpuSeconds();
  const server1 = server.cpuSeconds();
  started = performance.now();
  await b.as.runOk(['sync', b.folder, '--once', '--json'], { timeoutSeconds: 1800 });
  const down = (performance.now() - started) / 1000;
  const cpu = { a: reaped1 - reaped0, b: reapedChildrenCpuSeconds() - reaped1, server: server.cpuSeconds() - server0 };
  const threads = threadCpuDelta(threads0, server.threadCpuSeconds());
  const others = machineBusyCpuSeconds() - ownCpuSeconds() - busy - cpu.a - cpu.b - cpu.server;
  if (!sameTrees(await treeHashes(b.folder), expected)) throw new Error('sequential: b does not hold the files of a');
  await server.stop();
  return {
    mode: 'sequential',
    wall: up + down,
    detail: `up ${up.toFixed(1)} + down ${down.toFixed(1)} s; server CPU up ${(server1 - server0).toFixed(1)}; server threads: main ${threads.main.toFixed(1)}, pool ${threads.pool.toFixed(1)}, other ${threads.other.toFixed(1)} (${[...threads.otherByName].map(([name, seconds]) => `${name} ${seconds.toFixed(1)}`).join(', ')})`,
    cpu,
    others,
  };
}

async function live(
  work: string,
  initial: string,
  env: NodeJS.ProcessEnv,
  expected: Map<string, string>,
  total: { files: number; bytes: number },
) {
  const { server, a, b } = await setUp(work, env);
  await cp(initial, a.folder, { recursive: true });
  await flushDirtyPages();
  const busy = machineBusyCpuSeconds() - ownCpuSeconds();
  const server0 = server.cpuSeconds();
  const started = performance.now();
  const daemons: ChildProcess[] = [a, b].map((d) =>
    spawn(process.execPath, [BIN, 'sync', d.folder, '--json'], {
      env: { ...env, PHOTOVAULT_CONFIG_DIR: d.config, XDG_RUNTIME_DIR: d.runDir },
      stdio: ['ignore', d === b ? 'pipe' : 'ignore', 'inherit'],
    }),
  );
  atExit(() => daemons.forEach((child) => child.kill('SIGKILL')));
  // b is done when its passes have reported every file downloaded. Its own reports, not a walk of
  // its folder: walking 2,000 files every few ms took a CPU-second or more from the daemons.
  let downloaded = 0;
  let wall = 0;
  let cpu = { a: 0, b: 0, server: 0 };
  await new Promise<void>((done, fail) => {
    const timeout = setTimeout(() => fail(new Error('live: b did not get the files within 30 min')), 1_800_000);
    daemons[1]!.once('exit', (code) => fail(new Error(`live: b's daemon exited (${code}) with ${downloaded} files downloaded`)));
    daemons[1]!.stdout!.setEncoding('utf8').on('data', (text: string) => {
      for (const [, count] of text.matchAll(/"downloaded": (\d+)/g)) downloaded += Number(count);
      if (downloaded < total.files || wall > 0) return;
      wall = (performance.now() - started) / 1000;
      cpu = { a: processCpuSeconds(daemons[0]!.pid!), b: processCpuSeconds(daemons[1]!.pid!), server: server.cpuSeconds() - server0 };
      clearTimeout(timeout);
      done();
    });
  });
  if (!sameTrees(await treeHashes(b.folder), expected)) throw new Error('live: b does not hold the files of a');
  const others = machineBusyCpuSeconds() - ownCpuSeconds() - busy - cpu.a - cpu.b - cpu.server;
  await Promise.all(daemons.map((child) => new Promise((done) => (child.once('exit', done), child.kill('SIGTERM')))));
  await server.stop();
  return { mode: 'live', wall, detail: 'both daemons running, until b holds every file', cpu, others };
}

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
      const dir = join(work, `${mode}-${round}`);
      const result = mode === 'live' ? await live(dir, dataDir, env, expected, total) : await sequential(dir, dataDir, env, expected);
      const sum = result.cpu.a + result.cpu.b + result.cpu.server;
      console.log(
        `${result.mode.padEnd(10)} wall ${result.wall.toFixed(1)} s (${result.detail}); CPU ${sum.toFixed(1)} s = a ${result.cpu.a.toFixed(1)} + b ${result.cpu.b.toFixed(1)} + server ${result.cpu.server.toFixed(1)}; other processes ${Math.max(0, result.others).toFixed(1)} s; load ${loadavg()[0]!.toFixed(2)}`,
      );
    }
  }
}

await main();
