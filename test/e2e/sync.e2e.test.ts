import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FileEntry } from '../../src/core/protocol.js';
import type { FolderStatus } from '../../src/daemon/control-socket.js';
import type { SyncSummary } from '../../src/daemon/sync-engine.js';
import { CliSandbox, type CliServer, collectOutput, describeResult, exited } from '../support/cli.js';
import { pseudoRandomBytes, xorshift } from '../support/random.js';
import { TIME_SCALE } from '../support/time-scale.js';

const PASSWORD = 'correct horse battery staple';
const MiB = 1024 * 1024;

/** Waits until the check passes, up to 30 s unless told; `detail` adds what helps a failure message. */
async function eventually(
  what: string,
  check: () => Promise<boolean>,
  options: { timeoutMs?: number; detail?: () => string | Promise<string> } = {},
): Promise<void> {
  const timeoutMs = (options.timeoutMs ?? 30_000) * TIME_SCALE;
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${timeoutMs / 1000} s\n${(await options.detail?.()) ?? ''}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const same = async (path: string, bytes: Buffer) => existsSync(path) && (await readFile(path)).equals(bytes);
const sha256 = (bytes: Buffer | string) => createHash('sha256').update(bytes).digest('hex');

/** Lists a folder recursively, again if a daemon renames a folder away while it is being walked. */
async function listWhileSyncing(root: string) {
  for (;;) {
    try {
      return await readdir(root, { recursive: true, withFileTypes: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || !existsSync(root)) throw error;
    }
  }
}

/** Every file under a synced folder but the daemon's state, '/'-separated path to SHA-256. */
async function tree(root: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const entry of await listWhileSyncing(root)) {
    if (!entry.isFile()) continue;
    const path = relative(root, join(entry.parentPath, entry.name)).split(sep).join('/');
    if (path.startsWith('.photovault/')) continue;
    // A file can be renamed into place or away between listing and reading.
    const bytes = await readFile(join(root, path)).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return null;
      throw error;
    });
    if (bytes) files[path] = sha256(bytes);
  }
  return files;
}

/** A `photovault sync DIR` daemon the test started, with its output for failure messages. */
interface Daemon {
  process: ChildProcess;
  output(): string;
  /** Resolves once the daemon answers on its control socket (its signal handlers are set by then). */
  ready(): Promise<void>;
  /** Once it is ready, SIGTERM; the daemon must finish its pass and exit 0. */
  stop(): Promise<void>;
}

describe('photovault sync as processes', () => {
  let sandbox: CliSandbox;
  let server: CliServer;
  let dataDir: string;
  let laptop: string;
  let desktop: string;
  let desktopConfig: string;

  beforeEach(async () => {
    sandbox = await CliSandbox.create();
    dataDir = await sandbox.dir('server-data');
    laptop = await sandbox.dir('laptop');
    desktop = await sandbox.dir('desktop');
    desktopConfig = await sandbox.dir('desktop-config');
    server = await sandbox.startServer(dataDir);
    await sandbox.addUserAndLogin(server, dataDir, 'alice', PASSWORD);
    const login = await sandbox.run(['login', '--server', server.url, '--user', 'alice', '--password-stdin', '--device', 'desktop'], {
      stdin: `${PASSWORD}\n`,
      configDir: desktopConfig,
    });
    expect(login.code, describeResult(login)).toBe(0);
  });
  afterEach(async () => {
    await sandbox.dispose();
  });

  /** The laptop folder syncs as the sandbox's client (device e2e-laptop), the desktop folder as device "desktop". */
  const configOf = (dir: string) => (dir === desktop ? desktopConfig : sandbox.configDir);

  const syncOnce = (dir: string, timeoutMs?: number) =>
    sandbox.json<SyncSummary>(['sync', dir, '--once', '--json'], { configDir: configOf(dir), timeoutMs });

  /** What the running daemons report through their control sockets. */
  const statuses = () => sandbox.json<FolderStatus[]>(['status', '--json']);

  const startDaemon = (dir: string): Daemon => {
    const child = sandbox.spawn(['sync', dir], { configDir: configOf(dir) });
    const output = collectOutput(child);
    const log = () => `photovault sync ${dir}:\nstdout:\n${output.stdout()}\nstderr:\n${output.stderr()}`;
    const ready = () =>
      eventually(`the daemon of ${dir} on its control socket`, async () => (await statuses()).some((status) => status.folder === dir), {
        detail: log,
      });
    return {
      process: child,
      output: log,
      ready,
      async stop() {
        await ready();
        child.kill('SIGTERM');
        expect(await exited(child), log()).toEqual({ code: 0, signal: null });
      },
    };
  };

  /** The server's view of a remote folder, name to content hash. */
  const remoteHashes = async (dir = '') =>
    Object.fromEntries((await sandbox.json<FileEntry[]>(['ls', dir, '--json'])).map((entry) => [entry.name, entry.contentHash]));

  it('never shows a partial file under a real name when a daemon is killed mid-download, and converges after', async () => {
    const big = pseudoRandomBytes(60 * MiB, 31);
    await writeFile(join(laptop, 'movie.mp4'), big);
    await writeFile(join(laptop, 'small.txt'), 'small');
    await syncOnce(laptop);

    const daemon = sandbox.spawn(['sync', desktop]);
    // Kill it as soon as a download's temp file appears.
    await eventually('a download in progress', async () => (await readdir(desktop)).some((name) => name.endsWith('.pvpart')));
    daemon.kill('SIGKILL');
    await exited(daemon);
    const target = join(desktop, 'movie.mp4');
    expect(!existsSync(target) || (await same(target, big))).toBe(true);

    await syncOnce(desktop);
    expect(await same(target, big)).toBe(true);
    expect(await readFile(join(desktop, 'small.txt'), 'utf8')).toBe('small');
    expect((await readdir(desktop)).filter((name) => name.endsWith('.pvpart'))).toEqual([]);
  });

  it(
    'resumes an upload whose daemon was killed mid-transfer, sending less than the whole file, and the other side never sees it partial',
    async () => {
      const size = 60 * MiB;
      const big = pseudoRandomBytes(size, 47);
      await writeFile(join(laptop, 'movie.mp4'), big);
      const receiver = startDaemon(desktop);

      // Every time the file exists under its real name on the other side, it must be whole.
      const target = join(desktop, 'movie.mp4');
      const partials: string[] = [];
      let whole = false;
      let watching = true;
      const watcher = (async () => {
        let checked = '';
        while (watching) {
          const info = await stat(target).catch(() => null);
          if (info) {
            const seen = `${info.ino}:${info.mtimeMs}:${info.size}`;
            if (info.size !== size) partials.push(`${info.size} bytes`);
            else if (seen !== checked) {
              if ((await readFile(target)).equals(big)) whole = true;
              else partials.push(`${size} bytes of other content`);
              checked = seen;
            }
          }
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      })();

      try {
        const sender = startDaemon(laptop);
        // The server counts verified chunk bytes as they arrive; kill once a few MiB are in.
        await eventually('an upload in progress', async () => (await chunkBytesReceived(server.url)) >= 4 * MiB, {
          detail: sender.output,
        });
        sender.process.kill('SIGKILL');
        await exited(sender.process);
        // Killed mid-transfer: nothing committed. (A chunk whose body had fully arrived when the
        // client died is still stored; a CLI run later, that is long done.)
        expect(await remoteHashes()).toEqual({});
        const receivedBeforeRestart = await chunkBytesReceived(server.url);
        expect(receivedBeforeRestart).toBeLessThan(size);

        const restarted = startDaemon(laptop);
        await eventually('the file whole on the other side', async () => whole, {
          timeoutMs: 60_000,
          detail: () => `${restarted.output()}\n${receiver.output()}`,
        });
        expect(await tree(desktop)).toEqual(await tree(laptop));
        const sent = (await statuses()).find((status) => status.folder === laptop)?.totals;
        expect(sent).toMatchObject({ uploaded: 1 });
        // Only the chunks the server still lacked went again.
        expect(sent!.bytesSent).toBe(size - receivedBeforeRestart);
        expect(await chunkBytesReceived(server.url)).toBe(size);
        await restarted.stop();
        await receiver.stop();
      } finally {
        watching = false;
        await watcher;
      }
      expect(partials).toEqual([]);
    },
    120_000 * TIME_SCALE,
  );

  it(
    'still propagates a delete made in the same pass as an upload whose daemon was killed',
    async () => {
      await writeFile(join(laptop, 'old.txt'), 'old');
      await syncOnce(laptop);
      await syncOnce(desktop);
      const big = pseudoRandomBytes(60 * MiB, 53);
      await rm(join(laptop, 'old.txt'));
      await writeFile(join(laptop, 'movie.mp4'), big);

      const sender = startDaemon(laptop);
      await eventually('an upload in progress', async () => (await chunkBytesReceived(server.url)) >= 4 * MiB, { detail: sender.output });
      sender.process.kill('SIGKILL');
      await exited(sender.process);
      const restarted = startDaemon(laptop);
      await eventually(
        'the upload and the delete on the server',
        async () => isDeepStrictEqual(await remoteHashes(), { 'movie.mp4': sha256(big) }),
        { timeoutMs: 60_000, detail: async () => `server: ${JSON.stringify(await remoteHashes())}\n${restarted.output()}` },
      );
      await restarted.stop();
      await syncOnce(desktop);
      expect(await tree(desktop)).toEqual({ 'movie.mp4': sha256(big) });
    },
    120_000 * TIME_SCALE,
  );

  it(
    'propagates creates, edits, deletes, renames and moves both ways between two running daemons, in nested folders, with empty files and non-ASCII names',
    async () => {
      const daemons = [startDaemon(laptop), startDaemon(desktop)];
      const expected: Record<string, string> = {};
      const put = async (root: string, path: string, content: Buffer | string) => {
        await mkdir(dirname(join(root, path)), { recursive: true });
        await writeFile(join(root, path), content);
        expected[path] = sha256(content);
      };
      const remove = async (root: string, path: string) => {
        await rm(join(root, path));
        delete expected[path];
      };
      /** A file or a folder; the files under it move along. */
      const move = async (root: string, from: string, to: string) => {
        await mkdir(dirname(join(root, to)), { recursive: true });
        await rename(join(root, from), join(root, to));
        for (const path of Object.keys(expected)) {
          if (path !== from && !path.startsWith(`${from}/`)) continue;
          expected[to + path.slice(from.length)] = expected[path]!;
          delete expected[path];
        }
      };
      const create = async (root: string, top: string, seed: number) => {
        await put(root, `${top}/notes.md`, `# notes from ${top}`);
        await put(root, `${top}/empty.txt`, '');
        await put(root, `${top}/Photos/2024/Été/plage.jpg`, pseudoRandomBytes(300_000, seed));
        await put(root, `${top}/Photos/2024/Été/ボート.jpg`, pseudoRandomBytes(120_000, seed + 1));
        await put(root, `${top}/Ünïcødé – 日本語.txt`, 'Grüße, 世界');
      };
      /** Changes a set of files made by create(), on whichever side it was not created. */
      const change = async (root: string, top: string) => {
        await put(root, `${top}/notes.md`, `# notes from ${top}\n- edited elsewhere`);
        await put(root, `${top}/Ünïcødé – 日本語.txt`, '');
        await remove(root, `${top}/empty.txt`);
        await move(root, `${top}/Photos/2024/Été/ボート.jpg`, `${top}/Photos/2024/Été/bateau.jpg`);
        await move(root, `${top}/Photos/2024/Été/plage.jpg`, `${top}/Archive/2023/plage.jpg`);
        await move(root, `${top}/Photos`, `${top}/Pictures`);
      };
      const converged = (step: string) =>
        eventually(
          `both folders holding what ${step} left`,
          async () => isDeepStrictEqual(await tree(laptop), expected) && isDeepStrictEqual(await tree(desktop), expected),
          {
            timeoutMs: 60_000,
            detail: async () =>
              `expected ${JSON.stringify(expected, null, 1)}\nlaptop ${JSON.stringify(await tree(laptop), null, 1)}\n` +
              `desktop ${JSON.stringify(await tree(desktop), null, 1)}\n${daemons.map((d) => d.output()).join('\n')}`,
          },
        );

      await create(laptop, 'Made on laptop', 1);
      await converged('creating on the laptop');
      await create(desktop, 'Made on desktop', 3);
      await converged('creating on the desktop');
      await change(desktop, 'Made on laptop');
      await converged('changing on the desktop what the laptop made');
      await change(laptop, 'Made on desktop');
      await converged('changing on the laptop what the desktop made');
      expect(Object.keys(await tree(desktop)).sort()).toEqual(
        ['Made on desktop', 'Made on laptop']
          .flatMap((top) =>
            ['Archive/2023/plage.jpg', 'Pictures/2024/Été/bateau.jpg', 'notes.md', 'Ünïcødé – 日本語.txt'].map((path) => `${top}/${path}`),
          )
          .sort(),
      );
      for (const daemon of daemons) await daemon.stop();
    },
    120_000 * TIME_SCALE,
  );

  it(
    'keeps both contents of a file edited on both sides while one daemon was stopped, the late one under a conflict name',
    async () => {
      await writeFile(join(laptop, 'notes.md'), 'first');
      await syncOnce(laptop);
      await syncOnce(desktop);
      const online = startDaemon(laptop);
      let offline = startDaemon(desktop);
      await offline.stop();

      await writeFile(join(laptop, 'notes.md'), 'edited on the laptop');
      await eventually('the laptop edit on the server', async () => (await remoteHashes())['notes.md'] === sha256('edited on the laptop'), {
        detail: online.output,
      });
      await writeFile(join(desktop, 'notes.md'), 'edited on the desktop while it was offline');
      offline = startDaemon(desktop);

      const conflictName = /^notes\.conflict-desktop-\d{8}-\d{6}\.md$/;
      const hasBoth = async (root: string) => {
        const names = (await readdir(root)).filter((name) => name !== '.photovault');
        return names.length === 2 && names.includes('notes.md') && names.some((name) => conflictName.test(name));
      };
      await eventually('both versions on both sides', async () => (await hasBoth(laptop)) && (await hasBoth(desktop)), {
        detail: () => `${online.output()}\n${offline.output()}`,
      });
      await eventually('the same content on both sides', async () => isDeepStrictEqual(await tree(laptop), await tree(desktop)));
      for (const root of [laptop, desktop]) {
        expect(await readFile(join(root, 'notes.md'), 'utf8')).toBe('edited on the laptop');
        const conflict = (await readdir(root)).find((name) => conflictName.test(name))!;
        expect(await readFile(join(root, conflict), 'utf8')).toBe('edited on the desktop while it was offline');
      }
      await online.stop();
      await offline.stop();
    },
    90_000 * TIME_SCALE,
  );

  it(
    'keeps a modification over a delete made on the other side, whichever side was offline',
    async () => {
      await writeFile(join(laptop, 'deleted offline.txt'), 'v1');
      await writeFile(join(laptop, 'edited offline.txt'), 'v1');
      await syncOnce(laptop);
      await syncOnce(desktop);
      const online = startDaemon(laptop);
      let offline = startDaemon(desktop);
      await offline.stop();

      await writeFile(join(laptop, 'deleted offline.txt'), 'v2, edited on the laptop');
      await rm(join(laptop, 'edited offline.txt'));
      await eventually(
        'the laptop edit and delete on the server',
        async () => isDeepStrictEqual(await remoteHashes(), { 'deleted offline.txt': sha256('v2, edited on the laptop') }),
        { detail: online.output },
      );
      await rm(join(desktop, 'deleted offline.txt'));
      await writeFile(join(desktop, 'edited offline.txt'), 'v2, edited on the desktop while it was offline');
      offline = startDaemon(desktop);

      const expected = {
        'deleted offline.txt': sha256('v2, edited on the laptop'),
        'edited offline.txt': sha256('v2, edited on the desktop while it was offline'),
      };
      await eventually(
        'both edits on both sides',
        async () => isDeepStrictEqual(await tree(laptop), expected) && isDeepStrictEqual(await tree(desktop), expected),
        {
          detail: async () =>
            `laptop ${JSON.stringify(await tree(laptop))}\ndesktop ${JSON.stringify(await tree(desktop))}\n${online.output()}\n${offline.output()}`,
        },
      );
      expect(await remoteHashes()).toEqual(expected);
      await online.stop();
      await offline.stop();
    },
    90_000 * TIME_SCALE,
  );

  it(
    'reconnects after a server restart and catches up',
    async () => {
      await writeFile(join(laptop, 'before.txt'), 'before');
      await syncOnce(laptop);
      const daemon = sandbox.spawn(['sync', desktop]);
      await eventually('the first file', () => same(join(desktop, 'before.txt'), Buffer.from('before')));

      const port = Number(new URL(server.url).port);
      expect((await server.stop()).code).toBe(0);
      server = await sandbox.startServer(dataDir, { port });
      await writeFile(join(laptop, 'after.txt'), 'after the restart');
      await syncOnce(laptop);
      await eventually('the file committed after the restart', () => same(join(desktop, 'after.txt'), Buffer.from('after the restart')));
      daemon.kill('SIGTERM');
      expect((await exited(daemon)).code).toBe(0);
    },
    90_000 * TIME_SCALE,
  );

  it(
    'converges an initial sync of 10,000 small files in nested folders',
    async () => {
      const next = xorshift(10_000);
      const paths: string[] = [];
      for (let i = 0; i < 10_000; i++)
        paths.push(`year ${2000 + (i % 10)}/month ${Math.floor(i / 10) % 12}/day ${Math.floor(i / 120) % 28}/f${i}.txt`);
      const sizes = paths.map(() => 200 + (next() % 4000));
      for (let start = 0; start < paths.length; start += 100) {
        await Promise.all(
          paths.slice(start, start + 100).map(async (path, j) => {
            await mkdir(dirname(join(laptop, path)), { recursive: true });
            await writeFile(join(laptop, path), pseudoRandomBytes(sizes[start + j]!, start + j + 1));
          }),
        );
      }

      expect(await syncOnce(laptop, 15 * 60_000)).toMatchObject({ uploaded: 10_000, failed: [] });
      const down = await syncOnce(desktop, 15 * 60_000);
      expect(down).toMatchObject({ downloaded: 10_000, failed: [] });
      const [sent, received] = [await tree(laptop), await tree(desktop)];
      expect(Object.keys(received).length).toBe(10_000);
      expect(received).toEqual(sent);
    },
    30 * 60_000,
  );
});

/** Bytes of verified chunks the server has received since it started (its /metrics counter). */
async function chunkBytesReceived(serverUrl: string): Promise<number> {
  const text = await (await fetch(new URL('/metrics', serverUrl))).text();
  const line = text.split('\n').find((l) => l.startsWith('photovault_upload_chunk_bytes_total '));
  return line ? Number(line.split(' ')[1]) : 0;
}
