import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CliSandbox, type CliServer, describeResult, exited } from '../support/cli.js';
import { pseudoRandomBytes } from '../support/random.js';

const PASSWORD = 'correct horse battery staple';

/** Waits until the check passes, up to 30 s. */
async function eventually(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached within 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const same = async (path: string, bytes: Buffer) => existsSync(path) && (await readFile(path)).equals(bytes);

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

  const syncOnce = (dir: string, configDir?: string) =>
    sandbox.json<{ downloaded: number }>(['sync', dir, '--once', '--json'], configDir ? { configDir } : {});

  it('never shows a partial file under a real name when a daemon is killed mid-download, and converges after', async () => {
    const big = pseudoRandomBytes(60 * 1024 * 1024, 31);
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

    await syncOnce(desktop, desktopConfig);
    expect(await same(target, big)).toBe(true);
    expect(await readFile(join(desktop, 'small.txt'), 'utf8')).toBe('small');
    expect((await readdir(desktop)).filter((name) => name.endsWith('.pvpart'))).toEqual([]);
  });

  it('reconnects after a server restart and catches up', async () => {
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
  });
});
