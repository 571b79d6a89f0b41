/**
 * The initial sync of a data set from device a through a fresh server to device b, timed two
 * ways, for bench:sync and initial-sync.bench:
 * - sequential: `sync --once` on a (up), then on b (down);
 * - live: both `photovault sync` daemons started at once, a holding the files and b empty, timed
 *   until b's daemon has reported every file downloaded: how bench:sync times Syncthing.
 * Each run checks that b ends up with exactly a's files.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  atExit,
  flushDirtyPages,
  Cli,
  machineBusyCpuSeconds,
  ownCpuSeconds,
  processCpuSeconds,
  reapedChildrenCpuSeconds,
  threadCpuDelta,
} from './support.js';

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

export function sameTrees(a: Map<string, string>, b: Map<string, string>): boolean {
  return a.size === b.size && [...a].every(([path, hash]) => b.get(path) === hash);
}

/** An initial sync to time: a fresh server, two devices of one user in work, a holding the files of initial. */
export interface InitialSyncRun {
  /** The photovault CLI to run. */
  bin: string;
  work: string;
  initial: string;
  env: NodeJS.ProcessEnv;
  /** SHA-256 of every file of initial, by path (treeHashes): b must end up holding exactly these. */
  expected: Map<string, string>;
}

/** One timed initial sync: wall seconds, what they were made of, and the CPU each process used. */
export interface Round {
  mode: string;
  wall: number;
  detail: string;
  cpu: { a: number; b: number; server: number };
  others: number;
}

/**
 * A fresh server with devices a and b of one user, a holding the initial files, dirty pages
 * flushed: where the clock starts. otherCpu() then tells the CPU other processes used since.
 */
async function setUp({ bin, work, env, initial }: InitialSyncRun) {
  const runDir = join(work, 'run');
  const cli = new Cli(bin, { ...env, XDG_RUNTIME_DIR: runDir });
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
  const [a, b] = [await device('a'), await device('b')];
  await cp(initial, a.folder, { recursive: true });
  await flushDirtyPages();
  const busy = machineBusyCpuSeconds() - ownCpuSeconds();
  const otherCpu = (cpu: Round['cpu']) => machineBusyCpuSeconds() - ownCpuSeconds() - busy - cpu.a - cpu.b - cpu.server;
  return { server, a, b, otherCpu };
}

export async function sequentialInitialSync(run: InitialSyncRun): Promise<Round> {
  const { server, a, b, otherCpu } = await setUp(run);
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
  const others = otherCpu(cpu);
  if (!sameTrees(await treeHashes(b.folder), run.expected)) throw new Error('sequential: b does not hold the files of a');
  await server.stop();
  return {
    mode: 'sequential',
    wall: up + down,
    detail: `up ${up.toFixed(1)} + down ${down.toFixed(1)} s; server CPU up ${(server1 - server0).toFixed(1)}; server threads: main ${threads.main.toFixed(1)}, pool ${threads.pool.toFixed(1)}, other ${threads.other.toFixed(1)} (${[...threads.otherByName].map(([name, seconds]) => `${name} ${seconds.toFixed(1)}`).join(', ')})`,
    cpu,
    others,
  };
}

export async function liveInitialSync(run: InitialSyncRun): Promise<Round> {
  const { expected, env } = run;
  const { server, a, b, otherCpu } = await setUp(run);
  const server0 = server.cpuSeconds();
  const started = performance.now();
  const daemons: ChildProcess[] = [a, b].map((d) =>
    spawn(process.execPath, [run.bin, 'sync', d.folder, '--json'], {
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
      if (downloaded < expected.size || wall > 0) return;
      wall = (performance.now() - started) / 1000;
      cpu = { a: processCpuSeconds(daemons[0]!.pid!), b: processCpuSeconds(daemons[1]!.pid!), server: server.cpuSeconds() - server0 };
      clearTimeout(timeout);
      done();
    });
  });
  if (!sameTrees(await treeHashes(b.folder), expected)) throw new Error('live: b does not hold the files of a');
  const others = otherCpu(cpu);
  await Promise.all(daemons.map((child) => new Promise((done) => (child.once('exit', done), child.kill('SIGTERM')))));
  await server.stop();
  return { mode: 'live', wall, detail: 'both daemons running, until b holds every file', cpu, others };
}
