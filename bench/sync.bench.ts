/**
 * bench:sync — two-way sync figures of photovault (issue 3), side by side with Syncthing on the
 * same data: initial sync of 2,000 files / ~500 MiB from one device to another (photovault through
 * its server; timed as `sync --once` on a then b, and with both daemons running as Syncthing is
 * timed), propagation latency of a new 200 KiB file between two running daemons, bytes on
 * the wire for a 1 KiB insert into 100 MiB, a rescan of 100,000 unchanged files, and the memory
 * of a daemon holding them; and, measured in the same run, the floor of that initial sync for each
 * design (bench/sync-floor.ts) beside the goal. Prints figures and the ratio photovault /
 * Syncthing; asserts nothing.
 *
 *   ./scripts/setup.sh --bench    # once: installs Debian's syncthing
 *   npm run bench:sync
 *
 * Syncthing runs as two daemons on 127.0.0.1 only (bench/syncthing.ts: no discovery, relays,
 * NAT or usage reporting), sharing one folder, watcher on. Environment: PV_BENCH_SCALE (default
 * 1) shrinks the data sets; PV_BENCH_SKIP_SLOW=1 takes 3 latency samples instead of 10, for
 * development only (the figure is over 10).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FolderStatus } from '../src/daemon/control-socket.js';
import { liveInitialSync, sameTrees, treeHashes } from './initial-sync.js';
import type { IndexFigures, RescanFigures } from './rescan.child.js';
import {
  atExit,
  flushDirtyPages,
  ByteCountingProxy,
  Cli,
  makeInitialSet,
  machineBusyCpuSeconds,
  MiB,
  ownCpuSeconds,
  processPeakRssBytes,
  processRssBytes,
  reapedChildrenCpuSeconds,
  removeAtExit,
  runOk,
} from './support.js';
import { measureSyncFloor } from './sync-floor.js';
import { findSyncthing, SyncthingDevice, syncthingPair, waitConnected, waitInSync } from './syncthing.js';

const SCALE = Number(process.env.PV_BENCH_SCALE ?? 1);
const LATENCY_RUNS = process.env.PV_BENCH_SKIP_SLOW === '1' ? 3 : 10;
const REPO = resolve(fileURLToPath(import.meta.url), '../../..');
const PASSWORD = 'benchmark password';
const FOLDER_ID = 'bench';
/** Syncthing's default fsWatcherDelayS, and the short delay the issue also asks for. */
const DEFAULT_WATCHER_DELAY = 10;
const SHORT_WATCHER_DELAY = 1;

interface Summary {
  uploaded: number;
  downloaded: number;
  bytesSent: number;
  bytesReceived: number;
}

/** The data both sides sync, made once. */
interface DataSet {
  /** Folder holding the initial set (d0..d19/f<i>.bin), and the SHA-256 of each of its files. */
  initial: string;
  expected: Map<string, string>;
  files: number;
  bytes: number;
  /** The 100 MiB file, and the same with 1 KiB inserted in the middle. */
  big: Buffer;
  inserted: Buffer;
  /** Folder of the many small files for the rescan, and how many. */
  many: string;
  manyFiles: number;
}

interface PeerFigures {
  initialSeconds: number;
  initialDetail: string;
  /** photovault's initial sync timed as Syncthing's is: both daemons running (Syncthing has only that one). */
  live?: { seconds: number; detail: string };
  latencies: Map<string, number[]>;
  insertBytes: number;
  insertDetail: string;
  rescanSeconds: number;
  rescanDetail: string;
  rssBytes: number;
  rssDetail: string;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

async function makeDataSet(work: string): Promise<DataSet> {
  // Initial sync: 2,000 files, ~500 MiB, sizes spread from 64 to 448 KiB.
  const initial = join(work, 'source', 'initial');
  const { files, bytes } = await makeInitialSet(initial, SCALE);
  const big = randomBytes(Math.round(100 * MiB * SCALE));
  const middle = Math.floor(big.length / 2);
  const inserted = Buffer.concat([big.subarray(0, middle), randomBytes(1024), big.subarray(middle)]);
  // Rescan: 100,000 small files in 100 folders.
  const many = join(work, 'source', 'many');
  const manyFiles = Math.round(100_000 * SCALE);
  for (let d = 0; d < 100; d++) await mkdir(join(many, `d${d}`), { recursive: true });
  for (let i = 0; i < manyFiles; i++) await writeFile(join(many, `d${i % 100}`, `f${i}`), `${i}`);
  return { initial, expected: await treeHashes(initial), files, bytes, big, inserted, many, manyFiles };
}

/** Writes `runs` new 200 KiB files into `from` one at a time; the milliseconds until each is whole in `to`. */
async function propagationLatencies(from: string, to: string, tag: string, runs: number): Promise<number[]> {
  const latencies: number[] = [];
  for (let i = 0; i < runs; i++) {
    const content = randomBytes(200 * 1024);
    const name = `new-${tag}-${i}.bin`;
    const target = join(to, name);
    const t0 = performance.now();
    await writeFile(join(from, name), content);
    while (!(existsSync(target) && (await stat(target)).size === content.length && (await readFile(target)).equals(content))) {
      await sleep(5);
      if (performance.now() - t0 > 120_000) throw new Error(`${name} did not arrive in ${to} within 120 s`);
    }
    latencies.push(performance.now() - t0);
  }
  return latencies;
}

/** Resolves once `path` holds exactly `content`. */
async function waitForContent(path: string, content: Buffer, timeoutSeconds = 600): Promise<void> {
  const deadline = performance.now() + timeoutSeconds * 1000;
  while (!(existsSync(path) && (await stat(path)).size === content.length && (await readFile(path)).equals(content))) {
    if (performance.now() > deadline) throw new Error(`${path} did not get the expected content within ${timeoutSeconds} s`);
    await sleep(50);
  }
}

/**
 * CPU seconds the measured processes used over a stretch of time, and how much the rest of the
 * machine used meanwhile (besides this harness): the load that makes a wall-time figure noisy.
 */
class CpuWatch {
  private readonly measuredBefore: number;
  private readonly busyBefore = machineBusyCpuSeconds();
  private readonly ownBefore = ownCpuSeconds();

  constructor(private readonly measured: () => number) {
    this.measuredBefore = measured();
  }

  /** "CPU 12.3 s, others 4.5 s"; `measuredNow` overrides the reading of measured(). */
  read(measuredNow = this.measured()): string {
    const used = measuredNow - this.measuredBefore;
    const others = machineBusyCpuSeconds() - this.busyBefore - used - (ownCpuSeconds() - this.ownBefore);
    return `CPU ${used.toFixed(1)} s, other processes ${Math.max(0, others).toFixed(1)} s`;
  }
}

function stopChild(child: ChildProcess, graceSeconds = 15): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceSeconds * 1000);
    child.once('exit', () => {
      clearTimeout(timer);
      done();
    });
    child.kill('SIGTERM');
  });
}

// ---------------------------------------------------------------------------------------------
// photovault.

async function photovaultFigures(work: string, data: DataSet): Promise<PeerFigures> {
  const bin = join(REPO, 'bin', 'photovault');
  // 0. Initial sync with both daemons running, on a server of its own, as Syncthing's is timed.
  const liveWork = join(work, 'pv-live');
  const live = await liveInitialSync({ bin, work: liveWork, initial: data.initial, env: process.env, expected: data.expected });
  await rm(liveWork, { recursive: true, force: true });
  const liveCpu = `CPU ${(live.cpu.a + live.cpu.b + live.cpu.server).toFixed(1)} s, other processes ${Math.max(0, live.others).toFixed(1)} s`;

  const runDir = join(work, 'run');
  const cli = new Cli(bin, { ...process.env, XDG_RUNTIME_DIR: runDir });
  const dataDir = join(work, 'pv-server');
  const server = await cli.startServer(dataDir);
  atExit(() => void server.stop());
  await cli.runOk(['user', 'add', 'alice', '--password-stdin', '--data', dataDir], { input: PASSWORD });
  const device = async (name: string, serverUrl: string, remote = '') => {
    const config = join(work, `pv-${name}-config`);
    const folder = join(work, `pv-${name}`);
    await mkdir(folder, { recursive: true });
    const as = cli.with({ PHOTOVAULT_CONFIG_DIR: config });
    await as.runOk(['login', '--server', serverUrl, '--user', 'alice', '--password-stdin', '--device', name], { input: PASSWORD });
    const remoteArgs = remote ? ['--remote', remote] : [];
    return {
      folder,
      config,
      once: async () => JSON.parse((await as.runOk(['sync', folder, '--once', '--json', ...remoteArgs])).stdout) as Summary,
    };
  };
  const a = await device('a', server.url);
  const b = await device('b', server.url);

  // 1. Initial sync: a -> server, then server -> b, each a `sync --once` from the CLI's start.
  await cp(data.initial, a.folder, { recursive: true });
  await flushDirtyPages();
  const cpu = new CpuWatch(() => server.cpuSeconds() + reapedChildrenCpuSeconds());
  let started = performance.now();
  await a.once();
  const upSeconds = (performance.now() - started) / 1000;
  started = performance.now();
  await b.once();
  const downSeconds = (performance.now() - started) / 1000;
  const initialCpu = cpu.read();
  if (!sameTrees(await treeHashes(b.folder), data.expected)) throw new Error('photovault: b does not hold the files of a');

  // 2. Propagation latency between the two running daemons.
  const daemons = [a, b].map((d) =>
    spawn(process.execPath, [cli.bin, 'sync', d.folder], {
      env: { ...process.env, PHOTOVAULT_CONFIG_DIR: d.config, XDG_RUNTIME_DIR: runDir },
      stdio: 'ignore',
    }),
  );
  atExit(() => daemons.forEach((child) => child.kill('SIGKILL')));
  await sleep(2000);
  const latencies = await propagationLatencies(a.folder, b.folder, 'pv', LATENCY_RUNS);
  await Promise.all(daemons.map((child) => stopChild(child)));

  // 3. 1 KiB insert, through a byte-counting proxy: two more devices on a remote folder of its
  // own, so the proxy is in the path of this figure only.
  const proxy = await ByteCountingProxy.start(server.url);
  const c = await device('c', proxy.url(server.url), 'insert');
  const d = await device('d', proxy.url(server.url), 'insert');
  await writeFile(join(c.folder, 'big.bin'), data.big);
  await c.once();
  await d.once();
  const before = proxy.totalBytes;
  await writeFile(join(c.folder, 'big.bin'), data.inserted);
  const up = await c.once();
  const down = await d.once();
  const insertBytes = proxy.totalBytes - before;
  if (!(await readFile(join(d.folder, 'big.bin'))).equals(data.inserted)) {
    throw new Error('photovault: big.bin differs on d after the sync');
  }
  await proxy.close();

  // 4. Memory: the many files uploaded by a `sync --once`, then `photovault sync` started on them,
  // as a user's daemon holds its folder: its RSS idle after its first pass (nothing changed).
  const holding = await device('holding', server.url, 'holding');
  await cp(data.many, holding.folder, { recursive: true });
  await holding.once();
  const daemon = spawn(process.execPath, [cli.bin, 'sync', holding.folder, '--remote', 'holding'], {
    env: { ...process.env, PHOTOVAULT_CONFIG_DIR: holding.config, XDG_RUNTIME_DIR: runDir },
    stdio: 'ignore',
  });
  atExit(() => daemon.kill('SIGKILL'));
  // A pass that finds nothing to do prints nothing: its end shows in the daemon's status.
  const firstPassOver = async () => {
    const statuses = JSON.parse((await cli.runOk(['status', '--json'])).stdout) as FolderStatus[];
    return statuses.some((status) => status.folder === holding.folder && status.lastPassAt !== null && status.state === 'idle');
  };
  const deadline = performance.now() + 600_000;
  while (!(await firstPassOver())) {
    if (daemon.exitCode !== null) throw new Error(`photovault: the daemon holding the many files exited (${daemon.exitCode})`);
    if (performance.now() > deadline)
      throw new Error('photovault: the daemon holding the many files did not finish its first pass in 10 min');
    await sleep(500);
  }
  // Idle: a daemon gives the memory of its last passes back once none has run for 10 s.
  await sleep(12_000);
  let rssBytes = 0;
  for (let sample = 0; sample < 6; sample++) {
    rssBytes = Math.max(rssBytes, processRssBytes(daemon.pid!));
    await sleep(500);
  }
  const peakBytes = processPeakRssBytes(daemon.pid!);
  await stopChild(daemon);
  await server.stop();

  const rescan = await photovaultRescan(work, data);
  return {
    initialSeconds: upSeconds + downSeconds,
    initialDetail: `up ${upSeconds.toFixed(1)} s + down ${downSeconds.toFixed(1)} s; ${initialCpu}`,
    live: { seconds: live.wall, detail: `daemons started -> b complete; ${liveCpu}` },
    latencies: new Map([['', latencies]]),
    insertBytes,
    insertDetail: `chunks ${((up.bytesSent + down.bytesReceived) / 1024).toFixed(0)} KiB of it, 2 sync --once runs`,
    rescanSeconds: rescan.rescanSeconds,
    rescanDetail: `${rescan.unchanged} unchanged; indexing took ${rescan.indexSeconds.toFixed(1)} s`,
    rssBytes,
    rssDetail: `the sync daemon, idle after its first pass; ${(peakBytes / MiB).toFixed(0)} MiB at its peak, starting`,
  };
}

/** The daemon's scanner and index over a copy of the many files, in a node process of its own. */
async function photovaultRescan(work: string, data: DataSet): Promise<RescanFigures & IndexFigures> {
  const folder = join(work, 'pv-many');
  await cp(data.many, folder, { recursive: true });
  const child = join(REPO, 'dist', 'bench', 'rescan.child.js');
  const indexed = JSON.parse((await runOk(process.execPath, [child, 'index', folder], { timeoutSeconds: 3600 })).stdout) as IndexFigures;
  const figures = JSON.parse((await runOk(process.execPath, [child, 'rescan', folder], { timeoutSeconds: 3600 })).stdout) as RescanFigures;
  if (figures.files !== data.manyFiles) throw new Error(`photovault rescan saw ${figures.files} files, not ${data.manyFiles}`);
  return { ...figures, indexSeconds: indexed.indexSeconds };
}

// ---------------------------------------------------------------------------------------------
// Syncthing.

async function syncthingFigures(bin: string, work: string, data: DataSet): Promise<PeerFigures> {
  const folderA = join(work, 'st-a');
  const folderB = join(work, 'st-b');
  await mkdir(folderB, { recursive: true });
  await cp(data.initial, folderA, { recursive: true });
  await flushDirtyPages();
  const [a, b] = await syncthingPair(bin, work, FOLDER_ID, [folderA, folderB], DEFAULT_WATCHER_DELAY);

  // 1. Initial sync: from starting both daemons (a holding the files, b empty) until b has them
  // all and both are idle: a's scan and hashing, the connection, the transfer, b's writes.
  // Both daemons are new: all the CPU they have used when done is this figure's.
  const cpu = new CpuWatch(() => 0);
  const started = performance.now();
  await Promise.all([a.start(), b.start()]);
  await waitInSync([a, b], FOLDER_ID, data.files);
  const initialSeconds = (performance.now() - started) / 1000;
  const initialCpu = cpu.read(a.cpuSeconds() + b.cpuSeconds());
  if (!sameTrees(await treeHashes(folderB), data.expected)) throw new Error('syncthing: b does not hold the files of a');

  // 2. Propagation latency, with the default watcher delay and with 1 s.
  await waitConnected(a, [b]);
  const latencies = new Map<string, number[]>();
  latencies.set(`${DEFAULT_WATCHER_DELAY} s`, await propagationLatencies(folderA, folderB, 'st10', LATENCY_RUNS));
  await Promise.all([a.setWatcherDelay(FOLDER_ID, SHORT_WATCHER_DELAY), b.setWatcherDelay(FOLDER_ID, SHORT_WATCHER_DELAY)]);
  // The folders restart with the new delay: let them scan again and the watchers come up.
  await sleep(1000);
  await waitInSync([a, b], FOLDER_ID);
  await waitConnected(a, [b]);
  await sleep(1000);
  latencies.set(`${SHORT_WATCHER_DELAY} s`, await propagationLatencies(folderA, folderB, 'st1', LATENCY_RUNS));

  // 3. 1 KiB insert into 100 MiB: all BEP traffic between the two (index updates, requests, blocks).
  await writeFile(join(folderA, 'big.bin'), data.big);
  await waitForContent(join(folderB, 'big.bin'), data.big);
  await waitInSync([a, b], FOLDER_ID);
  const before = await a.wireBytes();
  await writeFile(join(folderA, 'big.bin'), data.inserted);
  await waitForContent(join(folderB, 'big.bin'), data.inserted);
  await waitInSync([a, b], FOLDER_ID);
  const after = await a.wireBytes();
  const sent = after.outBytesTotal - before.outBytesTotal;
  const received = after.inBytesTotal - before.inBytesTotal;
  await Promise.all([a.stop(), b.stop()]);

  // 4. Rescan: one daemon holding the many files in a folder shared with no one.
  const folder = join(work, 'st-many');
  await cp(data.many, folder, { recursive: true });
  const single = await SyncthingDevice.generate(bin, 'st-many', join(work, 'st-many-home'));
  await single.configure([{ id: 'many', path: folder, watcherDelaySeconds: DEFAULT_WATCHER_DELAY }], []);
  const indexStarted = performance.now();
  await single.start();
  await waitInSync([single], 'many', data.manyFiles, 3600);
  const indexSeconds = (performance.now() - indexStarted) / 1000;
  const rssBefore = single.rssBytes();
  // lastScan has whole seconds: start the rescan in a later second than the indexing scan ended,
  // so that its moving on shows the rescan ran.
  const { lastScan } = await single.folderStats('many');
  await sleep(1100);
  const rescanStarted = performance.now();
  await single.scan('many');
  const rescanSeconds = (performance.now() - rescanStarted) / 1000;
  // The scan call answers when the scan is over; check that it did scan.
  if ((await single.folderStats('many')).lastScan === lastScan) throw new Error('syncthing: POST /rest/db/scan answered before scanning');
  await waitInSync([single], 'many', data.manyFiles);
  const rssBytes = Math.max(rssBefore, single.rssBytes());
  await single.stop();

  return {
    initialSeconds,
    initialDetail: `daemons started -> b complete; ${initialCpu}`,
    latencies,
    insertBytes: sent + received,
    insertDetail: `a sent ${(sent / 1024).toFixed(0)} KiB, received ${(received / 1024).toFixed(0)} KiB`,
    rescanSeconds,
    rescanDetail: `indexing took ${indexSeconds.toFixed(1)} s`,
    rssBytes,
    rssDetail: 'the daemon, after its scans',
  };
}

// ---------------------------------------------------------------------------------------------
// The table.

function ratio(ours: number, theirs: number): string {
  return theirs > 0 ? `${(ours / theirs).toFixed(2)}x` : 'n/a';
}

function kib(bytes: number): string {
  return bytes < 10 * MiB ? `${(bytes / 1024).toFixed(0)} KiB` : `${(bytes / MiB).toFixed(1)} MiB`;
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((_, i) => Math.max(...[header, ...rows].map((row) => (row[i] ?? '').length)));
  const line = (row: string[]) =>
    row
      .map((cell, i) => cell.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  console.log(line(header));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const row of rows) console.log(line(row));
}

async function main(): Promise<void> {
  const syncthing = findSyncthing();
  if (!syncthing)
    throw new Error('bench:sync runs Syncthing beside photovault, and syncthing is not on PATH: run ./scripts/setup.sh --bench');
  const syncthingVersion = (await runOk(syncthing, ['--version'])).stdout.trim().split(' ').slice(0, 2).join(' ');
  const work = await mkdtemp(join(tmpdir(), 'pv-bench-sync-'));
  removeAtExit(work);
  const load = loadavg()[0]!.toFixed(2);

  const data = await makeDataSet(work);
  const pv = await photovaultFigures(work, data);
  const st = await syncthingFigures(syncthing, work, data);
  // In the same run as the figures: this machine's speed drifts between runs (docs/benchmarks.md).
  const floor = await measureSyncFloor(data.initial, join(work, 'floor'));

  const rows: string[][] = [];
  rows.push([
    `initial sync, ${data.files} files / ${(data.bytes / MiB).toFixed(0)} MiB, a -> b; photovault: sync --once on a, then b`,
    `${pv.initialSeconds.toFixed(1)} s (${pv.initialDetail})`,
    `${st.initialSeconds.toFixed(1)} s (${st.initialDetail})`,
    ratio(pv.initialSeconds, st.initialSeconds),
    '<= 0.5x of Syncthing',
  ]);
  rows.push([
    'same, photovault timed as Syncthing is (both daemons running)',
    `${pv.live!.seconds.toFixed(1)} s (${pv.live!.detail})`,
    `${st.initialSeconds.toFixed(1)} s`,
    ratio(pv.live!.seconds, st.initialSeconds),
    '<= 0.5x of Syncthing',
  ]);
  rows.push([
    `floor of that initial sync on ${floor.cores} cores: its unavoidable steps timed alone (bench/sync-floor.ts)`,
    `${(floor.photovault / floor.cores).toFixed(1)} s (${floor.photovault.toFixed(1)} CPU-s)`,
    `${(floor.syncthing / floor.cores).toFixed(1)} s (${floor.syncthing.toFixed(1)} CPU-s)`,
    ratio(floor.photovault, floor.syncthing),
    `0.5x of Syncthing's initial sync: ${(st.initialSeconds / 2).toFixed(1)} s`,
  ]);
  const pvLatencies = pv.latencies.get('')!;
  for (const [delay, latencies] of st.latencies) {
    for (const [p, goal] of [
      [50, 300],
      [90, 600],
    ] as const) {
      rows.push([
        `new 200 KiB file a -> b, p${p} of ${latencies.length}; Syncthing fsWatcherDelayS ${delay.replace(' s', '')}`,
        `${percentile(pvLatencies, p).toFixed(0)} ms`,
        `${percentile(latencies, p).toFixed(0)} ms`,
        ratio(percentile(pvLatencies, p), percentile(latencies, p)),
        `<= ${goal} ms`,
      ]);
    }
  }
  rows.push([
    `1 KiB insert into ${(data.big.length / MiB).toFixed(0)} MiB, bytes on the wire`,
    `${kib(pv.insertBytes)} (${pv.insertDetail})`,
    `${kib(st.insertBytes)} (${st.insertDetail})`,
    ratio(pv.insertBytes, st.insertBytes),
    '<= 16 KiB with protocol',
  ]);
  rows.push([
    `rescan of ${data.manyFiles} unchanged files`,
    `${pv.rescanSeconds.toFixed(1)} s (${pv.rescanDetail})`,
    `${st.rescanSeconds.toFixed(1)} s (${st.rescanDetail})`,
    ratio(pv.rescanSeconds, st.rescanSeconds),
    '-',
  ]);
  rows.push([
    `RSS holding ${data.manyFiles} files`,
    `${(pv.rssBytes / MiB).toFixed(0)} MiB (${pv.rssDetail})`,
    `${(st.rssBytes / MiB).toFixed(0)} MiB (${st.rssDetail})`,
    ratio(pv.rssBytes, st.rssBytes),
    '< 200 MiB',
  ]);

  console.log(
    `\nphotovault sync benchmark: node ${process.version}, ${syncthingVersion}, scale ${SCALE}, ` +
      `${availableParallelism()} cores, load average ${load} at the start and ${loadavg()[0]!.toFixed(2)} at the end\n`,
  );
  printTable(['figure', 'photovault', 'Syncthing', 'photovault / Syncthing', 'goal'], rows);
  console.log(
    '\nRatios below 1x favour photovault. Bytes on the wire: photovault through a TCP proxy in front of its server ' +
      '(HTTP included), Syncthing from its own BEP counters (inBytesTotal + outBytesTotal, TLS records excluded).',
  );
}

await main();
