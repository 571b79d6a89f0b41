/**
 * What bench:sync's initial sync cannot avoid on this machine: each step that moving the initial
 * set must take, timed alone on the same bytes, then added up for photovault's design and for
 * Syncthing's.
 *
 * - photovault goes device -> server -> device, and checks the bytes at every hop (DESIGN
 *   section 3): a reads each file, cuts it (FastCDC) and hashes its chunks and its content; the
 *   server hashes both again and writes each file durably (its object); it reads them back for
 *   b, which hashes the content and writes each file durably. Two loopback transfers.
 * - Syncthing goes device -> device: a reads and hashes blocks once, b hashes them again and writes
 *   durably. One loopback transfer (its TLS is left out, in its favour).
 *
 * The sums are CPU seconds on one core; on two cores, perfectly overlapped, the wall time could
 * at best be half of them.
 */
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { chunkLengths } from '../src/core/chunker.js';

export interface SyncFloor {
  files: number;
  bytes: number;
  /** CPU seconds of each step, alone, over all the files. */
  steps: [string, number][];
  /** CPU seconds of all the steps each design must take. */
  photovault: number;
  syncthing: number;
  cores: number;
}

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

/** Times the floor's steps on the initial set in dataDir (d0..d19/f<i>.bin), writing into scratch (removed after). */
export async function measureSyncFloor(dataDir: string, scratch: string): Promise<SyncFloor> {
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
  mkdirSync(scratch, { recursive: true });
  const write = await cpuOf(() =>
    files.forEach((file, i) => {
      const temp = join(scratch, `.part-${i}`);
      const fd = openSync(temp, 'wx');
      writeSync(fd, file);
      fsyncSync(fd);
      closeSync(fd);
      renameSync(temp, join(scratch, `f${i}`));
    }),
  );
  rmSync(scratch, { recursive: true, force: true });
  const loopback = await cpuOf(() => throughLoopback(files, bytes));

  return {
    files: files.length,
    bytes,
    steps: [
      ['read from the page cache', read],
      ['SHA-256, one pass', hash],
      ['FastCDC cut points', cut],
      ['create, write, fsync, rename', write],
      ['loopback TCP, both ends', loopback],
    ],
    photovault: 2 * read + cut + 5 * hash + 2 * write + 2 * loopback,
    syncthing: read + 2 * hash + write + loopback,
    cores: availableParallelism(),
  };
}
