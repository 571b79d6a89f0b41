import { createServer, type Server, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { Client } from 'minio';
import { describe, expect, it, onTestFinished } from 'vitest';
import { sha256Hex } from '../../src/core/hash.js';
import { BUCKETS, type Bucket } from '../../src/infra/blobs/blob-store.js';
import { multipartPartSize, S3BlobStore, type S3BlobStoreOptions, type S3Location } from '../../src/infra/blobs/s3.blob-store.js';
import { pseudoRandomBytes } from '../support/random.js';
import { freezableProxy, s3rverForTest, SLOW_S3_TEST_MS, startS3rver, type TestS3Server, unusedPort } from '../support/s3rver.js';
import { blobStoreContract, expectPvError, readAll } from './blob-store.contract.js';

const MIB = 1024 * 1024;

blobStoreContract('S3BlobStore', async () => {
  const server = await startS3rver();
  const store = await S3BlobStore.open({ buckets: server.locations });
  return { store, cleanup: () => server.close() };
});

/** A client of the test's own, to look at the S3 server behind the store's back. */
function clientOf(server: TestS3Server): Client {
  const { hostname, port } = new URL(server.endpoint);
  const { accessKey, secretKey } = server.locations.uploads;
  return new Client({ endPoint: hostname, port: Number(port), useSSL: false, accessKey, secretKey });
}

async function s3Keys(server: TestS3Server, bucket: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const item of clientOf(server).listObjectsV2(bucket, '', true)) if (item.name) keys.push(item.name);
  return keys.sort();
}

/** A body of the bytes in pieces of 1 MiB, as a file read would yield them. */
function inPieces(bytes: Buffer): Readable {
  return Readable.from(
    (function* () {
      for (let at = 0; at < bytes.length; at += MIB) yield bytes.subarray(at, at + MIB);
    })(),
  );
}

describe('S3BlobStore', () => {
  const server = s3rverForTest;
  async function open(options: S3BlobStoreOptions): Promise<S3BlobStore> {
    const store = await S3BlobStore.open(options);
    onTestFinished(() => store.close());
    return store;
  }

  it('creates missing buckets at open and finds them there the next time', async () => {
    const s3 = await server();
    const locations = Object.fromEntries(BUCKETS.map((b) => [b, { ...s3.locations[b], bucket: `pv-${b}` }])) as Record<Bucket, S3Location>;
    const store = await open({ buckets: locations });
    for (const bucket of BUCKETS) expect(await clientOf(s3).bucketExists(`pv-${bucket}`)).toBe(true);
    await store.put('photos-cold', 'k', Readable.from([Buffer.from('cold')]));

    const again = await open({ buckets: locations });
    expect((await readAll(await again.get('photos-cold', 'k'))).toString()).toBe('cold');
  });

  it('keeps each bucket on its own endpoint when the buckets are split across two servers', async () => {
    const [hot, cold] = [await server(), await server()];
    const locations = { ...hot.locations, 'photos-cold': cold.locations['photos-cold'], thumbnails: cold.locations.thumbnails };
    const store = await open({ buckets: locations });
    await store.put('uploads', 'a', Readable.from([Buffer.from('hot bytes')]));
    await store.put('photos-cold', 'b', Readable.from([Buffer.from('cold bytes')]));

    expect(await s3Keys(hot, 'uploads')).toEqual(['a']);
    expect(await s3Keys(cold, 'photos-cold')).toEqual(['b']);
    expect(await clientOf(hot).bucketExists('photos-cold')).toBe(false);
    expect(await clientOf(cold).bucketExists('uploads')).toBe(false);
    expect((await readAll(await store.get('photos-cold', 'b'))).toString()).toBe('cold bytes');
  });

  it('round-trips a multipart object with the right hash, and reads ranges across part edges', async () => {
    const store = await open({ buckets: (await server()).locations, partSize: 5 * MIB });
    const bytes = pseudoRandomBytes(12 * MIB + 123, 7);
    const result = await store.put('uploads', 'big', inPieces(bytes), { sha256: sha256Hex(bytes), size: bytes.length });
    expect(result).toEqual({ sha256: sha256Hex(bytes), size: bytes.length });
    expect(await store.head('uploads', 'big')).toEqual({ key: 'big', size: bytes.length });
    expect(sha256Hex(await readAll(await store.get('uploads', 'big')))).toBe(sha256Hex(bytes));
    for (const [start, end] of [
      [0, 0],
      [5 * MIB - 1, 5 * MIB],
      [10 * MIB - 10, 10 * MIB + 10],
      [bytes.length - 1, bytes.length - 1],
      [bytes.length - 5, bytes.length + 100],
    ] as const) {
      // equals(), not toEqual(): a failing toEqual would print a diff of megabytes.
      expect((await readAll(await store.get('uploads', 'big', { start, end }))).equals(bytes.subarray(start, end + 1))).toBe(true);
    }
  });

  it(
    'completes multipart puts while deletes keep coming',
    async () => {
      // The cluster run's deletes (staging discarded, tiering) race its multipart puts (promotions
      // of big files); the test server keeps them apart, and must not deadlock doing so.
      const store = await open({ buckets: (await server()).locations, partSize: 5 * MIB });
      const bytes = pseudoRandomBytes(6 * MIB, 5);
      let putting = true;
      const churn = async () => {
        while (putting) await store.delete('uploads', 'absent');
      };
      const churners = [churn(), churn(), churn()];
      const keys = Array.from({ length: 12 }, (_, n) => `big-${n}`);
      await Promise.all(keys.map((key) => store.put('uploads', key, inPieces(bytes), { sha256: sha256Hex(bytes) }))).finally(
        () => (putting = false),
      );
      await Promise.all(churners);
      for (const key of keys) expect(await store.head('uploads', key)).toEqual({ key, size: bytes.length });
    },
    SLOW_S3_TEST_MS,
  );

  it(
    'puts an object of more than 64 MiB with the default part size',
    async () => {
      const store = await open({ buckets: (await server()).locations });
      const bytes = pseudoRandomBytes(65 * MIB + 1, 3);
      await store.put('photos-warm', 'video', inPieces(bytes), { sha256: sha256Hex(bytes) });
      expect(sha256Hex(await readAll(await store.get('photos-warm', 'video')))).toBe(sha256Hex(bytes));
    },
    SLOW_S3_TEST_MS,
  );

  it('leaves no object and the old one intact when a multipart put mismatches or its body fails after a part went up', async () => {
    const s3 = await server();
    const store = await open({ buckets: s3.locations, partSize: 5 * MIB });
    const bytes = pseudoRandomBytes(11 * MIB, 5);
    await expectPvError(store.put('uploads', 'new', inPieces(bytes), { sha256: sha256Hex('other') }), 'PV_INTEGRITY');
    await expectPvError(store.put('uploads', 'new', inPieces(bytes), { size: bytes.length - 1 }), 'PV_INTEGRITY');
    async function* failing(): AsyncIterable<Uint8Array> {
      yield* inPieces(bytes.subarray(0, 7 * MIB));
      throw new Error('connection reset');
    }
    await expect(store.put('uploads', 'new', failing())).rejects.toThrow('connection reset');
    expect(await store.head('uploads', 'new')).toBeNull();

    await store.put('uploads', 'old', Readable.from([Buffer.from('old bytes')]));
    await expectPvError(store.put('uploads', 'old', inPieces(bytes), { sha256: sha256Hex('other') }), 'PV_INTEGRITY');
    await expect(store.put('uploads', 'old', failing())).rejects.toThrow('connection reset');
    expect((await readAll(await store.get('uploads', 'old'))).toString()).toBe('old bytes');
    expect(await s3Keys(s3, 'uploads')).toEqual(['old']);
  });

  it(
    'lists past the first page of 1,000 keys',
    async () => {
      const store = await open({ buckets: (await server()).locations });
      const keys = Array.from({ length: 1002 }, (_, i) => `f${String(i).padStart(4, '0')}/x`);
      for (let i = 0; i < keys.length; i += 25) {
        await Promise.all(keys.slice(i, i + 25).map((key) => store.put('thumbnails', key, Readable.from([Buffer.from('x')]))));
      }
      const listed: string[] = [];
      for await (const info of store.list('thumbnails')) listed.push(info.key);
      expect(listed.sort()).toEqual(keys);
    },
    SLOW_S3_TEST_MS,
  );

  const partSizes = [
    { size: undefined, expected: 5 * MIB },
    { size: 0, expected: 5 * MIB },
    { size: 10_000 * 5 * MIB, expected: 5 * MIB },
    { size: 10_000 * 5 * MIB + 1, expected: 6 * MIB },
    { size: 5 * 1024 ** 4, expected: 525 * MIB },
  ];
  for (const { size, expected } of partSizes) {
    it(`uses parts of ${expected / MIB} MiB for a declared size of ${size ?? 'unknown'} bytes`, () => {
      expect(multipartPartSize(5 * MIB, size)).toBe(expected);
    });
  }

  it('fails requests the server stops answering with PV_BACKEND_UNREACHABLE after requestIdleMs, and serves again once it answers', async () => {
    const s3 = await server();
    const proxy = await freezableProxy(new URL(s3.endpoint));
    const buckets = Object.fromEntries(BUCKETS.map((b) => [b, { ...s3.locations[b], endpoint: proxy.endpoint }])) as Record<
      Bucket,
      S3Location
    >;
    const store = await open({ buckets, requestIdleMs: 300, partSize: 5 * MIB });
    await store.put('uploads', 'before', Readable.from([Buffer.from('answered')]));

    proxy.freeze();
    const big = pseudoRandomBytes(6 * MIB, 9);
    const outcomes = await Promise.allSettled([
      store.put('uploads', 'small', Readable.from([Buffer.from('x')])),
      store.put('uploads', 'multipart', inPieces(big), { sha256: sha256Hex(big) }),
      store.get('uploads', 'before'),
      store.head('uploads', 'before'),
      store.delete('uploads', 'before'),
      (async () => {
        for await (const item of store.list('uploads')) void item;
      })(),
    ]);
    for (const outcome of outcomes) {
      expect(outcome.status).toBe('rejected');
      const error = await expectPvError(Promise.reject((outcome as PromiseRejectedResult).reason), 'PV_BACKEND_UNREACHABLE');
      expect(error.message).toContain(proxy.endpoint);
    }

    proxy.thaw();
    await store.put('uploads', 'after', Readable.from([Buffer.from('answered again')]));
    expect((await readAll(await store.get('uploads', 'after'))).toString()).toBe('answered again');
    expect(await store.head('uploads', 'small')).toBeNull();
    expect(await store.head('uploads', 'multipart')).toBeNull();
  });

  it('fails to open with PV_BACKEND_UNREACHABLE naming the endpoint and bucket when nothing listens there', async () => {
    const s3 = await server();
    const endpoint = `http://127.0.0.1:${await unusedPort()}`;
    const error = await expectPvError(
      S3BlobStore.open({ buckets: { ...s3.locations, 'photos-cold': { ...s3.locations['photos-cold'], endpoint } } }),
      'PV_BACKEND_UNREACHABLE',
    );
    expect(error.message).toContain(endpoint);
    expect(error.message).toContain('photos-cold');
    expect(error.details).toMatchObject({ endpoint, bucket: 'photos-cold' });
    expect(error.fix).toBeTruthy();
  });

  it('fails to open with PV_BACKEND_UNREACHABLE when the endpoint accepts connections but never answers', async () => {
    const connections = new Set<Socket>();
    const silent: Server = createServer((socket) => connections.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    onTestFinished(async () => {
      for (const socket of connections) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    });
    const endpoint = `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
    const s3 = await server();
    const error = await expectPvError(
      S3BlobStore.open({ buckets: { ...s3.locations, thumbnails: { ...s3.locations.thumbnails, endpoint } }, openTimeoutMs: 200 }),
      'PV_BACKEND_UNREACHABLE',
    );
    expect(error.message).toContain(endpoint);
  });

  it('fails to open with PV_CONFIG_INVALID when the server refuses the credentials', async () => {
    const s3 = await server();
    // s3rver checks the access key, not the signature.
    const buckets = { ...s3.locations, uploads: { ...s3.locations.uploads, accessKey: 'unknown' } };
    const error = await expectPvError(S3BlobStore.open({ buckets }), 'PV_CONFIG_INVALID');
    expect(error.message).toContain(s3.endpoint);
  });

  it('rejects configurations that put two buckets in one S3 bucket, or no URL as the endpoint', async () => {
    const s3 = await server();
    const shared = { ...s3.locations, thumbnails: s3.locations.uploads };
    expect(() => new S3BlobStore({ buckets: shared })).toThrow(expect.objectContaining({ code: 'PV_CONFIG_INVALID' }));
    for (const endpoint of ['127.0.0.1:9000', 'ftp://host', 'http://host/path', 'http://user:pw@host']) {
      const buckets = { ...s3.locations, uploads: { ...s3.locations.uploads, endpoint } };
      expect(() => new S3BlobStore({ buckets })).toThrow(expect.objectContaining({ code: 'PV_CONFIG_INVALID' }));
    }
    expect(() => new S3BlobStore({ buckets: s3.locations, partSize: MIB })).toThrow(expect.objectContaining({ code: 'PV_CONFIG_INVALID' }));
  });

  it('builds one client per endpoint and credentials', async () => {
    const [a, b] = [await server(), await server()];
    const store = new S3BlobStore({
      buckets: { ...a.locations, 'photos-cold': b.locations['photos-cold'], thumbnails: b.locations.thumbnails },
    });
    onTestFinished(() => store.close());
    const clients = new Set(BUCKETS.map((bucket) => store.bucketOf(bucket).client));
    expect(clients.size).toBe(2);
  });
});
