import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ControlSocket, type FolderStatus, readStatuses } from '../../src/daemon/control-socket.js';

const status = (folder: string): FolderStatus => ({
  folder,
  remote: 'Pictures',
  connected: true,
  state: 'idle',
  lastPassAt: null,
  rates: { up: 0, down: 0 },
  totals: { uploaded: 1, downloaded: 2, deleted: 0, conflicts: 0, bytesSent: 10, bytesReceived: 20 },
  recent: [],
});

describe('daemon control socket', () => {
  let runtime: string;
  beforeEach(async () => {
    runtime = await mkdtemp(join(tmpdir(), 'pv-run-'));
  });
  afterEach(async () => {
    await rm(runtime, { recursive: true, force: true });
  });

  it("reads every running daemon's status, and nothing once they stop", async () => {
    const a = await ControlSocket.listen(runtime, '/home/a/Pictures', () => status('/home/a/Pictures'));
    const b = await ControlSocket.listen(runtime, '/home/a/Documents', () => status('/home/a/Documents'));
    expect((await readStatuses(runtime)).map((s) => s.folder)).toEqual(['/home/a/Documents', '/home/a/Pictures']);
    await a.close();
    await b.close();
    expect(await readStatuses(runtime)).toEqual([]);
  });

  it('removes the socket a killed daemon left behind', async () => {
    // A socket file nobody listens on any more, as a SIGKILL leaves it.
    const stale = join(runtime, 'sync-0000000000000000.sock');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(stale, () => resolve()));
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await writeFile(stale, '');
    expect(await readStatuses(runtime)).toEqual([]);
    expect(await readdir(runtime)).toEqual([]);
  });

  it('answers that no daemon runs when the runtime dir does not exist', async () => {
    expect(await readStatuses(join(runtime, 'missing'))).toEqual([]);
  });
});
