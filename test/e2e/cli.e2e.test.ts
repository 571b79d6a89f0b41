import { existsSync, readFileSync } from 'node:fs';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fingerprintFile } from '../../src/core/chunker.js';
import { encodeManifest } from '../../src/core/manifest.js';
import type { FileEntry, TrashEntry, UploadRequest, UploadStatus } from '../../src/core/protocol.js';
import type { UploadSummary } from '../../src/daemon/uploader.js';
import {
  type CliResult,
  CliSandbox,
  type CliServer,
  collectOutput,
  describeResult,
  exited,
  REPO_ROOT,
  startServer,
} from '../support/cli.js';
import { freePort } from '../support/unreachable.js';
import { pseudoRandomBytes } from '../support/uploads.js';
import { TIME_SCALE } from '../support/time-scale.js';

/**
 * The CLI end to end: a real `photovault server start` on port 0 and the real client commands as
 * child processes, talking over loopback HTTP the way a user's machine does.
 */

// The exit codes scripts rely on (src/cli/exit-codes.ts, README). Literal on purpose: the numbers
// are the contract, so a renumbering must fail here.
const EXIT_USAGE = 2;
const EXIT_AUTH = 3;
const EXIT_NOT_FOUND = 4;
const EXIT_UNREACHABLE = 6;

// Read-only sample photos and videos beside the repository; never written to.
const CORPUS = resolve(REPO_ROOT, '..', 'shared', 'corpus');
const PASSWORD = 'correct horse battery staple';
const MiB = 1024 * 1024;

interface LocalFile {
  /** '/'-separated path below the folder that was walked. */
  relativePath: string;
  absolutePath: string;
  size: number;
}

/** The regular files under a folder (what `photovault upload FOLDER` sends), sorted. */
async function walkFiles(root: string): Promise<LocalFile[]> {
  const files: LocalFile[] = [];
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const absolutePath = join(entry.parentPath, entry.name);
    files.push({ relativePath: relative(root, absolutePath).split(sep).join('/'), absolutePath, size: (await stat(absolutePath)).size });
  }
  return files.sort((a, b) => a.relativePath.localeCompare(b.relativePath));
}

/** Runs work over items with at most `limit` in flight (child processes on a 2-core machine). */
async function inPool<T>(items: T[], limit: number, work: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const index = next++;
      await work(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}

/** Asserts the exit code, showing the whole output when it is not the expected one. */
function expectExit(result: CliResult, code: number): void {
  expect(result.code, describeResult(result)).toBe(code);
}

/** Asserts that two files hold the same bytes. */
async function expectSameBytes(actualPath: string, expectedPath: string): Promise<void> {
  const [actual, expected] = await Promise.all([readFile(actualPath), readFile(expectedPath)]);
  expect(actual.length, `${actualPath} vs ${expectedPath}: size`).toBe(expected.length);
  expect(actual.equals(expected), `${actualPath} differs from ${expectedPath}`).toBe(true);
}

/** A minimal HTTP client of the API, as the logged-in user, for what the CLI does not show. */
class RawApi {
  private readonly agent = new Agent({ connections: 1 });

  constructor(
    private readonly server: string,
    private readonly token: string,
  ) {}

  async call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: T }> {
    const response = await request(new URL(`/api/v1${path}`, this.server), {
      method,
      dispatcher: this.agent,
      headers: { authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.statusCode, body: (await response.body.json()) as T };
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}

describe('photovault CLI against a running server', () => {
  let sandbox: CliSandbox;

  beforeEach(async () => {
    sandbox = await CliSandbox.create();
  });

  afterEach(async () => {
    // Kills whatever a failed test left running and removes its temp dir.
    await sandbox.dispose();
  });

  it(
    'uploads a folder of photos and videos, downloads every file byte-identical, and re-uploads it without sending a byte',
    async () => {
      expect(existsSync(CORPUS), `the sample corpus is missing at ${CORPUS}`).toBe(true);
      const corpus = await walkFiles(CORPUS);
      expect(corpus.length).toBeGreaterThan(20);
      const corpusBytes = corpus.reduce((sum, file) => sum + file.size, 0);

      const data = await sandbox.dir('data');
      const server = await sandbox.startServer(data);
      await sandbox.addUserAndLogin(server, data, 'alice', PASSWORD);

      const first = await sandbox.json<UploadSummary>(['upload', CORPUS, '--to', 'backup', '--json']);
      expect(first).toMatchObject({ files: corpus.length, bytesTotal: corpusBytes, failed: [] });
      expect(first.bytesSent + first.bytesDeduplicated).toBe(corpusBytes);

      // The folder arrives as backup/corpus/..., its layout intact: every file is where it belongs.
      const downloads = await sandbox.dir('downloads');
      await inPool(corpus, 3, async (file, index) => {
        const remotePath = `backup/corpus/${file.relativePath}`;
        const out = join(downloads, `${index}-${file.relativePath.replaceAll('/', '_')}`);
        const got = await sandbox.json<{ path: string; bytes: number }>(['get', remotePath, '--out', out, '--json']);
        expect(got).toMatchObject({ path: remotePath, bytes: file.size });
        await expectSameBytes(out, file.absolutePath);
      });

      const again = await sandbox.json<UploadSummary>(['upload', CORPUS, '--to', 'backup', '--json']);
      expect(again).toMatchObject({
        files: corpus.length,
        bytesTotal: corpusBytes,
        bytesSent: 0,
        bytesDeduplicated: corpusBytes,
        failed: [],
      });

      expect(await server.stop()).toEqual({ code: 0, signal: null });
    },
    120_000 * TIME_SCALE,
  );

  it(
    'resumes an upload killed mid-transfer, across a server restart, sending only the chunks still missing',
    async () => {
      const size = 50 * MiB;
      const data = await sandbox.dir('data');
      let server: CliServer = await sandbox.startServer(data);
      await sandbox.addUserAndLogin(server, data, 'bob', PASSWORD);

      const file = join(await sandbox.dir('local'), 'big.bin');
      await writeFile(file, pseudoRandomBytes(size, 0x5eed_50));
      // The negotiation the CLI sends for this file. Negotiating is idempotent for the same content
      // and path (same uploadId, current missing list), which is how the test learns the id to
      // watch. It negotiates before the CLI starts so the two requests cannot race each other.
      const print = await fingerprintFile(file);
      const distinctChunks = new Set(print.chunks.map((c) => c.hash)).size;
      const negotiation: UploadRequest = {
        path: 'big.bin',
        size,
        mtime: Math.floor((await stat(file)).mtimeMs),
        contentHash: print.contentHash,
        manifest: encodeManifest(print.chunks.map(({ hash, length }) => ({ hash, length }))).toString('base64'),
      };
      const { token } = JSON.parse(await readFile(join(sandbox.configDir, 'credentials.json'), 'utf8')) as { token: string };

      let api = new RawApi(server.url, token);
      let atKill: UploadStatus | undefined;
      try {
        const begun = await api.call<UploadStatus>('POST', '/uploads', negotiation);
        expect(begun.status, JSON.stringify(begun.body)).toBe(201);
        expect(begun.body).toMatchObject({ state: 'pending', missingBytes: size });
        const uploadId = begun.body.uploadId!;
        const upload = sandbox.spawn(['upload', file, '--json']);
        const uploadOutput = collectOutput(upload);
        // Kill the client as soon as a few chunks are in; every 20 ms is far finer than the
        // seconds 50 MiB take.
        for (;;) {
          const polled = await api.call<UploadStatus>('GET', `/uploads/${uploadId}`);
          expect(polled.status, JSON.stringify(polled.body)).toBe(200);
          atKill = polled.body;
          if (distinctChunks - polled.body.missing.length >= 4) break;
          if (upload.exitCode !== null)
            throw new Error(`the upload ended before it could be interrupted:\n${uploadOutput.stdout()}\n${uploadOutput.stderr()}`);
          await sleep(20);
        }
        upload.kill('SIGKILL');
        expect(await exited(upload)).toEqual({ code: null, signal: 'SIGKILL' });
      } finally {
        await api.close();
      }
      if (atKill === undefined) throw new Error('unreachable: the loop above polls at least once');
      const uploadId = atKill.uploadId!;
      const receivedAtKill = size - atKill.missingBytes;
      expect(atKill.state).toBe('pending');
      expect(receivedAtKill).toBeGreaterThan(0);
      expect(atKill.missingBytes).toBeGreaterThan(0);

      // A clean restart in between, at the same address, loses nothing that was received.
      const port = Number(new URL(server.url).port);
      expect(await server.stop()).toEqual({ code: 0, signal: null });
      server = await sandbox.startServer(data, { port });
      api = new RawApi(server.url, token);
      let beforeRerun: UploadStatus;
      try {
        const status = await api.call<UploadStatus>('GET', `/uploads/${uploadId}`);
        expect(status.status, JSON.stringify(status.body)).toBe(200);
        beforeRerun = status.body;
      } finally {
        await api.close();
      }
      expect(beforeRerun.state).toBe('pending');
      expect(beforeRerun.missingBytes).toBeGreaterThan(0);
      expect(beforeRerun.missingBytes).toBeLessThanOrEqual(atKill.missingBytes);

      const rerun = await sandbox.run(['upload', file, '--json']);
      expectExit(rerun, 0);
      const summary = JSON.parse(rerun.stdout) as UploadSummary;
      expect(summary).toMatchObject({ files: 1, bytesTotal: size, failed: [] });
      expect(summary.bytesSent).toBe(beforeRerun.missingBytes);
      expect(summary.bytesSent).toBeLessThanOrEqual(size - receivedAtKill);
      expect(summary.bytesSent).toBeLessThan(size);
      expect(summary.bytesDeduplicated).toBe(size - summary.bytesSent);

      const out = join(await sandbox.dir('downloads'), 'big.bin');
      expectExit(await sandbox.run(['get', 'big.bin', '--out', out]), 0);
      await expectSameBytes(out, file);

      expect(await server.stop()).toEqual({ code: 0, signal: null });
    },
    120_000 * TIME_SCALE,
  );

  it(
    'moves a removed file to the trash, restores it byte-identical, and deletes it for good when the trash is emptied',
    async () => {
      const photo = join(CORPUS, 'images', 'gps', 'DSCN0010.jpg');
      const data = await sandbox.dir('data');
      const server = await sandbox.startServer(data);
      await sandbox.addUserAndLogin(server, data, 'carol', PASSWORD);
      expect(await sandbox.json<UploadSummary>(['upload', photo, '--to', 'album', '--json'])).toMatchObject({ files: 1, failed: [] });
      const path = 'album/DSCN0010.jpg';

      const removed = await sandbox.json<TrashEntry>(['rm', path, '--json']);
      expect(removed).toMatchObject({ path, kind: 'file', size: (await stat(photo)).size });
      expect(await sandbox.json<TrashEntry[]>(['trash', 'ls', '--json'])).toEqual([
        expect.objectContaining({ id: removed.id, path, kind: 'file' }),
      ]);
      expect((await sandbox.json<FileEntry[]>(['ls', 'album', '--json'])).map((e) => e.path)).not.toContain(path);

      expectExit(await sandbox.run(['trash', 'restore', removed.id]), 0);
      const restored = join(await sandbox.dir('downloads'), 'restored.jpg');
      expectExit(await sandbox.run(['get', path, '--out', restored]), 0);
      await expectSameBytes(restored, photo);

      const removedAgain = await sandbox.json<TrashEntry>(['rm', path, '--json']);
      expect(await sandbox.json<{ entries: number }>(['trash', 'empty', '--json'])).toEqual({ entries: 1 });
      expect(await sandbox.json<TrashEntry[]>(['trash', 'ls', '--json'])).toEqual([]);
      const restoreEmptied = await sandbox.run(['trash', 'restore', removedAgain.id]);
      expectExit(restoreEmptied, EXIT_NOT_FOUND);
      expect(restoreEmptied.stderr).toContain(removedAgain.id);

      expect(await server.stop()).toEqual({ code: 0, signal: null });
    },
    90_000 * TIME_SCALE,
  );

  it(
    'exits with the documented codes and says how to fix it: not logged in, wrong password, missing file, invalid path',
    async () => {
      const photo = join(CORPUS, 'images', 'gps', 'DSCN0012.jpg');
      const notLoggedIn = await sandbox.run(['upload', photo, '--json']);
      expectExit(notLoggedIn, EXIT_AUTH);
      expect(notLoggedIn.stdout).toBe('');
      expect(notLoggedIn.stderr).toMatch(/not logged in/i);
      expect(notLoggedIn.stderr).toMatch(/fix:.*photovault login/);

      const data = await sandbox.dir('data');
      const server = await sandbox.startServer(data);
      expectExit(await sandbox.run(['user', 'add', 'dave', '--password-stdin', '--data', data], { stdin: `${PASSWORD}\n` }), 0);

      const wrongPassword = await sandbox.run(['login', '--server', server.url, '--user', 'dave', '--password-stdin'], {
        stdin: 'not the password\n',
      });
      expectExit(wrongPassword, EXIT_AUTH);
      expect(wrongPassword.stderr).toMatch(/password/i);
      expect(existsSync(join(sandbox.configDir, 'credentials.json'))).toBe(false);

      expectExit(await sandbox.run(['login', '--server', server.url, '--user', 'dave', '--password-stdin'], { stdin: `${PASSWORD}\n` }), 0);

      const out = join(await sandbox.dir('downloads'), 'missing.jpg');
      const missing = await sandbox.run(['get', 'holidays/missing.jpg', '--out', out]);
      expectExit(missing, EXIT_NOT_FOUND);
      expect(missing.stderr).toContain('holidays/missing.jpg');
      expect(await readdir(dirname(out))).toEqual([]);

      const dotDot = await sandbox.run(['ls', 'holidays/../../etc', '--json']);
      expectExit(dotDot, EXIT_USAGE);
      expect(dotDot.stdout).toBe('');
      expect(dotDot.stderr).toMatch(/'\.\.'/);

      expect(await server.stop()).toEqual({ code: 0, signal: null });
    },
    60_000 * TIME_SCALE,
  );

  it(
    'stops `server start` with exit code 6 naming a configured backend it cannot reach',
    async () => {
      const closed = await freePort();
      const backends: [string, Record<string, string>, RegExp][] = [
        ['PostgreSQL', { PHOTOVAULT_DATABASE_URL: `postgres://photovault:secret@127.0.0.1:${closed}/photovault` }, /PostgreSQL/],
        ['Redis', { PHOTOVAULT_REDIS_URL: `redis://127.0.0.1:${closed}` }, /Redis/],
        ['NATS', { PHOTOVAULT_NATS_URL: `nats://127.0.0.1:${closed}` }, /NATS/],
        [
          'S3',
          { PHOTOVAULT_S3_ENDPOINT: `http://127.0.0.1:${closed}`, PHOTOVAULT_S3_ACCESS_KEY: 'key', PHOTOVAULT_S3_SECRET_KEY: 'secret' },
          /S3 endpoint/,
        ],
      ];
      for (const [name, env, named] of backends) {
        const data = await sandbox.dir(`data-${name}`);
        const started = await sandbox.run(['server', 'start', '--data', data, '--host', '127.0.0.1', '--port', '0'], { env });
        expectExit(started, EXIT_UNREACHABLE);
        expect(started.stderr, name).toMatch(named);
        expect(started.stderr, name).toContain(`127.0.0.1:${closed}`);
        expect(started.stderr, `${name}: the password stays out of the message`).not.toContain('secret@');
      }
    },
    60_000 * TIME_SCALE,
  );

  // Linux only: the restart is for glibc's malloc (bin/photovault), and /proc shows what it did.
  it.runIf(process.platform === 'linux')(
    "restarts a command that moves contents in bulk with malloc's huge pages, as the same process, and keeps a user's own choice",
    async () => {
      const server = await sandbox.startServer(await sandbox.dir('data'));
      expect(environmentOf(server.process.pid!).get('GLIBC_TUNABLES')).toBe('glibc.malloc.hugetlb=1');
      const own = await startServer(await sandbox.dir('own'), {
        tracker: sandbox.tracker,
        env: { ...sandbox.serverEnv, GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0' },
      });
      expect(environmentOf(own.process.pid!).get('GLIBC_TUNABLES')).toBe('glibc.malloc.hugetlb=0');
      expect(await server.stop()).toEqual({ code: 0, signal: null });
      expect(await own.stop()).toEqual({ code: 0, signal: null });
    },
    60_000 * TIME_SCALE,
  );
});

/** The environment a running process was started (or last exec'd) with. */
function environmentOf(pid: number): Map<string, string> {
  const entries = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean);
  return new Map(entries.map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]));
}
