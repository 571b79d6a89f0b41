import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, afterEach, expect, it } from 'vitest';
import { RedisKvStore } from '../../src/infra/kv/redis.kv-store.js';
import { describeWithRedis, REDIS_TEST_URL, testKeyPrefix } from '../support/redis.js';
import { expectUnreachable, freePort, startSilentServer } from '../support/unreachable.js';
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
    const error = await expectUnreachable(() => RedisKvStore.open({ url, keyPrefix: run.keyPrefix }), { names: url, withinMs: 2_000 });
    expect(error.message).toMatch(/ECONNREFUSED/);
  });

  it('fails to open within its timeout when the peer accepts but never answers', async () => {
    const silent = await startSilentServer();
    try {
      const url = `redis://127.0.0.1:${silent.port}`;
      await expectUnreachable(() => RedisKvStore.open({ url, keyPrefix: run.keyPrefix, connectTimeoutMs: 300 }), {
        names: url,
        withinMs: 2_000,
      });
    } finally {
      silent.close();
    }
  });

  it('leaves the password of the URL out of the error', async () => {
    const port = await freePort();
    const error = await expectUnreachable(() => RedisKvStore.open({ url: `redis://:s3cret@127.0.0.1:${port}`, keyPrefix: run.keyPrefix }), {
      names: `redis://:***@127.0.0.1:${port}`,
      withinMs: 2_000,
    });
    expect(error.message).not.toContain('s3cret');
  });

  it('reconnects after losing its connection, and fails fast naming Redis while it is gone', async () => {
    const proxy = await TcpProxy.start(new URL(REDIS_TEST_URL));
    opened.push(proxy);
    const store = await open(run.keyPrefix, proxy.url);
    await store.set('survivor', 'still here');
    proxy.cutConnections();
    expect(await store.get('survivor')).toBe('still here');

    await proxy.close();
    // Three reconnection attempts (0.2 + 0.4 + 0.6 s) and the command fails.
    await expectUnreachable(() => store.get('survivor'), { names: proxy.url, withinMs: 6_000 });
  });
});

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
