/**
 * End-to-end upload throughput over loopback, against its peer `cp -r` + `sync` of the same files
 * onto the same disk (the server fsyncs what it stores, so the copy's timing includes a sync).
 *
 *   npm run bench:upload                      # 1 GiB in 200 files
 *   PV_BENCH_GIB=0.25 npm run bench:upload    # a quick run
 *
 * Measures, each as printed figures (it never asserts a timing):
 *   1. `photovault upload DIR --json` as a child process against a fresh server on a fresh data
 *      dir, for (a) pseudo-random files of varied sizes and (b) the shared real corpus: wall time,
 *      MiB/s, the ratio to cp, and the CPU time of the server and of the client per GiB;
 *   2. the re-upload of (a) to the same server as the same user: seconds and bytes sent (0 expected);
 *   3. client-side chunking + hashing: fingerprintFile() over the files of (a), page cache warm,
 *      against plain node:crypto SHA-256 of the same files read the same way.
 *
 * Environment: PV_BENCH_GIB (default 1), PV_BENCH_FILES (200), PV_BENCH_SEED, PV_BENCH_RUNS (best of,
 * for part 3; default 3), PV_BENCH_TMP (default /tmp). Everything it creates lives in one temp dir,
 * removed at the end, also on an error or ^C; the servers it starts are stopped the same way.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, rm, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fingerprintFile } from '../src/core/chunker.js';
import {
  Cli,
  type DiskDelta,
  diskCounters,
  diskDelta,
  GiB,
  machineBusyCpuSeconds,
  ownCpuSeconds,
  MiB,
  numberSetting,
  reapedChildrenCpuSeconds,
  removeAtExit,
  runOk,
  table,
  type RouteTime,
  routeTimeDelta,
  type ServerProcess,
  type ThreadCpu,
  threadCpuDelta,
} from './support.js';

// ---------------------------------------------------------------------------------------------
// Settings.

/** dist/bench/upload.bench.js -> the repository root. */
const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const cliBin = join(repoRoot, 'bin', 'photovault');
const corpusDir = resolve(repoRoot, '..', 'shared', 'corpus');

const targetGiB = numberSetting('PV_BENCH_GIB', 1);
const fileCount = Math.round(numberSetting('PV_BENCH_FILES', 200));
const seed = Math.round(numberSetting('PV_BENCH_SEED', 0x5eed_b0a7));
const hashRuns = Math.max(1, Math.round(numberSetting('PV_BENCH_RUNS', 3)));
const tmpBase = process.env.PV_BENCH_TMP || '/tmp';
const totalBytes = Math.round(targetGiB * GiB);
/** Size ratio of the largest to the smallest file drawn (log-uniform in between): photos to short videos. */
const SIZE_SPREAD = 256;
/** Piece size for writing the data set and for the SHA-256 peer's reads: fingerprintFile reads 4 MiB blocks. */
const READ_BLOCK = 4 * MiB;
/** No single upload may hang the run: generous next to the worst plausible time. */
const UPLOAD_TIMEOUT_S = Math.max(600, 1800 * targetGiB);
const PASSWORD = 'bench-password-1234';

// ---------------------------------------------------------------------------------------------
// The data set: seeded, incompressible, no chunk shared between files (so nothing deduplicates).

interface DataFile {
  path: string;
  size: number;
}

/** mulberry32: a small seeded generator for the file sizes. */
function mulberry32(state: number): () => number {
  let a = state >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` sizes, log-uniform over a SIZE_SPREAD range, adding up to exactly `total`. */
function drawSizes(total: number, count: number, random: () => number): number[] {
  const weights = Array.from({ length: count }, () => Math.exp(random() * Math.log(SIZE_SPREAD)));
  const sum = weights.reduce((a, b) => a + b, 0);
  const sizes = weights.map((w) => Math.max(1, Math.floor((total * w) / sum)));
  const largest = sizes.indexOf(Math.max(...sizes));
  sizes[largest]! += total - sizes.reduce((a, b) => a + b, 0);
  return sizes;
}

/**
 * Writes the files: AES-256-CTR keystream under a key derived from (seed, file index), i.e. a
 * seeded generator with no overlap between files and fast enough not to matter. Spread over a
 * few folders like albums.
 */
async function writeDataSet(dir: string): Promise<DataFile[]> {
  const sizes = drawSizes(totalBytes, fileCount, mulberry32(seed));
  const zeros = new Uint8Array(READ_BLOCK);
  const files: DataFile[] = [];
  for (const [index, size] of sizes.entries()) {
    const album = join(dir, `album-${String((index % 8) + 1).padStart(2, '0')}`);
    await mkdir(album, { recursive: true });
    const path = join(album, `IMG_${String(index + 1).padStart(4, '0')}.raw`);
    const key = createHash('sha256').update(`photovault upload bench ${seed} ${index}`).digest();
    const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
    const handle = await open(path, 'wx');
    try {
      for (let done = 0; done < size;) {
        const n = Math.min(READ_BLOCK, size - done);
        const bytes = cipher.update(zeros.subarray(0, n));
        for (let offset = 0; offset < bytes.length;) offset += (await handle.write(bytes, offset)).bytesWritten;
        done += n;
      }
    } finally {
      await handle.close();
    }
    files.push({ path, size });
  }
  return files;
}

/** The regular files under a directory, recursively, sorted. */
async function listFiles(dir: string): Promise<DataFile[]> {
  const out: DataFile[] = [];
  for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await listFiles(path)));
    else if (entry.isFile()) out.push({ path, size: (await stat(path)).size });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Part 1 and 2: uploads through the CLI, and the cp peer.

interface Session {
  name: string;
  server: ServerProcess;
  cli: Cli;
}

interface UploadSummary {
  files: number;
  bytesTotal: number;
  bytesSent: number;
  bytesDeduplicated: number;
  failed: unknown[];
}

interface UploadRun {
  seconds: number;
  summary: UploadSummary;
  serverCpu: number;
  serverThreads: Omit<ThreadCpu, 'byThread'>;
  clientCpu: number;
  /** CPU the rest of the machine used meanwhile (not the server, the client or this process). */
  otherCpu: number;
  serverStorageWrites: number | undefined;
  serverLogLines: number;
  /** Server-side request durations during the upload, by "METHOD route". */
  routes: Map<string, RouteTime>;
  disk: DiskDelta | undefined;
}

interface CopyRun {
  seconds: number;
  disk: DiskDelta | undefined;
}

/** A fresh server on a fresh data dir, a user, and a client logged in to it. */
async function newSession(root: string, name: string): Promise<Session> {
  const base = new Cli(cliBin);
  const dataDir = join(root, `server-${name}`);
  const server = await base.startServer(dataDir);
  await base.runOk(['user', 'add', 'bench', '--password-stdin', '--data', dataDir], { input: `${PASSWORD}\n` });
  const cli = base.with({ PHOTOVAULT_CONFIG_DIR: join(root, `client-${name}`) });
  await cli.runOk(['login', '--server', server.url, '--user', 'bench', '--password-stdin', '--device', `bench-${name}`], {
    input: `${PASSWORD}\n`,
  });
  return { name, server, cli };
}

/** Flushes everything dirty first (untimed), so a measurement pays only for its own writes. */
async function settle(): Promise<void> {
  await runOk('sync', []);
}

async function timedUpload(session: Session, dir: string, remoteDir: string): Promise<UploadRun> {
  await settle();
  const cpu0 = session.server.cpuSeconds();
  const threads0 = session.server.threadCpuSeconds();
  const routes0 = await session.server.requestDurations();
  const io0 = session.server.storageWriteBytes();
  const log0 = session.server.logLines;
  const children0 = reapedChildrenCpuSeconds();
  const disk0 = diskCounters(tmpBase);
  const machine0 = machineBusyCpuSeconds();
  const own0 = ownCpuSeconds();
  const result = await session.cli.run(['upload', dir, '--to', remoteDir, '--json'], { timeoutSeconds: UPLOAD_TIMEOUT_S });
  const disk1 = diskCounters(tmpBase);
  const clientCpu = reapedChildrenCpuSeconds() - children0;
  const serverCpu = session.server.cpuSeconds() - cpu0;
  const otherCpu = machineBusyCpuSeconds() - machine0 - (ownCpuSeconds() - own0) - clientCpu - serverCpu;
  const serverThreads = threadCpuDelta(threads0, session.server.threadCpuSeconds());
  const io1 = session.server.storageWriteBytes();
  const routes = routeTimeDelta(routes0, await session.server.requestDurations());
  if (result.code !== 0) throw new Error(`photovault upload ${dir} exited with ${result.code ?? result.signal}:\n${result.stderr.trim()}`);
  const summary = JSON.parse(result.stdout) as UploadSummary;
  if (summary.failed.length > 0)
    throw new Error(`photovault upload ${dir}: ${summary.failed.length} file(s) failed: ${JSON.stringify(summary.failed.slice(0, 3))}`);
  return {
    seconds: result.seconds,
    summary,
    serverCpu,
    serverThreads,
    clientCpu,
    otherCpu,
    serverStorageWrites: io0 === undefined || io1 === undefined ? undefined : io1 - io0,
    serverLogLines: session.server.logLines - log0,
    routes,
    disk: diskDelta(disk0, disk1),
  };
}

/** `cp -r src dst` then `sync`, timed together; the copy is removed afterwards (untimed). */
async function timedCopy(src: string, dst: string): Promise<CopyRun> {
  await settle();
  const disk0 = diskCounters(tmpBase);
  const started = performance.now();
  await runOk('cp', ['-r', src, dst]);
  await runOk('sync', []);
  const seconds = (performance.now() - started) / 1000;
  const disk = diskDelta(disk0, diskCounters(tmpBase));
  await rm(dst, { recursive: true, force: true });
  return { seconds, disk };
}

/** Wall time of the CLI doing nothing (`photovault --version`), best of a few: the fixed cost in every upload's time. */
async function cliStartupSeconds(): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < 5; i++) best = Math.min(best, (await new Cli(cliBin).runOk(['--version'])).seconds);
  return best;
}

// ---------------------------------------------------------------------------------------------
// Part 3: client-side fingerprinting against plain SHA-256.

async function sha256File(path: string, buffer: Uint8Array): Promise<string> {
  const sha = createHash('sha256');
  const handle = await open(path, 'r');
  try {
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      sha.update(buffer.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
  return sha.digest('hex');
}

/** Runs work over items with at most `limit` at once (the uploader's file pool). */
async function pool<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

interface HashingResult {
  sha256: number;
  fingerprint: number;
  fingerprintPool: number;
  chunks: number;
}

async function measureHashing(files: DataFile[], bytes: number): Promise<HashingResult> {
  const buffer = new Uint8Array(READ_BLOCK);
  // Untimed pass: warms the page cache and gives the expected digests.
  const expected = new Map<string, string>();
  for (const file of files) expected.set(file.path, await sha256File(file.path, buffer));

  let chunks = 0;
  const best = { sha256: Infinity, fingerprint: Infinity, fingerprintPool: Infinity };
  for (let r = 0; r < hashRuns; r++) {
    let started = performance.now();
    for (const file of files) await sha256File(file.path, buffer);
    best.sha256 = Math.min(best.sha256, performance.now() - started);

    started = performance.now();
    chunks = 0;
    for (const file of files) {
      const fingerprint = await fingerprintFile(file.path);
      // Correctness first: a fast wrong answer is worth nothing.
      if (fingerprint.contentHash !== expected.get(file.path) || fingerprint.size !== file.size) {
        throw new Error(`fingerprintFile(${file.path}) disagrees with SHA-256 of the file`);
      }
      chunks += fingerprint.chunks.length;
    }
    best.fingerprint = Math.min(best.fingerprint, performance.now() - started);

    started = performance.now();
    await pool(files, 3, async (file) => {
      if ((await fingerprintFile(file.path)).contentHash !== expected.get(file.path))
        throw new Error(`fingerprintFile(${file.path}) disagrees (3 at once)`);
    });
    best.fingerprintPool = Math.min(best.fingerprintPool, performance.now() - started);
  }
  const mibs = (ms: number) => bytes / MiB / (ms / 1000);
  return { sha256: mibs(best.sha256), fingerprint: mibs(best.fingerprint), fingerprintPool: mibs(best.fingerprintPool), chunks };
}

// ---------------------------------------------------------------------------------------------
// Output.

const mib = (bytes: number) => bytes / MiB;
const fixed = (value: number | undefined, digits: number) => (value === undefined || !Number.isFinite(value) ? '-' : value.toFixed(digits));
const ratio = (value: number | undefined) => (value === undefined || !Number.isFinite(value) ? '-' : `${value.toFixed(2)}x`);
const percent = (value: number | undefined) => (value === undefined || !Number.isFinite(value) ? '-' : `${(value * 100).toFixed(0)}%`);

const CHUNK_ROUTE = 'PUT /api/v1/uploads/:id/chunks/:hash';
const COMMIT_ROUTE = 'POST /api/v1/uploads/:id/commit';
const BEGIN_ROUTE = 'POST /api/v1/uploads';

function route(up: UploadRun, key: string, show: (time: RouteTime) => string): string {
  const time = up.routes.get(key);
  return time === undefined || time.count === 0 ? '-' : show(time);
}

/** Server-side time per kind of request: the sum of their durations over the wall time is how many were in flight on average. */
function routeRows(up: UploadRun): [string, string][] {
  return [
    [BEGIN_ROUTE, 'begin'],
    [CHUNK_ROUTE, 'PUT chunk'],
    [COMMIT_ROUTE, 'commit'],
  ].map(([key, name]) => [
    `  ${name} requests: server-side s summed (avg in flight)`,
    route(up, key!, (r) => `${fixed(r.seconds, 2)} (${fixed(r.seconds / up.seconds, 2)})`),
  ]);
}

function log(message: string): void {
  process.stderr.write(`[upload.bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

// ---------------------------------------------------------------------------------------------
// Main.

async function main(): Promise<void> {
  if (!existsSync(join(repoRoot, 'dist', 'src', 'cli', 'main.js')))
    throw new Error('dist/ is missing: run `npm run build` first (npm run bench:upload does)');
  if (!existsSync(corpusDir)) throw new Error(`no corpus at ${corpusDir}`);
  if (!existsSync('/proc/self/stat')) throw new Error('this benchmark reads /proc: Linux only');

  await mkdir(tmpBase, { recursive: true });
  const root = await mkdtemp(join(tmpBase, 'pv-upload-bench-'));
  removeAtExit(root);
  const sessions: Session[] = [];
  try {
    log(`temp dir ${root}`);
    const dataDir = join(root, 'random');
    let started = performance.now();
    const files = await writeDataSet(dataDir);
    await settle();
    const generateSeconds = (performance.now() - started) / 1000;
    const sizes = files.map((f) => f.size);
    log(`wrote ${files.length} files, ${mib(totalBytes).toFixed(1)} MiB in ${generateSeconds.toFixed(1)} s`);

    const corpusFiles = await listFiles(corpusDir);
    const corpusBytes = corpusFiles.reduce((sum, f) => sum + f.size, 0);
    const startup = await cliStartupSeconds();

    // 1a. The random set: cp peer, then photovault on a fresh server.
    log('cp -r + sync: random set');
    const copyRandom = await timedCopy(dataDir, join(root, 'cp-random'));
    log('photovault upload: random set (fresh server)');
    const sessionA = await newSession(root, 'random');
    sessions.push(sessionA);
    const uploadRandom = await timedUpload(sessionA, dataDir, 'bench');
    if (uploadRandom.summary.files !== files.length || uploadRandom.summary.bytesTotal !== totalBytes) {
      throw new Error(`upload summary does not match the data set: ${JSON.stringify(uploadRandom.summary)}`);
    }

    // 2. The same set again: same server, same user, same remote folder.
    log('photovault upload: random set again (same server, same user)');
    const reupload = await timedUpload(sessionA, dataDir, 'bench');
    await sessionA.server.stop();

    // 1b. The corpus, read-only: copies go to our temp dir, the upload to a fresh server.
    log('cp -r + sync: corpus');
    const copyCorpus = await timedCopy(corpusDir, join(root, 'cp-corpus'));
    log('photovault upload: corpus (fresh server)');
    const sessionB = await newSession(root, 'corpus');
    sessions.push(sessionB);
    const uploadCorpus = await timedUpload(sessionB, corpusDir, 'corpus');
    await sessionB.server.stop();

    // 3. Client-side chunking + hashing over the random set, page cache warm.
    log(`fingerprintFile vs sha-256, best of ${hashRuns}`);
    started = performance.now();
    const machine0 = machineBusyCpuSeconds();
    const own0 = ownCpuSeconds();
    const hashing = await measureHashing(files, totalBytes);
    const hashingOtherCpu = machineBusyCpuSeconds() - machine0 - (ownCpuSeconds() - own0);
    const hashingSeconds = (performance.now() - started) / 1000;
    log(`hashing done in ${((performance.now() - started) / 1000).toFixed(1)} s`);

    // ---- Report ----
    const cores = availableParallelism();
    const randomLabel = `random ${mib(totalBytes).toFixed(0)} MiB`;
    const corpusLabel = `corpus ${mib(corpusBytes).toFixed(1)} MiB`;
    const uploadRow = (label: string, value: (up: UploadRun, cp: CopyRun, bytes: number) => string): [string, string, string] => [
      label,
      value(uploadRandom, copyRandom, totalBytes),
      value(uploadCorpus, copyCorpus, corpusBytes),
    ];
    const perGiB = (seconds: number, bytes: number) => seconds / (bytes / GiB);
    const out: string[] = [];
    out.push('');
    out.push(
      `photovault upload benchmark: node ${process.version}, ${cores} cores, temp dir on ${uploadRandom.disk?.device ?? copyRandom.disk?.device ?? '?'} (${tmpBase})`,
    );
    out.push(
      `random set: ${files.length} files of AES-CTR bytes (seed ${seed}), ${mib(Math.min(...sizes)).toFixed(2)}-${mib(Math.max(...sizes)).toFixed(1)} MiB, ` +
        `median ${mib(sizes.slice().sort((a, b) => a - b)[Math.floor(sizes.length / 2)]!).toFixed(2)} MiB; ` +
        `corpus: ${corpusFiles.length} files in ${relative(repoRoot, corpusDir)}`,
    );
    out.push('page cache warm for every run; `sync` (untimed) before each; each upload against a fresh server and data dir');
    out.push('');
    out.push(
      table(
        '1. upload over loopback',
        [randomLabel, corpusLabel],
        [
          uploadRow('files', (up) => String(up.summary.files)),
          uploadRow('photovault upload --json, s', (up) => fixed(up.seconds, 2)),
          uploadRow('photovault upload, MiB/s', (up, _cp, bytes) => fixed(mib(bytes) / up.seconds, 1)),
          uploadRow('cp -r + sync, s', (_up, cp) => fixed(cp.seconds, 2)),
          uploadRow('cp -r + sync, MiB/s', (_up, cp, bytes) => fixed(mib(bytes) / cp.seconds, 1)),
          uploadRow('photovault / cp throughput', (up, cp) => ratio(cp.seconds / up.seconds)),
          uploadRow('server CPU s (user+sys)', (up) => fixed(up.serverCpu, 2)),
          uploadRow('server CPU s per GiB', (up, _cp, bytes) => fixed(perGiB(up.serverCpu, bytes), 1)),
          uploadRow('  main thread (JS, event loop)', (up) => fixed(up.serverThreads.main, 2)),
          uploadRow('  libuv pool (fs, fsync)', (up) => fixed(up.serverThreads.pool, 2)),
          uploadRow('  other threads (V8, GC)', (up) => fixed(up.serverThreads.other, 2)),
          uploadRow('  main thread busy, % of wall', (up) => percent(up.serverThreads.main / up.seconds)),
          uploadRow('client CPU s (upload process)', (up) => fixed(up.clientCpu, 2)),
          uploadRow('client CPU s per GiB', (up, _cp, bytes) => fixed(perGiB(up.clientCpu, bytes), 1)),
          uploadRow(`server + client CPU, of ${cores} cores x wall`, (up) => percent((up.serverCpu + up.clientCpu) / (cores * up.seconds))),
          uploadRow("other processes' CPU meanwhile, s", (up) => fixed(Math.max(0, up.otherCpu), 2)),
          uploadRow('bytesSent, MiB', (up) => fixed(mib(up.summary.bytesSent), 1)),
          uploadRow('server write_bytes / bytes (staged + object)', (up, _cp, bytes) =>
            ratio(up.serverStorageWrites === undefined ? undefined : up.serverStorageWrites / bytes),
          ),
          uploadRow('disk writes / bytes: upload (whole disk)', (up, _cp, bytes) =>
            ratio(up.disk ? up.disk.bytesWritten / bytes : undefined),
          ),
          uploadRow('disk writes / bytes: cp (whole disk)', (_up, cp, bytes) => ratio(cp.disk ? cp.disk.bytesWritten / bytes : undefined)),
          uploadRow('disk flushes: upload', (up) => (up.disk?.flushes === undefined ? '-' : String(up.disk.flushes))),
          uploadRow('disk flushes: cp', (_up, cp) => (cp.disk?.flushes === undefined ? '-' : String(cp.disk.flushes))),
          uploadRow('disk busy, % of wall: upload', (up) => percent(up.disk ? up.disk.busyMs / 1000 / up.seconds : undefined)),
          uploadRow('disk busy, % of wall: cp', (_up, cp) => percent(cp.disk ? cp.disk.busyMs / 1000 / cp.seconds : undefined)),
          uploadRow('server log lines', (up) => String(up.serverLogLines)),
          uploadRow('PUT chunk requests', (up) => route(up, CHUNK_ROUTE, (r) => String(r.count))),
          uploadRow('  mean ms, server side', (up) => route(up, CHUNK_ROUTE, (r) => fixed((r.seconds / r.count) * 1000, 1))),
          uploadRow('commit requests', (up) => route(up, COMMIT_ROUTE, (r) => String(r.count))),
          uploadRow('  mean ms, server side', (up) => route(up, COMMIT_ROUTE, (r) => fixed((r.seconds / r.count) * 1000, 1))),
        ],
      ),
    );
    out.push('');
    out.push(
      table(
        `2. re-upload of the ${randomLabel}`,
        ['same server, user'],
        [
          ['photovault upload --json, s', fixed(reupload.seconds, 2)],
          ['bytesSent (expected 0)', String(reupload.summary.bytesSent)],
          ['bytesDeduplicated, MiB', fixed(mib(reupload.summary.bytesDeduplicated), 1)],
          ['server CPU s', fixed(reupload.serverCpu, 2)],
          ['client CPU s', fixed(reupload.clientCpu, 2)],
          ['effective MiB/s (bytesTotal / wall)', fixed(mib(reupload.summary.bytesTotal) / reupload.seconds, 1)],
        ],
      ),
    );
    out.push('');
    out.push(
      table(
        `3. client fingerprint, ${randomLabel}, best of ${hashRuns}`,
        ['MiB/s'],
        [
          ['sha-256, node:crypto, 4 MiB reads (the peer)', fixed(hashing.sha256, 0)],
          ['fingerprintFile, one file at a time', fixed(hashing.fingerprint, 0)],
          ['fingerprintFile, 3 files at once (as upload does)', fixed(hashing.fingerprintPool, 0)],
          ['fingerprintFile / sha-256 (one at a time)', ratio(hashing.fingerprint / hashing.sha256)],
          ['fingerprintFile / sha-256 (3 at once)', ratio(hashing.fingerprintPool / hashing.sha256)],
          ['chunks in the set', String(hashing.chunks)],
          [`other processes' CPU s meanwhile (of ${fixed(hashingSeconds, 1)} s)`, fixed(Math.max(0, hashingOtherCpu), 2)],
        ],
      ),
    );
    out.push('');
    const fingerprintShare = mib(totalBytes) / hashing.fingerprintPool / uploadRandom.seconds;
    out.push(
      table(
        'where the time goes (random set)',
        ['value'],
        [
          ['upload wall, s', fixed(uploadRandom.seconds, 2)],
          ['  CLI start-up (photovault --version), s', fixed(startup, 2)],
          ['  fingerprinting alone would take, s', `${fixed(mib(totalBytes) / hashing.fingerprintPool, 2)} (${percent(fingerprintShare)})`],
          ['  server CPU, s', `${fixed(uploadRandom.serverCpu, 2)} (${percent(uploadRandom.serverCpu / uploadRandom.seconds)} of wall)`],
          [
            '    of it the main thread, s',
            `${fixed(uploadRandom.serverThreads.main, 2)} (${percent(uploadRandom.serverThreads.main / uploadRandom.seconds)} of wall)`,
          ],
          ['  client CPU, s', `${fixed(uploadRandom.clientCpu, 2)} (${percent(uploadRandom.clientCpu / uploadRandom.seconds)} of wall)`],
          ['  disk busy, s', uploadRandom.disk ? fixed(uploadRandom.disk.busyMs / 1000, 2) : '-'],
          ...routeRows(uploadRandom),
          ['data set generation (write + sync), s', fixed(generateSeconds, 1)],
        ],
      ),
    );
    out.push('');
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    for (const session of sessions) await session.server.stop().catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  }
}

try {
  await main();
} catch (error) {
  process.stderr.write(`upload.bench failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
}
