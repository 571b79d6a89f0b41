import { afterEach, beforeEach, expect, it, onTestFinished, vi } from 'vitest';
import { type Bucket, TIER_BUCKETS, type TierBucket } from '../../src/core/buckets.js';
import type { BlobStore } from '../../src/infra/blobs/blob-store.js';
import { objectKey } from '../../src/infra/blobs/object-keys.js';
import { Leases } from '../../src/infra/db/leases.js';
import { openConfiguredStorage } from '../../src/server/context.js';
import { ObjectsRepository } from '../../src/server/storage/objects.repository.js';
import { type TieringCatalog, TieringJob, type TieringReport } from '../../src/workers/tiering/tiering.job.js';
import { describeEachDatabase } from '../support/databases.js';
import { createTestServer, type TestServer } from '../support/server.js';
import { download, pseudoRandomBytes, uploadBytes } from '../support/uploads.js';

const DAY = 86_400_000;
const POLICY = { warmAfterDays: 30, coldAfterDays: 180 };

/** A call the tiering job makes, as the fault-injecting wrappers below see it. */
interface Call {
  method: string;
  /** The bucket of a blob call. */
  bucket?: Bucket;
  /** 'after' only for a blob put that has completed: a crash right after the copy was written. */
  phase: 'before' | 'after';
}

type Hook = (call: Call) => Promise<void> | void;

/**
 * Wraps the blob store and the catalog of a tiering job so a test sees every call, before it is
 * made (and after a put): to pause there, or to crash there. Private fields of the real objects
 * keep working: methods run on the real object.
 */
function instrumented<T extends object>(target: T, hook: Hook, blobCalls: boolean): T {
  return new Proxy(target, {
    get(object, property) {
      const value = Reflect.get(object, property, object) as unknown;
      if (typeof value !== 'function' || property === 'list' || property === 'close') return value;
      return async (...args: unknown[]) => {
        const bucket = blobCalls ? (args[0] as Bucket) : undefined;
        await hook({ method: String(property), bucket, phase: 'before' });
        const result = await (value as (...a: unknown[]) => Promise<unknown>).apply(object, args);
        if (blobCalls && property === 'put') await hook({ method: 'put', bucket, phase: 'after' });
        return result;
      };
    },
  });
}

/** A crash at the first call matching: that call and every later one fail, as in a process that died there. */
function crashAt(matches: (call: Call) => boolean): { hook: Hook; crashed: () => boolean } {
  let crashed = false;
  return {
    hook: (call) => {
      if (crashed || matches(call)) {
        crashed = true;
        throw new Error(`simulated crash at ${call.method} ${call.bucket ?? ''} (${call.phase})`);
      }
    },
    crashed: () => crashed,
  };
}

/** Holds the first call matching until released, and says when it was reached. */
function pauseAt(matches: (call: Call) => boolean) {
  let reach!: () => void;
  let release!: () => void;
  const reached = new Promise<void>((resolve) => (reach = resolve));
  const released = new Promise<void>((resolve) => (release = resolve));
  let paused = false;
  const hook: Hook = async (call) => {
    if (paused || !matches(call)) return;
    paused = true;
    reach();
    await released;
  };
  return { hook, reached, release };
}

const moved = (report: TieringReport, from: TierBucket, to: TierBucket) =>
  report.transitions.find((t) => t.from === from && t.to === to)!.objects;
const movedTotal = (report: TieringReport) => report.transitions.reduce((sum, t) => sum + t.objects, 0);

describeEachDatabase('storage tiering', (kind) => {
  let server: TestServer;
  let auth: { authorization: string };

  beforeEach(async () => {
    // Sessions outlive the clock's jumps of months.
    server = await createTestServer(kind, { auth: { sessionDays: 3650 } });
    auth = (await server.login('alice')).auth;
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await server.close();
  });

  const store = async (path: string, bytes: Buffer) => (await uploadBytes(server.app, auth, path, bytes)).status.version!.contentHash;
  const row = (hash: string) =>
    server.context.db.selectFrom('objects').select(['bucket', 'extra_copy_bucket']).where('hash', '=', hash).executeTakeFirst();
  /** The tier buckets holding a blob of the content. */
  const copies = async (hash: string) => {
    const found: Bucket[] = [];
    for (const bucket of TIER_BUCKETS) if (await server.context.blobs.head(bucket, objectKey(hash))) found.push(bucket);
    return found;
  };
  /** A tiering job on the test's database and clock, through the given blob store and catalog. */
  const job = (options: { blobs?: BlobStore; catalog?: TieringCatalog } = {}) =>
    new TieringJob(
      options.catalog ?? new ObjectsRepository(server.context.db),
      options.blobs ?? server.context.blobs,
      new Leases(server.context.db, server.clock.now),
      POLICY,
      server.clock.now,
    );
  /** A job whose blob store and catalog both report to hook. */
  const jobWith = (hook: Hook) =>
    job({
      blobs: instrumented(server.context.blobs, hook, true),
      catalog: instrumented(new ObjectsRepository(server.context.db), hook, false),
    });
  const expectReadable = async (path: string, bytes: Buffer) => {
    const whole = await download(server.app, auth, path);
    expect(whole.statusCode, whole.body).toBe(200);
    expect(whole.rawPayload.equals(bytes), `${path}: whole`).toBe(true);
    const part = await download(server.app, auth, path, { range: 'bytes=1000-70999' });
    expect(part.statusCode).toBe(206);
    expect(part.rawPayload.equals(bytes.subarray(1000, 71_000)), `${path}: range`).toBe(true);
  };
  /** Exactly one copy, recorded where the row says, no move under way. */
  const expectSettled = async (hash: string, bucket: Bucket) => {
    expect(await row(hash)).toEqual({ bucket, extra_copy_bucket: null });
    expect(await copies(hash)).toEqual([bucket]);
  };

  it('moves objects down the tiers as they age past each threshold, and never back up', async () => {
    const a = pseudoRandomBytes(200_000, 1);
    const b = pseudoRandomBytes(150_000, 2);
    const hashA = await store('a.bin', a);
    server.clock.advance(29 * DAY);
    expect(movedTotal(await server.context.tiering.run())).toBe(0);
    await expectSettled(hashA, 'uploads');

    server.clock.advance(2 * DAY);
    const hashB = await store('b.bin', b);
    const first = await server.context.tiering.run();
    expect(first).toMatchObject({ dryRun: false, ran: true, recovered: 0, failures: [] });
    expect(first.transitions).toContainEqual({ from: 'uploads', to: 'photos-warm', objects: 1, bytes: a.length });
    await expectSettled(hashA, 'photos-warm');
    await expectSettled(hashB, 'uploads');
    await expectReadable('a.bin', a);

    server.clock.advance(150 * DAY);
    const second = await server.context.tiering.run();
    expect(second.transitions).toContainEqual({ from: 'photos-warm', to: 'photos-cold', objects: 1, bytes: a.length });
    expect(second.transitions).toContainEqual({ from: 'uploads', to: 'photos-warm', objects: 1, bytes: b.length });
    await expectSettled(hashA, 'photos-cold');
    await expectSettled(hashB, 'photos-warm');
    await expectReadable('a.bin', a);
    await expectReadable('b.bin', b);

    // Stored again (a copy in another folder): the content is still old, so it stays cold.
    await store('copy-of-a.bin', a);
    expect(movedTotal(await server.context.tiering.run())).toBe(0);
    await expectSettled(hashA, 'photos-cold');
    await expectReadable('copy-of-a.bin', a);
  });

  it('moves an object older than both thresholds straight to the cold tier', async () => {
    const bytes = pseudoRandomBytes(120_000, 3);
    const hash = await store('old.bin', bytes);
    server.clock.advance(200 * DAY);
    const report = await server.context.tiering.run();
    expect(moved(report, 'uploads', 'photos-cold')).toBe(1);
    expect(moved(report, 'uploads', 'photos-warm')).toBe(0);
    await expectSettled(hash, 'photos-cold');
    await expectReadable('old.bin', bytes);
  });

  it('serves reads whose bucket lookup came just before the switch, whole, as ranges and as chunk sources of an upload', async () => {
    // The job runs as another process would: its own blob store on the same folders.
    const moverStorage = await openConfiguredStorage(server.config);
    onTestFinished(() => moverStorage.blobs.close());
    const mover = job({ blobs: moverStorage.blobs });
    const blobs = server.context.blobs;
    const get = blobs.get.bind(blobs);
    // A reader that has looked up 'uploads' for a watched object sees the whole move happen before it opens the blob.
    const watched = new Set<string>();
    let movedUnderReaders = 0;
    vi.spyOn(blobs, 'get').mockImplementation(async (bucket, key, range) => {
      if (bucket === 'uploads' && watched.has(key) && (await blobs.head('uploads', key))) {
        expect(movedTotal(await mover.run())).toBeGreaterThan(0);
        movedUnderReaders++;
      }
      return get(bucket, key, range);
    });

    const bytes = pseudoRandomBytes(300_000, 4);
    const hash = await store('photo.bin', bytes);
    watched.add(objectKey(hash));
    server.clock.advance(31 * DAY);
    await expectReadable('photo.bin', bytes);
    expect(movedUnderReaders).toBe(1);
    await expectSettled(hash, 'photos-warm');

    // An edited version is assembled from ranges of the object, moved just as the commit reads them.
    server.clock.advance(150 * DAY);
    const edited = Buffer.concat([bytes.subarray(0, 150_000), Buffer.from('inserted in the middle'), bytes.subarray(150_000)]);
    const older = pseudoRandomBytes(300_000, 5);
    const olderHash = await store('older.bin', older);
    watched.add(objectKey(olderHash));
    server.clock.advance(31 * DAY);
    const editedOlder = Buffer.concat([older.subarray(0, 100_000), Buffer.from('inserted'), older.subarray(100_000)]);
    const upload = await uploadBytes(server.app, auth, 'older-edited.bin', editedOlder);
    expect(upload.bytesSent).toBeLessThan(editedOlder.length / 2);
    expect(movedUnderReaders).toBe(2);
    await expectSettled(olderHash, 'photos-warm');
    await expectReadable('older-edited.bin', editedOlder);
    // The first object went cold in that run; an upload built from it reads it there.
    await expectSettled(hash, 'photos-cold');
    const fromCold = await uploadBytes(server.app, auth, 'photo-edited.bin', edited);
    expect(fromCold.bytesSent).toBeLessThan(edited.length / 2);
    await expectReadable('photo-edited.bin', edited);
  });

  it.each([
    ['after copying, before the metadata switch', (call: Call) => call.method === 'put' && call.phase === 'after'],
    ['before the switch, reading the source', (call: Call) => call.method === 'get'],
    ['after the switch, before deleting the source', (call: Call) => call.method === 'delete'],
  ])('serves the right bytes while a move is paused %s', async (_, where) => {
    const bytes = pseudoRandomBytes(200_000, 6);
    const hash = await store('busy.bin', bytes);
    server.clock.advance(31 * DAY);
    const pause = pauseAt(where);
    const run = jobWith(pause.hook).run();
    await pause.reached;
    await expectReadable('busy.bin', bytes);
    pause.release();
    expect(movedTotal(await run)).toBe(1);
    await expectSettled(hash, 'photos-warm');
    await expectReadable('busy.bin', bytes);
  });

  it.each([
    ['after marking the move, reading the source', (call: Call) => call.method === 'get'],
    ['after copying', (call: Call) => call.method === 'put' && call.phase === 'after'],
    ['verifying the copy', (call: Call) => call.method === 'head'],
    ['switching the metadata', (call: Call) => call.method === 'switchMove'],
    ['after the switch, before deleting the source', (call: Call) => call.method === 'delete'],
    ['after deleting the source, before clearing the mark', (call: Call) => call.method === 'endMove'],
  ])('a crash %s leaves one readable recorded copy, and the next run completes the move', async (_, where) => {
    const bytes = pseudoRandomBytes(200_000, 7);
    const other = pseudoRandomBytes(100_000, 8);
    const hash = await store('crash.bin', bytes);
    server.clock.advance(1000);
    const otherHash = await store('other.bin', other);
    server.clock.advance(31 * DAY);

    const crash = crashAt(where);
    // However the crashed run ends (a report of failures, or an error once even its scan fails), it ends.
    await jobWith(crash.hook)
      .run()
      .catch(() => null);
    expect(crash.crashed()).toBe(true);

    // Whatever step it stopped at, the recorded copy is there and reads; any other copy is the marked one.
    for (const [h, path, content] of [
      [hash, 'crash.bin', bytes],
      [otherHash, 'other.bin', other],
    ] as const) {
      const recorded = (await row(h))!;
      const found = await copies(h);
      expect(found).toContain(recorded.bucket);
      for (const bucket of found) expect([recorded.bucket, recorded.extra_copy_bucket]).toContain(bucket);
      await expectReadable(path, content);
    }

    const next = await job().run();
    expect(next).toMatchObject({ ran: true, failures: [] });
    await expectSettled(hash, 'photos-warm');
    await expectSettled(otherHash, 'photos-warm');
    await expectReadable('crash.bin', bytes);
    await expectReadable('other.bin', other);
    expect((await server.context.integrity.verify()).ok).toBe(true);
  });

  it.each([
    ['before the move begins', (call: Call) => call.method === 'beginMove'],
    ['after the copy', (call: Call) => call.method === 'put' && call.phase === 'after'],
    ['after the switch', (call: Call) => call.method === 'delete'],
  ])('a purge %s leaves neither an orphan copy nor a dangling row', async (_, where) => {
    const bytes = pseudoRandomBytes(200_000, 9);
    const hash = await store('doomed.bin', bytes);
    server.clock.advance(31 * DAY);
    const pause = pauseAt(where);
    const run = jobWith(pause.hook).run();
    await pause.reached;
    expect((await server.app.inject({ method: 'DELETE', url: '/api/v1/files?path=doomed.bin', headers: auth })).statusCode).toBe(200);
    expect((await server.app.inject({ method: 'DELETE', url: '/api/v1/trash', headers: auth })).statusCode).toBe(200);
    pause.release();
    expect((await run).failures).toEqual([]);
    expect(await row(hash)).toBeUndefined();
    expect(await copies(hash)).toEqual([]);
    const verified = await server.context.integrity.verify();
    expect(verified).toMatchObject({ ok: true, counts: { missing: 0, orphans: 0, unfinishedMoves: 0 } });

    // The same content uploaded again afterwards is a new object in the hot tier.
    expect(await store('again.bin', bytes)).toBe(hash);
    await expectSettled(hash, 'uploads');
    await expectReadable('again.bin', bytes);
  });

  it('a dry run reports what would move and changes nothing', async () => {
    const warm = pseudoRandomBytes(80_000, 10);
    const cold = pseudoRandomBytes(90_000, 11);
    const coldHash = await store('cold.bin', cold);
    server.clock.advance(150 * DAY);
    const warmHash = await store('warm.bin', warm);
    server.clock.advance(40 * DAY);
    const report = await server.context.tiering.run({ dryRun: true });
    expect(report).toMatchObject({ dryRun: true, ran: true, failures: [] });
    expect(report.transitions).toEqual([
      { from: 'uploads', to: 'photos-warm', objects: 1, bytes: warm.length },
      { from: 'uploads', to: 'photos-cold', objects: 1, bytes: cold.length },
      { from: 'photos-warm', to: 'photos-cold', objects: 0, bytes: 0 },
    ]);
    await expectSettled(coldHash, 'uploads');
    await expectSettled(warmHash, 'uploads');
    expect(await server.context.db.selectFrom('leases').selectAll().execute()).toEqual([]);
    // What it reported is what a real run then does.
    expect((await server.context.tiering.run()).transitions).toEqual(report.transitions);
  });

  it('two runs at once move each object once: the second finds the lease held and does nothing', async () => {
    const contents = [12, 13, 14, 15].map((seed) => pseudoRandomBytes(60_000, seed));
    const hashes: string[] = [];
    for (const [i, bytes] of contents.entries()) hashes.push(await store(`many/${i}.bin`, bytes));
    server.clock.advance(31 * DAY);

    const pause = pauseAt((call) => call.method === 'put');
    const first = jobWith(pause.hook).run();
    await pause.reached;
    const second = await job().run();
    expect(second).toMatchObject({ ran: false, failures: [] });
    expect(movedTotal(second)).toBe(0);
    pause.release();
    expect(moved(await first, 'uploads', 'photos-warm')).toBe(contents.length);

    // Started together without a pause, too: however they interleave, nothing moves twice.
    server.clock.advance(150 * DAY);
    const runs = await Promise.all([job().run(), job().run()]);
    expect(runs.flatMap((r) => r.failures)).toEqual([]);
    expect(runs.reduce((sum, r) => sum + moved(r, 'photos-warm', 'photos-cold'), 0)).toBe(contents.length);
    for (const hash of hashes) await expectSettled(hash, 'photos-cold');
  });

  it('takes over the lease of a run that died once it runs out', async () => {
    const bytes = pseudoRandomBytes(50_000, 16);
    const hash = await store('late.bin', bytes);
    server.clock.advance(31 * DAY);
    // A run of a process that died: its lease is held, and never renewed or released.
    await server.context.db
      .insertInto('leases')
      .values({ name: 'tiering', holder: 'dead-host/1/x', expires_at: server.clock.now() + 60_000 })
      .execute();
    expect((await job().run()).ran).toBe(false);
    await expectSettled(hash, 'uploads');
    server.clock.advance(5 * 60_000);
    expect(moved(await job().run(), 'uploads', 'photos-warm')).toBe(1);
    await expectSettled(hash, 'photos-warm');
  });

  it('reports an object whose recorded copy is missing as a failure, and moves the rest', async () => {
    const lost = pseudoRandomBytes(50_000, 17);
    const kept = pseudoRandomBytes(50_000, 18);
    const lostHash = await store('lost.bin', lost);
    const keptHash = await store('kept.bin', kept);
    await server.context.blobs.delete('uploads', objectKey(lostHash));
    server.clock.advance(31 * DAY);
    const report = await server.context.tiering.run();
    expect(report.failures).toEqual([
      { contentHash: lostHash, from: 'uploads', to: 'photos-warm', error: expect.stringContaining('recorded copy is missing') },
    ]);
    expect(moved(report, 'uploads', 'photos-warm')).toBe(1);
    expect(await row(lostHash)).toEqual({ bucket: 'uploads', extra_copy_bucket: null });
    await expectSettled(keptHash, 'photos-warm');
  });
});
