import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteEventBus } from '../../src/infra/bus/sqlite.event-bus.js';
import { waitFor } from '../support/wait.js';
import { changeFanoutContract } from './change-fanout.contract.js';
import { eventBusContract } from './event-bus.contract.js';

const dirs: string[] = [];

async function busFile(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'photovault-bus-'));
  dirs.push(dir);
  return join(dir, 'bus.db');
}

// Runs after the contract's own afterEach has closed the buses.
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

eventBusContract('SqliteEventBus', async () => {
  const file = await busFile();
  const reopen = () => SqliteEventBus.open(file, { pollIntervalMs: 20 });
  return { bus: await reopen(), reopen };
});

changeFanoutContract('SqliteEventBus', async (onError) => SqliteEventBus.open(await busFile(), { onError }));

describe('SqliteEventBus', () => {
  const payload = { ownerId: 'o', fileId: 'f', versionId: 'v', path: '/a.jpg', contentHash: 'h', size: 1 };
  const DAY = 24 * 60 * 60 * 1000;

  it('prunes messages older than seven days that no delivery still needs', async () => {
    const file = await busFile();
    let now = Date.UTC(2030, 0, 1);
    const bus = await SqliteEventBus.open(file, { now: () => now });
    try {
      await bus.publish('file.uploaded', payload); // no durable yet: nobody needs it
      const idle = await bus.subscribe({ durable: 'idle', stream: 'file-uploads' }, async () => {});
      await idle.stop();
      await bus.publish('file.uploaded', payload); // still owed to "idle"

      now += 6 * DAY;
      expect(await bus.prune()).toBe(0);
      now += 2 * DAY;
      expect(await bus.prune()).toBe(1);

      const sqlite = new Database(file, { readonly: true });
      try {
        expect(sqlite.prepare('select count(*) as n from messages').get()).toEqual({ n: 1 });
      } finally {
        sqlite.close();
      }
    } finally {
      await bus.close();
    }
  });

  it("delivers between two buses sharing one file, as two processes would, waiting out each other's write locks", async () => {
    const file = await busFile();
    const worker = await SqliteEventBus.open(file, { pollIntervalMs: 20 });
    const server = await SqliteEventBus.open(file, { pollIntervalMs: 20 });
    try {
      const received: string[] = [];
      await worker.subscribe({ durable: 'thumbs', stream: 'file-uploads' }, async (message) => {
        received.push(message.id);
      });
      await server.publish('file.uploaded', payload);
      await waitFor(() => received.length === 1);
    } finally {
      await Promise.all([worker.close(), server.close()]);
    }
  });

  it('waits out a write lock another process holds, then stores a publish whole, its delivery taken by an idle subscriber', async () => {
    const file = await busFile();
    const bus = await SqliteEventBus.open(file, { pollIntervalMs: 20 });
    const other = new Database(file);
    try {
      const received: string[] = [];
      await bus.subscribe({ durable: 'thumbs', stream: 'file-uploads' }, async (message) => {
        received.push(message.id);
      });
      other.exec('begin immediate');
      let published = false;
      const publishing = bus.publish('file.uploaded', payload).then(() => (published = true));
      await new Promise((resolve) => setTimeout(resolve, 150));
      expect(published).toBe(false);
      expect(other.prepare('select count(*) as n from messages').get()).toEqual({ n: 0 });
      other.exec('commit');
      await publishing;
      await waitFor(() => received.length === 1);
      expect(other.prepare('select count(*) as n from messages').get()).toEqual({ n: 1 });
      // Handled and acked: no delivery left.
      await waitFor(() => (other.prepare('select count(*) as n from deliveries').get() as { n: number }).n === 0);
    } finally {
      other.close();
      await bus.close();
    }
  });
});
