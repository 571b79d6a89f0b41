/**
 * What bench:sync's initial sync cannot avoid on this machine: each step that moving the initial
 * set (2,000 files of 64-448 KiB at scale 1) must take, timed alone on the same bytes, then
 * added up for photovault's design and for Syncthing's.
 *
 *   npm run bench:sync-floor
 *
 * - photovault goes device -> server -> device, and checks the bytes at every hop (DESIGN
 *   section 3): a reads each file, cuts it (FastCDC) and hashes its chunks and its content; the
 *   server hashes both again and writes each file durably (its object); it reads them back for
 *   b, which hashes the content and writes each file durably. Two loopback transfers.
 * - Syncthing goes device -> device: a reads and hashes blocks once, b hashes them again and writes
 *   durably. One loopback transfer (its TLS is left out, in its favour).
 *
 * The sums are CPU seconds on one core; on two cores, perfectly overlapped, the wall time could
 * at best be half of them. Environment: PV_BENCH_SCALE (default 1), PV_BENCH_DATA (a folder to keep
 * the data set in across runs, as initial-sync.bench).
 */
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, writeSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { connect, createServer, type AddressInfo } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chunkLengths } from '../src/core/chunker.js';
import { makeInitialSet, MiB, removeAtExit, table } from './support.js';

const SCALE = Number(process.env.PV_BENCH_SCALE ?? 1);

/** CPU seconds (user + system) of this process while work runs. */
async function cpuOf(work: () => void | Promise<void>): Promise<number> {
  const before = process.cpuUsage();
  await work();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1e6;
}

/** Sends every file through one loopback TCP connection, both ends in this process. */
function throughLoopback(files: Buffer[], bytes: number): Promise<void> {
  return new Promise((done, fail) => {
    const server = createServer((socket) => {
      let received = 0;
      socket.on('data', (data: Buffer) => {
        received += data.length;
        if (received === bytes) {
          socket.end();
          server.close();
          done();
        }
      });
    });
    server.on('error', fail);
    server.listen(0, '127.0.0.1', async () => {
      const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
      client.on('error', fail);
      for (const file of files) if (!client.write(file)) await new Promise((drained) => client.once('drain', drained));
      client.end();
    });
  });
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'pv-bench-floor-'));
  removeAtExit(work);
  const dataDir = process.env.PV_BENCH_DATA ? resolve(process.env.PV_BENCH_DATA, `scale-${SCALE}`) : join(work, 'initial');
  try {
    readdirSync(join(dataDir, 'd0'));
  } catch {
    await makeInitialSet(dataDir, SCALE);
  }
  const paths = readdirSync(dataDir).flatMap((folder) => readdirSync(join(dataDir, folder)).map((name) => join(dataDir, folder, name)));
  // Once to have them in the page cache, as a freshly copied folder is.
  const files = paths.map((path) => readFileSync(path));
  const bytes = files.reduce((sum, file) => sum + file.length, 0);

  // Into one reused buffer, as the daemon reads: the cost of the reads, not of fresh memory.
  const into = Buffer.allocUnsafe(Math.max(...files.map((file) => file.length)));
  const read = await cpuOf(() => {
    for (const path of paths) {
      const fd = openSync(path, 'r');
      readSync(fd, into, 0, into.length, 0);
      closeSync(fd);
    }
  });
  const hash = await cpuOf(() => {
    for (const file of files) createHash('sha256').update(file).digest();
  });
  // Twice: the first run includes the cut loop's way up V8's tiers.
  await cpuOf(() => files.forEach((file) => chunkLengths(file)));
  const cut = await cpuOf(() => files.forEach((file) => chunkLengths(file)));
  const folder = join(work, 'written');
  mkdirSync(folder);
  const write = await cpuOf(() =>
    files.forEach((file, i) => {
      const temp = join(folder, `.part-${i}`);
      const fd = openSync(temp, 'wx');
      writeSync(fd, file);
      fsyncSync(fd);
      closeSync(fd);
      renameSync(temp, join(folder, `f${i}`));
    }),
  );
  const loopback = await cpuOf(() => throughLoopback(files, bytes));

  const steps: [string, number][] = [
    ['read from the page cache', read],
    ['SHA-256, one pass', hash],
    ['FastCDC cut points', cut],
    ['create, write, fsync, rename', write],
    ['loopback TCP, both ends', loopback],
  ];
  const photovault = 2 * read + cut + 5 * hash + 2 * write + 2 * loopback;
  const syncthing = read + 2 * hash + write + loopback;
  const cores = availableParallelism();
  const s = (seconds: number) => `${seconds.toFixed(2)} s`;
  console.log(`initial-sync floor: ${files.length} files / ${(bytes / MiB).toFixed(0)} MiB, ${cores} cores\n`);
  console.log(
    table(
      'step, alone',
      ['CPU'],
      steps.map(([name, seconds]) => [name, s(seconds)]),
    ),
  );
  console.log();
  console.log(
    table(
      'floor of the initial sync',
      ['CPU', `wall on ${cores} cores at best`],
      [
        ['photovault: 2 reads, cut, 5 hashes, 2 writes, 2 transfers', s(photovault), s(photovault / cores)],
        ['Syncthing: read, 2 hashes, write, transfer', s(syncthing), s(syncthing / cores)],
        ['photovault / Syncthing', `${(photovault / syncthing).toFixed(2)}x`, ''],
      ],
    ),
  );
}

await main();
