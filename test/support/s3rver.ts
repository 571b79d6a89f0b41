import crypto from 'node:crypto';
import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from 's3rver';
import { onTestFinished } from 'vitest';
import type { Bucket } from '../../src/infra/blobs/blob-store.js';
import { type S3Location, s3BucketLocations } from '../../src/infra/blobs/s3.blob-store.js';

/** A real S3 server (s3rver) of a test's own, on 127.0.0.1 and a free port, storing into a temp dir. */
export interface TestS3Server {
  endpoint: string;
  /** Every blob bucket on this server, each in an S3 bucket of its name. */
  locations: Record<Bucket, S3Location>;
  /** Stops the server and removes everything it stored. */
  close(): Promise<void>;
}

/** Timeout of a test of many requests or megabytes: s3rver serves them in the test's own process, a few ms each. */
export const SLOW_S3_TEST_MS = 120_000;

/** The one account s3rver knows. */
export const S3RVER_CREDENTIALS = { accessKey: 'S3RVER', secretKey: 'S3RVER' };

export async function startS3rver(): Promise<TestS3Server> {
  singleDesAsTripleDes();
  const directory = await mkdtemp(join(tmpdir(), 'pv-s3rver-'));
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory });
  keepDeletesApart(server.store as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>);
  try {
    const { port } = await server.run();
    const endpoint = `http://127.0.0.1:${port}`;
    return {
      endpoint,
      locations: s3BucketLocations({ endpoint, ...S3RVER_CREDENTIALS }),
      close: async () => {
        await server.close();
        await rm(directory, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await rm(directory, { recursive: true, force: true });
    throw error;
  }
}

/** Starts an s3rver that stops when the calling test finishes. */
export async function s3rverForTest(): Promise<TestS3Server> {
  const server = await startS3rver();
  onTestFinished(() => server.close());
  return server;
}

/**
 * s3rver encrypts the continuation tokens of ListObjectsV2 with single DES, which OpenSSL 3 (Node
 * 17 on) keeps in its legacy provider only: any listing longer than a page fails with a 500.
 * Triple DES with the one key taken three times is the same cipher, and is in the default provider.
 */
function singleDesAsTripleDes(): void {
  for (const name of ['createCipheriv', 'createDecipheriv'] as const) {
    const original = crypto[name] as (...args: unknown[]) => unknown;
    if ((original as { desShim?: true }).desShim) continue;
    const shim = (...args: unknown[]) => {
      const [algorithm, key, iv] = args as [string, Buffer, Buffer];
      return algorithm === 'des' ? original('des-ede3-cbc', Buffer.concat([key, key, key]), iv) : original(...args);
    };
    (crypto as Record<typeof name, unknown>)[name] = Object.assign(shim, { desShim: true as const });
  }
}

/**
 * s3rver keeps objects as files in folders and a delete prunes the folders it empties: two
 * deletes racing for one folder fail with ENOENT, and a delete pruning `.staging/` while a put
 * creates `.staging/<upload>/` under it makes the put fail (both answered as a 500). Real S3
 * servers have no folders. Here deletes take turns, one at a time, and never overlap a write.
 */
/** How long a write in flight holds deletes back at most (s3rver's writes take milliseconds). */
const WRITE_HOLDS_DELETES_MS = 3_000;

export function keepDeletesApart(store: Record<string, (...args: unknown[]) => Promise<unknown>>): void {
  let writing = 0;
  let deleting = 0;
  let waiting: (() => void)[] = [];
  const wakeAll = () => waiting.splice(0).forEach((wake) => wake());
  const until = async (ready: () => boolean) => {
    while (!ready()) await new Promise<void>((wake) => waiting.push(wake));
  };
  // A write the store makes within another (putObjectMultipart calls putObject) is part of that
  // one: made to wait for a delete that waits for the outer write, it would wait for ever.
  const withinWrite = new AsyncLocalStorage<true>();
  for (const method of ['putObject', 'copyObject', 'putObjectMultipart', 'initiateUpload', 'putPart']) {
    const write = store[method]!.bind(store);
    store[method] = async (...args) => {
      if (withinWrite.getStore()) return write(...args);
      await until(() => deleting === 0);
      writing++;
      let counted = true;
      const release = () => {
        if (!counted) return;
        counted = false;
        writing--;
        wakeAll();
      };
      // s3rver never settles a part whose client went away mid-body (its putPart listens for
      // errors on its own transform, not on the request): past this time a write no longer holds
      // deletes back, or that one write would hold every delete, and so every later write, for good.
      const abandoned = setTimeout(release, WRITE_HOLDS_DELETES_MS);
      abandoned.unref();
      try {
        return await withinWrite.run(true, () => write(...args));
      } finally {
        clearTimeout(abandoned);
        release();
      }
    };
  }
  const remove = store.deleteObject!.bind(store);
  let turn: Promise<unknown> = Promise.resolve();
  store.deleteObject = (...args) => {
    deleting++;
    const removal = turn.then(async () => {
      await until(() => writing === 0);
      try {
        return await remove(...args);
      } finally {
        deleting--;
        wakeAll();
      }
    });
    turn = removal.catch(() => {});
    return removal;
  };
}

/** A TCP proxy in front of a server that can stop passing bytes on, as a server that hangs would. */
export async function freezableProxy(target: URL): Promise<{ endpoint: string; freeze(): void; thaw(): void }> {
  let frozen = false;
  const sockets = new Set<Socket>();
  const proxy = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(from);
      from.on('data', (bytes) => frozen || to.write(bytes));
      from.on('close', () => to.destroy());
      from.on('error', () => to.destroy());
    }
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  onTestFinished(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => proxy.close(resolve));
  });
  return {
    endpoint: `http://127.0.0.1:${(proxy.address() as { port: number }).port}`,
    freeze: () => (frozen = true),
    thaw: () => (frozen = false),
  };
}

/** A 127.0.0.1 port nothing listens on (it was free a moment ago). */
export async function unusedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}
