import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, afterEach, expect, it } from 'vitest';
import { isPvError } from '../../src/core/errors.js';
import { RedisKvStore } from '../../src/infra/kv/redis.kv-store.js';
import { describeWithRedis, REDIS_TEST_URL, testKeyPrefix } from '../support/redis.js';
import { kvStoreContract } from './kv-store.contract.js';

const run = testKeyPrefix();
afterAll(() => run.deleteKeys());

describeWithRedis('RedisKvStore', () => {
  kvStoreContract('RedisKvStore', () => RedisKvStore.open({ url: REDIS_TEST_URL, keyPrefix: run.keyPrefix }));

  const opened: { close(): Promise<void> }[] = [];
  const open = async (keyPrefix = run.keyPrefix, url = REDIS_TEST_URL) => {
    const store = await RedisKvStore.open({ url, keyPrefix });
    opened.push(store);
    return store;
  };
  afterEach(async () => {
    for (const thing of opened.splice(0).reverse()) await thing.close();
  });

  it('counts increments racing from two clients without losing one, in a single window', async () => {
    const [a, b] = [await open(), await open()];
    const ttlMs = 60_000;
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? a : b).increment('race', { ttlMs })));
    expect([...results].sort((x, y) => x - y)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    const raw = new Redis(REDIS_TEST_URL);
    try {
      const pttl = await raw.pttl(`${run.keyPrefix}race`);
      expect(pttl).toBeGreaterThan(0);
      expect(pttl).toBeLessThanOrEqual(ttlMs);
    } finally {
      raw.disconnect();
    }
  });

  it('keeps deployments with different key prefixes apart', async () => {
    const first = await open(`${run.keyPrefix}first:`);
    const second = await open(`${run.keyPrefix}second:`);
    await first.set('shared-name', 'first');
    expect(await second.get('shared-name')).toBeNull();
    await second.set('shared-name', 'second');
    expect(await first.get('shared-name')).toBe('first');
    expect(await first.increment('counter')).toBe(1);
    expect(await second.increment('counter')).toBe(1);
  });

  it('fails to open at once, naming the URL, when nothing listens there', async () => {
    const url = `redis://127.0.0.1:${await freePort()}`;
    const started = Date.now();
    const error = await RedisKvStore.open({ url, keyPrefix: run.keyPrefix }).catch((e: unknown) => e);
    expect(isPvError(error, 'PV_BACKEND_UNREACHABLE')).toBe(true);
    expect((error as Error).message).toContain(url);
    expect((error as Error).message).toMatch(/ECONNREFUSED/);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('fails to open within its timeout when the peer accepts but never answers', async () => {
    const silent = createServer((socket) => socket.on('error', () => {}));
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    try {
      const url = `redis://127.0.0.1:${(silent.address() as AddressInfo).port}`;
      const started = Date.now();
      const error = await RedisKvStore.open({ url, keyPrefix: run.keyPrefix, connectTimeoutMs: 300 }).catch((e: unknown) => e);
      expect(isPvError(error, 'PV_BACKEND_UNREACHABLE')).toBe(true);
      expect((error as Error).message).toContain(url);
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      silent.close();
    }
  });

  it('leaves the password of the URL out of the error', async () => {
    const error = await RedisKvStore.open({ url: `redis://:s3cret@127.0.0.1:${await freePort()}`, keyPrefix: run.keyPrefix }).catch(
      (e: unknown) => e,
    );
    expect((error as Error).message).not.toContain('s3cret');
    expect((error as Error).message).toContain('***@127.0.0.1');
  });

  it('reconnects after losing its connection, and fails fast naming Redis while it is gone', async () => {
    const proxy = await TcpProxy.start(new URL(REDIS_TEST_URL));
    opened.push(proxy);
    const store = await open(run.keyPrefix, proxy.url);
    await store.set('survivor', 'still here');
    proxy.cutConnections();
    expect(await store.get('survivor')).toBe('still here');

    await proxy.close();
    const started = Date.now();
    const error = await store.get('survivor').catch((e: unknown) => e);
    expect(isPvError(error, 'PV_BACKEND_UNREACHABLE')).toBe(true);
    expect((error as Error).message).toContain(proxy.url);
    expect(Date.now() - started).toBeLessThan(6_000);
  });
});

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

/** A TCP proxy in front of Redis whose connections the test can cut, and which it can take away. */
class TcpProxy {
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(target: URL): Promise<TcpProxy> {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = new URL(target);
    url.hostname = '127.0.0.1';
    url.port = String((server.address() as AddressInfo).port);
    const proxy = new TcpProxy(server, url.toString().replace(/\/$/, ''));
    server.on('connection', (client) => {
      const upstream = connect(Number(target.port || 6379), target.hostname);
      client.pipe(upstream).pipe(client);
      for (const socket of [client, upstream]) {
        proxy.sockets.add(socket);
        socket.on('close', () => proxy.sockets.delete(socket));
        socket.on('error', () => socket.destroy());
      }
    });
    return proxy;
  }

  cutConnections(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    const closed = once(this.server, 'close');
    this.server.close();
    this.cutConnections();
    await closed;
  }
}
